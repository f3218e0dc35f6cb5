//! Lazy trees: while the rootfs is still arriving (`SCAR_FC_FETCH` names bootstrap's
//! fetcher), a file is asked for before it is opened and a program before it runs, in the
//! protocol of `rootfs_paths::fetch`.
//!
//! A file not yet fetched is a placeholder: a regular file of its real size with no block
//! written, so `stat` is already right and only reading needs the bytes. Before an `open`,
//! `fopen`, `truncate`, `rename` or `link` of one (and a fake root's `chown`, remembered by
//! inode), the shim asks for it by device and inode;
//! before an exec or a `dlopen` it asks for every program and library by path (or by name
//! for a library loaded by name alone): the fetcher fills the file, its `#!` interpreter, its
//! loader and its libraries, which the loader opens out of the shim's sight. The call then
//! proceeds, or fails with the errno of the answer (`EIO` when a fetch failed). No socket at
//! that path means the tree is whole: nothing to ask.
//!
//! On the exec path: no allocation (stack buffers) and no lock (one connection per
//! request), raw syscalls only, so nothing re-enters the shim.

use std::ffi::{CStr, c_char, c_int};

use rootfs_paths::fetch::{self, REQUEST_MAX, Request};

use crate::state;
use crate::sys::{self, raw_syscall};

/// Before a file at `path` (relative to `dirfd`) is opened or truncated: fetched if it is
/// a placeholder.
pub fn before_open(dirfd: c_int, path: *const c_char) -> Result<(), c_int> {
    let Some(socket) = state::get().and_then(|st| st.fetch) else {
        return Ok(());
    };
    let Ok(st) = sys::kernel_stat(dirfd, path, 0) else {
        // Missing or unreachable: the call itself says so.
        return Ok(());
    };
    let is_file = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    if !is_file || st.st_size == 0 || st.st_blocks != 0 {
        return Ok(());
    }
    ask(
        socket,
        Request::File {
            dev: st.st_dev,
            ino: st.st_ino,
        },
    )
}

/// Before `path` (a host path) is run or loaded: the program and what it needs are made
/// whole. A relative path is checked as a file only.
pub fn before_exec(dirfd: c_int, path: &CStr) -> Result<(), c_int> {
    let Some(socket) = state::get().and_then(|st| st.fetch) else {
        return Ok(());
    };
    let bytes = path.to_bytes();
    if !bytes.starts_with(b"/") || bytes.contains(&b'\n') {
        return before_open(dirfd, path.as_ptr());
    }
    ask(socket, Request::Program(bytes))
}

/// `dlopen`'s hook: a path is prepared as a program is, a name alone (which the loader
/// searches for) by that name.
pub fn before_load(dirfd: c_int, path: *const c_char) -> Result<(), c_int> {
    if path.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null dlopen argument is a NUL-terminated string (its contract).
    let name = unsafe { CStr::from_ptr(path) };
    let bytes = name.to_bytes();
    if bytes.contains(&b'/') {
        return before_exec(dirfd, name);
    }
    match state::get().and_then(|st| st.fetch) {
        Some(socket) if !bytes.is_empty() && !bytes.contains(&b'\n') => {
            ask(socket, Request::Library(bytes))
        }
        _ => Ok(()),
    }
}

/// Sends one request and waits for its answer.
fn ask(socket: &[u8], request: Request<'_>) -> Result<(), c_int> {
    let mut line = [0u8; REQUEST_MAX];
    let Some(line) = request.encode(&mut line) else {
        return Err(libc::ENAMETOOLONG);
    };
    // SAFETY: a zeroed sockaddr_un is a valid (empty) address.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if socket.len() >= address.sun_path.len() {
        return Err(libc::ENAMETOOLONG);
    }
    for (slot, &byte) in address.sun_path.iter_mut().zip(socket) {
        *slot = byte as c_char;
    }
    // SAFETY: raw socket(2) with constant arguments.
    let fd = unsafe {
        raw_syscall!(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0
        )
    };
    if fd < 0 {
        return Err(sys::errno());
    }
    let fd = fd as c_int;
    let result = exchange(fd, &address, line);
    sys::close(fd);
    result
}

fn exchange(fd: c_int, address: &libc::sockaddr_un, line: &[u8]) -> Result<(), c_int> {
    let size = std::mem::size_of::<libc::sockaddr_un>();
    // SAFETY: raw connect(2) with an address valid for its size.
    let connected = unsafe { raw_syscall!(libc::SYS_connect, fd, address as *const _, size) };
    if connected < 0 {
        return match sys::errno() {
            // No socket: the tree is whole and the fetcher has gone.
            libc::ENOENT => Ok(()),
            // A socket nobody answers: the runtime is gone, the files will not come.
            _ => Err(libc::EIO),
        };
    }
    let mut written = 0;
    while written < line.len() {
        let rest = &line[written..];
        // SAFETY: raw write(2) of a valid buffer.
        let n = unsafe { raw_syscall!(libc::SYS_write, fd, rest.as_ptr(), rest.len()) };
        match n {
            n if n > 0 => written += n as usize,
            _ if sys::errno() == libc::EINTR => {}
            _ => return Err(libc::EIO),
        }
    }
    let mut answer = [0u8; 24];
    let mut filled = 0;
    while filled < answer.len() && !answer[..filled].contains(&b'\n') {
        match sys::read(fd, &mut answer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(libc::EINTR) => {}
            Err(_) => return Err(libc::EIO),
        }
    }
    match fetch::parse_answer(&answer[..filled]) {
        Some(0) => Ok(()),
        Some(code) => Err(code),
        None => Err(libc::EIO),
    }
}
