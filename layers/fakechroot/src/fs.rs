//! Wrappers that only translate their path arguments and forward to libc.
//!
//! libc's own functions call each other internally, not through the PLT (`fopen` uses an
//! internal `open`), so every libc-level entry point that takes a path is listed, with
//! both stat ABIs (`__xstat*` before glibc 2.33, `stat*` after) and the fortify variants.

use std::ffi::{c_char, c_int, c_long, c_uint, c_void};

use libc::{DIR, FILE, dev_t, mode_t, off_t, size_t, ssize_t};
use rootfs_paths::PathBuf;

use rootfs_paths::layout::{climbs_above_root, has_dotdot};

use crate::sys::{self, fail, real};
use crate::translate;
use crate::{fakeroot, lazy, proc_files, state};

/// Whether a wrapper's result is its failure value (-1 or NULL).
trait Outcome {
    fn failed(&self) -> bool;
}

impl Outcome for c_int {
    fn failed(&self) -> bool {
        *self < 0
    }
}

impl Outcome for c_long {
    fn failed(&self) -> bool {
        *self < 0
    }
}

impl Outcome for ssize_t {
    fn failed(&self) -> bool {
        *self < 0
    }
}

impl<T> Outcome for *mut T {
    fn failed(&self) -> bool {
        self.is_null()
    }
}

/// `fn name([args before] path [args after]) -> ret = value on failure;`
macro_rules! path_fns {
    ($(fn $name:ident([$($pre:ident: $pt:ty),*] $path:ident [$($post:ident: $qt:ty),*]) -> $ret:ty = $err:expr $(, via $via:path)? $(, before $before:path)? $(, check $check:path)? $(, answer $answer:path)? $(, creates $creates:path)?;)*) => {$(
        /// # Safety
        /// The caller's contract is libc's for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($pre: $pt,)* $path: *const c_char $(, $post: $qt)*) -> $ret {
            let Some(next) = real!($name: fn($($pt,)* *const c_char $(, $qt)*) -> $ret) else {
                return fail(libc::ENOSYS, $err);
            };
            let _post = ($($post,)*);
            let mut buf = PathBuf::new();
            match path_fns!(@via $($via)?)($path, &mut buf) {
                Ok(path) => {
                    $($before(libc::AT_FDCWD, path);)?
                    $(if let Err(code) = $check(libc::AT_FDCWD, path) {
                        return fail(code, $err);
                    })?
                    $(if let Some(answer) = $answer(path, _post) {
                        return answer;
                    })?
                    let _creating = false $(|| $creates(libc::AT_FDCWD, path, _post))?;
                    // SAFETY: the caller's arguments, with the path translated.
                    let ret = unsafe { next($($pre,)* path $(, $post)*) };
                    if _creating && !Outcome::failed(&ret) {
                        fakeroot::created(libc::AT_FDCWD, path);
                    }
                    ret
                }
                Err(code) => fail(code, $err),
            }
        }
    )*};
    (@via $via:path) => { $via };
    (@via) => { translate::host };
}

/// `fn name([args before] dirfd, path [args after]) -> ret = value on failure;`
macro_rules! at_fns {
    ($(fn $name:ident([$($pre:ident: $pt:ty),*] $dirfd:ident, $path:ident [$($post:ident: $qt:ty),*]) -> $ret:ty = $err:expr $(, via $via:path)? $(, before $before:path)? $(, check $check:path)? $(, answer $answer:path)? $(, creates $creates:path)?;)*) => {$(
        /// # Safety
        /// The caller's contract is libc's for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($pre: $pt,)* $dirfd: c_int, $path: *const c_char $(, $post: $qt)*) -> $ret {
            let Some(next) = real!($name: fn($($pt,)* c_int, *const c_char $(, $qt)*) -> $ret) else {
                return fail(libc::ENOSYS, $err);
            };
            let _post = ($($post,)*);
            let mut buf = PathBuf::new();
            match at_fns!(@via $($via)?)($dirfd, $path, &mut buf) {
                Ok(path) => {
                    $($before($dirfd, path);)?
                    $(if let Err(code) = $check($dirfd, path) {
                        return fail(code, $err);
                    })?
                    $(if let Some(answer) = $answer(path, _post) {
                        return answer;
                    })?
                    let _creating = false $(|| $creates($dirfd, path, _post))?;
                    // SAFETY: the caller's arguments, with the path translated.
                    let ret = unsafe { next($($pre,)* $dirfd, path $(, $post)*) };
                    if _creating && !Outcome::failed(&ret) {
                        fakeroot::created($dirfd, path);
                    }
                    ret
                }
                Err(code) => fail(code, $err),
            }
        }
    )*};
    (@via $via:path) => { $via };
    (@via) => { translate::host_at };
}

// `open` is variadic in C; on x86_64 and aarch64 a fixed third argument is passed in the
// same register, and libc reads it only with O_CREAT or O_TMPFILE.
path_fns! {
    fn open([] path [flags: c_int, mode: mode_t]) -> c_int = -1, check lazy::before_open, answer proc_files::open, creates fakeroot::open_creates;
    fn open64([] path [flags: c_int, mode: mode_t]) -> c_int = -1, check lazy::before_open, answer proc_files::open, creates fakeroot::open_creates;
    fn __open([] path [flags: c_int, mode: mode_t]) -> c_int = -1, check lazy::before_open, answer proc_files::open, creates fakeroot::open_creates;
    fn __open64([] path [flags: c_int, mode: mode_t]) -> c_int = -1, check lazy::before_open, answer proc_files::open, creates fakeroot::open_creates;
    fn __open_2([] path [flags: c_int]) -> c_int = -1, check lazy::before_open, answer proc_files::open_2;
    fn __open64_2([] path [flags: c_int]) -> c_int = -1, check lazy::before_open, answer proc_files::open_2;
    fn creat([] path [mode: mode_t]) -> c_int = -1, creates fakeroot::creat_creates;
    fn creat64([] path [mode: mode_t]) -> c_int = -1, creates fakeroot::creat_creates;
    fn fopen([] path [mode: *const c_char]) -> *mut FILE = std::ptr::null_mut(), check lazy::before_open, answer proc_files::fopen, creates fakeroot::fopen_creates;
    fn fopen64([] path [mode: *const c_char]) -> *mut FILE = std::ptr::null_mut(), check lazy::before_open, answer proc_files::fopen, creates fakeroot::fopen_creates;
    fn freopen([] path [mode: *const c_char, stream: *mut FILE]) -> *mut FILE = std::ptr::null_mut(), check lazy::before_open;
    fn freopen64([] path [mode: *const c_char, stream: *mut FILE]) -> *mut FILE = std::ptr::null_mut(), check lazy::before_open;
    fn truncate([] path [length: off_t]) -> c_int = -1, check lazy::before_open;
    fn truncate64([] path [length: off_t]) -> c_int = -1, check lazy::before_open;
    fn statfs([] path [buf: *mut c_void]) -> c_int = -1;
    fn statfs64([] path [buf: *mut c_void]) -> c_int = -1;
    fn __statfs([] path [buf: *mut c_void]) -> c_int = -1;
    fn statvfs([] path [buf: *mut c_void]) -> c_int = -1;
    fn statvfs64([] path [buf: *mut c_void]) -> c_int = -1;
    fn access([] path [mode: c_int]) -> c_int = -1;
    fn eaccess([] path [mode: c_int]) -> c_int = -1;
    fn euidaccess([] path [mode: c_int]) -> c_int = -1;
    fn pathconf([] path [name: c_int]) -> c_long = -1;
    fn chmod([] path [mode: mode_t]) -> c_int = -1;
    fn lchmod([] path [mode: mode_t]) -> c_int = -1;
    fn utime([] path [times: *const c_void]) -> c_int = -1;
    fn utimes([] path [times: *const c_void]) -> c_int = -1;
    fn lutimes([] path [times: *const c_void]) -> c_int = -1;
    fn mkdir([] path [mode: mode_t]) -> c_int = -1, creates fakeroot::always_creates;
    fn rmdir([] path []) -> c_int = -1, before fakeroot::forget;
    fn unlink([] path []) -> c_int = -1, before fakeroot::forget;
    fn remove([] path []) -> c_int = -1, before fakeroot::forget;
    fn mknod([] path [mode: mode_t, dev: dev_t]) -> c_int = -1, creates fakeroot::always_creates;
    fn __xmknod([ver: c_int] path [mode: mode_t, dev: *mut dev_t]) -> c_int = -1, creates fakeroot::always_creates;
    fn mkfifo([] path [mode: mode_t]) -> c_int = -1, creates fakeroot::always_creates;
    fn getxattr([] path [name: *const c_char, value: *mut c_void, size: size_t]) -> ssize_t = -1;
    fn lgetxattr([] path [name: *const c_char, value: *mut c_void, size: size_t]) -> ssize_t = -1;
    fn setxattr([] path [name: *const c_char, value: *const c_void, size: size_t, flags: c_int]) -> c_int = -1;
    fn lsetxattr([] path [name: *const c_char, value: *const c_void, size: size_t, flags: c_int]) -> c_int = -1;
    fn listxattr([] path [list: *mut c_char, size: size_t]) -> ssize_t = -1;
    fn llistxattr([] path [list: *mut c_char, size: size_t]) -> ssize_t = -1;
    fn removexattr([] path [name: *const c_char]) -> c_int = -1;
    fn lremovexattr([] path [name: *const c_char]) -> c_int = -1;
    fn inotify_add_watch([fd: c_int] path [mask: u32]) -> c_int = -1;
    fn chdir([] path []) -> c_int = -1;
    fn chroot([] path []) -> c_int = -1;
    fn opendir([] path []) -> *mut DIR = std::ptr::null_mut();
    fn __opendir([] path []) -> *mut DIR = std::ptr::null_mut();
    fn scandir([] path [list: *mut c_void, filter: *const c_void, compar: *const c_void]) -> c_int = -1;
    fn scandir64([] path [list: *mut c_void, filter: *const c_void, compar: *const c_void]) -> c_int = -1;
    fn dlopen([] path [flags: c_int]) -> *mut c_void = std::ptr::null_mut(), check lazy::before_load;
    fn dlmopen([ns: c_long] path [flags: c_int]) -> *mut c_void = std::ptr::null_mut(), check lazy::before_load;
    fn bindtextdomain([domain: *const c_char] path []) -> *mut c_char = std::ptr::null_mut();
    fn posix_spawn_file_actions_addopen([actions: *mut c_void, fd: c_int] path [flags: c_int, mode: mode_t]) -> c_int = libc::ENOSYS;
}

at_fns! {
    fn openat([] dirfd, path [flags: c_int, mode: mode_t]) -> c_int = -1, via translate::host_at_exe, check lazy::before_open, answer proc_files::open, creates fakeroot::open_creates;
    fn openat64([] dirfd, path [flags: c_int, mode: mode_t]) -> c_int = -1, via translate::host_at_exe, check lazy::before_open, answer proc_files::open, creates fakeroot::open_creates;
    fn __openat_2([] dirfd, path [flags: c_int]) -> c_int = -1, via translate::host_at_exe, check lazy::before_open, answer proc_files::open_2;
    fn __openat64_2([] dirfd, path [flags: c_int]) -> c_int = -1, via translate::host_at_exe, check lazy::before_open, answer proc_files::open_2;
    fn faccessat([] dirfd, path [mode: c_int, flags: c_int]) -> c_int = -1;
    fn fchmodat([] dirfd, path [mode: mode_t, flags: c_int]) -> c_int = -1;
    fn futimesat([] dirfd, path [times: *const c_void]) -> c_int = -1;
    fn utimensat([] dirfd, path [times: *const c_void, flags: c_int]) -> c_int = -1;
    fn mkdirat([] dirfd, path [mode: mode_t]) -> c_int = -1, creates fakeroot::always_creates;
    fn unlinkat([] dirfd, path [flags: c_int]) -> c_int = -1, before fakeroot::forget;
    fn mknodat([] dirfd, path [mode: mode_t, dev: dev_t]) -> c_int = -1, creates fakeroot::always_creates;
    fn __xmknodat([ver: c_int] dirfd, path [mode: mode_t, dev: *mut dev_t]) -> c_int = -1, creates fakeroot::always_creates;
    fn mkfifoat([] dirfd, path [mode: mode_t]) -> c_int = -1, creates fakeroot::always_creates;
    fn scandirat([] dirfd, path [list: *mut c_void, filter: *const c_void, compar: *const c_void]) -> c_int = -1;
    fn scandirat64([] dirfd, path [list: *mut c_void, filter: *const c_void, compar: *const c_void]) -> c_int = -1;
    fn name_to_handle_at([] dirfd, path [handle: *mut c_void, mount_id: *mut c_int, flags: c_int]) -> c_int = -1;
}

/// Two-path calls: both sides translated.
macro_rules! two_path_fns {
    ($(fn $name:ident([$($a:ident: $at:ty)?] $old:ident, [$($b:ident: $bt:ty)?] $new:ident [$($c:ident: $ct:ty)?]) -> c_int $(, before $before:path)?;)*) => {$(
        /// # Safety
        /// The caller's contract is libc's for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($a: $at,)? $old: *const c_char, $($b: $bt,)? $new: *const c_char $(, $c: $ct)?) -> c_int {
            let Some(next) = real!($name: fn($($at,)? *const c_char, $($bt,)? *const c_char $(, $ct)?) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            let (mut old_buf, mut new_buf) = (PathBuf::new(), PathBuf::new());
            let old = translate::host_at(two_path_fns!(@fd $($a)?), $old, &mut old_buf);
            let new = translate::host_at(two_path_fns!(@fd $($b)?), $new, &mut new_buf);
            let _new_dirfd = two_path_fns!(@fd $($b)?);
            match (old, new) {
                (Ok(old), Ok(new)) => {
                    // A placeholder of a lazy tree is filled before it gets another name:
                    // the fetcher knows it by the name the image gave it.
                    if let Err(code) = lazy::before_open(two_path_fns!(@fd $($a)?), old) {
                        return fail(code, -1);
                    }
                    // A file replaced by the rename is gone.
                    $($before(_new_dirfd, new);)?
                    // SAFETY: the caller's arguments, with both paths translated.
                    unsafe { next($($a,)? old, $($b,)? new $(, $c)?) }
                }
                (Err(code), _) | (_, Err(code)) => fail(code, -1),
            }
        }
    )*};
    (@fd $fd:ident) => { $fd };
    (@fd) => { libc::AT_FDCWD };
}

two_path_fns! {
    fn rename([] old, [] new []) -> c_int, before fakeroot::forget;
    fn renameat([olddirfd: c_int] old, [newdirfd: c_int] new []) -> c_int, before fakeroot::forget;
    fn renameat2([olddirfd: c_int] old, [newdirfd: c_int] new [flags: c_uint]) -> c_int, before fakeroot::forget;
    fn link([] old, [] new []) -> c_int;
    fn linkat([olddirfd: c_int] old, [newdirfd: c_int] new [flags: c_int]) -> c_int;
}

/// An absolute target is stored with the rootfs in front, as the unpacker stores them,
/// so that the kernel resolves it inside the rootfs; `readlink` takes the prefix off.
/// A relative target is kept as written, since the kernel resolves it against the link's
/// directory, unless it climbs above `/`: chroot would stop at `/`, the kernel would
/// leave the rootfs, so such a target is stored resolved, like an absolute one.
fn symlink_target(
    target: *const c_char,
    dirfd: c_int,
    linkpath: *const c_char,
    buf: &mut PathBuf,
) -> Result<*const c_char, c_int> {
    let Some(st) = state::get() else {
        return Ok(target);
    };
    if target.is_null() || linkpath.is_null() {
        return Ok(target);
    }
    // SAFETY: non-null and NUL-terminated (symlink's contract).
    let target_bytes = unsafe { sys::bytes(target) };
    // SAFETY: as above.
    let link_bytes = unsafe { sys::bytes(linkpath) };
    if target_bytes.first() == Some(&b'/') {
        return translate::host(target, buf);
    }
    if !has_dotdot(target_bytes) {
        return Ok(target);
    }
    let mut dir = PathBuf::new();
    if link_bytes.first() != Some(&b'/') {
        translate::container_dir(st, dirfd, &mut dir)?;
        dir.push(b"/").map_err(|_| libc::ENAMETOOLONG)?;
    }
    dir.push(link_bytes).map_err(|_| libc::ENAMETOOLONG)?;
    dir.pop_component();
    if !climbs_above_root(dir.as_bytes(), target_bytes) {
        return Ok(target);
    }
    dir.push(b"/")
        .and_then(|()| dir.push(target_bytes))
        .map_err(|_| libc::ENAMETOOLONG)?;
    st.layout()
        .to_host(dir.as_bytes(), buf)
        .map_err(|_| libc::ENAMETOOLONG)?;
    Ok(buf.as_ptr().cast())
}

/// # Safety
/// libc's contract for `symlink`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlink(target: *const c_char, linkpath: *const c_char) -> c_int {
    // SAFETY: same contract.
    unsafe { symlinkat(target, libc::AT_FDCWD, linkpath) }
}

/// # Safety
/// libc's contract for `symlinkat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlinkat(
    target: *const c_char,
    dirfd: c_int,
    linkpath: *const c_char,
) -> c_int {
    let Some(next) = real!(symlinkat: fn(*const c_char, c_int, *const c_char) -> c_int) else {
        return fail(libc::ENOSYS, -1);
    };
    let (mut target_buf, mut link_buf) = (PathBuf::new(), PathBuf::new());
    match (
        symlink_target(target, dirfd, linkpath, &mut target_buf),
        translate::host_at(dirfd, linkpath, &mut link_buf),
    ) {
        (Ok(target), Ok(link)) => {
            let creating = fakeroot::always_creates(dirfd, link, ());
            // SAFETY: the caller's arguments, translated.
            let ret = unsafe { next(target, dirfd, link) };
            if creating && ret == 0 {
                fakeroot::created(dirfd, link);
            }
            ret
        }
        (Err(code), _) | (_, Err(code)) => fail(code, -1),
    }
}
