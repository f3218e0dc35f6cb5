//! `ldd` with the container's paths: the loader in trace mode prints the host paths it
//! found each object at, so it runs as a child writing to a pipe, and this process, in
//! place of the exec, copies its listing to stdout a line at a time through
//! `rootfs_paths::listing::container_line`, then ends as the loader ended (its exit status,
//! or the signal that killed it). If the loader cannot be run, the exec fails as an exec
//! does: the child reports its errno on a close-on-exec pipe, and this returns -1.
//!
//! Allocation-free (stack buffers) and by raw system calls, as the rest of the exec path.

use std::ffi::{CStr, c_char, c_int};

use rootfs_paths::PathBuf;
use rootfs_paths::buf::PATH_MAX;
use rootfs_paths::listing::container_line;

use crate::state::State;
use crate::sys::{self, raw_syscall};

/// Runs the loader at `path` with its listing rewritten; returns -1 (errno set) only when
/// it could not be run.
pub fn exec(
    st: &State,
    path: &CStr,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let Ok(listing) = pipe() else {
        return -1;
    };
    let Ok(report) = pipe() else {
        close_both(listing);
        return -1;
    };
    // A fork by the system call, not libc's: an exec runs no `pthread_atfork` handler (a
    // runtime's would take its locks here), and the child makes only system calls.
    // SAFETY: raw clone with SIGCHLD alone is fork on both architectures (the other
    // arguments, in their differing orders, all 0).
    let child = unsafe { raw_syscall!(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) } as libc::pid_t;
    if child < 0 {
        let code = sys::errno();
        close_both(listing);
        close_both(report);
        return sys::fail(code, -1);
    }
    if child == 0 {
        run_loader(listing, report, path, argv, envp);
    }
    sys::close(listing[1]);
    sys::close(report[1]);
    let mut failed = [0u8; 4];
    let reported = read_full(report[0], &mut failed);
    sys::close(report[0]);
    if reported == failed.len() {
        sys::close(listing[0]);
        let _ = wait(child);
        return sys::fail(c_int::from_ne_bytes(failed), -1);
    }
    copy_listing(st, listing[0]);
    sys::close(listing[0]);
    end_as(wait(child))
}

/// The child: stdout to the pipe, then the loader; its errno on the report pipe if the
/// exec fails.
fn run_loader(
    listing: [c_int; 2],
    report: [c_int; 2],
    path: &CStr,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> ! {
    sys::close(listing[0]);
    sys::close(report[0]);
    // A pipe end that is already 1 (stdout was closed) only needs its close-on-exec flag
    // cleared.
    let moved = if listing[1] == 1 {
        sys::set_descriptor_flags(1, 0);
        0
    } else {
        // SAFETY: raw dup3 of descriptors this process owns.
        unsafe { raw_syscall!(libc::SYS_dup3, listing[1], 1, 0) }
    };
    if moved >= 0 {
        // SAFETY: the plan's arrays, NULL-terminated, as the caller guarantees.
        unsafe { sys::execve(path, argv, envp) };
    }
    let code = sys::errno().to_ne_bytes();
    // SAFETY: raw write of a valid buffer.
    unsafe { raw_syscall!(libc::SYS_write, report[1], code.as_ptr(), code.len()) };
    // SAFETY: _exit runs nothing of the parent's (no atexit handler, no stdio flush).
    unsafe { libc::_exit(127) }
}

/// Copies the loader's output to stdout, each complete line in its container form; a line
/// too long for a path buffer goes out as it came.
fn copy_listing(st: &State, from: c_int) {
    let layout = st.layout();
    let mut pending = [0u8; PATH_MAX];
    let mut filled = 0;
    let mut line = PathBuf::new();
    while let Ok(n) = read_some(from, &mut pending[filled..]) {
        if n == 0 {
            break;
        }
        filled += n;
        let mut start = 0;
        while let Some(end) = pending[start..filled].iter().position(|&b| b == b'\n') {
            let text = &pending[start..start + end];
            match container_line(&layout, text, &mut line) {
                Ok(()) => write_all(line.as_bytes()),
                Err(_) => write_all(text),
            }
            write_all(b"\n");
            start += end + 1;
        }
        pending.copy_within(start..filled, 0);
        filled -= start;
        if filled == pending.len() {
            write_all(&pending);
            filled = 0;
        }
    }
    write_all(&pending[..filled]);
}

fn pipe() -> Result<[c_int; 2], ()> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: raw pipe2 into a two-descriptor array.
    let made = unsafe { raw_syscall!(libc::SYS_pipe2, fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if made < 0 { Err(()) } else { Ok(fds) }
}

fn close_both(fds: [c_int; 2]) {
    sys::close(fds[0]);
    sys::close(fds[1]);
}

fn read_some(fd: c_int, buf: &mut [u8]) -> Result<usize, c_int> {
    loop {
        match sys::read(fd, buf) {
            Err(libc::EINTR) => {}
            other => return other,
        }
    }
}

fn read_full(fd: c_int, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match read_some(fd, &mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

/// Writes to stdout; a reader that went away ends the copy's output, not the wait.
fn write_all(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: raw write of a valid buffer to fd 1.
        let n = unsafe { raw_syscall!(libc::SYS_write, 1, bytes.as_ptr(), bytes.len()) };
        match n {
            n if n > 0 => bytes = &bytes[n as usize..],
            _ if sys::errno() == libc::EINTR => {}
            _ => return,
        }
    }
}

/// The child's wait status (0 if it cannot be had).
fn wait(child: libc::pid_t) -> c_int {
    let mut status: c_int = 0;
    loop {
        // SAFETY: raw wait4 for our own child, into a valid status word.
        let got = unsafe {
            raw_syscall!(
                libc::SYS_wait4,
                child,
                &raw mut status,
                0,
                std::ptr::null_mut::<libc::rusage>()
            )
        };
        if got >= 0 || sys::errno() != libc::EINTR {
            return status;
        }
    }
}

/// Ends this process as the loader ended.
fn end_as(status: c_int) -> ! {
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // SAFETY: the default action for the signal the loader died of…
        unsafe { libc::signal(signal, libc::SIG_DFL) };
        // SAFETY: …then that signal to ourselves, so that our parent sees the same death.
        unsafe { raw_syscall!(libc::SYS_kill, std::process::id(), signal) };
        // SAFETY: _exit runs nothing of this process's.
        unsafe { libc::_exit(128 + signal) }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(libc::WEXITSTATUS(status)) }
}
