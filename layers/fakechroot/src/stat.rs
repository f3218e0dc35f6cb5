//! Stat calls, and what they report beyond the kernel's answer.
//!
//! * Links: the shim stores an absolute symlink target with the rootfs in front (`fs::symlink_target`,
//!   as the unpacker does), so the kernel's `st_size` of such a link is the host target's
//!   length; `ls -l`, Python's `os.lstat` and every program that sizes a `readlink` buffer
//!   from `st_size` would see the difference from a real chroot. A link that was not followed
//!   gets the length of the target `readlink` returns; /proc's links keep the kernel's sizes.
//! * Owners, under fake root: those `chown` set, else root for the Lambda user's files
//!   (`fakeroot.rs`).
//! * Placeholders of a lazy tree still filling: no block is written yet, so `du`, `ls -s`
//!   and `stat -c %b` would count nothing; they report the blocks the file will take, and
//!   the access time without the mark that tells them from files sparse on purpose
//!   (`rootfs_paths::fetch::is_placeholder`). A directory reports its birth time as its
//!   change time: each file filled in it is exchanged with its placeholder there, which
//!   moves the directory's ctime (and its mtime until it is put back), and GNU tar, seeing a
//!   directory's ctime move while it reads it, says it "changed as we read it" and exits 1.
//!   An eager tree's directory changed last when it was made, as its birth time says.

use std::ffi::{c_char, c_int, c_uint, c_void};

use rootfs_paths::buf::PATH_MAX;
use rootfs_paths::{PathBuf, fetch};

use crate::sys::{fail, raw_syscall, real};
use crate::{fakeroot, state, translate};

/// Where a stat call put the mode and size: `struct stat` or `struct statx`.
#[derive(Debug, Clone, Copy)]
pub enum Filled {
    Stat(*mut libc::stat),
    Statx(*mut c_void),
}

// The kernel's `struct statx` layout (fixed by its ABI).
const STATX_MASK_AT: usize = 0;
const STATX_BLKSIZE_AT: usize = 4;
const STATX_UID_AT: usize = 20;
const STATX_GID_AT: usize = 24;
const STATX_MODE_AT: usize = 28;
const STATX_INO_AT: usize = 32;
const STATX_SIZE_AT: usize = 40;
const STATX_BLOCKS_AT: usize = 48;
const STATX_ATIME_NSEC_AT: usize = 72;
const STATX_BTIME_SEC_AT: usize = 80;
const STATX_BTIME_NSEC_AT: usize = 88;
const STATX_CTIME_SEC_AT: usize = 96;
const STATX_CTIME_NSEC_AT: usize = 104;
const STATX_MTIME_NSEC_AT: usize = 120;
const STATX_DEV_MAJOR_AT: usize = 136;
const STATX_DEV_MINOR_AT: usize = 140;

/// # Safety
/// `buf` is a filled struct statx and `at` the offset of a field of type `T` in its ABI.
unsafe fn statx_field<T: Copy>(buf: *mut c_void, at: usize) -> T {
    // SAFETY: guaranteed by the caller.
    unsafe {
        buf.cast::<u8>()
            .wrapping_add(at)
            .cast::<T>()
            .read_unaligned()
    }
}

/// # Safety
/// As [`statx_field`].
unsafe fn set_statx_field<T: Copy>(buf: *mut c_void, at: usize, value: T) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        buf.cast::<u8>()
            .wrapping_add(at)
            .cast::<T>()
            .write_unaligned(value)
    }
}

/// After a stat-type call on `host` (relative to `dirfd`) returned `ret`: the owners fake
/// root reports, what a placeholder will hold, and the size `readlink` gives for a link not
/// followed.
pub fn after_stat(ret: c_int, nofollow: bool, dirfd: c_int, host: *const c_char, filled: Filled) {
    if ret != 0 {
        return;
    }
    if fakeroot::active() {
        fake_owner(filled);
    }
    if state::get().is_some_and(|st| st.fetch.is_some()) {
        while_filling(filled, dirfd, host, nofollow);
    }
    if nofollow && !host.is_null() {
        fix_link_size(dirfd, host, filled);
    }
}

fn fake_owner(filled: Filled) {
    match filled {
        Filled::Stat(buf) => {
            // SAFETY: a filled struct stat (the call succeeded).
            let st = unsafe { &mut *buf };
            (st.st_uid, st.st_gid) = fakeroot::present(st.st_dev, st.st_ino, st.st_uid, st.st_gid);
        }
        Filled::Statx(buf) => {
            let field = |at| {
                // SAFETY: a filled struct statx and its ABI's field offsets.
                unsafe { statx_field::<u32>(buf, at) }
            };
            let dev = libc::makedev(field(STATX_DEV_MAJOR_AT), field(STATX_DEV_MINOR_AT));
            // SAFETY: as above.
            let ino = unsafe { statx_field::<u64>(buf, STATX_INO_AT) };
            let (uid, gid) = fakeroot::present(dev, ino, field(STATX_UID_AT), field(STATX_GID_AT));
            // SAFETY: as above.
            unsafe { set_statx_field(buf, STATX_UID_AT, uid) };
            // SAFETY: as above.
            unsafe { set_statx_field(buf, STATX_GID_AT, gid) };
        }
    }
}

/// The birth time of what `host` (relative to `dirfd`; `dirfd` itself when null) names, by
/// a raw `statx`; `None` where the filesystem keeps none.
fn birth_time(dirfd: c_int, host: *const c_char, nofollow: bool) -> Option<(i64, u32)> {
    let mut buf = [0u64; 32];
    let (path, flags) = if host.is_null() {
        (c"".as_ptr(), libc::AT_EMPTY_PATH)
    } else if nofollow {
        (host, libc::AT_SYMLINK_NOFOLLOW)
    } else {
        (host, 0)
    };
    // SAFETY: raw statx into a buffer of struct statx's 256 bytes.
    let ret = unsafe {
        raw_syscall!(
            libc::SYS_statx,
            dirfd,
            path,
            flags | libc::AT_NO_AUTOMOUNT,
            libc::STATX_BTIME,
            buf.as_mut_ptr()
        )
    };
    if ret != 0 {
        return None;
    }
    let filled = buf.as_mut_ptr().cast::<c_void>();
    // SAFETY: the kernel filled the buffer (ret 0) in struct statx's layout.
    let mask = unsafe { statx_field::<u32>(filled, STATX_MASK_AT) };
    if mask & libc::STATX_BTIME == 0 {
        return None;
    }
    // SAFETY: as above.
    let sec = unsafe { statx_field::<i64>(filled, STATX_BTIME_SEC_AT) };
    // SAFETY: as above.
    let nsec = unsafe { statx_field::<u32>(filled, STATX_BTIME_NSEC_AT) };
    Some((sec, nsec))
}

fn while_filling(filled: Filled, dirfd: c_int, host: *const c_char, nofollow: bool) {
    match filled {
        Filled::Stat(buf) => {
            // SAFETY: a filled struct stat (the call succeeded).
            let st = unsafe { &mut *buf };
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                if let Some((sec, nsec)) = birth_time(dirfd, host, nofollow) {
                    st.st_ctime = sec as _;
                    st.st_ctime_nsec = nsec as libc::c_long;
                }
                return;
            }
            let size = u64::try_from(st.st_size).unwrap_or(0);
            let blocks = u64::try_from(st.st_blocks).unwrap_or(u64::MAX);
            let atime_nsec = u64::try_from(st.st_atime_nsec).unwrap_or(0);
            if st.st_mode & libc::S_IFMT != libc::S_IFREG
                || !fetch::is_placeholder(size, blocks, atime_nsec)
            {
                return;
            }
            let blksize = u64::try_from(st.st_blksize).unwrap_or(0);
            let mtime_nsec = u64::try_from(st.st_mtime_nsec).unwrap_or(0);
            let (blocks, atime_nsec) = fetch::placeholder_stat(size, blksize, mtime_nsec);
            st.st_blocks = blocks.try_into().unwrap_or(st.st_blocks);
            st.st_atime_nsec = atime_nsec.try_into().unwrap_or(st.st_atime_nsec);
        }
        Filled::Statx(buf) => {
            // SAFETY: a filled struct statx and its ABI's field offsets.
            let mask = unsafe { statx_field::<u32>(buf, STATX_MASK_AT) };
            if mask & libc::STATX_TYPE == 0 {
                return;
            }
            // SAFETY: as above.
            let mode = u32::from(unsafe { statx_field::<u16>(buf, STATX_MODE_AT) });
            if mode & libc::S_IFMT == libc::S_IFDIR {
                if mask & libc::STATX_CTIME != 0
                    && let Some((sec, nsec)) = birth_time(dirfd, host, nofollow)
                {
                    // SAFETY: as above.
                    unsafe { set_statx_field(buf, STATX_CTIME_SEC_AT, sec) };
                    // SAFETY: as above.
                    unsafe { set_statx_field(buf, STATX_CTIME_NSEC_AT, nsec) };
                }
                return;
            }
            let wanted = libc::STATX_SIZE | libc::STATX_BLOCKS | libc::STATX_ATIME;
            if mask & wanted != wanted {
                return;
            }
            // SAFETY: as above.
            let size = unsafe { statx_field::<u64>(buf, STATX_SIZE_AT) };
            // SAFETY: as above.
            let blocks = unsafe { statx_field::<u64>(buf, STATX_BLOCKS_AT) };
            // SAFETY: as above.
            let atime_nsec = u64::from(unsafe { statx_field::<u32>(buf, STATX_ATIME_NSEC_AT) });
            if mode & libc::S_IFMT != libc::S_IFREG
                || !fetch::is_placeholder(size, blocks, atime_nsec)
            {
                return;
            }
            // SAFETY: as above.
            let blksize = u64::from(unsafe { statx_field::<u32>(buf, STATX_BLKSIZE_AT) });
            // SAFETY: as above.
            let mtime_nsec = u64::from(unsafe { statx_field::<u32>(buf, STATX_MTIME_NSEC_AT) });
            let (blocks, atime_nsec) = fetch::placeholder_stat(size, blksize, mtime_nsec);
            // SAFETY: as above.
            unsafe { set_statx_field(buf, STATX_BLOCKS_AT, blocks) };
            // SAFETY: as above; the nanoseconds are below 10⁹, as the field's were.
            unsafe { set_statx_field(buf, STATX_ATIME_NSEC_AT, atime_nsec as u32) };
        }
    }
}

fn fix_link_size(dirfd: c_int, host: *const c_char, filled: Filled) {
    let Some(st) = state::get() else { return };
    let mode = match filled {
        // SAFETY: the call succeeded, so the caller's buffer holds a filled struct stat.
        Filled::Stat(buf) => unsafe { (*buf).st_mode },
        // SAFETY: as above, for struct statx.
        Filled::Statx(buf) => u32::from(unsafe { statx_field::<u16>(buf, STATX_MODE_AT) }),
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
    let kernel_size = match filled {
        // SAFETY: a filled struct stat (above).
        Filled::Stat(buf) => u64::try_from(unsafe { (*buf).st_size }).unwrap_or(u64::MAX),
        // SAFETY: a filled struct statx.
        Filled::Statx(buf) => unsafe { statx_field::<u64>(buf, STATX_SIZE_AT) },
    };
    if kernel_size != len as u64 {
        // Not a link a filesystem stores: /proc's links (`exe`, `cwd`, `fd/N`) have sizes of
        // their own (0, 64), which chroot shows too.
        return;
    }
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
        // SAFETY: a filled struct statx.
        Filled::Statx(buf) => unsafe { set_statx_field(buf, STATX_SIZE_AT, size as u64) },
    }
}

/// `fn name([args before] path, buf) via TRANSLATE, NOFOLLOW`: the `stat` and `lstat`
/// families, which differ only in following a final symlink.
macro_rules! path_stat_fns {
    ($(fn $name:ident([$($pre:ident: $pt:ty),*] path, buf) via $translate:path, $nofollow:expr;)*) => {$(
        /// # Safety
        /// The caller's contract is libc's for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($pre: $pt,)* path: *const c_char, buf: *mut libc::stat) -> c_int {
            let Some(next) = real!($name: fn($($pt,)* *const c_char, *mut libc::stat) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            let mut host = PathBuf::new();
            match $translate(path, &mut host) {
                Ok(host) => {
                    // SAFETY: the caller's arguments, with the path translated.
                    let ret = unsafe { next($($pre,)* host, buf) };
                    after_stat(ret, $nofollow, libc::AT_FDCWD, host, Filled::Stat(buf));
                    ret
                }
                Err(code) => fail(code, -1),
            }
        }
    )*};
}

path_stat_fns! {
    fn stat([] path, buf) via translate::host, false;
    fn stat64([] path, buf) via translate::host, false;
    fn __xstat([ver: c_int] path, buf) via translate::host, false;
    fn __xstat64([ver: c_int] path, buf) via translate::host, false;
    fn lstat([] path, buf) via translate::host_nofollow, true;
    fn lstat64([] path, buf) via translate::host_nofollow, true;
    fn __lxstat([ver: c_int] path, buf) via translate::host_nofollow, true;
    fn __lxstat64([ver: c_int] path, buf) via translate::host_nofollow, true;
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
                    after_stat(ret, nofollow, dirfd, host, Filled::Stat(buf));
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
            after_stat(ret, nofollow, dirfd, host, Filled::Statx(buf));
            ret
        }
        Err(code) => fail(code, -1),
    }
}

/// `fn name([args before] fd, buf)`: only fake root changes what these report.
macro_rules! fstat_fns {
    ($(fn $name:ident([$($pre:ident: $pt:ty),*] fd, buf);)*) => {$(
        /// # Safety
        /// The caller's contract is libc's for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($pre: $pt,)* fd: c_int, buf: *mut libc::stat) -> c_int {
            let Some(next) = real!($name: fn($($pt,)* c_int, *mut libc::stat) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            // SAFETY: the caller's arguments.
            let ret = unsafe { next($($pre,)* fd, buf) };
            after_stat(ret, false, fd, std::ptr::null(), Filled::Stat(buf));
            ret
        }
    )*};
}

fstat_fns! {
    fn fstat([] fd, buf);
    fn fstat64([] fd, buf);
    fn __fxstat([ver: c_int] fd, buf);
    fn __fxstat64([ver: c_int] fd, buf);
}
