//! `syscall()`: the raw gate into the kernel, interposed like every named call.
//!
//! libuv (Node) calls `statx` through `syscall()`, as do Rust's std, liburing and others;
//! without this gate the kernel resolves such a path on the host and the program gets the
//! host's file, silently. `rootfs_paths::syscall_gate` says which numbers carry paths and
//! how each is translated (the named libc wrapper's rule); this file applies it. Numbers
//! not in that table pass through untouched, with the caller's six argument registers.

use std::ffi::{c_char, c_int, c_long};

use rootfs_paths::PathBuf;
use rootfs_paths::syscall_gate::{ChownCall, Effect, ExeLink, Gate, PathArg, StatLayout, classify};

use crate::stat::{Filled, after_stat};
use crate::sys::{self, fail};
use crate::{fakeroot, fs, lazy, names, proc_files, spawn, state, translate};

/// `long syscall(long number, ...)`. C passes the variadic arguments of this call in the
/// same registers as six fixed ones on x86_64 and aarch64, and the kernel reads exactly
/// those six, so reading them as fixed arguments is what libc's own `syscall` does; for a
/// call with fewer arguments the extra ones are unused garbage on both sides.
///
/// # Safety
/// The kernel's contract for call `number`, as for libc's `syscall`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(
    number: c_long,
    a0: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
) -> c_long {
    let args = [a0, a1, a2, a3, a4, a5].map(|a| a as usize);
    let gate = match state::get() {
        Some(_) => usize::try_from(number).ok().and_then(classify),
        None => None,
    };
    match gate {
        // SAFETY: the caller's call, unchanged.
        None => unsafe { sys::raw(number as usize, args) },
        // SAFETY: the caller's call, with its paths translated by the named call's rule.
        Some(gate) => unsafe { gated(number as usize, gate, args) },
    }
}

/// # Safety
/// As [`syscall`], for a number the table lists.
unsafe fn gated(number: usize, gate: Gate, mut args: [usize; 6]) -> c_long {
    let ptr = |i: u8| args[usize::from(i)] as *const c_char;
    let fd = |i: Option<u8>| i.map_or(libc::AT_FDCWD, |i| args[usize::from(i)] as c_int);
    match gate {
        Gate::Paths {
            first,
            second,
            effect,
        } => {
            let (mut first_buf, mut second_buf) = (PathBuf::new(), PathBuf::new());
            let first_host = match translate_arg(&args, first, &mut first_buf) {
                Ok(p) => p,
                Err(code) => return fail(code, -1),
            };
            let second_host = match second.map(|s| translate_arg(&args, s, &mut second_buf)) {
                Some(Err(code)) => return fail(code, -1),
                Some(Ok(p)) => Some(p),
                None => None,
            };
            match effect {
                Effect::None => {}
                Effect::Opens { flags } => {
                    if let Err(code) = lazy::before_open(fd(first.dirfd), first_host) {
                        return fail(code, -1);
                    }
                    let flags = flags.map(|i| args[usize::from(i)] as c_int);
                    if let Some(fd) = flags.and_then(|f| proc_files::open_2(first_host, (f,))) {
                        return c_long::from(fd);
                    }
                }
                Effect::Fills | Effect::Renames => {
                    if let Err(code) = lazy::before_open(fd(first.dirfd), first_host) {
                        return fail(code, -1);
                    }
                }
                Effect::Removes => fakeroot::forget(fd(first.dirfd), first_host),
            }
            if let (Effect::Renames, Some(s), Some(p)) = (effect, second, second_host) {
                fakeroot::forget(fd(s.dirfd), p);
            }
            args[usize::from(first.path)] = first_host as usize;
            if let (Some(s), Some(p)) = (second, second_host) {
                args[usize::from(s.path)] = p as usize;
            }
            // SAFETY: the caller's call with translated paths, which live until it returns.
            unsafe { sys::raw(number, args) }
        }
        Gate::Stat {
            path,
            flags,
            buf,
            layout,
        } => {
            let mut host_buf = PathBuf::new();
            let host = match translate_arg(&args, path, &mut host_buf) {
                Ok(p) => p,
                Err(code) => return fail(code, -1),
            };
            let dirfd = fd(path.dirfd);
            args[usize::from(path.path)] = host as usize;
            // SAFETY: the caller's call with its path translated, which lives until it returns.
            let ret = unsafe { sys::raw(number, args) };
            let nofollow = flags
                .is_none_or(|f| args[usize::from(f)] as c_int & libc::AT_SYMLINK_NOFOLLOW != 0);
            let out = args[usize::from(buf)] as *mut libc::c_void;
            let filled = match layout {
                StatLayout::Stat => Filled::Stat(out.cast()),
                StatLayout::Statx => Filled::Statx(out),
            };
            after_stat(ret as c_int, nofollow, dirfd, host, filled);
            ret
        }
        Gate::Chown(call) => {
            let id = |i: usize| args[i] as u32;
            let ret = match call {
                // SAFETY: the caller's arguments, as fchown's.
                ChownCall::Fd => unsafe { fakeroot::fchown(args[0] as c_int, id(1), id(2)) },
                // SAFETY: the caller's arguments, as fchownat's.
                ChownCall::At => unsafe {
                    fakeroot::fchownat(args[0] as c_int, ptr(1), id(2), id(3), args[4] as c_int)
                },
                // SAFETY: the caller's arguments, as chown's.
                ChownCall::Path => unsafe { fakeroot::chown(ptr(0), id(1), id(2)) },
                // SAFETY: the caller's arguments, as lchown's.
                ChownCall::LinkPath => unsafe { fakeroot::lchown(ptr(0), id(1), id(2)) },
            };
            c_long::from(ret)
        }
        Gate::Readlink { dirfd } => {
            let path = dirfd.map_or(0, |d| d + 1);
            let (buf, size) = (path + 1, path + 2);
            // SAFETY: the caller's arguments, as readlinkat's.
            unsafe {
                names::readlinkat(
                    fd(dirfd),
                    ptr(path),
                    args[usize::from(buf)] as *mut c_char,
                    args[usize::from(size)],
                ) as c_long
            }
        }
        Gate::Symlink { dirfd } => {
            let link = dirfd.map_or(1, |d| d + 1);
            // SAFETY: the caller's arguments, as symlinkat's.
            c_long::from(unsafe { fs::symlinkat(ptr(0), fd(dirfd), ptr(link)) })
        }
        Gate::Getcwd => {
            // The kernel fails a NULL buffer; libc's getcwd would allocate one.
            if args[0] == 0 {
                return fail(libc::EFAULT, -1);
            }
            // SAFETY: the caller's buffer of args[1] bytes.
            let out = unsafe { names::getcwd(args[0] as *mut c_char, args[1]) };
            if out.is_null() {
                return -1;
            }
            // SAFETY: getcwd wrote a NUL-terminated path there.
            let len = unsafe { sys::bytes(out) }.len();
            (len + 1) as c_long
        }
        Gate::Execve => {
            // SAFETY: the caller's arguments, as execve's.
            c_long::from(unsafe { spawn::execve(ptr(0), args[1] as _, args[2] as _) })
        }
        Gate::Execveat => {
            // SAFETY: the caller's arguments, as execveat's.
            c_long::from(unsafe {
                spawn::execveat(
                    args[0] as c_int,
                    ptr(1),
                    args[2] as _,
                    args[3] as _,
                    args[4] as c_int,
                )
            })
        }
        Gate::Refuse => fail(libc::ENOSYS, -1),
    }
}

fn translate_arg(
    args: &[usize; 6],
    arg: PathArg,
    buf: &mut PathBuf,
) -> Result<*const c_char, c_int> {
    let path = args[usize::from(arg.path)] as *const c_char;
    let dirfd = arg
        .dirfd
        .map_or(libc::AT_FDCWD, |i| args[usize::from(i)] as c_int);
    match arg.exe {
        ExeLink::Program => translate::host_at_exe(dirfd, path, buf),
        ExeLink::Kernel => translate::host_at(dirfd, path, buf),
    }
}
