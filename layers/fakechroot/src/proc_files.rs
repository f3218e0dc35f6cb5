//! Files of `/proc` that would give the container away, answered with corrected copies:
//!
//! - `/proc/<pid>/cmdline`: every program starts through the image's loader, so the
//!   kernel's command line begins with the loader's host path and options; the copy starts
//!   at the program's own argv[0], as under a chroot (the rules: `rootfs_paths::proc_cmdline`).
//! - `/proc/<pid>/exe` of another program (a link, answered by `readlink`: `names.rs`): the
//!   kernel's names the image's loader; the program's is in that process's environment.
//! - under fake root, `/proc/<pid>/status`: a copy whose id lines say what `get*id` say
//!   (the rules: `rootfs_paths::proc_status`).
//!
//! A copy lives in a memfd, so that it is a real descriptor that `read`, `fstat`, `lseek`
//! and `fdopen` treat as a file, and goes away with its last descriptor. Anything that
//! fails on the way (no memfd, a command line not ours) opens the kernel's file.

use std::ffi::{c_char, c_int};

use libc::{FILE, mode_t};
use rootfs_paths::buf::PATH_MAX;
use rootfs_paths::proc_cmdline::{self, Argv0};
use rootfs_paths::proc_environ::Finder;
use rootfs_paths::proc_status::{self, Ids, Whose};
use rootfs_paths::{PathBuf, proc_exe, protocol};

use crate::arena::Arena;
use crate::sys::{self, raw_syscall};
use crate::{fakeroot, state};

/// Larger than any status file Linux writes (about 1.5 KiB with every field).
const STATUS_MAX: usize = 8192;
/// Room for the loader's part of a command line (its options and the library path), and
/// the chunk in which the rest is copied.
const CMDLINE_CHUNK: usize = 64 * 1024;

/// `open`/`openat` of `host` with `flags`: the copy's descriptor, or `None` to open the
/// file itself.
pub fn open(host: *const c_char, (flags, _mode): (c_int, mode_t)) -> Option<c_int> {
    open_2(host, (flags,))
}

/// `__open_2`/`__openat_2` (fortified, no mode).
pub fn open_2(host: *const c_char, (flags,): (c_int,)) -> Option<c_int> {
    if flags & libc::O_ACCMODE != libc::O_RDONLY {
        return None;
    }
    answer(host, flags & libc::O_CLOEXEC != 0)
}

/// `fopen` of `host` with `mode`: a stream on the copy, or `None` to open the file itself.
pub fn fopen(host: *const c_char, (mode,): (*const c_char,)) -> Option<*mut FILE> {
    if mode.is_null() {
        return None;
    }
    // SAFETY: a non-null mode is NUL-terminated (fopen's contract).
    let mode_bytes = unsafe { sys::bytes(mode) };
    if mode_bytes.first() != Some(&b'r') || mode_bytes.contains(&b'+') {
        return None;
    }
    let fd = answer(host, mode_bytes.contains(&b'e'))?;
    // SAFETY: a descriptor we own and the caller's mode, which fdopen reads only.
    let stream = unsafe { libc::fdopen(fd, mode) };
    if stream.is_null() {
        sys::close(fd);
        return None;
    }
    Some(stream)
}

fn answer(host: *const c_char, cloexec: bool) -> Option<c_int> {
    if host.is_null() {
        return None;
    }
    // SAFETY: a translated path is NUL-terminated.
    let path = unsafe { sys::bytes(host) };
    if !path.starts_with(b"/proc/") {
        return None;
    }
    if proc_cmdline::is_cmdline(path) {
        return cmdline_copy(host, path, cloexec);
    }
    status_copy(host, path, cloexec)
}

fn cmdline_copy(host: *const c_char, path: &[u8], cloexec: bool) -> Option<c_int> {
    let st = state::get()?;
    let fd = open_read(host)?;
    let copy = (|| {
        let mut arena = Arena::new(CMDLINE_CHUNK).ok()?;
        let buf = arena.bytes(CMDLINE_CHUNK).ok()?;
        let len = fill(fd, buf)?;
        let launch = proc_cmdline::launch(&buf[..len], st.root)?;
        let mut name = PathBuf::new();
        let argv0 = match launch.argv0 {
            Argv0::Given(argv0) => argv0,
            Argv0::HostProgram(program) => {
                if !argv0_from_environ(path, &mut name) {
                    st.layout().to_container_into(program, &mut name).ok()?;
                }
                name.as_bytes()
            }
        };
        let out = Memfd::new(c"cmdline", cloexec)?;
        out.write_all(argv0)?;
        out.write_all(b"\0")?;
        out.write_all(&buf[launch.args_start..len])?;
        loop {
            match sys::read(fd, buf) {
                Ok(0) => break,
                Ok(n) => out.write_all(&buf[..n])?,
                Err(_) => return None,
            }
        }
        out.finish()
    })();
    sys::close(fd);
    copy
}

/// `SCAR_FC_ARGV0` from the environment of the process whose cmdline is at `cmdline`,
/// into `out`: loaders without `--argv0` leave it only there.
fn argv0_from_environ(cmdline: &[u8], out: &mut PathBuf) -> bool {
    let Some(dir) = cmdline.strip_suffix(b"cmdline") else {
        return false;
    };
    let mut value = [0_u8; PATH_MAX];
    match variable_in_environ(dir, protocol::ARGV0, &mut value) {
        Environ::Found(len) => out.set(&value[..len]).is_ok(),
        Environ::Absent | Environ::Empty => false,
    }
}

/// How many times, 200 µs apart, an environment is read again while it is empty (10 ms).
const EMPTY_ENVIRON_TRIES: usize = 50;

/// What `/proc/PID/exe` names for another program of the container, when `link` is such a
/// link (`rootfs_paths::proc_exe`): its length in `out`, or `None` to keep the kernel's.
pub fn program_of_process(link: &[u8], out: &mut [u8]) -> Option<usize> {
    if !proc_exe::names_a_process_exe(link) {
        return None;
    }
    let dir = proc_exe::process_dir(link)?;
    for _ in 0..EMPTY_ENVIRON_TRIES {
        match variable_in_environ(dir, protocol::EXE, out) {
            Environ::Found(len) => return Some(len),
            Environ::Absent => return None,
            // Read in the middle of its exec: the kernel names the new program, and closes
            // the caller's close-on-exec pipe (what `subprocess` waits for), before it has
            // placed the new environment.
            Environ::Empty => sys::pause(200_000),
        }
    }
    None
}

/// What a process's environment file said about a variable.
enum Environ {
    /// Its value's length.
    Found(usize),
    /// Not there, the process is gone or unreadable, or the value does not fit.
    Absent,
    /// The file was empty: the process is between two programs (or a zombie).
    Empty,
}

/// `var`'s value in the environment that the process in `dir` (`/proc/PID/`, with its `/`)
/// started with, into `out`.
fn variable_in_environ(dir: &[u8], var: protocol::Var, out: &mut [u8]) -> Environ {
    let mut environ = PathBuf::new();
    if environ
        .set(dir)
        .and_then(|()| environ.push(b"environ"))
        .is_err()
    {
        return Environ::Absent;
    }
    let Some(fd) = open_read(environ.as_c_str().as_ptr()) else {
        return Environ::Absent;
    };
    let mut finder = Finder::new(var.assignment);
    let mut chunk = [0_u8; 4096];
    let mut read_any = false;
    let found = loop {
        match sys::read(fd, &mut chunk) {
            Ok(0) if !read_any => break Environ::Empty,
            Ok(0) => break finder.finish().map_or(Environ::Absent, Environ::Found),
            Ok(n) => {
                read_any = true;
                match finder.feed(&chunk[..n], out) {
                    Some(Ok(len)) => break Environ::Found(len),
                    Some(Err(_)) => break Environ::Absent,
                    None => {}
                }
            }
            Err(_) => break Environ::Absent,
        }
    };
    sys::close(fd);
    found
}

fn status_copy(host: *const c_char, path: &[u8], cloexec: bool) -> Option<c_int> {
    if !fakeroot::active() {
        return None;
    }
    // SAFETY: raw getpid, which cannot fail.
    let own_pid = || unsafe { raw_syscall!(libc::SYS_getpid) } as u32;
    let whose = proc_status::whose(path, own_pid)?;

    let mut kernel = [0_u8; STATUS_MAX];
    let len = read_whole(host, &mut kernel)?;
    let own = fakeroot::current();
    let ids = match whose {
        Whose::This => Ids::Own {
            uids: own.uids,
            gids: own.gids,
            groups: own.groups(),
        },
        Whose::Other => Ids::Mapped {
            // SAFETY: raw getuid/getgid: the kernel's ids, not the fake ones.
            lambda_uid: unsafe { raw_syscall!(libc::SYS_getuid) } as u32,
            // SAFETY: as above.
            lambda_gid: unsafe { raw_syscall!(libc::SYS_getgid) } as u32,
        },
    };
    let mut out = [0_u8; STATUS_MAX];
    let out_len = proc_status::rewrite(&kernel[..len], ids, &mut out).ok()?;
    let copy = Memfd::new(c"status", cloexec)?;
    copy.write_all(&out[..out_len])?;
    copy.finish()
}

/// The whole file at `host`, or `None` when it does not fit (or cannot be read).
fn read_whole(host: *const c_char, buf: &mut [u8; STATUS_MAX]) -> Option<usize> {
    let fd = open_read(host)?;
    let filled = fill(fd, buf).filter(|&n| n < buf.len());
    sys::close(fd);
    filled
}

fn open_read(host: *const c_char) -> Option<c_int> {
    // SAFETY: raw openat of a NUL-terminated path.
    let fd = unsafe {
        raw_syscall!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            host,
            libc::O_RDONLY | libc::O_CLOEXEC
        )
    };
    (fd >= 0).then_some(fd as c_int)
}

/// Reads until `buf` is full or the file ends; the length read.
fn fill(fd: c_int, buf: &mut [u8]) -> Option<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match sys::read(fd, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(_) => return None,
        }
    }
    Some(filled)
}

/// The copy being written; closed unless [`Memfd::finish`] hands it out.
struct Memfd(c_int);

impl Memfd {
    fn new(name: &std::ffi::CStr, cloexec: bool) -> Option<Self> {
        let flags = if cloexec { libc::MFD_CLOEXEC } else { 0 };
        // SAFETY: raw memfd_create with a NUL-terminated name.
        let fd = unsafe { raw_syscall!(libc::SYS_memfd_create, name.as_ptr(), flags) };
        (fd >= 0).then(|| Self(fd as c_int))
    }

    fn write_all(&self, mut bytes: &[u8]) -> Option<()> {
        while !bytes.is_empty() {
            // SAFETY: a write from a live slice to our descriptor.
            let n = unsafe { raw_syscall!(libc::SYS_write, self.0, bytes.as_ptr(), bytes.len()) };
            if n <= 0 {
                return None;
            }
            bytes = &bytes[n as usize..];
        }
        Some(())
    }

    /// Rewound to its start, for the caller to read.
    fn finish(self) -> Option<c_int> {
        // SAFETY: a seek of our descriptor.
        if unsafe { raw_syscall!(libc::SYS_lseek, self.0, 0_i64, libc::SEEK_SET) } < 0 {
            return None;
        }
        let fd = self.0;
        std::mem::forget(self);
        Some(fd)
    }
}

impl Drop for Memfd {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}
