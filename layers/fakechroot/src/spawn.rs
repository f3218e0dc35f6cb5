//! The exported exec family, posix_spawn, system and popen.
//!
//! glibc's execvp, posix_spawn, system and popen reach `execve` internally, not through
//! the PLT, so each is reimplemented on top of [`exec::plan`].

use std::ffi::{CStr, c_char, c_int};
use std::sync::Mutex;

use libc::{FILE, pid_t};
use rootfs_paths::PathBuf;

use crate::exec::{self, arena_for, plan, search, shell_argv};
use crate::state;
use crate::sys::{self, fail, real};
use crate::translate::container_dir;

/// # Safety
/// libc's contract for `execve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    match state::get() {
        Some(st) => exec::exec(st, path, argv, envp),
        None if path.is_null() => sys::fail(libc::EFAULT, -1),
        None => {
            // SAFETY: a non-null exec path is NUL-terminated (libc's contract).
            let path = unsafe { CStr::from_ptr(path) };
            // SAFETY: the arrays are the caller's, as libc's contract gives them.
            unsafe { sys::execve(path, argv, envp) }
        }
    }
}

/// Entry point for the C variadic stubs.
///
/// # Safety
/// libc's contract for `execve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scar_fc_execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: same contract.
    unsafe { execve(path, argv, envp) }
}

/// # Safety
/// libc's contract for `execv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: same contract.
    unsafe { execve(path, argv, sys::environment()) }
}

/// # Safety
/// glibc's contract for `execvpe`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    match state::get() {
        Some(st) => exec::exec_search(st, file, argv, envp),
        None => {
            match real!(execvpe: fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int)
            {
                // SAFETY: same contract.
                Some(next) => unsafe { next(file, argv, envp) },
                None => fail(libc::ENOSYS, -1),
            }
        }
    }
}

/// # Safety
/// libc's contract for `execvpe`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scar_fc_execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: same contract.
    unsafe { execvpe(file, argv, envp) }
}

/// # Safety
/// libc's contract for `execvp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: same contract.
    unsafe { execvpe(file, argv, sys::environment()) }
}

/// # Safety
/// libc's contract for `execveat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    flags: c_int,
) -> c_int {
    let Some(st) = state::get() else {
        // SAFETY: raw execveat with the caller's arguments.
        return unsafe {
            crate::sys::raw_syscall!(libc::SYS_execveat, dirfd, path, argv, envp, flags) as c_int
        };
    };
    // SAFETY: a non-null path is NUL-terminated.
    let name = if path.is_null() {
        &b""[..]
    } else {
        // SAFETY: as above.
        unsafe { sys::bytes(path) }
    };
    if name.first() == Some(&b'/') {
        return exec::exec(st, path, argv, envp);
    }
    if name.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        return exec::exec_descriptor(st, dirfd, argv, envp);
    }
    let mut full = PathBuf::new();
    if let Err(code) = container_dir(st, dirfd, &mut full) {
        return fail(code, -1);
    }
    if !name.is_empty() && (full.push(b"/").is_err() || full.push(name).is_err()) {
        return fail(libc::ENAMETOOLONG, -1);
    }
    if name.is_empty() && flags & libc::AT_EMPTY_PATH == 0 {
        return fail(libc::ENOENT, -1);
    }
    exec::exec(st, full.as_ptr().cast(), argv, envp)
}

/// # Safety
/// libc's contract for `fexecve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fexecve(
    fd: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: same contract.
    unsafe { execveat(fd, c"".as_ptr(), argv, envp, libc::AT_EMPTY_PATH) }
}

type SpawnFn = unsafe extern "C" fn(
    *mut pid_t,
    *const c_char,
    *const libc::posix_spawn_file_actions_t,
    *const libc::posix_spawnattr_t,
    *const *const c_char,
    *const *const c_char,
) -> c_int;

fn real_spawn() -> Option<SpawnFn> {
    real!(posix_spawn: fn(*mut pid_t, *const c_char, *const libc::posix_spawn_file_actions_t, *const libc::posix_spawnattr_t, *const *const c_char, *const *const c_char) -> c_int)
}

/// Plans in the parent (where allocating is fine) and spawns the loader.
#[allow(clippy::too_many_arguments)]
fn spawn_planned(
    next: SpawnFn,
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *const c_char,
    envp: *const *const c_char,
    shell_fallback: bool,
) -> c_int {
    let Some(st) = state::get() else {
        // SAFETY: the caller's arguments.
        return unsafe { next(pid, path, actions, attr, argv, envp) };
    };
    let mut arena = match arena_for(st, argv, envp) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let planned = match plan(st, &mut arena, path, argv, envp) {
        Err(libc::ENOEXEC) if shell_fallback => shell_argv(&mut arena, path, argv)
            .and_then(|sh_argv| plan(st, &mut arena, c"/bin/sh".as_ptr(), sh_argv, envp)),
        other => other,
    };
    match planned {
        // SAFETY: the planned command, with the caller's file actions and attributes.
        Ok(cmd) => unsafe { next(pid, cmd.path, actions, attr, cmd.argv, cmd.envp) },
        Err(code) => code,
    }
}

/// # Safety
/// libc's contract for `posix_spawn`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let Some(next) = real_spawn() else {
        return libc::ENOSYS;
    };
    spawn_planned(next, pid, path, actions, attr, argv, envp, false)
}

/// # Safety
/// libc's contract for `posix_spawnp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let Some(next) = real_spawn() else {
        return libc::ENOSYS;
    };
    if state::get().is_none() {
        let Some(next_p) = real!(posix_spawnp: fn(*mut pid_t, *const c_char, *const libc::posix_spawn_file_actions_t, *const libc::posix_spawnattr_t, *const *const c_char, *const *const c_char) -> c_int)
        else {
            return libc::ENOSYS;
        };
        // SAFETY: the caller's arguments.
        return unsafe { next_p(pid, file, actions, attr, argv, envp) };
    }
    let mut result = 0;
    let found = search(file, |candidate| {
        match spawn_planned(next, pid, candidate, actions, attr, argv, envp, true) {
            0 => Ok(()),
            code => {
                result = code;
                Err(code)
            }
        }
    });
    if found == 0 {
        0
    } else {
        sys::errno().max(result)
    }
}

/// `/bin/sh -c command`, spawned through the shim, as system() and popen() do.
fn spawn_shell(
    command: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
) -> Result<pid_t, c_int> {
    let argv = [c"sh".as_ptr(), c"-c".as_ptr(), command, std::ptr::null()];
    let mut pid: pid_t = 0;
    // SAFETY: a valid argv; the process environment.
    let code = unsafe {
        posix_spawn(
            &mut pid,
            c"/bin/sh".as_ptr(),
            actions,
            attr,
            argv.as_ptr(),
            sys::environment(),
        )
    };
    if code == 0 { Ok(pid) } else { Err(code) }
}

fn wait_for(pid: pid_t) -> c_int {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            return status;
        }
        if ret == -1 && sys::errno() != libc::EINTR {
            return -1;
        }
    }
}

/// # Safety
/// libc's contract for `system`.
#[unsafe(no_mangle)]
// One block holds the whole signal and spawn dance, whose steps share one reason.
#[allow(clippy::multiple_unsafe_ops_per_block)]
pub unsafe extern "C" fn system(command: *const c_char) -> c_int {
    if command.is_null() {
        return 1;
    }
    // POSIX: the caller ignores SIGINT/SIGQUIT and blocks SIGCHLD while the shell runs;
    // the shell gets default dispositions and the original mask.
    // SAFETY: plain signal-state manipulation on zeroed, initialised structures.
    unsafe {
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        let (mut old_int, mut old_quit): (libc::sigaction, libc::sigaction) =
            (std::mem::zeroed(), std::mem::zeroed());
        libc::sigaction(libc::SIGINT, &ignore, &mut old_int);
        libc::sigaction(libc::SIGQUIT, &ignore, &mut old_quit);
        let (mut block, mut old_mask): (libc::sigset_t, libc::sigset_t) =
            (std::mem::zeroed(), std::mem::zeroed());
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &block, &mut old_mask);

        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&mut attr);
        let mut defaults: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut defaults);
        libc::sigaddset(&mut defaults, libc::SIGINT);
        libc::sigaddset(&mut defaults, libc::SIGQUIT);
        libc::posix_spawnattr_setsigdefault(&mut attr, &defaults);
        libc::posix_spawnattr_setsigmask(&mut attr, &old_mask);
        libc::posix_spawnattr_setflags(
            &mut attr,
            (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as _,
        );
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        close_popened(&mut actions);
        let status = match spawn_shell(command, &actions, &attr) {
            Ok(pid) => wait_for(pid),
            Err(_) => 127 << 8,
        };
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        libc::sigaction(libc::SIGINT, &old_int, std::ptr::null_mut());
        libc::sigaction(libc::SIGQUIT, &old_quit, std::ptr::null_mut());
        libc::sigprocmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut());
        status
    }
}

/// One stream opened by our popen: the `FILE *`, its descriptor, and the shell behind it.
#[derive(Debug, Clone, Copy)]
struct Popened {
    stream: usize,
    fd: c_int,
    pid: pid_t,
}

/// Streams opened by our popen and not yet pclosed.
static POPENED: Mutex<Vec<Popened>> = Mutex::new(Vec::new());

/// Adds a close of every open popen stream's descriptor to a spawn's actions. POSIX: "popen()
/// shall ensure that any streams from previous popen() calls that remain open in the parent
/// process are closed in the new child process"; otherwise a child holding another stream's
/// write end keeps that stream's reader from ever seeing end of input, and its pclose hangs.
/// system()'s shell gets the same, for the same reason. A descriptor the program closed
/// itself fails to close in the child, which posix_spawn ignores for a valid number.
fn close_popened(actions: &mut libc::posix_spawn_file_actions_t) {
    let Ok(open) = POPENED.lock() else { return };
    for stream in open.iter() {
        // SAFETY: an initialised actions object; the fd is a plain number.
        unsafe { libc::posix_spawn_file_actions_addclose(actions, stream.fd) };
    }
}

/// # Safety
/// libc's contract for `popen`.
#[unsafe(no_mangle)]
// One block holds the pipe and spawn steps, whose calls share one reason: fds we own.
#[allow(clippy::multiple_unsafe_ops_per_block)]
pub unsafe extern "C" fn popen(command: *const c_char, mode: *const c_char) -> *mut FILE {
    let null = std::ptr::null_mut();
    if command.is_null() || mode.is_null() {
        return fail(libc::EINVAL, null);
    }
    // SAFETY: a NUL-terminated mode string.
    let mode_bytes = unsafe { sys::bytes(mode) };
    let reading = match mode_bytes.first() {
        Some(b'r') => true,
        Some(b'w') => false,
        _ => return fail(libc::EINVAL, null),
    };
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe2 into a two-element array; all the calls below are on fds we own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return null;
        }
        let (ours, theirs, target) = if reading {
            (fds[0], fds[1], 1)
        } else {
            (fds[1], fds[0], 0)
        };
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        close_popened(&mut actions);
        libc::posix_spawn_file_actions_adddup2(&mut actions, theirs, target);
        let spawned = spawn_shell(command, &actions, std::ptr::null());
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::close(theirs);
        let pid = match spawned {
            Ok(pid) => pid,
            Err(code) => {
                libc::close(ours);
                return fail(code, null);
            }
        };
        let stream = libc::fdopen(
            ours,
            if reading {
                c"r".as_ptr()
            } else {
                c"w".as_ptr()
            },
        );
        if stream.is_null() {
            libc::close(ours);
            wait_for(pid);
            return null;
        }
        // As glibc: without `e` the parent's end is inherited by the program's own later
        // execs; the popen and system children close it (close_popened).
        if !mode_bytes.contains(&b'e') {
            libc::fcntl(ours, libc::F_SETFD, 0);
        }
        if let Ok(mut open) = POPENED.lock() {
            open.push(Popened {
                stream: stream as usize,
                fd: ours,
                pid,
            });
        }
        stream
    }
}

/// # Safety
/// libc's contract for `pclose`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pclose(stream: *mut FILE) -> c_int {
    let pid = POPENED.lock().ok().and_then(|mut open| {
        let at = open.iter().position(|p| p.stream == stream as usize)?;
        Some(open.swap_remove(at).pid)
    });
    match pid {
        Some(pid) => {
            // SAFETY: a stream our popen created.
            unsafe { libc::fclose(stream) };
            wait_for(pid)
        }
        None => match real!(pclose: fn(*mut FILE) -> c_int) {
            // SAFETY: a stream from libc's own popen.
            Some(next) => unsafe { next(stream) },
            None => fail(libc::ENOSYS, -1),
        },
    }
}
