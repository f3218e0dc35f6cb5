//! Calls that return paths: results are mapped back to container paths.

use std::ffi::{c_char, c_int, c_void};

use libc::{size_t, sockaddr, socklen_t, ssize_t};
use rootfs_paths::PathBuf;
use rootfs_paths::buf::PATH_MAX;

use crate::state;
use crate::sys::{self, fail, real};
use crate::translate::{self, is_own_exe};

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
            translate::to_container_in_place(&mut target, n as usize, PATH_MAX)
                .unwrap_or(n as usize)
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

/// A directory held open while a socket path is named through it.
struct HeldDir(c_int);

impl Drop for HeldDir {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}

/// `host` (a socket path past `sun_path`'s 108 bytes, as the rootfs in front makes of a
/// short container path) named through its directory instead: `/proc/self/fd/N/NAME`,
/// which the kernel resolves as the same place. `dir` holds N open until the call is made.
fn through_held_dir(host: &mut PathBuf, dir: &mut Option<HeldDir>) -> Result<(), c_int> {
    let bytes = host.as_bytes();
    let split = bytes.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let mut parent = PathBuf::new();
    parent
        .set(&bytes[..split.max(1)])
        .map_err(|_| libc::ENAMETOOLONG)?;
    // SAFETY: a NUL-terminated path; O_PATH opens the directory without reading it.
    let fd = unsafe {
        sys::raw_syscall!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            parent.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC
        )
    };
    if fd < 0 {
        return Err(sys::errno());
    }
    let held = dir.insert(HeldDir(fd as c_int));
    let mut alias = PathBuf::new();
    sys::fd_link(held.0, &mut alias)?;
    alias
        .push(b"/")
        .and_then(|()| alias.push(&bytes[split + 1..]))
        .map_err(|_| libc::ENAMETOOLONG)?;
    host.set(alias.as_bytes()).map_err(|_| libc::ENAMETOOLONG)
}

/// A copy of an AF_UNIX address with its path translated; other families pass unchanged.
/// A translated path too long for `sun_path` is named through its directory, held in `dir`.
unsafe fn unix_addr(
    addr: *const sockaddr,
    len: socklen_t,
    out: &mut libc::sockaddr_un,
    dir: &mut Option<HeldDir>,
) -> Result<Option<socklen_t>, c_int> {
    if addr.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller passes a valid address of `len` bytes; every family starts with it.
    if unsafe { (*addr).sa_family } != libc::AF_UNIX as libc::sa_family_t {
        return Ok(None);
    }
    // SAFETY: an AF_UNIX address is a sockaddr_un (of at most its size).
    let un = unsafe { &*addr.cast::<libc::sockaddr_un>() };
    let max = (len as usize)
        .saturating_sub(std::mem::size_of::<libc::sa_family_t>())
        .min(un.sun_path.len());
    // SAFETY: `max` bytes of sun_path, within the address.
    let path: &[u8] = unsafe { std::slice::from_raw_parts(un.sun_path.as_ptr().cast(), max) };
    {
        let path = &path[..path.iter().position(|&b| b == 0).unwrap_or(path.len())];
        // Abstract sockets (leading NUL) and relative names are not paths to move.
        if path.first() != Some(&b'/') {
            return Ok(None);
        }
        let Some(st) = state::get() else {
            return Ok(None);
        };
        let mut host = PathBuf::new();
        st.layout()
            .to_host(path, &mut host)
            .map_err(|_| libc::ENAMETOOLONG)?;
        if host.len() >= out.sun_path.len() {
            through_held_dir(&mut host, dir)?;
        }
        if host.len() >= out.sun_path.len() {
            return Err(libc::ENAMETOOLONG);
        }
        out.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in out.sun_path.iter_mut().zip(host.as_bytes_with_nul()) {
            *dst = *src as c_char;
        }
        Ok(Some(
            (std::mem::size_of::<libc::sa_family_t>() + host.len() + 1) as socklen_t,
        ))
    }
}

macro_rules! socket_in {
    ($($name:ident),*) => {$(
        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
            let Some(next) = real!($name: fn(c_int, *const sockaddr, socklen_t) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            // SAFETY: sockaddr_un is plain data.
            let mut copy: libc::sockaddr_un = unsafe { std::mem::zeroed() };
            let mut dir = None;
            // SAFETY: the caller's address.
            match unsafe { unix_addr(addr, len, &mut copy, &mut dir) } {
                // SAFETY: the caller's arguments or the translated copy.
                Ok(None) => unsafe { next(fd, addr, len) },
                // SAFETY: the translated copy, `new_len` bytes of it valid.
                Ok(Some(new_len)) => unsafe { next(fd, (&raw const copy).cast(), new_len) },
                Err(code) => fail(code, -1),
            }
        }
    )*};
}
socket_in!(bind, connect);

macro_rules! socket_out {
    ($($name:ident),*) => {$(
        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
            let Some(next) = real!($name: fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            // SAFETY: the caller's arguments.
            let ret = unsafe { next(fd, addr, len) };
            // SAFETY: on success the kernel filled `*len` bytes of `addr`.
            unsafe {
                if ret == 0 && !addr.is_null() && (*addr).sa_family == libc::AF_UNIX as libc::sa_family_t {
                    let un = &mut *addr.cast::<libc::sockaddr_un>();
                    let avail = (*len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>()).min(un.sun_path.len());
                    let path: &mut [u8] = std::slice::from_raw_parts_mut(un.sun_path.as_mut_ptr().cast(), avail);
                    let used = path.iter().position(|&b| b == 0).unwrap_or(avail);
                    if used > 0 && path[0] == b'/' {
                        if let Some(new) = translate::to_container_in_place(path, used, avail.saturating_sub(1)) {
                            path[new] = 0;
                            *len = (std::mem::size_of::<libc::sa_family_t>() + new + 1) as socklen_t;
                        }
                    }
                }
            }
            ret
        }
    )*};
}
socket_out!(getsockname, getpeername);
