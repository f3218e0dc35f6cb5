//! Directory walkers and temp-file makers: libc implements them on internal calls, so the
//! path goes in translated and the results come back as container paths.

use std::cell::Cell;
use std::ffi::{c_char, c_int};

use rootfs_paths::PathBuf;

use crate::sys::{self, fail, real};
use crate::translate;
use crate::{fakeroot, state};

type GlobErr = Option<unsafe extern "C" fn(*const c_char, c_int) -> c_int>;

/// Rewrites glob results `from..` in place: a container path is never longer than the
/// rootfs path it came from, and musl keeps the strings inside larger allocations, so
/// the pointers themselves must stay.
unsafe fn narrow_glob(pglob: *mut libc::glob_t, from: usize) {
    // SAFETY: the caller passes the glob_t that glob just filled.
    let g = unsafe { &*pglob };
    for i in from..g.gl_pathc {
        // SAFETY: glob filled gl_pathv with gl_pathc strings after gl_offs NULLs.
        let slot = unsafe { g.gl_pathv.add(g.gl_offs + i) };
        // SAFETY: `slot` is one of those initialised entries.
        let entry = unsafe { *slot };
        if entry.is_null() {
            continue;
        }
        // SAFETY: glob's strings are NUL-terminated.
        let len = unsafe { sys::bytes(entry) }.len();
        // SAFETY: the string and its NUL are glob's own writable allocation.
        let bytes = unsafe { std::slice::from_raw_parts_mut(entry.cast::<u8>(), len + 1) };
        if let Some(new) = translate::to_container_in_place(bytes, len, len) {
            bytes[new] = 0;
        }
    }
}

macro_rules! glob_fn {
    ($($name:ident),*) => {$(
        /// # Safety
        /// libc's contract for `glob`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(pattern: *const c_char, flags: c_int, errfunc: GlobErr, pglob: *mut libc::glob_t) -> c_int {
            let Some(next) = real!($name: fn(*const c_char, c_int, GlobErr, *mut libc::glob_t) -> c_int) else {
                return libc::GLOB_NOSPACE;
            };
            let mut buf = PathBuf::new();
            let Ok(host) = translate::host(pattern, &mut buf) else { return libc::GLOB_NOMATCH };
            // SAFETY: with GLOB_APPEND the earlier results are already container paths.
            let before = if flags & libc::GLOB_APPEND != 0 && !pglob.is_null() { unsafe { (*pglob).gl_pathc } } else { 0 };
            // SAFETY: the caller's arguments with the pattern translated.
            let ret = unsafe { next(host, flags, errfunc, pglob) };
            if !pglob.is_null() && host != pattern {
                // SAFETY: glob's output structure.
                unsafe { narrow_glob(pglob, before) };
            }
            ret
        }
    )*};
}
glob_fn!(glob, glob64);

/// `struct FTW` from <ftw.h> (not in the libc crate).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ftw {
    base: c_int,
    level: c_int,
}

type NftwFn = unsafe extern "C" fn(*const c_char, *const libc::stat, c_int, *mut Ftw) -> c_int;
type FtwFn = unsafe extern "C" fn(*const c_char, *const libc::stat, c_int) -> c_int;

thread_local! {
    static NFTW_CALLBACK: Cell<Option<NftwFn>> = const { Cell::new(None) };
    static FTW_CALLBACK: Cell<Option<FtwFn>> = const { Cell::new(None) };
}

/// The container form of a walker's host path, and how much longer it is than the host one.
fn walker_path(path: *const c_char, out: &mut PathBuf) -> Option<isize> {
    let st = state::get()?;
    // SAFETY: walkers pass NUL-terminated paths.
    let host = unsafe { sys::bytes(path) };
    st.layout().to_container(host)?;
    st.layout().to_container_into(host, out).ok()?;
    Some(out.len() as isize - host.len() as isize)
}

unsafe extern "C" fn nftw_trampoline(
    path: *const c_char,
    sb: *const libc::stat,
    flag: c_int,
    info: *mut Ftw,
) -> c_int {
    let Some(callback) = NFTW_CALLBACK.with(Cell::get) else {
        return -1;
    };
    let mut container = PathBuf::new();
    match walker_path(path, &mut container) {
        Some(delta) => {
            // SAFETY: `info` is the walker's; base is an offset into the path.
            let mut adjusted = unsafe { *info };
            adjusted.base = (adjusted.base as isize + delta).max(0) as c_int;
            // SAFETY: the user's callback with a container path.
            unsafe { callback(container.as_ptr().cast(), sb, flag, &mut adjusted) }
        }
        // SAFETY: the user's callback, unchanged.
        None => unsafe { callback(path, sb, flag, info) },
    }
}

unsafe extern "C" fn ftw_trampoline(
    path: *const c_char,
    sb: *const libc::stat,
    flag: c_int,
) -> c_int {
    let Some(callback) = FTW_CALLBACK.with(Cell::get) else {
        return -1;
    };
    let mut container = PathBuf::new();
    let shown = if walker_path(path, &mut container).is_some() {
        container.as_ptr().cast()
    } else {
        path
    };
    // SAFETY: the user's callback.
    unsafe { callback(shown, sb, flag) }
}

macro_rules! nftw_fn {
    ($($name:ident),*) => {$(
        /// # Safety
        /// libc's contract for `nftw`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(dir: *const c_char, callback: Option<NftwFn>, fds: c_int, flags: c_int) -> c_int {
            let Some(next) = real!($name: fn(*const c_char, Option<NftwFn>, c_int, c_int) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            let mut buf = PathBuf::new();
            let host = match translate::host(dir, &mut buf) { Ok(p) => p, Err(code) => return fail(code, -1) };
            let saved = NFTW_CALLBACK.with(|c| c.replace(callback));
            // SAFETY: the walker with our trampoline in front of the user's callback.
            let ret = unsafe { next(host, Some(nftw_trampoline), fds, flags) };
            NFTW_CALLBACK.with(|c| c.set(saved));
            ret
        }
    )*};
}
nftw_fn!(nftw, nftw64);

macro_rules! ftw_fn {
    ($($name:ident),*) => {$(
        /// # Safety
        /// libc's contract for `ftw`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(dir: *const c_char, callback: Option<FtwFn>, fds: c_int) -> c_int {
            let Some(next) = real!($name: fn(*const c_char, Option<FtwFn>, c_int) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            let mut buf = PathBuf::new();
            let host = match translate::host(dir, &mut buf) { Ok(p) => p, Err(code) => return fail(code, -1) };
            let saved = FTW_CALLBACK.with(|c| c.replace(callback));
            // SAFETY: the walker with our trampoline in front of the user's callback.
            let ret = unsafe { next(host, Some(ftw_trampoline), fds) };
            FTW_CALLBACK.with(|c| c.set(saved));
            ret
        }
    )*};
}
ftw_fn!(ftw, ftw64);

/// Runs a template-filling call on a translated copy, then copies the filled-in tail
/// (the `XXXXXX` and any suffix) back into the caller's template. `creates`: the call
/// makes the file it names (fake root gives it its creator's ids).
unsafe fn with_template<R: PartialEq>(
    template: *mut c_char,
    tail: usize,
    failed: R,
    creates: bool,
    call: impl FnOnce(*mut c_char) -> R,
) -> R {
    let mut buf = PathBuf::new();
    let host = match translate::host(template, &mut buf) {
        Ok(p) => p,
        Err(code) => return fail(code, failed),
    };
    let result = call(host.cast_mut());
    if result != failed && creates {
        fakeroot::created(libc::AT_FDCWD, host);
    }
    if result != failed && host != template.cast_const() {
        // SAFETY: our host copy of the template, NUL-terminated.
        let ours = unsafe { sys::bytes(host) };
        // SAFETY: the caller's template, NUL-terminated.
        let theirs = unsafe { sys::bytes(template) };
        let n = tail.min(ours.len()).min(theirs.len());
        // SAFETY: `n` is at most the template's length, so the last `n` bytes are its own.
        let dest = unsafe { template.add(theirs.len() - n) };
        // SAFETY: both strings end with the same `tail` bytes, now filled in our copy; the
        // two buffers are distinct.
        unsafe { std::ptr::copy_nonoverlapping(ours[ours.len() - n..].as_ptr(), dest.cast(), n) };
    }
    result
}

macro_rules! mkstemp_fns {
    ($($name:ident($($arg:ident: $t:ty),*) suffix $suffix:expr;)*) => {$(
        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(template: *mut c_char $(, $arg: $t)*) -> c_int {
            let Some(next) = real!($name: fn(*mut c_char $(, $t)*) -> c_int) else { return fail(libc::ENOSYS, -1) };
            let tail = 6 + ($suffix) as usize;
            // SAFETY: the caller's template, translated.
            unsafe { with_template(template, tail, -1, true, |t| next(t $(, $arg)*)) }
        }
    )*};
}
mkstemp_fns! {
    mkstemp() suffix 0;
    mkstemp64() suffix 0;
    mkostemp(flags: c_int) suffix { let _ = flags; 0 };
    mkostemp64(flags: c_int) suffix { let _ = flags; 0 };
    mkstemps(suffixlen: c_int) suffix suffixlen.max(0);
    mkstemps64(suffixlen: c_int) suffix suffixlen.max(0);
    mkostemps(suffixlen: c_int, flags: c_int) suffix { let _ = flags; suffixlen.max(0) };
    mkostemps64(suffixlen: c_int, flags: c_int) suffix { let _ = flags; suffixlen.max(0) };
}

macro_rules! template_ptr_fns {
    ($($name:ident creates $creates:literal),*) => {$(
        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(template: *mut c_char) -> *mut c_char {
            let null = std::ptr::null_mut();
            let Some(next) = real!($name: fn(*mut c_char) -> *mut c_char) else { return fail(libc::ENOSYS, null) };
            // SAFETY: the caller's template, translated.
            let filled = unsafe { with_template(template, 6, null, $creates, |t| next(t)) };
            if filled.is_null() { filled } else { template }
        }
    )*};
}
template_ptr_fns!(mkdtemp creates true, mktemp creates false);
