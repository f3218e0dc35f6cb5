//! Lazy trees: while the rootfs is still arriving (`SCAR_FC_FETCH` names bootstrap's
//! fetcher), a file is asked for before it is opened and a program before it runs.
//!
//! A file not yet fetched is a placeholder: a regular file of its real size with no block
//! written, so `stat` is already right and only reading needs the bytes. Before an `open`,
//! `fopen`, `truncate`, `rename` or `link` of one, the shim sends `F DEV INO` and waits for
//! the answer; before an exec or a `dlopen` it sends `X PATH` for every program and library
//! (`L NAME` for a library loaded by name alone): the fetcher fills the file, its `#!`
//! interpreter, its loader and its libraries, which the loader opens out of the shim's
//! sight. The answer is `0`, or an errno that the call then fails with (`EIO`
//! when a fetch failed). No socket at that path means the tree is whole: nothing to ask.
//!
//! On the exec path: no allocation (stack buffers) and no lock (one connection per
//! request), raw syscalls only, so nothing re-enters the shim.

use std::ffi::{CStr, c_char, c_int};

use crate::state;
use crate::sys::{self, raw_syscall};

/// Room for `F DEV INO\n` or `X PATH\n`.
const REQUEST_MAX: usize = 16 + libc::PATH_MAX as usize;

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
    let mut request = Request::new();
    request.push(b"F ");
    request.push_number(st.st_dev);
    request.push(b" ");
    request.push_number(st.st_ino);
    ask(socket, &mut request)
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
    let mut request = Request::new();
    request.push(b"X ");
    if !request.push(bytes) {
        return Err(libc::ENAMETOOLONG);
    }
    ask(socket, &mut request)
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
    let Some(socket) = state::get().and_then(|st| st.fetch) else {
        return Ok(());
    };
    if bytes.is_empty() || bytes.contains(&b'\n') {
        return Ok(());
    }
    let mut request = Request::new();
    request.push(b"L ");
    if !request.push(bytes) {
        return Err(libc::ENAMETOOLONG);
    }
    ask(socket, &mut request)
}

/// A request line, built without allocating.
struct Request {
    bytes: [u8; REQUEST_MAX],
    len: usize,
}

impl Request {
    fn new() -> Self {
        Self {
            bytes: [0; REQUEST_MAX],
            len: 0,
        }
    }

    /// Appends `part`; false when it does not fit (with the final newline).
    fn push(&mut self, part: &[u8]) -> bool {
        let Some(room) = self.bytes.get_mut(self.len..REQUEST_MAX - 1) else {
            return false;
        };
        let Some(slot) = room.get_mut(..part.len()) else {
            return false;
        };
        slot.copy_from_slice(part);
        self.len += part.len();
        true
    }

    fn push_number(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        self.push(sys::format_int(n, &mut digits));
    }

    fn line(&mut self) -> &[u8] {
        self.bytes[self.len] = b'\n';
        &self.bytes[..=self.len]
    }
}

/// Sends one request and waits for its answer.
fn ask(socket: &[u8], request: &mut Request) -> Result<(), c_int> {
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
    let result = exchange(fd, &address, request);
    sys::close(fd);
    result
}

fn exchange(fd: c_int, address: &libc::sockaddr_un, request: &mut Request) -> Result<(), c_int> {
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
    let line = request.line();
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
    let mut answer = [0u8; 16];
    let mut filled = 0;
    while filled < answer.len() && !answer[..filled].contains(&b'\n') {
        match sys::read(fd, &mut answer[filled..]) {
            Ok(0) => return Err(libc::EIO),
            Ok(n) => filled += n,
            Err(libc::EINTR) => {}
            Err(_) => return Err(libc::EIO),
        }
    }
    let digits = answer[..filled].iter().take_while(|b| b.is_ascii_digit());
    let mut code: Option<c_int> = None;
    for &byte in digits {
        let so_far = code.unwrap_or(0);
        code = Some(
            so_far
                .saturating_mul(10)
                .saturating_add(c_int::from(byte - b'0')),
        );
    }
    match code {
        Some(0) => Ok(()),
        Some(code) => Err(code),
        None => Err(libc::EIO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_line_and_never_overflow() {
        let mut r = Request::new();
        r.push(b"F ");
        r.push_number(2049);
        r.push(b" ");
        r.push_number(u64::MAX);
        assert_eq!(r.line(), b"F 2049 18446744073709551615\n");
        let mut long = Request::new();
        assert!(long.push(b"X "));
        assert!(!long.push(&[b'a'; REQUEST_MAX]));
        assert!(long.push(&[b'a'; REQUEST_MAX - 3]));
        assert_eq!(long.line().len(), REQUEST_MAX);
        assert!(!long.push(b"b"));
    }
}
