//! Fake root's `/proc/<pid>/status`: an open of a process's status file is answered with
//! a copy whose id lines say what `get*id` say (the rules: `rootfs_paths::proc_status`).
//!
//! The copy lives in a memfd, so that it is a real descriptor that `read`, `fstat`,
//! `lseek` and `fdopen` treat as a file, and goes away with its last descriptor. Anything
//! that fails on the way (no memfd, a file larger than the buffer) opens the kernel's file,
//! as without fake root.

use std::ffi::{c_char, c_int};

use libc::{FILE, mode_t};
use rootfs_paths::proc_status::{self, Ids, Whose};

use crate::fakeroot;
use crate::sys::{self, raw_syscall};

/// Larger than any status file Linux writes (about 1.5 KiB with every field).
const STATUS_MAX: usize = 8192;

/// `open`/`openat` of `host` with `flags`: the copy's descriptor, or `None` to open the
/// file itself.
pub fn open(host: *const c_char, (flags, _mode): (c_int, mode_t)) -> Option<c_int> {
    open_2(host, (flags,))
}

/// `__open_2`/`__openat_2` (fortified, no mode).
pub fn open_2(host: *const c_char, (flags,): (c_int,)) -> Option<c_int> {
    if flags & libc::O_ACCMODE != libc::O_RDONLY {
        return None;
    }
    copy(host, flags & libc::O_CLOEXEC != 0)
}

/// `fopen` of `host` with `mode`: a stream on the copy, or `None` to open the file itself.
pub fn fopen(host: *const c_char, (mode,): (*const c_char,)) -> Option<*mut FILE> {
    if mode.is_null() {
        return None;
    }
    // SAFETY: a non-null mode is NUL-terminated (fopen's contract).
    let mode_bytes = unsafe { sys::bytes(mode) };
    if mode_bytes.first() != Some(&b'r') || mode_bytes.contains(&b'+') {
        return None;
    }
    let fd = copy(host, mode_bytes.contains(&b'e'))?;
    // SAFETY: a descriptor we own and the caller's mode, which fdopen reads only.
    let stream = unsafe { libc::fdopen(fd, mode) };
    if stream.is_null() {
        sys::close(fd);
        return None;
    }
    Some(stream)
}

fn copy(host: *const c_char, cloexec: bool) -> Option<c_int> {
    if host.is_null() || !fakeroot::active() {
        return None;
    }
    // SAFETY: a translated path is NUL-terminated.
    let path = unsafe { sys::bytes(host) };
    // SAFETY: raw getpid, which cannot fail.
    let own_pid = || unsafe { raw_syscall!(libc::SYS_getpid) } as u32;
    let whose = proc_status::whose(path, own_pid)?;

    let mut kernel = [0_u8; STATUS_MAX];
    let len = read_whole(host, &mut kernel)?;
    let own = fakeroot::current();
    let ids = match whose {
        Whose::This => Ids::Own {
            uids: own.uids,
            gids: own.gids,
            groups: own.groups(),
        },
        Whose::Other => Ids::Mapped {
            // SAFETY: raw getuid/getgid: the kernel's ids, not the fake ones.
            lambda_uid: unsafe { raw_syscall!(libc::SYS_getuid) } as u32,
            // SAFETY: as above.
            lambda_gid: unsafe { raw_syscall!(libc::SYS_getgid) } as u32,
        },
    };
    let mut out = [0_u8; STATUS_MAX];
    let out_len = proc_status::rewrite(&kernel[..len], ids, &mut out).ok()?;
    memfd_holding(&out[..out_len], cloexec)
}

/// The whole file at `host`, or `None` when it does not fit (or cannot be read).
fn read_whole(host: *const c_char, buf: &mut [u8; STATUS_MAX]) -> Option<usize> {
    // SAFETY: raw openat of a NUL-terminated path.
    let fd = unsafe {
        raw_syscall!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            host,
            libc::O_RDONLY | libc::O_CLOEXEC
        )
    };
    if fd < 0 {
        return None;
    }
    let fd = fd as c_int;
    let mut filled = 0;
    let whole = loop {
        match sys::read(fd, &mut buf[filled..]) {
            Ok(0) => break true,
            Ok(n) => filled += n,
            Err(_) => break false,
        }
        if filled == buf.len() {
            break false;
        }
    };
    sys::close(fd);
    whole.then_some(filled)
}

fn memfd_holding(bytes: &[u8], cloexec: bool) -> Option<c_int> {
    let flags = if cloexec { libc::MFD_CLOEXEC } else { 0 };
    // SAFETY: raw memfd_create with a NUL-terminated name.
    let fd = unsafe { raw_syscall!(libc::SYS_memfd_create, c"status".as_ptr(), flags) };
    if fd < 0 {
        return None;
    }
    let fd = fd as c_int;
    let mut written = 0;
    while written < bytes.len() {
        let rest = &bytes[written..];
        // SAFETY: a write from a live slice to our descriptor.
        let n = unsafe { raw_syscall!(libc::SYS_write, fd, rest.as_ptr(), rest.len()) };
        if n <= 0 {
            sys::close(fd);
            return None;
        }
        written += n as usize;
    }
    // SAFETY: a seek of our descriptor.
    if unsafe { raw_syscall!(libc::SYS_lseek, fd, 0_i64, libc::SEEK_SET) } < 0 {
        sys::close(fd);
        return None;
    }
    Some(fd)
}
