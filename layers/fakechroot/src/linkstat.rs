//! Stat calls that may not follow a final symlink, and the size they report for it.
//!
//! The shim stores an absolute symlink target with the rootfs in front (`fs::symlink_target`,
//! as the unpacker does), so the kernel's `st_size` of such a link is the host target's
//! length; `ls -l`, Python's `os.lstat` and every program that sizes a `readlink` buffer
//! from `st_size` would see the difference from a real chroot. A link that was not followed
//! gets the length of the target `readlink` returns.

use std::ffi::{c_char, c_int, c_uint, c_void};

use rootfs_paths::PathBuf;
use rootfs_paths::buf::PATH_MAX;

use crate::state;
use crate::sys::{fail, raw_syscall, real};
use crate::translate;

/// Where a stat call put the mode and size: `struct stat` or `struct statx`.
#[derive(Debug, Clone, Copy)]
pub enum Filled {
    Stat(*mut libc::stat),
    Statx(*mut c_void),
}

// The kernel's `struct statx` layout (fixed by its ABI): stx_mode at 28, stx_size at 40.
const STATX_MODE_AT: usize = 28;
const STATX_SIZE_AT: usize = 40;

/// After a stat-type call on `host` (relative to `dirfd`) returned `ret`: when it did not
/// follow a final symlink and that link is one the shim stored, the size `readlink` gives.
pub fn fix_link_size(
    ret: c_int,
    nofollow: bool,
    dirfd: c_int,
    host: *const c_char,
    filled: Filled,
) {
    if ret != 0 || !nofollow || host.is_null() {
        return;
    }
    let Some(st) = state::get() else { return };
    let mode = match filled {
        // SAFETY: the call succeeded, so the caller's buffer holds a filled struct stat.
        Filled::Stat(buf) => unsafe { (*buf).st_mode },
        // SAFETY: as above, for struct statx, whose mode is a u16 at this offset.
        Filled::Statx(buf) => u32::from(unsafe {
            buf.cast::<u8>()
                .wrapping_add(STATX_MODE_AT)
                .cast::<u16>()
                .read_unaligned()
        }),
    };
    if mode & libc::S_IFMT != libc::S_IFLNK {
        return;
    }
    let mut target = [0u8; PATH_MAX];
    // SAFETY: raw readlinkat into a buffer of its length.
    let len = unsafe {
        raw_syscall!(
            libc::SYS_readlinkat,
            dirfd,
            host,
            target.as_mut_ptr(),
            target.len()
        )
    };
    let Ok(len) = usize::try_from(len) else {
        return;
    };
    let mut container = PathBuf::new();
    if st
        .layout()
        .to_container_into(&target[..len], &mut container)
        .is_err()
    {
        return;
    }
    let size = container.as_bytes().len();
    match filled {
        // SAFETY: a filled struct stat (above).
        Filled::Stat(buf) => unsafe { (*buf).st_size = size as libc::off_t },
        // SAFETY: a filled struct statx, whose size is a u64 at this offset.
        Filled::Statx(buf) => unsafe {
            buf.cast::<u8>()
                .wrapping_add(STATX_SIZE_AT)
                .cast::<u64>()
                .write_unaligned(size as u64)
        },
    }
}

/// `fn name([args before] path [buf])`: never follows.
macro_rules! lstat_fns {
    ($(fn $name:ident([$($pre:ident: $pt:ty),*] path, buf);)*) => {$(
        /// # Safety
        /// The caller's contract is libc's for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($pre: $pt,)* path: *const c_char, buf: *mut libc::stat) -> c_int {
            let Some(next) = real!($name: fn($($pt,)* *const c_char, *mut libc::stat) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            let mut host = PathBuf::new();
            match translate::host_nofollow(path, &mut host) {
                Ok(host) => {
                    // SAFETY: the caller's arguments, with the path translated.
                    let ret = unsafe { next($($pre,)* host, buf) };
                    fix_link_size(ret, true, libc::AT_FDCWD, host, Filled::Stat(buf));
                    ret
                }
                Err(code) => fail(code, -1),
            }
        }
    )*};
}

lstat_fns! {
    fn lstat([] path, buf);
    fn lstat64([] path, buf);
    fn __lxstat([ver: c_int] path, buf);
    fn __lxstat64([ver: c_int] path, buf);
}

/// `fn name([args before] dirfd, path, buf, flags)`: follows unless asked not to.
macro_rules! fstatat_fns {
    ($(fn $name:ident([$($pre:ident: $pt:ty),*] dirfd, path, buf, flags);)*) => {$(
        /// # Safety
        /// The caller's contract is libc's for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($pre: $pt,)* dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int {
            let Some(next) = real!($name: fn($($pt,)* c_int, *const c_char, *mut libc::stat, c_int) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            let mut host = PathBuf::new();
            match translate::host_at(dirfd, path, &mut host) {
                Ok(host) => {
                    // SAFETY: the caller's arguments, with the path translated.
                    let ret = unsafe { next($($pre,)* dirfd, host, buf, flags) };
                    let nofollow = flags & libc::AT_SYMLINK_NOFOLLOW != 0;
                    fix_link_size(ret, nofollow, dirfd, host, Filled::Stat(buf));
                    ret
                }
                Err(code) => fail(code, -1),
            }
        }
    )*};
}

fstatat_fns! {
    fn fstatat([] dirfd, path, buf, flags);
    fn fstatat64([] dirfd, path, buf, flags);
    fn __fxstatat([ver: c_int] dirfd, path, buf, flags);
    fn __fxstatat64([ver: c_int] dirfd, path, buf, flags);
}

/// # Safety
/// libc's contract for `statx`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    buf: *mut c_void,
) -> c_int {
    let Some(next) = real!(statx: fn(c_int, *const c_char, c_int, c_uint, *mut c_void) -> c_int)
    else {
        return fail(libc::ENOSYS, -1);
    };
    let mut host = PathBuf::new();
    match translate::host_at(dirfd, path, &mut host) {
        Ok(host) => {
            // SAFETY: the caller's arguments, with the path translated.
            let ret = unsafe { next(dirfd, host, flags, mask, buf) };
            let nofollow = flags & libc::AT_SYMLINK_NOFOLLOW != 0;
            fix_link_size(ret, nofollow, dirfd, host, Filled::Statx(buf));
            ret
        }
        Err(code) => fail(code, -1),
    }
}
