//! AF_UNIX addresses: a socket path is a file path. It is translated where a program names
//! one (`bind`, `connect`, a datagram's destination) and mapped back where the kernel reports
//! one (`getsockname`, `getpeername`, a datagram's sender). A translated path too long for
//! `sun_path` is named through its directory instead.
//!
//! The batch calls (`sendmmsg`, `recvmmsg`) hand the kernel at most [`BATCH`] messages at a
//! time where an address is translated, so that the copies live on the stack (nothing here
//! allocates), and go round until the caller's batch is done as one kernel call would do it:
//! a later round that fails or would block ends the call with the count so far.

use std::ffi::{c_char, c_int, c_uint, c_void};

use libc::{size_t, sockaddr, socklen_t, ssize_t};
use rootfs_paths::PathBuf;

use crate::state;
use crate::sys::{self, fail, real};
use crate::translate;

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
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
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

/// Rewrites an AF_UNIX address the kernel filled at `addr` from a host path to the container
/// path, in place, when it fits. `capacity` is the buffer's size as the caller passed it in
/// `*len`: the kernel reports the address's full length there, which may exceed the buffer.
///
/// # Safety
/// `addr` and `len` are null or valid, as a successful call left them, and `addr` holds
/// `capacity` bytes.
unsafe fn unix_addr_to_container(addr: *mut sockaddr, len: *mut socklen_t, capacity: socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    // SAFETY: guaranteed by the caller.
    let filled = unsafe { *len }.min(capacity) as usize;
    if filled < std::mem::size_of::<libc::sa_family_t>() {
        return;
    }
    // SAFETY: guaranteed by the caller; every family starts with sa_family.
    if unsafe { (*addr).sa_family } != libc::AF_UNIX as libc::sa_family_t {
        return;
    }
    // SAFETY: an AF_UNIX address is a sockaddr_un, of which `filled` bytes are in the buffer.
    let un = unsafe { &mut *addr.cast::<libc::sockaddr_un>() };
    let avail = filled
        .saturating_sub(std::mem::size_of::<libc::sa_family_t>())
        .min(un.sun_path.len());
    // SAFETY: `avail` bytes of sun_path, within what the kernel filled.
    let path: &mut [u8] =
        unsafe { std::slice::from_raw_parts_mut(un.sun_path.as_mut_ptr().cast(), avail) };
    let used = path.iter().position(|&b| b == 0).unwrap_or(avail);
    if used > 0
        && path[0] == b'/'
        && let Some(new) = translate::to_container_in_place(path, used, avail.saturating_sub(1))
    {
        path[new] = 0;
        // SAFETY: as above.
        unsafe { *len = (std::mem::size_of::<libc::sa_family_t>() + new + 1) as socklen_t };
    }
}

macro_rules! socket_out {
    ($($name:ident),*) => {$(
        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
            let Some(next) = real!($name: fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            let capacity = if len.is_null() {
                0
            } else {
                // SAFETY: the caller's valid `len`, read before the kernel overwrites it.
                unsafe { *len }
            };
            // SAFETY: the caller's arguments.
            let ret = unsafe { next(fd, addr, len) };
            if ret == 0 {
                // SAFETY: on success the kernel filled the address in `capacity` bytes.
                unsafe { unix_addr_to_container(addr, len, capacity) };
            }
            ret
        }
    )*};
}
socket_out!(getsockname, getpeername);

/// # Safety
/// libc's contract for `sendto`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    let Some(next) = real!(sendto: fn(c_int, *const c_void, size_t, c_int, *const sockaddr, socklen_t) -> ssize_t)
    else {
        return fail(libc::ENOSYS, -1);
    };
    // SAFETY: sockaddr_un is plain data.
    let mut copy: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut dir = None;
    // SAFETY: the caller's address.
    match unsafe { unix_addr(addr, len, &mut copy, &mut dir) } {
        // SAFETY: the caller's arguments.
        Ok(None) => unsafe { next(fd, buf, n, flags, addr, len) },
        // SAFETY: the caller's arguments with the translated copy of the address.
        Ok(Some(new_len)) => unsafe { next(fd, buf, n, flags, (&raw const copy).cast(), new_len) },
        Err(code) => fail(code, -1),
    }
}

/// # Safety
/// libc's contract for `sendmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t {
    let Some(next) = real!(sendmsg: fn(c_int, *const libc::msghdr, c_int) -> ssize_t) else {
        return fail(libc::ENOSYS, -1);
    };
    if msg.is_null() {
        // SAFETY: the caller's arguments; the kernel answers EFAULT.
        return unsafe { next(fd, msg, flags) };
    }
    // SAFETY: sockaddr_un is plain data.
    let mut copy: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut dir = None;
    // SAFETY: a bitwise copy of the caller's valid header (plain pointers and lengths).
    let mut header = unsafe { std::ptr::read(msg) };
    let (name, name_len) = (header.msg_name.cast::<sockaddr>(), header.msg_namelen);
    // SAFETY: the header's name is null or `msg_namelen` bytes (sendmsg's contract).
    match unsafe { unix_addr(name, name_len, &mut copy, &mut dir) } {
        // SAFETY: the caller's arguments.
        Ok(None) => unsafe { next(fd, msg, flags) },
        Ok(Some(new_len)) => {
            header.msg_name = (&raw mut copy).cast();
            header.msg_namelen = new_len;
            // SAFETY: the caller's message with the translated copy of its address.
            unsafe { next(fd, &raw const header, flags) }
        }
        Err(code) => fail(code, -1),
    }
}

/// # Safety
/// libc's contract for `recvfrom`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    let Some(next) = real!(recvfrom: fn(c_int, *mut c_void, size_t, c_int, *mut sockaddr, *mut socklen_t) -> ssize_t)
    else {
        return fail(libc::ENOSYS, -1);
    };
    let capacity = if addr.is_null() || len.is_null() {
        0
    } else {
        // SAFETY: the caller's valid `len`, read before the kernel overwrites it.
        unsafe { *len }
    };
    // SAFETY: the caller's arguments.
    let ret = unsafe { next(fd, buf, n, flags, addr, len) };
    if ret >= 0 {
        // SAFETY: on success the kernel filled the sender's address in `capacity` bytes.
        unsafe { unix_addr_to_container(addr, len, capacity) };
    }
    ret
}

/// # Safety
/// libc's contract for `recvmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t {
    let Some(next) = real!(recvmsg: fn(c_int, *mut libc::msghdr, c_int) -> ssize_t) else {
        return fail(libc::ENOSYS, -1);
    };
    let capacity = if msg.is_null() {
        0
    } else {
        // SAFETY: the caller's valid header, read before the kernel overwrites its length.
        unsafe { (*msg).msg_namelen }
    };
    // SAFETY: the caller's arguments.
    let ret = unsafe { next(fd, msg, flags) };
    if ret >= 0 && !msg.is_null() {
        // SAFETY: the caller's valid header, which the kernel filled.
        let header = unsafe { &mut *msg };
        let name = header.msg_name.cast();
        // SAFETY: on success the kernel filled the sender's address in `capacity` bytes.
        unsafe { unix_addr_to_container(name, &raw mut header.msg_namelen, capacity) };
    }
    ret
}

/// At most this many messages per batch call when an address is translated.
const BATCH: usize = 16;

type SendMmsg = unsafe extern "C" fn(c_int, *mut libc::mmsghdr, c_uint, c_int) -> c_int;
type RecvMmsg =
    unsafe extern "C" fn(c_int, *mut libc::mmsghdr, c_uint, c_int, *mut libc::timespec) -> c_int;

/// # Safety
/// libc's contract for `sendmmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    vlen: c_uint,
    flags: c_int,
) -> c_int {
    let Some(next) = real!(sendmmsg: fn(c_int, *mut libc::mmsghdr, c_uint, c_int) -> c_int) else {
        return fail(libc::ENOSYS, -1);
    };
    if msgs.is_null() || vlen == 0 {
        // SAFETY: the caller's arguments; the kernel answers them.
        return unsafe { next(fd, msgs, vlen, flags) };
    }
    // SAFETY: the caller's array of `vlen` messages.
    let all = unsafe { std::slice::from_raw_parts_mut(msgs, vlen as usize) };
    in_rounds(all, |rest, _| {
        // SAFETY: the caller's socket and messages, and libc's sendmmsg.
        unsafe { send_round(next, fd, rest, flags) }
    })
}

/// Goes round `round` (given the messages not yet done and whether it is the first round;
/// answering the kernel's count, or -1, and how many it was asked to do) until every
/// message is done, a round does fewer than asked, or one fails. As one kernel call: an
/// error after some messages were done leaves their count as the answer.
fn in_rounds(
    all: &mut [libc::mmsghdr],
    mut round: impl FnMut(&mut [libc::mmsghdr], bool) -> (c_int, usize),
) -> c_int {
    let mut done = 0;
    while let Some(rest) = all.get_mut(done..).filter(|rest| !rest.is_empty()) {
        let (count, asked) = round(rest, done == 0);
        if count < 0 {
            return if done == 0 { count } else { done as c_int };
        }
        done += count as usize;
        if (count as usize) < asked {
            break;
        }
    }
    done as c_int
}

/// One round of `sendmmsg` over the first of `given`: the kernel's count (or -1), and how
/// many messages it was asked to send.
///
/// # Safety
/// `next` is libc's `sendmmsg`; `given` are the caller's messages (sendmmsg's contract).
unsafe fn send_round(
    next: SendMmsg,
    fd: c_int,
    given: &mut [libc::mmsghdr],
    flags: c_int,
) -> (c_int, usize) {
    let (whole, given_len) = (given.as_mut_ptr(), given.len());
    let (given, later) = given.split_at_mut(given_len.min(BATCH));
    // SAFETY: plain data, each overwritten before use.
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: plain data.
    let mut names: [libc::sockaddr_un; BATCH] = unsafe { std::mem::zeroed() };
    let mut dirs: [Option<HeldDir>; BATCH] = [const { None }; BATCH];
    let mut translated = false;
    let mut ready = 0;
    for (i, message) in given.iter().enumerate() {
        headers[i] = *message;
        let (name, len) = (message.msg_hdr.msg_name, message.msg_hdr.msg_namelen);
        // SAFETY: each header's name is null or `msg_namelen` bytes (sendmmsg's contract).
        match unsafe { unix_addr(name.cast(), len, &mut names[i], &mut dirs[i]) } {
            Ok(None) => {}
            Ok(Some(new_len)) => {
                headers[i].msg_hdr.msg_name = (&raw mut names[i]).cast();
                headers[i].msg_hdr.msg_namelen = new_len;
                translated = true;
            }
            // As the kernel does for a later message that fails: send the ones before it.
            Err(code) if i == 0 => return (fail(code, -1), 1),
            Err(_) => break,
        }
        ready = i + 1;
    }
    if !translated {
        // Nothing to translate among the first: the kernel takes all of them at once when
        // no later one names a Unix socket either (a UDP batch stays whole).
        let count = if ready == given.len() && !later.iter().any(names_a_unix_socket) {
            given_len
        } else {
            ready
        };
        // SAFETY: `count` of the caller's messages, no address changed.
        let sent = unsafe { next(fd, whole, count as c_uint, flags) };
        return (sent, count);
    }
    // SAFETY: `ready` initialised headers whose names point into `names`, alive until return.
    let sent = unsafe { next(fd, headers.as_mut_ptr(), ready as c_uint, flags) };
    for (copy, message) in headers
        .iter()
        .zip(given.iter_mut())
        .take(sent.max(0) as usize)
    {
        message.msg_len = copy.msg_len;
    }
    (sent, ready)
}

/// Whether a message is addressed to a Unix socket (its name's family is `AF_UNIX`).
fn names_a_unix_socket(message: &libc::mmsghdr) -> bool {
    let (name, len) = (message.msg_hdr.msg_name, message.msg_hdr.msg_namelen);
    if name.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return false;
    }
    // SAFETY: a message's name is `msg_namelen` bytes (sendmmsg's contract); every family
    // starts with it.
    unsafe { (*name.cast::<sockaddr>()).sa_family == libc::AF_UNIX as libc::sa_family_t }
}

/// Whether `fd` is an AF_UNIX socket (false for anything else, including no socket).
fn is_unix_socket(fd: c_int) -> bool {
    let mut domain: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes to `domain` and its length to `len`.
    let ret = unsafe {
        sys::raw_syscall!(
            libc::SYS_getsockopt,
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            &raw mut domain,
            &raw mut len
        )
    };
    ret == 0 && domain == libc::AF_UNIX
}

/// # Safety
/// libc's contract for `recvmmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    vlen: c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    let Some(next) =
        real!(recvmmsg: fn(c_int, *mut libc::mmsghdr, c_uint, c_int, *mut libc::timespec) -> c_int)
    else {
        return fail(libc::ENOSYS, -1);
    };
    if msgs.is_null() || vlen == 0 {
        // SAFETY: the caller's arguments; the kernel answers them.
        return unsafe { next(fd, msgs, vlen, flags, timeout) };
    }
    // SAFETY: the caller's array of `vlen` messages.
    let given = unsafe { std::slice::from_raw_parts_mut(msgs, vlen as usize) };
    let wants_senders = given.iter().any(|m| !m.msg_hdr.msg_name.is_null());
    // A large batch is cut only on a Unix socket: UDP receivers keep their batches whole.
    if !wants_senders || (given.len() > BATCH && !is_unix_socket(fd)) {
        // SAFETY: the caller's arguments.
        return unsafe { next(fd, msgs, vlen, flags, timeout) };
    }
    in_rounds(given, |rest, first| {
        let round_len = rest.len().min(BATCH);
        // `MSG_WAITFORONE`: once one message is in, the kernel waits for no more.
        let round_flags = if !first && flags & libc::MSG_WAITFORONE != 0 {
            flags | libc::MSG_DONTWAIT
        } else {
            flags
        };
        // SAFETY: the caller's socket, messages and timeout (the kernel leaves the time
        // still left in it, which the next round goes on with), and libc's recvmmsg.
        let got = unsafe { receive_round(next, fd, &mut rest[..round_len], round_flags, timeout) };
        (got, round_len)
    })
}

/// One round of `recvmmsg` into `given` (at most [`BATCH`]), each sender's address mapped
/// back into the container.
///
/// # Safety
/// `next` is libc's `recvmmsg`; the rest as its contract gives them.
unsafe fn receive_round(
    next: RecvMmsg,
    fd: c_int,
    given: &mut [libc::mmsghdr],
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    // The kernel reports each sender's full length, which may exceed the caller's buffer.
    let mut capacities: [socklen_t; BATCH] = [0; BATCH];
    for (capacity, message) in capacities.iter_mut().zip(given.iter()) {
        *capacity = message.msg_hdr.msg_namelen;
    }
    // SAFETY: the caller's arguments, with at most BATCH messages.
    let got = unsafe {
        next(
            fd,
            given.as_mut_ptr(),
            given.len() as c_uint,
            flags,
            timeout,
        )
    };
    for (message, capacity) in given.iter_mut().zip(capacities).take(got.max(0) as usize) {
        let name = message.msg_hdr.msg_name.cast();
        // SAFETY: the kernel filled this message's sender within `capacity` bytes.
        unsafe { unix_addr_to_container(name, &raw mut message.msg_hdr.msg_namelen, capacity) };
    }
    got
}
