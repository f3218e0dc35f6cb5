//! Container paths in, host paths out (and back) for the wrappers.

use std::ffi::{c_char, c_int};

use rootfs_paths::PathBuf;
use rootfs_paths::dotdot::{self, Kind, Unresolved};
use rootfs_paths::layout::{has_dotdot, strip_dir};

use crate::state::{self, State};
use crate::sys;

const PROC_SELF_EXE: &[u8] = b"/proc/self/exe";

/// True for `/proc/self/exe` and `/proc/<our pid>/exe`, which name the loader under
/// loader invocation and must name the program instead.
pub fn is_own_exe(path: &[u8]) -> bool {
    if path == PROC_SELF_EXE {
        return true;
    }
    let Some(pid) = path
        .strip_prefix(b"/proc/")
        .and_then(|p| p.strip_suffix(b"/exe"))
    else {
        return false;
    };
    // SAFETY: getpid has no preconditions.
    let own = unsafe { libc::getpid() };
    std::str::from_utf8(pid)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        == Some(own)
}

/// The host path for a path given to a libc call, written to `buf` when it changes.
/// Relative paths without `..` are the kernel's business: cwd is already a host path.
pub fn host(path: *const c_char, buf: &mut PathBuf) -> Result<*const c_char, c_int> {
    host_at_exe(libc::AT_FDCWD, path, buf)
}

/// As [`host`] for calls that do not follow a final symlink: `/proc/self/exe` stays the
/// kernel's link (whose target `readlink` answers with the program).
pub fn host_nofollow(path: *const c_char, buf: &mut PathBuf) -> Result<*const c_char, c_int> {
    // SAFETY: a non-null path is NUL-terminated.
    if !path.is_null() && is_own_exe(unsafe { sys::bytes(path) }) {
        return Ok(path);
    }
    host(path, buf)
}

/// As [`host`], for `*at` calls: a relative path is taken from `dirfd`. `/proc/self/exe`
/// stays the kernel's link: these calls may be asked not to follow it (`ls -l` uses statx
/// with AT_SYMLINK_NOFOLLOW), and `readlinkat` answers with the program.
pub fn host_at(
    dirfd: c_int,
    path: *const c_char,
    buf: &mut PathBuf,
) -> Result<*const c_char, c_int> {
    // SAFETY: a non-null path is NUL-terminated.
    if !path.is_null() && is_own_exe(unsafe { sys::bytes(path) }) {
        return Ok(path);
    }
    host_at_exe(dirfd, path, buf)
}

/// As [`host_at`], with `/proc/self/exe` opened as the program it names.
pub fn host_at_exe(
    dirfd: c_int,
    path: *const c_char,
    buf: &mut PathBuf,
) -> Result<*const c_char, c_int> {
    let Some(st) = state::get() else {
        return Ok(path);
    };
    if path.is_null() {
        return Ok(path);
    }
    // SAFETY: non-null paths handed to libc are NUL-terminated.
    let bytes = unsafe { sys::bytes(path) };
    if bytes.first() == Some(&b'/') {
        absolute(st, bytes, buf)?;
    } else if has_dotdot(bytes) && !bytes.is_empty() {
        let mut joined = PathBuf::new();
        container_dir(st, dirfd, &mut joined)?;
        joined.push(b"/").map_err(|_| libc::ENAMETOOLONG)?;
        joined.push(bytes).map_err(|_| libc::ENAMETOOLONG)?;
        absolute(st, joined.as_bytes(), buf)?;
    } else {
        return Ok(path);
    }
    Ok(buf.as_ptr().cast())
}

fn absolute(st: &State, path: &[u8], buf: &mut PathBuf) -> Result<(), c_int> {
    let path = match st.exe {
        Some(exe) if is_own_exe(path) => exe,
        _ => path,
    };
    let layout = st.layout();
    // A host path the shim handed out (`dladdr`'s, the library path) keeps its lexical `..`
    // (`Layout::to_host`); a container path's `..` is the chroot's.
    if has_dotdot(path) && strip_dir(path, layout.root).is_none() {
        let mut resolved = PathBuf::new();
        dotdot::resolve(&layout, path, &mut resolved, &mut KernelLookup).map_err(|unresolved| {
            match unresolved {
                Unresolved::Errno(errno) => errno,
                Unresolved::NotDirectory => libc::ENOTDIR,
                Unresolved::Loop => libc::ELOOP,
                Unresolved::TooLong => libc::ENAMETOOLONG,
            }
        })?;
        return layout
            .to_host(resolved.as_bytes(), buf)
            .map_err(|_| libc::ENAMETOOLONG);
    }
    layout.to_host(path, buf).map_err(|_| libc::ENAMETOOLONG)
}

/// The walk of a path's `..` asks the kernel, by raw system calls (nothing re-enters the
/// shim).
struct KernelLookup;

impl dotdot::Lookup for KernelLookup {
    fn kind(&mut self, host: &PathBuf) -> Result<Kind, c_int> {
        let st = sys::kernel_stat(
            libc::AT_FDCWD,
            host.as_ptr().cast(),
            libc::AT_SYMLINK_NOFOLLOW,
        )?;
        Ok(match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Directory,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        })
    }

    fn link(&mut self, host: &PathBuf, target: &mut [u8]) -> Result<usize, c_int> {
        sys::readlink(host.as_c_str(), target)
    }
}

/// The container path of the directory `dirfd` (or the cwd) refers to.
pub fn container_dir(st: &State, dirfd: c_int, out: &mut PathBuf) -> Result<(), c_int> {
    let mut raw = [0u8; rootfs_paths::buf::PATH_MAX];
    let len = if dirfd == libc::AT_FDCWD {
        sys::getcwd(&mut raw)?
    } else {
        let mut link = PathBuf::new();
        sys::fd_link(dirfd, &mut link)?;
        sys::readlink(link.as_c_str(), &mut raw)?
    };
    st.layout()
        .to_container_into(&raw[..len], out)
        .map_err(|_| libc::ENAMETOOLONG)
}

/// Rewrites a host path result in place as a container path: `buf` holds `len` bytes
/// (no NUL needed) and has room for `cap`. Returns the new length, or `None` if the
/// container form does not fit.
pub fn to_container_in_place(buf: &mut [u8], len: usize, cap: usize) -> Option<usize> {
    let Some(st) = state::get() else {
        return Some(len);
    };
    let mut out = PathBuf::new();
    st.layout().to_container_into(&buf[..len], &mut out).ok()?;
    let new = out.as_bytes();
    if new.len() > cap {
        return None;
    }
    buf.get_mut(..new.len())?.copy_from_slice(new);
    Some(new.len())
}
