//! The few primitives the wrappers stand on: the next definition of a symbol, errno, and
//! raw syscalls that never re-enter the shim.
//!
//! The shim exports its own `syscall()` (the gate, `gate.rs`), so a `libc::syscall` made
//! here would bind to it and come back in: every call the shim makes for itself is the
//! instruction, through [`raw_syscall!`].

use std::ffi::{CStr, c_char, c_int, c_long};

use rootfs_paths::PathBuf;

/// Resolves the next definition of a libc function (the one this shim hides), once.
/// Yields `None` when the running libc lacks it (e.g. `stat` before glibc 2.33).
macro_rules! real {
    ($name:ident : fn($($arg:ty),*) -> $ret:ty) => {{
        static ADDR: ::std::sync::atomic::AtomicUsize = ::std::sync::atomic::AtomicUsize::new(0);
        let mut addr = ADDR.load(::std::sync::atomic::Ordering::Relaxed);
        if addr == 0 {
            // SAFETY: a NUL-terminated literal name; RTLD_NEXT is valid in a shared object.
            addr = unsafe {
                ::libc::dlsym(::libc::RTLD_NEXT, concat!(stringify!($name), "\0").as_ptr().cast())
            } as usize;
            ADDR.store(addr, ::std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: the symbol of that name has this C signature in every libc we load into.
        (addr != 0).then(|| unsafe {
            ::std::mem::transmute::<usize, unsafe extern "C" fn($($arg),*) -> $ret>(addr)
        })
    }};
}
pub(crate) use real;

/// `raw_syscall!(SYS_x, args…)`: the call made with the `syscall` instruction itself, with
/// libc's conventions for the result (`-1` and errno on failure). At most six arguments,
/// each an integer or a pointer.
macro_rules! raw_syscall {
    ($nr:expr $(, $arg:expr)* $(,)?) => {{
        let mut args = [0usize; 6];
        let given = [$($arg as usize),*];
        args[..given.len()].copy_from_slice(&given);
        $crate::sys::raw(($nr) as usize, args)
    }};
}
pub(crate) use raw_syscall;

unsafe extern "C" {
    static environ: *const *const c_char;
}

/// The process's environment: libc's `environ`, NULL or a NULL-terminated array of
/// NUL-terminated strings.
pub fn environment() -> *const *const c_char {
    // SAFETY: reading the process's environment pointer.
    unsafe { environ }
}

/// The body of [`raw_syscall!`].
///
/// # Safety
/// The kernel's contract for call `nr` with these arguments.
pub unsafe fn raw(nr: usize, args: [usize; 6]) -> c_long {
    let [a, b, c, d, e, f] = args;
    // SAFETY: guaranteed by the caller.
    let ret = unsafe { syscalls::raw::syscall6(nr, a, b, c, d, e, f) } as isize;
    // The kernel returns -4095..-1 for an error, as `-errno`.
    if (-4095..0).contains(&ret) {
        set_errno(-ret as c_int);
        -1
    } else {
        ret as c_long
    }
}

pub fn set_errno(code: c_int) {
    // SAFETY: __errno_location exists in glibc and musl and returns this thread's errno.
    let slot = unsafe { libc::__errno_location() };
    // SAFETY: that slot is valid and writable for this thread's lifetime.
    unsafe { *slot = code };
}

pub fn errno() -> c_int {
    // SAFETY: as above.
    let slot = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    unsafe { *slot }
}

/// Sets errno and returns the caller's failure value.
pub fn fail<T>(code: c_int, value: T) -> T {
    set_errno(code);
    value
}

fn check(ret: c_long) -> Result<usize, c_int> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret as usize)
    }
}

pub fn open_read(path: &CStr) -> Result<c_int, c_int> {
    // SAFETY: raw openat on a NUL-terminated path.
    let ret = unsafe {
        raw_syscall!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    check(ret).map(|fd| fd as c_int)
}

pub fn read(fd: c_int, buf: &mut [u8]) -> Result<usize, c_int> {
    // SAFETY: the buffer is valid for its length.
    check(unsafe { raw_syscall!(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) })
}

/// Reads up to `buf.len()` bytes of a file from `offset`; returns how many.
pub fn read_at(path: &CStr, offset: usize, buf: &mut [u8]) -> Result<usize, c_int> {
    let fd = open_read(path)?;
    let result = fill(fd, buf, Some(offset));
    close(fd);
    result
}

/// Reads into `buf` until it is full or the file ends, from `offset` (`pread`) or from
/// the file's position (`read`); a directory is EACCES, as in execve.
fn fill(fd: c_int, buf: &mut [u8], offset: Option<usize>) -> Result<usize, c_int> {
    let mut filled = 0;
    loop {
        let rest = &mut buf[filled..];
        let ret = match offset {
            // SAFETY: the buffer is valid for its length; pread64 takes the offset as a word.
            Some(at) => check(unsafe {
                raw_syscall!(
                    libc::SYS_pread64,
                    fd,
                    rest.as_mut_ptr(),
                    rest.len(),
                    at + filled
                )
            }),
            None => read(fd, rest),
        };
        match ret {
            Ok(0) => return Ok(filled),
            Ok(n) => {
                filled += n;
                if filled == buf.len() {
                    return Ok(filled);
                }
            }
            Err(libc::EINTR) => {}
            Err(libc::EISDIR) => return Err(libc::EACCES),
            Err(e) => return Err(e),
        }
    }
}

pub fn close(fd: c_int) {
    // SAFETY: closing an fd this module opened.
    unsafe { raw_syscall!(libc::SYS_close, fd) };
}

/// Sleeps `nanos` nanoseconds (less than a second).
pub fn pause(nanos: i64) {
    let wait = libc::timespec {
        tv_sec: 0,
        tv_nsec: nanos,
    };
    // SAFETY: nanosleep reads the timespec and, given NULL, writes nothing back.
    unsafe {
        raw_syscall!(
            libc::SYS_nanosleep,
            &raw const wait,
            std::ptr::null::<libc::timespec>()
        )
    };
}

/// The descriptor's flags (`FD_CLOEXEC`).
pub fn descriptor_flags(fd: c_int) -> Result<c_int, c_int> {
    // SAFETY: F_GETFD takes no argument and touches no memory.
    check(unsafe { raw_syscall!(libc::SYS_fcntl, fd, libc::F_GETFD) }).map(|flags| flags as c_int)
}

pub fn set_descriptor_flags(fd: c_int, flags: c_int) {
    // SAFETY: F_SETFD takes an integer and touches no memory.
    unsafe { raw_syscall!(libc::SYS_fcntl, fd, libc::F_SETFD, flags) };
}

/// Reads up to `buf.len()` bytes from the start of a file, and the kernel's name for it
/// (symlinks followed) into `name`; a directory is EACCES, as in execve.
pub fn read_head(path: &CStr, buf: &mut [u8], name: &mut [u8]) -> Result<(usize, usize), c_int> {
    let fd = open_read(path)?;
    let result = fill(fd, buf, None);
    let mut link = PathBuf::new();
    let name_len = fd_link(fd, &mut link)
        .and_then(|()| readlink(link.as_c_str(), name))
        .unwrap_or(0);
    close(fd);
    result.map(|len| (len, name_len))
}

pub fn executable(path: &CStr) -> Result<(), c_int> {
    // SAFETY: raw faccessat on a NUL-terminated path.
    check(unsafe {
        raw_syscall!(
            libc::SYS_faccessat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::X_OK
        )
    })
    .map(drop)
}

pub fn readlink(path: &CStr, buf: &mut [u8]) -> Result<usize, c_int> {
    // SAFETY: a NUL-terminated path; the buffer is valid for its length.
    check(unsafe {
        raw_syscall!(
            libc::SYS_readlinkat,
            libc::AT_FDCWD,
            path.as_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    })
}

/// The kernel's cwd (a host path), without the NUL.
pub fn getcwd(buf: &mut [u8]) -> Result<usize, c_int> {
    // SAFETY: the buffer is valid for its length; the kernel returns the length with NUL.
    let n = check(unsafe { raw_syscall!(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) })?;
    Ok(n.saturating_sub(1))
}

/// `execve` by the instruction itself: the exec the plan made, or a passthrough.
///
/// # Safety
/// `argv` and `envp` are NULL-terminated arrays of NUL-terminated strings (or, as the
/// kernel allows, null).
pub unsafe fn execve(path: &CStr, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    // SAFETY: a NUL-terminated path; the arrays as the caller guarantees. Returns only on
    // failure, with errno set.
    unsafe { raw_syscall!(libc::SYS_execve, path.as_ptr(), argv, envp) as c_int }
}

/// `/proc/self/fd/FD` into `out`: the kernel's name for what `fd` refers to, as a link.
pub fn fd_link(fd: c_int, out: &mut PathBuf) -> Result<(), c_int> {
    let mut digits = [0u8; 20];
    out.set(b"/proc/self/fd/")
        .and_then(|()| out.push(rootfs_paths::buf::decimal(fd as u64, &mut digits)))
        .map_err(|_| libc::ENAMETOOLONG)
}

/// Writes one message to stderr without buffering or allocating.
pub fn write_stderr(parts: &[&[u8]]) {
    for part in parts {
        // SAFETY: writing a valid slice to fd 2.
        unsafe { raw_syscall!(libc::SYS_write, 2, part.as_ptr(), part.len()) };
    }
}

/// The kernel's stat of `host` (relative to `dirfd`, `flags` as fstatat's).
pub fn kernel_stat(dirfd: c_int, host: *const c_char, flags: c_int) -> Result<libc::stat, c_int> {
    // SAFETY: a zeroed struct stat is a valid value for the kernel to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: raw fstatat into a struct stat, the kernel's layout on these architectures.
    let ret = unsafe { raw_syscall!(libc::SYS_newfstatat, dirfd, host, &raw mut st, flags) };
    if ret < 0 { Err(errno()) } else { Ok(st) }
}

/// Bytes of a C string, without the NUL.
///
/// # Safety
/// `ptr` must be non-null and NUL-terminated.
pub unsafe fn bytes<'a>(ptr: *const c_char) -> &'a [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { std::ffi::CStr::from_ptr(ptr) }.to_bytes()
}
