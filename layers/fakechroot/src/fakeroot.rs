//! Fake root (`SCAR_FAKEROOT=1`): the container's programs see themselves as root, so that
//! package managers (apt, dpkg, pip) install into the image as they do in a build.
//!
//! * **Credentials** are kept per process: every `get*id` answers the fake ones, which
//!   start at 0, and the `set*id` family changes them with the kernel's rules for a
//!   process of that effective uid (so apt's privilege drop to `_apt` succeeds, and its
//!   check that root cannot be regained holds). An exec hands them to the new program
//!   (`SCAR_FC_CREDS`), as the kernel keeps ids through `execve`; `/proc/<pid>/status` shows
//!   them (`proc_files.rs`).
//! * **Ownership** set by `chown` and its kin is remembered in a file shared by every
//!   process of the image (a lock-free table of `(dev, inode) → (uid, gid)` mapped into
//!   each), and every stat reports it; a file the Lambda user owns and nobody chowned
//!   belongs to root, as in a build, unless a process whose fake ids are not root's made
//!   it (it is then recorded as theirs, as the kernel gives a new file its creator's ids).
//!
//! What it cannot give: privileges. Device nodes, `chroot`, mounts and setuid executables
//! still fail or behave as for the Lambda user (see docs/fakeroot.md).

use std::ffi::{CStr, c_char, c_int};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use libc::{gid_t, size_t, uid_t};
use rootfs_paths::creds::{Creds, MAX_GROUPS};
use rootfs_paths::{PathBuf, protocol};

use crate::sys::{self, fail, raw_syscall, real};
use crate::{lazy, state, translate};

/// True when fake root is on for this process.
pub fn active() -> bool {
    state::get().is_some_and(|st| st.fakeroot.is_some())
}

// ---------------------------------------------------------------------------------------
// Credentials.

/// ruid, euid, suid, rgid, egid, sgid: fake, per process, inherited by fork.
static IDS: [AtomicU32; 6] = [const { AtomicU32::new(0) }; 6];
const RUID: usize = 0;
const EUID: usize = 1;
const SUID: usize = 2;
const RGID: usize = 3;
const EGID: usize = 4;
const SGID: usize = 5;
const KEEP: u32 = u32::MAX;

fn id(which: usize) -> u32 {
    IDS[which].load(Ordering::Relaxed)
}

macro_rules! id_getters {
    ($($name:ident => $which:expr;)*) => {$(
        /// # Safety
        /// None beyond libc's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name() -> u32 {
            if active() {
                return id($which);
            }
            match real!($name: fn() -> u32) {
                // SAFETY: libc's function of the same name.
                Some(next) => unsafe { next() },
                None => 0,
            }
        }
    )*};
}

id_getters! {
    getuid => RUID;
    geteuid => EUID;
    getgid => RGID;
    getegid => EGID;
}

/// This process's fake credentials.
pub fn current() -> Creds {
    let mut creds = Creds::ROOT;
    creds.uids = [id(RUID), id(EUID), id(SUID)];
    creds.gids = [id(RGID), id(EGID), id(SGID)];
    creds.group_count = GROUP_COUNT.load(Ordering::Relaxed).min(MAX_GROUPS);
    for (slot, group) in creds.groups.iter_mut().zip(&GROUPS) {
        *slot = group.load(Ordering::Relaxed);
    }
    creds
}

/// At load: the credentials the exec that started this program handed on, if any.
pub fn adopt_inherited() {
    if !active() {
        return;
    }
    // SAFETY: getenv at load time, before the program can change the environment.
    let value = unsafe { libc::getenv(protocol::CREDS.env.as_ptr()) };
    if value.is_null() {
        return;
    }
    // SAFETY: a non-null getenv result is NUL-terminated.
    let Some(creds) = Creds::parse(unsafe { sys::bytes(value) }) else {
        return;
    };
    for (slot, id) in IDS.iter().zip(creds.uids.iter().chain(&creds.gids)) {
        slot.store(*id, Ordering::Relaxed);
    }
    for (slot, group) in GROUPS.iter().zip(creds.groups()) {
        slot.store(*group, Ordering::Relaxed);
    }
    GROUP_COUNT.store(creds.group_count, Ordering::Relaxed);
}

/// For an exec's environment: `SCAR_FC_CREDS`'s value, written into `out`, when the new
/// program must not start as root. Reads atomics only (the exec path may be a vfork child).
pub fn creds_to_hand_on(out: &mut [u8]) -> Option<&[u8]> {
    if !active() {
        return None;
    }
    let next = current().after_exec();
    if next == Creds::ROOT {
        return None;
    }
    next.write(out)
}

/// `getresuid`/`getresgid`: the three ids of a kind from `first`.
fn get_three(first: usize, r: *mut u32, e: *mut u32, s: *mut u32) -> c_int {
    for (i, out) in [r, e, s].into_iter().enumerate() {
        if out.is_null() {
            return fail(libc::EFAULT, -1);
        }
        // SAFETY: non-null pointers the caller gave for one id each.
        unsafe { *out = id(first + i) };
    }
    0
}

/// The kernel's rule for `setres*id` (and the others, which are special cases of it): a
/// process whose fake euid is 0 may set anything; others only ids they already hold.
fn set_three(first: usize, wanted: [u32; 3]) -> c_int {
    let held = [id(first), id(first + 1), id(first + 2)];
    let privileged = id(EUID) == 0;
    if !privileged && wanted.iter().any(|&w| w != KEEP && !held.contains(&w)) {
        return fail(libc::EPERM, -1);
    }
    for (i, w) in wanted.into_iter().enumerate() {
        if w != KEEP {
            IDS[first + i].store(w, Ordering::Relaxed);
        }
    }
    0
}

/// `setuid`/`setgid`: all three when privileged, else only the effective one.
fn set_one(first: usize, value: u32) -> c_int {
    if id(EUID) == 0 {
        set_three(first, [value, value, value])
    } else {
        set_three(first, [KEEP, value, KEEP])
    }
}

/// `setreuid`/`setregid`: the saved id follows the effective one when the real one is set
/// or the effective one changes to something other than the old real one.
fn set_two(first: usize, real_id: u32, effective: u32) -> c_int {
    let saved = if real_id != KEEP || (effective != KEEP && effective != id(first)) {
        if effective == KEEP {
            id(first + 1)
        } else {
            effective
        }
    } else {
        KEEP
    };
    set_three(first, [real_id, effective, saved])
}

macro_rules! with_fallback {
    ($name:ident($($arg:ident: $t:ty),*) => $fake:expr) => {
        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $t),*) -> c_int {
            if active() {
                return $fake;
            }
            match real!($name: fn($($t),*) -> c_int) {
                // SAFETY: libc's function of the same name, with the caller's arguments.
                Some(next) => unsafe { next($($arg),*) },
                None => fail(libc::ENOSYS, -1),
            }
        }
    };
}

with_fallback!(getresuid(r: *mut u32, e: *mut u32, s: *mut u32) => get_three(RUID, r, e, s));
with_fallback!(getresgid(r: *mut u32, e: *mut u32, s: *mut u32) => get_three(RGID, r, e, s));
with_fallback!(setuid(uid: uid_t) => set_one(RUID, uid));
with_fallback!(setgid(gid: gid_t) => set_one(RGID, gid));
with_fallback!(seteuid(uid: uid_t) => set_three(RUID, [KEEP, uid, KEEP]));
with_fallback!(setegid(gid: gid_t) => set_three(RGID, [KEEP, gid, KEEP]));
with_fallback!(setreuid(r: uid_t, e: uid_t) => set_two(RUID, r, e));
with_fallback!(setregid(r: gid_t, e: gid_t) => set_two(RGID, r, e));
with_fallback!(setresuid(r: uid_t, e: uid_t, s: uid_t) => set_three(RUID, [r, e, s]));
with_fallback!(setresgid(r: gid_t, e: gid_t, s: gid_t) => set_three(RGID, [r, e, s]));
with_fallback!(setgroups(size: size_t, list: *const gid_t) => set_groups(size, list));
with_fallback!(getgroups(size: c_int, list: *mut gid_t) => get_groups(size, list));

/// `initgroups` (`su`, `runuser`, `login`, `setpriv --init-groups`): the user's groups from
/// the image's `/etc/group`, as `getgrouplist` lists them there; libc's own would read the
/// host's files. Under fake root they become the fake groups; otherwise, inside the
/// container, they go to the kernel's `setgroups`, which refuses the Lambda user as libc's
/// `initgroups` would have once it had read the host's files.
///
/// # Safety
/// libc's contract: `user` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn initgroups(user: *const c_char, group: gid_t) -> c_int {
    if active() {
        if id(EUID) != 0 {
            return fail(libc::EPERM, -1);
        }
        let (list, count) = image_groups(user, group);
        return set_groups(count, list.as_ptr());
    }
    if crate::state::get().is_some() && !user.is_null() {
        let (list, count) = image_groups(user, group);
        return match real!(setgroups: fn(size_t, *const gid_t) -> c_int) {
            // SAFETY: libc's function, our list of `count` groups.
            Some(next) => unsafe { next(count, list.as_ptr()) },
            None => fail(libc::ENOSYS, -1),
        };
    }
    match real!(initgroups: fn(*const c_char, gid_t) -> c_int) {
        // SAFETY: libc's function, the caller's arguments.
        Some(next) => unsafe { next(user, group) },
        None => fail(libc::ENOSYS, -1),
    }
}

/// `user`'s groups in the image, `group` first. More than fake root holds keep the first
/// ones, as libc keeps the first `NGROUPS_MAX`.
fn image_groups(user: *const c_char, group: gid_t) -> ([gid_t; MAX_GROUPS], usize) {
    let mut list = [0 as gid_t; MAX_GROUPS];
    let mut count = MAX_GROUPS as c_int;
    // SAFETY: the caller's NUL-terminated name (initgroups' contract), our list and count.
    let listed =
        unsafe { crate::ident_list::getgrouplist(user, group, list.as_mut_ptr(), &mut count) };
    let count = if listed < 0 {
        MAX_GROUPS
    } else {
        count as usize
    };
    (list, count)
}

/// Supplementary groups: root starts in group 0 alone, as under a real chroot.
static GROUPS: [AtomicU32; MAX_GROUPS] = [const { AtomicU32::new(0) }; MAX_GROUPS];
static GROUP_COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

fn set_groups(size: size_t, list: *const gid_t) -> c_int {
    if id(EUID) != 0 {
        return fail(libc::EPERM, -1);
    }
    if size > MAX_GROUPS || (size > 0 && list.is_null()) {
        return fail(libc::EINVAL, -1);
    }
    let mut sorted = [0 as gid_t; MAX_GROUPS];
    for (i, gid) in sorted.iter_mut().enumerate().take(size) {
        // SAFETY: the caller's list holds `size` entries.
        *gid = unsafe { *list.wrapping_add(i) };
    }
    // The kernel keeps supplementary groups sorted: getgroups lists them so.
    sorted[..size].sort_unstable();
    for (slot, &gid) in GROUPS.iter().zip(&sorted[..size]) {
        slot.store(gid, Ordering::Relaxed);
    }
    GROUP_COUNT.store(size, Ordering::Relaxed);
    0
}

fn get_groups(size: c_int, list: *mut gid_t) -> c_int {
    let count = GROUP_COUNT.load(Ordering::Relaxed);
    if size == 0 {
        return count as c_int;
    }
    if size < 0 || (size as usize) < count || list.is_null() {
        return fail(libc::EINVAL, -1);
    }
    for (i, slot) in GROUPS.iter().enumerate().take(count) {
        // SAFETY: the caller's list holds `size` ≥ count entries.
        unsafe { *list.wrapping_add(i) = slot.load(Ordering::Relaxed) };
    }
    count as c_int
}

// ---------------------------------------------------------------------------------------
// Ownership.

/// One remembered owner. `key` is written last (Release) and read first (Acquire), so a
/// reader that sees it sees the rest; `owner` is `uid << 32 | gid`, updated in place.
#[repr(C)]
struct Slot {
    key: AtomicU64,
    dev: AtomicU64,
    ino: AtomicU64,
    owner: AtomicU64,
}

/// Slots in the file, which bootstrap creates at its full size.
const SLOTS: usize = protocol::FAKEROOT_SLOTS;
const FILE_SIZE: usize = protocol::FAKEROOT_TABLE_BYTES;
const _: () = assert!(FILE_SIZE == SLOTS * size_of::<Slot>());
/// The owner of a slot whose file is gone: reads as no record (open addressing cannot
/// empty a slot without breaking the probe chains through it).
const FORGOTTEN: (u32, u32) = (u32::MAX, u32::MAX);
/// Probes before giving up (a full or pathological table): bounded work per stat.
const MAX_PROBES: usize = 4096;

struct Table {
    slots: *const Slot,
}

// SAFETY: the mapping is shared memory accessed only through atomics.
unsafe impl Sync for Table {}
// SAFETY: as above.
unsafe impl Send for Table {}

fn table() -> Option<&'static Table> {
    static TABLE: OnceLock<Option<Table>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let path = state::get()?.fakeroot?;
            let fd = open_file(path)?;
            // SAFETY: a shared read-write mapping of a file of FILE_SIZE bytes.
            let base = unsafe {
                raw_syscall!(
                    libc::SYS_mmap,
                    std::ptr::null_mut::<u8>(),
                    FILE_SIZE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0_i32,
                )
            };
            sys::close(fd);
            (base > 0).then_some(Table {
                slots: base as *const Slot,
            })
        })
        .as_ref()
}

fn open_file(path: &CStr) -> Option<c_int> {
    // SAFETY: raw openat of a NUL-terminated path.
    let fd = unsafe {
        raw_syscall!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC
        )
    };
    (fd >= 0).then_some(fd as c_int)
}

fn key_of(dev: u64, ino: u64) -> u64 {
    // A multiplicative mix; 0 marks an empty slot.
    (ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ dev.rotate_left(29)) | 1
}

impl Table {
    fn slot(&self, i: usize) -> &Slot {
        let slot = self.slots.wrapping_add(i % SLOTS);
        // SAFETY: within the mapping of SLOTS slots, which lives as long as the process.
        unsafe { &*slot }
    }

    fn lookup(&self, dev: u64, ino: u64) -> Option<(u32, u32)> {
        let key = key_of(dev, ino);
        for probe in 0..MAX_PROBES {
            let slot = self.slot(key as usize + probe);
            match slot.key.load(Ordering::Acquire) {
                0 => return None,
                k if k == key
                    && slot.dev.load(Ordering::Relaxed) == dev
                    && slot.ino.load(Ordering::Relaxed) == ino =>
                {
                    let owner = slot.owner.load(Ordering::Relaxed);
                    let owner = ((owner >> 32) as u32, owner as u32);
                    return (owner != FORGOTTEN).then_some(owner);
                }
                _ => {}
            }
        }
        None
    }

    /// Writers take the file's lock, so two never claim one slot; readers never wait.
    fn store(&self, dev: u64, ino: u64, uid: u32, gid: u32) -> bool {
        let Some(path) = state::get().and_then(|st| st.fakeroot) else {
            return false;
        };
        let Some(fd) = open_file(path) else {
            return false;
        };
        // SAFETY: flock on an fd we own; released by close.
        unsafe { raw_syscall!(libc::SYS_flock, fd, libc::LOCK_EX) };
        let key = key_of(dev, ino);
        let owner = (u64::from(uid) << 32) | u64::from(gid);
        let mut stored = false;
        for probe in 0..MAX_PROBES {
            let slot = self.slot(key as usize + probe);
            let k = slot.key.load(Ordering::Acquire);
            if k == 0 {
                slot.dev.store(dev, Ordering::Relaxed);
                slot.ino.store(ino, Ordering::Relaxed);
                slot.owner.store(owner, Ordering::Relaxed);
                slot.key.store(key, Ordering::Release);
                stored = true;
                break;
            }
            if k == key
                && slot.dev.load(Ordering::Relaxed) == dev
                && slot.ino.load(Ordering::Relaxed) == ino
            {
                slot.owner.store(owner, Ordering::Relaxed);
                stored = true;
                break;
            }
        }
        sys::close(fd);
        stored
    }
}

/// Before an unlink, rmdir or a rename over `host`: a file whose last name goes is
/// forgotten, so that a new file given the same inode starts with no remembered owner.
pub fn forget(dirfd: c_int, host: *const c_char) {
    if !active() || host.is_null() {
        return;
    }
    let Ok(st) = sys::kernel_stat(dirfd, host, libc::AT_SYMLINK_NOFOLLOW) else {
        return;
    };
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if (is_dir || st.st_nlink <= 1)
        && let Some(t) = table()
        && t.lookup(st.st_dev, st.st_ino).is_some()
    {
        t.store(st.st_dev, st.st_ino, FORGOTTEN.0, FORGOTTEN.1);
    }
}

/// The owner a stat reports: the remembered one, else root for what the Lambda user owns.
pub fn present(dev: u64, ino: u64, uid: u32, gid: u32) -> (u32, u32) {
    if let Some(owner) = table().and_then(|t| t.lookup(dev, ino)) {
        return owner;
    }
    // SAFETY: raw getuid: the kernel's id, not the fake one above.
    let own_uid = unsafe { raw_syscall!(libc::SYS_getuid) };
    // SAFETY: as above.
    let own_gid = unsafe { raw_syscall!(libc::SYS_getgid) };
    (
        if i64::from(uid) == own_uid { 0 } else { uid },
        if i64::from(gid) == own_gid { 0 } else { gid },
    )
}

// ---------------------------------------------------------------------------------------
// Files made by a process that is not (fake) root.

/// The owner the kernel gives a new file: its creator's effective ids. `None` while they are
/// root's, which is what an unremembered file shows anyway, so root's creations cost nothing.
fn creator() -> Option<(u32, u32)> {
    if !active() {
        return None;
    }
    let owner = (id(EUID), id(EGID));
    (owner != (0, 0)).then_some(owner)
}

/// Calls that make a new file whenever they succeed (`mkdir`, `mknod`, `symlink`, …).
pub fn always_creates<P>(_dirfd: c_int, _host: *const c_char, _args: P) -> bool {
    creator().is_some()
}

/// `creat`: makes the file if it is missing.
pub fn creat_creates<P>(dirfd: c_int, host: *const c_char, _args: P) -> bool {
    creator().is_some() && missing(dirfd, host)
}

/// `open`/`openat` with `O_CREAT`: makes the file if it is missing.
pub fn open_creates(
    dirfd: c_int,
    host: *const c_char,
    (flags, _mode): (c_int, libc::mode_t),
) -> bool {
    flags & libc::O_CREAT != 0 && creat_creates(dirfd, host, ())
}

/// `fopen` in a writing mode (`w`, `a`): makes the file if it is missing.
pub fn fopen_creates(dirfd: c_int, host: *const c_char, (mode,): (*const c_char,)) -> bool {
    if mode.is_null() {
        return false;
    }
    // SAFETY: a non-null mode is NUL-terminated (fopen's contract).
    let writes = matches!(unsafe { sys::bytes(mode) }.first(), Some(b'w' | b'a'));
    writes && creat_creates(dirfd, host, ())
}

fn missing(dirfd: c_int, host: *const c_char) -> bool {
    sys::kernel_stat(dirfd, host, libc::AT_SYMLINK_NOFOLLOW).is_err_and(|e| e == libc::ENOENT)
}

/// After a call that made `host`: it belongs to its creator's fake ids, as the kernel would
/// have it.
pub fn created(dirfd: c_int, host: *const c_char) {
    let Some((uid, gid)) = creator() else {
        return;
    };
    if let Ok(st) = sys::kernel_stat(dirfd, host, libc::AT_SYMLINK_NOFOLLOW)
        && let Some(t) = table()
    {
        t.store(st.st_dev, st.st_ino, uid, gid);
    }
}

/// `chown` under fake root: remembered for the file, never asked of the kernel.
fn remember(dirfd: c_int, host: *const c_char, flags: c_int, uid: u32, gid: u32) -> c_int {
    let st = match sys::kernel_stat(dirfd, host, flags) {
        Ok(st) => st,
        Err(code) => return fail(code, -1),
    };
    let (dev, ino) = (st.st_dev, st.st_ino);
    let (cur_uid, cur_gid) = present(dev, ino, st.st_uid, st.st_gid);
    let uid = if uid == KEEP { cur_uid } else { uid };
    let gid = if gid == KEEP { cur_gid } else { gid };
    match table() {
        Some(t) if t.store(dev, ino, uid, gid) => 0,
        _ => fail(libc::ENOSPC, -1),
    }
}

fn chown_at(dirfd: c_int, path: *const c_char, uid: u32, gid: u32, flags: c_int) -> c_int {
    let mut buf = PathBuf::new();
    let host = match translate::host_at(dirfd, path, &mut buf) {
        Ok(host) => host,
        Err(code) => return fail(code, -1),
    };
    // Owners are remembered by inode, and a lazy tree's placeholder is replaced by a new
    // inode when it is filled: it is filled first, as before an open.
    if let Err(code) = lazy::before_open(dirfd, host) {
        return fail(code, -1);
    }
    remember(dirfd, host, flags, uid, gid)
}

macro_rules! chown_fns {
    ($($name:ident($($arg:ident: $t:ty),*) => $fake:expr;)*) => {$(
        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $t),*) -> c_int {
            if active() {
                return $fake;
            }
            let Some(next) = real!($name: fn($($t),*) -> c_int) else {
                return fail(libc::ENOSYS, -1);
            };
            forward!($name, next, $($arg),*)
        }
    )*};
}

/// Without fake root: the path translated as any other call's, then libc's function.
macro_rules! forward {
    (fchown, $next:ident, $fd:ident, $uid:ident, $gid:ident) => {
        // SAFETY: the caller's arguments.
        unsafe { $next($fd, $uid, $gid) }
    };
    (fchownat, $next:ident, $dirfd:ident, $path:ident, $uid:ident, $gid:ident, $flags:ident) => {{
        let mut buf = PathBuf::new();
        match translate::host_at($dirfd, $path, &mut buf) {
            // SAFETY: the caller's arguments, with the path translated.
            Ok(host) => unsafe { $next($dirfd, host, $uid, $gid, $flags) },
            Err(code) => fail(code, -1),
        }
    }};
    ($name:ident, $next:ident, $path:ident, $uid:ident, $gid:ident) => {{
        let mut buf = PathBuf::new();
        match translate::host($path, &mut buf) {
            // SAFETY: the caller's arguments, with the path translated.
            Ok(host) => unsafe { $next(host, $uid, $gid) },
            Err(code) => fail(code, -1),
        }
    }};
}

chown_fns! {
    chown(path: *const c_char, uid: uid_t, gid: gid_t) => chown_at(libc::AT_FDCWD, path, uid, gid, 0);
    lchown(path: *const c_char, uid: uid_t, gid: gid_t) => chown_at(libc::AT_FDCWD, path, uid, gid, libc::AT_SYMLINK_NOFOLLOW);
    fchown(fd: c_int, uid: uid_t, gid: gid_t) => remember(fd, c"".as_ptr(), libc::AT_EMPTY_PATH, uid, gid);
    fchownat(dirfd: c_int, path: *const c_char, uid: uid_t, gid: gid_t, flags: c_int) => chown_at(dirfd, path, uid, gid, flags);
}

// ---------------------------------------------------------------------------------------
// The shadow password lock.

/// The descriptor `lckpwdf` holds, or -1.
static PWD_LOCK: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// glibc's `lckpwdf` opens `/etc/.pwd.lock` from inside libc, out of the shim's reach, so
/// `useradd` and `groupadd` (run by package scripts under fake root) would lock the host's
/// file and fail. This one locks the image's, with the same `fcntl` lock.
///
/// # Safety
/// None beyond libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lckpwdf() -> c_int {
    if state::get().is_none() {
        return match real!(lckpwdf: fn() -> c_int) {
            // SAFETY: libc's own.
            Some(next) => unsafe { next() },
            None => fail(libc::ENOSYS, -1),
        };
    }
    let mut buf = PathBuf::new();
    let host = match translate::host(c"/etc/.pwd.lock".as_ptr(), &mut buf) {
        Ok(host) => host,
        Err(code) => return fail(code, -1),
    };
    // SAFETY: raw openat of a NUL-terminated path.
    let fd = unsafe {
        raw_syscall!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            host,
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o600
        )
    };
    if fd < 0 {
        return -1;
    }
    // SAFETY: a zeroed flock is valid; the fields below make it a whole-file write lock.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    // SAFETY: fcntl on our descriptor with a valid flock.
    if unsafe { raw_syscall!(libc::SYS_fcntl, fd, libc::F_SETLKW, &raw const lock) } < 0 {
        sys::close(fd as c_int);
        return -1;
    }
    PWD_LOCK.store(fd as c_int, Ordering::Relaxed);
    0
}

/// # Safety
/// None beyond libc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ulckpwdf() -> c_int {
    if state::get().is_none() {
        return match real!(ulckpwdf: fn() -> c_int) {
            // SAFETY: libc's own.
            Some(next) => unsafe { next() },
            None => fail(libc::ENOSYS, -1),
        };
    }
    match PWD_LOCK.swap(-1, Ordering::Relaxed) {
        -1 => -1,
        fd => {
            sys::close(fd);
            0
        }
    }
}
