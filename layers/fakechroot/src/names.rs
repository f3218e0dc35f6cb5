//! Calls that return paths: results are mapped back to container paths.

use std::ffi::{c_char, c_int, c_void};

use libc::{size_t, ssize_t};
use rootfs_paths::PathBuf;
use rootfs_paths::buf::PATH_MAX;
use rootfs_paths::protocol;

use crate::sys::{self, fail, real};
use crate::translate::{self, is_own_exe};
use crate::{proc_files, state};

/// # Safety
/// libc's contract for `readlink`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t {
    // SAFETY: same contract.
    unsafe { readlinkat(libc::AT_FDCWD, path, buf, size) }
}

/// # Safety
/// libc's contract for `readlinkat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlinkat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
) -> ssize_t {
    let Some(next) = real!(readlinkat: fn(c_int, *const c_char, *mut c_char, size_t) -> ssize_t)
    else {
        return fail(libc::ENOSYS, -1);
    };
    // The kernel's first checks, made here because the link is read into our own buffer.
    if size == 0 {
        return fail(libc::EINVAL, -1);
    }
    if buf.is_null() {
        return fail(libc::EFAULT, -1);
    }
    let mut target = [0u8; PATH_MAX];
    let len = match (state::get(), path.is_null()) {
        // SAFETY: a non-null path argument is NUL-terminated.
        (Some(st), false) if st.exe.is_some() && is_own_exe(unsafe { sys::bytes(path) }) => {
            let exe = st.exe.unwrap_or_default();
            // A SCAR_FC_EXE longer than a path can be is refused, never a panic in the host.
            let Some(slot) = target.get_mut(..exe.len()) else {
                return fail(libc::ENAMETOOLONG, -1);
            };
            slot.copy_from_slice(exe);
            exe.len()
        }
        _ => {
            let mut host = PathBuf::new();
            let host = match translate::host_at(dirfd, path, &mut host) {
                Ok(p) => p,
                Err(code) => return fail(code, -1),
            };
            // SAFETY: the target buffer is PATH_MAX bytes.
            let n = unsafe { next(dirfd, host, target.as_mut_ptr().cast(), target.len()) };
            if n < 0 {
                return n;
            }
            let len = translate::to_container_in_place(&mut target, n as usize, PATH_MAX)
                .unwrap_or(n as usize);
            // Another program of the container runs as the image's loader, which its link
            // names; the program is in that process's environment.
            match protocol::loader_named(&target[..len]) {
                Some(_) if !path.is_null() => {
                    // SAFETY: a non-null path argument is NUL-terminated.
                    let link = unsafe { sys::bytes(path) };
                    let mut program = [0_u8; PATH_MAX];
                    match proc_files::program_of_process(link, &mut program) {
                        Some(found) => {
                            target[..found].copy_from_slice(&program[..found]);
                            found
                        }
                        None => len,
                    }
                }
                _ => len,
            }
        }
    };
    let copied = len.min(size);
    // SAFETY: the caller's buffer holds `size` bytes; readlink does not NUL-terminate.
    unsafe { std::ptr::copy_nonoverlapping(target.as_ptr(), buf.cast(), copied) };
    copied as ssize_t
}

/// # Safety
/// glibc's contract for the fortified `readlink`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __readlink_chk(
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    _buflen: size_t,
) -> ssize_t {
    // SAFETY: same contract.
    unsafe { readlinkat(libc::AT_FDCWD, path, buf, size) }
}

/// # Safety
/// glibc's contract for the fortified `readlinkat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __readlinkat_chk(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    _buflen: size_t,
) -> ssize_t {
    // SAFETY: same contract.
    unsafe { readlinkat(dirfd, path, buf, size) }
}

/// Copies `path` into `resolved` (or a new malloc'd buffer when it is NULL).
unsafe fn hand_back(path: &[u8], resolved: *mut c_char) -> *mut c_char {
    let out = if resolved.is_null() {
        // SAFETY: malloc; the caller frees, as with libc's realpath.
        let p = unsafe { libc::malloc(path.len() + 1) }.cast::<c_char>();
        if p.is_null() {
            return fail(libc::ENOMEM, p);
        }
        p
    } else {
        resolved
    };
    // SAFETY: `out` holds PATH_MAX bytes (the realpath contract) or was sized above, and
    // `path` is shorter than that.
    let end = unsafe { out.add(path.len()) };
    // SAFETY: as above; `path` is our own buffer, distinct from `out`.
    unsafe { std::ptr::copy_nonoverlapping(path.as_ptr(), out.cast(), path.len()) };
    // SAFETY: `end` is inside `out`.
    unsafe { *end = 0 };
    out
}

/// # Safety
/// libc's contract for `realpath`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char {
    let null = std::ptr::null_mut();
    let Some(next) = real!(realpath: fn(*const c_char, *mut c_char) -> *mut c_char) else {
        return fail(libc::ENOSYS, null);
    };
    let mut host = PathBuf::new();
    let host = match translate::host(path, &mut host) {
        Ok(p) => p,
        Err(code) => return fail(code, null),
    };
    let mut found = [0u8; PATH_MAX];
    // SAFETY: `found` holds PATH_MAX bytes.
    if unsafe { next(host, found.as_mut_ptr().cast()) }.is_null() {
        return null;
    }
    let len = found.iter().position(|&b| b == 0).unwrap_or(PATH_MAX);
    let mut container = PathBuf::new();
    match state::get() {
        Some(st)
            if st
                .layout()
                .to_container_into(&found[..len], &mut container)
                .is_ok() =>
        {
            // SAFETY: the caller's buffer, per the realpath contract.
            unsafe { hand_back(container.as_bytes(), resolved) }
        }
        // SAFETY: as above.
        _ => unsafe { hand_back(&found[..len], resolved) },
    }
}

/// # Safety
/// glibc's contract for the fortified `realpath`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __realpath_chk(
    path: *const c_char,
    resolved: *mut c_char,
    _len: size_t,
) -> *mut c_char {
    // SAFETY: same contract.
    unsafe { realpath(path, resolved) }
}

/// # Safety
/// glibc's contract for `canonicalize_file_name`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn canonicalize_file_name(path: *const c_char) -> *mut c_char {
    // SAFETY: same contract, with a NULL buffer.
    unsafe { realpath(path, std::ptr::null_mut()) }
}

/// # Safety
/// libc's contract for `getcwd`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getcwd(buf: *mut c_char, size: size_t) -> *mut c_char {
    let null = std::ptr::null_mut();
    let mut raw = [0u8; PATH_MAX];
    let len = match sys::getcwd(&mut raw) {
        Ok(n) => n,
        Err(code) => return fail(code, null),
    };
    let len = translate::to_container_in_place(&mut raw, len, PATH_MAX).unwrap_or(len);
    if buf.is_null() {
        // glibc and musl allocate when buf is NULL (a size of 0 means "as needed").
        if size != 0 && size < len + 1 {
            return fail(libc::ERANGE, null);
        }
        // SAFETY: malloc'd buffer of the right size; the caller frees it.
        let out = unsafe { libc::malloc(size.max(len + 1)) }.cast::<c_char>();
        if out.is_null() {
            return fail(libc::ENOMEM, null);
        }
        // SAFETY: `out` holds at least len + 1 bytes.
        unsafe { hand_back(&raw[..len], out) }
    } else if size < len + 1 {
        fail(libc::ERANGE, null)
    } else {
        // SAFETY: the caller's buffer holds `size` > len bytes.
        unsafe { hand_back(&raw[..len], buf) }
    }
}

/// # Safety
/// glibc's contract for the fortified `getcwd`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __getcwd_chk(
    buf: *mut c_char,
    size: size_t,
    _buflen: size_t,
) -> *mut c_char {
    // SAFETY: same contract.
    unsafe { getcwd(buf, size) }
}

/// # Safety
/// libc's contract for `getwd` (a PATH_MAX buffer).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getwd(buf: *mut c_char) -> *mut c_char {
    // SAFETY: same contract.
    unsafe { getcwd(buf, PATH_MAX) }
}

/// # Safety
/// glibc's contract for `get_current_dir_name`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn get_current_dir_name() -> *mut c_char {
    // SAFETY: a NULL buffer makes getcwd allocate.
    unsafe { getcwd(std::ptr::null_mut(), 0) }
}

/// `dli_fname` is a host path; point it past the rootfs prefix.
unsafe fn narrow_dl_info(info: *mut libc::Dl_info) {
    let Some(st) = state::get() else { return };
    // SAFETY: dladdr filled `info`, which the caller passes on.
    let info = unsafe { &mut *info };
    let name = info.dli_fname;
    if name.is_null() {
        return;
    }
    // SAFETY: a non-null dli_fname is NUL-terminated.
    let bytes = unsafe { sys::bytes(name) };
    if let Some((b"", rest)) = st.layout().to_container(bytes) {
        // SAFETY: `rest` is a suffix of `bytes`: the pointer stays inside the string.
        info.dli_fname = unsafe { name.add(bytes.len() - rest.len()) };
    }
}

/// # Safety
/// libc's contract for `dladdr`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dladdr(addr: *const c_void, info: *mut libc::Dl_info) -> c_int {
    let Some(next) = real!(dladdr: fn(*const c_void, *mut libc::Dl_info) -> c_int) else {
        return 0;
    };
    // SAFETY: same contract.
    let found = unsafe { next(addr, info) };
    if found != 0 {
        // SAFETY: filled by dladdr.
        unsafe { narrow_dl_info(info) };
    }
    found
}

/// # Safety
/// glibc's contract for `dladdr1`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dladdr1(
    addr: *const c_void,
    info: *mut libc::Dl_info,
    extra: *mut *mut c_void,
    flags: c_int,
) -> c_int {
    let Some(next) =
        real!(dladdr1: fn(*const c_void, *mut libc::Dl_info, *mut *mut c_void, c_int) -> c_int)
    else {
        return 0;
    };
    // SAFETY: same contract.
    let found = unsafe { next(addr, info, extra, flags) };
    if found != 0 {
        // SAFETY: filled by dladdr1.
        unsafe { narrow_dl_info(info) };
    }
    found
}
