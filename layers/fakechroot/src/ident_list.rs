//! Enumeration (`getpwent`, `getgrent`, glibc's `getspent`, their `_r` forms) and group
//! lists (`getgrouplist`) from the image's files.
//!
//! Both libcs read `/etc/passwd` and `/etc/group` for these from inside libc, where no
//! preload reaches, so `getent passwd`, `id USER`'s group list or a package script that
//! walks the users would see the host's accounts instead of the image's. Inside the
//! container these read the image's files with the parsers `ident.rs` uses; outside it
//! (no rootfs) libc's own run.

use std::ffi::{CStr, c_char, c_int};
use std::sync::Mutex;

use libc::{FILE, gid_t, group, passwd};

use crate::ident::{Parser, group_parser, passwd_parser};
#[cfg(target_env = "gnu")]
use crate::shadow::{GroupShadow, group_shadow_parser, shadow_parser};
use crate::state;
use crate::sys::{self, real};

/// Room for one entry's strings, as glibc's own static buffers allow.
const ENTRY_BUF: usize = 16384;
/// The most a group list's scan grows its buffer to for one line.
const MAX_ENTRY_BUF: usize = 1 << 20;

/// One open enumeration: the image's file and the storage the last entry lives in.
struct Walk<T> {
    stream: *mut FILE,
    entry: T,
    buf: [c_char; ENTRY_BUF],
}

/// A walk guarded by its lock, as the non-reentrant functions' callers expect.
struct Slot<T>(Mutex<Option<Box<Walk<T>>>>);

// SAFETY: the stream and the entry's pointers are used only under the Mutex.
unsafe impl<T> Sync for Slot<T> {}

static PASSWD_WALK: Slot<passwd> = Slot(Mutex::new(None));
static GROUP_WALK: Slot<group> = Slot(Mutex::new(None));
#[cfg(target_env = "gnu")]
static SHADOW_WALK: Slot<libc::spwd> = Slot(Mutex::new(None));
#[cfg(target_env = "gnu")]
static GROUP_SHADOW_WALK: Slot<GroupShadow> = Slot(Mutex::new(None));

impl<T> Slot<T> {
    /// `set*ent`: back to the first entry (the file opened on first use).
    fn rewind(&self) {
        if let Ok(mut walk) = self.0.lock()
            && let Some(walk) = walk.as_mut()
        {
            // SAFETY: a stream this walk opened.
            unsafe { libc::rewind(walk.stream) };
        }
    }

    /// `end*ent`: the file closed.
    fn end(&self) {
        if let Ok(mut walk) = self.0.lock()
            && let Some(walk) = walk.take()
        {
            // SAFETY: a stream this walk opened, closed once.
            unsafe { libc::fclose(walk.stream) };
        }
    }

    /// `f` on the open walk of the image's `file` (opened on first use); `None` when the
    /// file cannot be opened or the lock is poisoned.
    fn with_walk<R>(&self, file: &CStr, f: impl FnOnce(&mut Walk<T>) -> R) -> Option<R> {
        let mut slot = self.0.lock().ok()?;
        if slot.is_none() {
            // SAFETY: the shim's fopen, which translates the path into the image.
            let stream = unsafe { crate::fs::fopen(file.as_ptr(), c"re".as_ptr()) };
            if stream.is_null() {
                return None;
            }
            *slot = Some(Box::new(Walk {
                stream,
                // SAFETY: passwd and group are plain C structures; all-zero is valid.
                entry: unsafe { std::mem::zeroed() },
                buf: [0; ENTRY_BUF],
            }));
        }
        slot.as_mut().map(|walk| f(walk))
    }

    /// `get*ent`: the next entry of the image's `file`, or NULL at its end.
    fn next(&self, file: &CStr, parse: Parser<T>) -> *mut T {
        let mut found: *mut T = std::ptr::null_mut();
        let code = self.with_walk(file, |walk| {
            let entry = &raw mut walk.entry;
            // SAFETY: the parser's contract: our stream, entry and buffer of ENTRY_BUF bytes.
            unsafe {
                parse(
                    walk.stream,
                    entry,
                    walk.buf.as_mut_ptr(),
                    ENTRY_BUF,
                    &mut found,
                )
            }
        });
        match code {
            Some(0) => found,
            Some(code) => {
                sys::set_errno(if code == libc::ENOENT { 0 } else { code });
                std::ptr::null_mut()
            }
            None => std::ptr::null_mut(),
        }
    }

    /// `get*ent_r`: the next entry into the caller's storage; 0, `ENOENT` at the end, or
    /// `ERANGE` when `buf` is too small (the same entry comes again with a larger one). It
    /// shares its place in the file with `get*ent`, as glibc's does.
    ///
    /// # Safety
    /// libc's contract: `entry` and `result` writable, `buf` holds `len` bytes.
    unsafe fn next_into(
        &self,
        file: &CStr,
        parse: Parser<T>,
        entry: *mut T,
        buf: *mut c_char,
        len: usize,
        result: *mut *mut T,
    ) -> c_int {
        if entry.is_null() || buf.is_null() || result.is_null() {
            return libc::EINVAL;
        }
        // SAFETY: the caller's result pointer.
        unsafe { *result = std::ptr::null_mut() };
        let mut found: *mut T = std::ptr::null_mut();
        // SAFETY: the parser's contract: our stream, the caller's entry and buffer.
        let code = self.with_walk(file, |walk| unsafe {
            parse(walk.stream, entry, buf, len, &mut found)
        });
        match code {
            Some(0) => {
                // SAFETY: as above.
                unsafe { *result = found };
                0
            }
            Some(code) => code,
            None => libc::ENOENT,
        }
    }
}

macro_rules! walk_fns {
    ($set:ident, $get:ident, $get_r:ident, $end:ident, $slot:ident, $t:ty, $file:literal, $parser:ident) => {
        /// # Safety
        /// None beyond libc's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $set() {
            if state::get().is_some() {
                return $slot.rewind();
            }
            if let Some(next) = real!($set: fn() -> ()) {
                // SAFETY: libc's function of the same name.
                unsafe { next() }
            }
        }

        /// # Safety
        /// None beyond libc's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $get() -> *mut $t {
            if state::get().is_some() {
                return $slot.next($file, $parser());
            }
            match real!($get: fn() -> *mut $t) {
                // SAFETY: libc's function of the same name.
                Some(next) => unsafe { next() },
                None => std::ptr::null_mut(),
            }
        }

        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $get_r(
            entry: *mut $t,
            buf: *mut c_char,
            len: libc::size_t,
            result: *mut *mut $t,
        ) -> c_int {
            if state::get().is_some() {
                // SAFETY: the caller's storage, as libc's contract gives it.
                return unsafe { $slot.next_into($file, $parser(), entry, buf, len, result) };
            }
            match real!($get_r: fn(*mut $t, *mut c_char, libc::size_t, *mut *mut $t) -> c_int) {
                // SAFETY: libc's function of the same name, with the caller's arguments.
                Some(next) => unsafe { next(entry, buf, len, result) },
                None => libc::ENOSYS,
            }
        }

        /// # Safety
        /// None beyond libc's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $end() {
            if state::get().is_some() {
                return $slot.end();
            }
            if let Some(next) = real!($end: fn() -> ()) {
                // SAFETY: libc's function of the same name.
                unsafe { next() }
            }
        }
    };
}

walk_fns!(
    setpwent,
    getpwent,
    getpwent_r,
    endpwent,
    PASSWD_WALK,
    passwd,
    c"/etc/passwd",
    passwd_parser
);
walk_fns!(
    setgrent,
    getgrent,
    getgrent_r,
    endgrent,
    GROUP_WALK,
    group,
    c"/etc/group",
    group_parser
);

// musl's `getspent` finds nothing whatever the files hold (it has no `getspent_r`, nor
// gshadow at all): its own answers that as under chroot.
#[cfg(target_env = "gnu")]
walk_fns!(
    setspent,
    getspent,
    getspent_r,
    endspent,
    SHADOW_WALK,
    libc::spwd,
    c"/etc/shadow",
    shadow_parser
);
#[cfg(target_env = "gnu")]
walk_fns!(
    setsgent,
    getsgent,
    getsgent_r,
    endsgent,
    GROUP_SHADOW_WALK,
    GroupShadow,
    c"/etc/gshadow",
    group_shadow_parser
);
/// glibc's files backend leaves out a group whose gid is the one given (it is already
/// first); musl lists it again. Both keep other repeats.
const SKIPS_OWN_GROUP: bool = cfg!(target_env = "gnu");

/// `getgrouplist`: `group` first, then every group of the image's `/etc/group` that lists
/// `user` as a member, in file order, as the libc this build is for lists them (see
/// [`SKIPS_OWN_GROUP`]). With more than
/// `*ngroups`, fills what fits, sets `*ngroups` to the count and returns -1.
///
/// # Safety
/// libc's contract: `user` NUL-terminated, `groups` holds `*ngroups` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getgrouplist(
    user: *const c_char,
    group: gid_t,
    groups: *mut gid_t,
    ngroups: *mut c_int,
) -> c_int {
    if state::get().is_none() {
        return match real!(getgrouplist: fn(*const c_char, gid_t, *mut gid_t, *mut c_int) -> c_int)
        {
            // SAFETY: libc's function, the caller's arguments.
            Some(next) => unsafe { next(user, group, groups, ngroups) },
            None => sys::fail(libc::ENOSYS, -1),
        };
    }
    if user.is_null() || ngroups.is_null() {
        return sys::fail(libc::EFAULT, -1);
    }
    // SAFETY: NUL-terminated (the contract).
    let user = unsafe { sys::bytes(user) };
    // SAFETY: the caller's count.
    let room = usize::try_from(unsafe { *ngroups }).unwrap_or(0);
    let mut count = 0_usize;
    let mut add = |gid: gid_t| {
        if count < room && !groups.is_null() {
            // SAFETY: `count < room`: inside the caller's array.
            unsafe { *groups.wrapping_add(count) = gid };
        }
        count += 1;
    };
    add(group);
    for_each_group(|g| {
        // SAFETY: a parsed entry: gr_mem is a NULL-terminated list of NUL-terminated names.
        if !(SKIPS_OWN_GROUP && g.gr_gid == group) && unsafe { is_member(g, user) } {
            add(g.gr_gid);
        }
    });
    let total = c_int::try_from(count).unwrap_or(c_int::MAX);
    // SAFETY: the caller's count.
    unsafe { *ngroups = total };
    if count > room { -1 } else { total }
}

/// # Safety
/// `g` is a parsed entry.
unsafe fn is_member(g: &group, user: &[u8]) -> bool {
    let mut member = g.gr_mem;
    while !member.is_null() {
        // SAFETY: inside the NULL-terminated list.
        let name = unsafe { *member };
        if name.is_null() {
            return false;
        }
        // SAFETY: a NUL-terminated member name.
        if unsafe { sys::bytes(name) } == user {
            return true;
        }
        member = member.wrapping_add(1);
    }
    false
}

/// Every entry of the image's `/etc/group`, in file order.
fn for_each_group(mut each: impl FnMut(&group)) {
    // SAFETY: the shim's fopen, which translates the path into the image.
    let stream = unsafe { crate::fs::fopen(c"/etc/group".as_ptr(), c"re".as_ptr()) };
    if stream.is_null() {
        return;
    }
    let parse = group_parser();
    let mut buf = vec![0 as c_char; ENTRY_BUF];
    // SAFETY: all-zero is a valid group.
    let mut entry: group = unsafe { std::mem::zeroed() };
    loop {
        let mut found: *mut group = std::ptr::null_mut();
        // SAFETY: the parser's contract: our stream, entry and buffer.
        let code = unsafe { parse(stream, &mut entry, buf.as_mut_ptr(), buf.len(), &mut found) };
        match code {
            // A group with a long member list: the parser left the line to read again.
            libc::ERANGE if buf.len() < MAX_ENTRY_BUF => buf.resize(buf.len() * 4, 0),
            0 if !found.is_null() => each(&entry),
            _ => break,
        }
    }
    // SAFETY: the stream opened above.
    unsafe { libc::fclose(stream) };
}
