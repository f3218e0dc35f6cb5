//! `shm_open`, `sem_open` and their kin, implemented over the container's /dev/shm.
//!
//! glibc and musl build `/dev/shm/NAME` themselves and open it with an internal call that
//! no wrapper sees, so on Lambda, which has no /dev/shm, every named semaphore fails
//! (Python's `multiprocessing` Pool, Queue and Lock, joblib, `concurrent.futures`). Here the
//! name goes through the same path rules as every other path, to the directory bootstrap
//! mounts at /dev/shm (`rootfs_paths::shm`), and the file is made as libc makes it: a
//! semaphore is written whole under a temporary name, mapped, then linked to its name, so
//! that a process opening it by name never sees it half made.
//!
//! As both libcs do, the process keeps a table of the semaphores it has open: a second
//! `sem_open` of one file (in a forked child too) hands back the first address, by each
//! libc's rule for names (`shm::mapping_key`), and `sem_close` unmaps it at the last close.
//! Without a rootfs every call is libc's.

use std::ffi::{c_char, c_int, c_uint};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use libc::{mode_t, sem_t};
use rootfs_paths::PathBuf;
use rootfs_paths::shm::{self, Kind, Libc, NameError};

use crate::state::{self, State};
use crate::sys::{self, fail, raw_syscall, real};

/// Whose names these are: each build of the shim runs in processes of its own libc.
fn libc(st: &State) -> Libc {
    if cfg!(target_env = "gnu") {
        Libc::Glibc(st.glibc.0, st.glibc.1)
    } else {
        Libc::Musl
    }
}

/// Every mapping `sem_open` returns starts a page; anything else was not ours to unmap.
const MIN_PAGE: usize = 4096;

/// One open semaphore: what tells it apart (its file's device and inode, and the name's
/// `shm::mapping_key`), where it is mapped, and how many opens have not closed.
struct Open {
    key: (u64, u64, u64),
    addr: usize,
    count: usize,
}

/// The semaphores this process has open. A lock and allocation, never on the exec path.
static OPEN: Mutex<Vec<Open>> = Mutex::new(Vec::new());

/// The address of the semaphore in `fd`'s file opened as `key` names it: the one already
/// mapped, its count raised, or a new mapping, kept in the table.
fn map_once(fd: c_int, key: u64) -> Result<*mut sem_t, c_int> {
    let key = sys::kernel_stat(fd, c"".as_ptr(), libc::AT_EMPTY_PATH)
        .map(|st| (st.st_dev, st.st_ino, key))?;
    let mut table = OPEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(open) = table.iter_mut().find(|o| o.key == key) {
        open.count += 1;
        return Ok(open.addr as *mut sem_t);
    }
    let sem = map(fd)?;
    table.push(Open {
        key,
        addr: sem as usize,
        count: 1,
    });
    Ok(sem)
}

/// Whether `sem_close` of `sem` should unmap it: at its last close, or when it was never in
/// the table.
fn last_close(sem: *mut sem_t) -> bool {
    let mut table = OPEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(at) = table.iter().position(|o| o.addr == sem as usize) else {
        return true;
    };
    match table.get_mut(at) {
        Some(open) if open.count > 1 => {
            open.count -= 1;
            false
        }
        // `at` was found just above, under the same lock.
        _ => {
            table.swap_remove(at);
            true
        }
    }
}

/// The host path of a named object, or libc's errno for a name it refuses.
fn host_path(st: &State, name: *const c_char, kind: Kind, out: &mut PathBuf) -> Result<(), c_int> {
    if name.is_null() {
        return Err(libc::EINVAL);
    }
    let mut container = PathBuf::new();
    // SAFETY: a non-null name is NUL-terminated (the functions' contract).
    shm::container_path(unsafe { sys::bytes(name) }, kind, libc(st), &mut container).map_err(
        |e| match e {
            NameError::Invalid => libc::EINVAL,
            NameError::TooLong => libc::ENAMETOOLONG,
        },
    )?;
    st.layout()
        .to_host(container.as_bytes(), out)
        .map_err(|_| libc::ENAMETOOLONG)
}

fn open(path: &PathBuf, flags: c_int, mode: mode_t) -> Result<c_int, c_int> {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { raw_syscall!(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags, mode) };
    if fd < 0 {
        Err(sys::errno())
    } else {
        Ok(fd as c_int)
    }
}

fn unlink(path: &PathBuf) -> Result<(), c_int> {
    // SAFETY: a NUL-terminated path.
    if unsafe { raw_syscall!(libc::SYS_unlinkat, libc::AT_FDCWD, path.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    // As libc: a sticky directory's refusal reads as a permission error.
    match sys::errno() {
        libc::EPERM => Err(libc::EACCES),
        code => Err(code),
    }
}

/// # Safety
/// libc's contract for `shm_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shm_open(name: *const c_char, oflag: c_int, mode: mode_t) -> c_int {
    let Some(st) = state::get() else {
        let Some(next) = real!(shm_open: fn(*const c_char, c_int, mode_t) -> c_int) else {
            return fail(libc::ENOSYS, -1);
        };
        // SAFETY: the caller's arguments.
        return unsafe { next(name, oflag, mode) };
    };
    let mut path = PathBuf::new();
    host_path(st, name, Kind::Memory, &mut path)
        .and_then(|()| open(&path, oflag | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode))
        .unwrap_or_else(|code| fail(code, -1))
}

macro_rules! unlink_named {
    ($($name:ident => $kind:expr),*) => {$(
        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(name: *const c_char) -> c_int {
            let Some(st) = state::get() else {
                let Some(next) = real!($name: fn(*const c_char) -> c_int) else {
                    return fail(libc::ENOSYS, -1);
                };
                // SAFETY: the caller's argument.
                return unsafe { next(name) };
            };
            let mut path = PathBuf::new();
            match host_path(st, name, $kind, &mut path).and_then(|()| unlink(&path)) {
                Ok(()) => 0,
                Err(code) => fail(code, -1),
            }
        }
    )*};
}
unlink_named!(shm_unlink => Kind::Memory, sem_unlink => Kind::Semaphore);

/// `sem_open(name, oflag, [mode, value])`: C-variadic, but on x86_64 and aarch64 the two
/// optional arguments arrive in the registers of fixed ones, and are read only with
/// `O_CREAT`, as libc reads them.
///
/// # Safety
/// libc's contract for `sem_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_open(
    name: *const c_char,
    oflag: c_int,
    mode: mode_t,
    value: c_uint,
) -> *mut sem_t {
    let Some(st) = state::get() else {
        let Some(next) = real!(sem_open: fn(*const c_char, c_int, mode_t, c_uint) -> *mut sem_t)
        else {
            return fail(libc::ENOSYS, libc::SEM_FAILED);
        };
        // SAFETY: the caller's arguments.
        return unsafe { next(name, oflag, mode, value) };
    };
    let mut path = PathBuf::new();
    if let Err(code) = host_path(st, name, Kind::Semaphore, &mut path) {
        return fail(code, libc::SEM_FAILED);
    }
    // SAFETY: host_path refused a null name; a name is NUL-terminated (the contract).
    let key = shm::mapping_key(unsafe { sys::bytes(name) }, libc(st));
    let create = oflag & libc::O_CREAT != 0;
    let exclusive = create && oflag & libc::O_EXCL != 0;
    // Made before the name is touched, so that a refused value leaves nothing behind.
    let initial = match create.then(|| initial_state(value)).transpose() {
        Ok(initial) => initial,
        Err(code) => return fail(code, libc::SEM_FAILED),
    };
    // Another process may make or remove the name between the two attempts; as libc,
    // go round until one of them settles it.
    loop {
        if !exclusive {
            match open_existing(&path, oflag, key) {
                Ok(sem) => return sem,
                Err(libc::ENOENT) if create => {}
                Err(code) => return fail(code, libc::SEM_FAILED),
            }
        }
        // Without O_CREAT the open above has answered.
        let Some(initial) = &initial else {
            return fail(libc::ENOENT, libc::SEM_FAILED);
        };
        match create_new(&path, mode, initial, key) {
            Ok(sem) => return sem,
            Err(libc::EEXIST) if !exclusive => {}
            Err(code) => return fail(code, libc::SEM_FAILED),
        }
    }
}

/// # Safety
/// libc's contract for `sem_close`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_close(sem: *mut sem_t) -> c_int {
    if state::get().is_none() {
        let Some(next) = real!(sem_close: fn(*mut sem_t) -> c_int) else {
            return fail(libc::ENOSYS, -1);
        };
        // SAFETY: the caller's argument.
        return unsafe { next(sem) };
    }
    if sem.is_null() || !(sem as usize).is_multiple_of(MIN_PAGE) {
        return fail(libc::EINVAL, -1);
    }
    if !last_close(sem) {
        return 0;
    }
    // SAFETY: a page-aligned semaphore is one `sem_open` mapped (the caller's contract: it
    // came from sem_open and is not used after this).
    let ret = unsafe { raw_syscall!(libc::SYS_munmap, sem, size_of::<sem_t>()) };
    if ret < 0 { -1 } else { 0 }
}

/// What a new process-shared semaphore of `value` holds, as the running libc lays it out:
/// glibc and musl differ, and glibc changed its layout in 2.21, so its own `sem_init`
/// writes it (it also refuses a value above `SEM_VALUE_MAX`).
fn initial_state(value: c_uint) -> Result<sem_t, c_int> {
    let Some(init) = real!(sem_init: fn(*mut sem_t, c_int, c_uint) -> c_int) else {
        return Err(libc::ENOSYS);
    };
    // SAFETY: all zeros is a valid (empty) sem_t, which sem_init overwrites.
    let mut sem: sem_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid sem_t to initialise, shared between processes.
    if unsafe { init(&raw mut sem, 1, value) } != 0 {
        return Err(sys::errno());
    }
    Ok(sem)
}

fn open_existing(path: &PathBuf, oflag: c_int, key: u64) -> Result<*mut sem_t, c_int> {
    let flags = (oflag & !(libc::O_CREAT | libc::O_EXCL | libc::O_ACCMODE | libc::O_TRUNC))
        | libc::O_NOFOLLOW
        | libc::O_RDWR
        | libc::O_CLOEXEC;
    let fd = open(path, flags, 0)?;
    let mapped = map_once(fd, key);
    sys::close(fd);
    mapped
}

fn map(fd: c_int) -> Result<*mut sem_t, c_int> {
    // SAFETY: a new shared mapping of an open file; no existing memory is touched.
    let addr = unsafe {
        raw_syscall!(
            libc::SYS_mmap,
            0,
            size_of::<sem_t>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0
        )
    };
    if addr < 0 {
        Err(sys::errno())
    } else {
        Ok(addr as *mut sem_t)
    }
}

/// Makes the semaphore under a temporary name beside `path`, maps it and links it to
/// `path`: `EEXIST` when the name was taken meanwhile.
fn create_new(
    path: &PathBuf,
    mode: mode_t,
    initial: &sem_t,
    key: u64,
) -> Result<*mut sem_t, c_int> {
    static SERIAL: AtomicU32 = AtomicU32::new(0);
    let mut temp = PathBuf::new();
    let fd = loop {
        temp_name(path, SERIAL.fetch_add(1, Ordering::Relaxed), &mut temp)?;
        let flags =
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        match open(&temp, flags, mode) {
            Err(libc::EEXIST) => continue,
            other => break other?,
        }
    };
    // SAFETY: a sem_t is plain bytes, readable whole.
    let bytes = unsafe {
        std::slice::from_raw_parts((initial as *const sem_t).cast::<u8>(), size_of::<sem_t>())
    };
    let made = write_all(fd, bytes).and_then(|()| map_once(fd, key));
    let linked = made.and_then(|sem| {
        // SAFETY: two NUL-terminated paths.
        let ret = unsafe {
            raw_syscall!(
                libc::SYS_linkat,
                libc::AT_FDCWD,
                temp.as_ptr(),
                libc::AT_FDCWD,
                path.as_ptr(),
                0
            )
        };
        if ret < 0 {
            let code = sys::errno();
            // A new file's mapping, in the table once: out of it, then unmapped.
            if last_close(sem) {
                // SAFETY: the mapping just made, not yet handed out.
                unsafe { raw_syscall!(libc::SYS_munmap, sem, size_of::<sem_t>()) };
            }
            Err(code)
        } else {
            Ok(sem)
        }
    });
    let _ = unlink(&temp);
    sys::close(fd);
    linked
}

/// `path` with its last component replaced by `.sem.PID.SERIAL`, which no name of
/// `sem_open`'s can be (they all start `sem.`).
fn temp_name(path: &PathBuf, serial: u32, out: &mut PathBuf) -> Result<(), c_int> {
    let (mut pid_digits, mut serial_digits) = ([0u8; 20], [0u8; 20]);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    let bytes = path.as_bytes();
    let dir = &bytes[..bytes.iter().rposition(|&b| b == b'/').unwrap_or(0)];
    out.set(dir)
        .and_then(|()| out.push(b"/.sem."))
        .and_then(|()| out.push(rootfs_paths::buf::decimal(pid, &mut pid_digits)))
        .and_then(|()| out.push(b"."))
        .and_then(|()| {
            out.push(rootfs_paths::buf::decimal(
                u64::from(serial),
                &mut serial_digits,
            ))
        })
        .map_err(|_| libc::ENAMETOOLONG)
}

fn write_all(fd: c_int, mut bytes: &[u8]) -> Result<(), c_int> {
    while !bytes.is_empty() {
        // SAFETY: a valid slice.
        let n = unsafe { raw_syscall!(libc::SYS_write, fd, bytes.as_ptr(), bytes.len()) };
        match n {
            n if n > 0 => bytes = &bytes[n as usize..],
            0 => return Err(libc::ENOSPC),
            _ if sys::errno() == libc::EINTR => {}
            _ => return Err(sys::errno()),
        }
    }
    Ok(())
}
