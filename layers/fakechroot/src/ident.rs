//! User and group lookups answer from the image's files, and the running uid and gid
//! always have a name.
//!
//! glibc ≥ 2.32 opens /etc/passwd and /etc/group from inside libc, out of the shim's
//! reach, so its lookups read the host's files: a user the image defines, or one a
//! package script has just added under fake root, would be unknown. So the image's files
//! are searched first, with glibc's own parser (`fgetpwent_r`) on the image's file; then
//! libc's lookup (the host's files); then, for the caller's own ids, which Lambda's uid 993
//! is in no image, the host's name or a made-up one. musl has no `fgetpwent_r` to lend:
//! there the image's files are parsed by `accounts.rs`.

use std::ffi::{CString, c_char, c_int};
use std::sync::OnceLock;

use libc::{FILE, gid_t, group, passwd, size_t, uid_t};

use crate::accounts;
use crate::sys::real;

struct Identity {
    user: CString,
    group: CString,
    home: CString,
    shell: CString,
    uid: uid_t,
    gid: gid_t,
}

/// Finds the name for `id` in a host passwd/group style file (`name:x:id:…`).
fn host_name(file: &std::ffi::CStr, id: u32) -> Option<String> {
    // Raw syscalls: std's File::open would come back through the shim's own `open`.
    let fd = crate::sys::open_read(file).ok()?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n @ 1..) = crate::sys::read(fd, &mut chunk) {
        bytes.extend_from_slice(&chunk[..n]);
    }
    crate::sys::close(fd);
    let text = String::from_utf8_lossy(&bytes);
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id_field = fields.nth(1)?;
        (id_field.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}

fn identity() -> Option<&'static Identity> {
    static IDENTITY: OnceLock<Option<Identity>> = OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            // SAFETY: no preconditions.
            let uid = unsafe { libc::getuid() };
            // SAFETY: no preconditions.
            let gid = unsafe { libc::getgid() };
            // Read without the shim: these are host files (see the module comment).
            let user = host_name(c"/etc/passwd", uid).unwrap_or_else(|| format!("user{uid}"));
            let group = host_name(c"/etc/group", gid).unwrap_or_else(|| format!("group{gid}"));
            Some(Identity {
                user: CString::new(user).ok()?,
                group: CString::new(group).ok()?,
                home: CString::new("/tmp").ok()?,
                shell: CString::new("/bin/sh").ok()?,
                uid,
                gid,
            })
        })
        .as_ref()
}

struct Shared<T>(T);
// SAFETY: written once under OnceLock, then only read; the pointers are to 'static data.
unsafe impl<T> Sync for Shared<T> {}
// SAFETY: as above: immutable after initialisation.
unsafe impl<T> Send for Shared<T> {}

/// Which entry a lookup wants.
#[derive(Clone, Copy)]
pub(crate) enum Key<'a> {
    Id(u32),
    Name(&'a [u8]),
}

/// Searches the image's `file` (`/etc/passwd` or `/etc/group`) with libc's parser `parse`
/// (`fgetpwent_r` or `fgetgrent_r`), filling the caller's entry and buffer. `Ok(true)`:
/// found; `Ok(false)`: not there (or no parser, or no file); `Err(ERANGE)`: buffer short.
///
/// # Safety
/// `parse` has `fgetpwent_r`'s contract for entries of type `T`; `entry`, `buf` and `len`
/// are the caller's, valid for a `_r` lookup.
pub(crate) unsafe fn search_image<T>(
    file: &std::ffi::CStr,
    parse: Parser<T>,
    fields: fn(&T) -> (u32, *const c_char),
    key: Key<'_>,
    entry: *mut T,
    buf: *mut c_char,
    len: size_t,
) -> Result<bool, c_int> {
    // SAFETY: our own fopen wrapper translates the path into the image.
    let stream = unsafe { crate::fs::fopen(file.as_ptr(), c"re".as_ptr()) };
    if stream.is_null() {
        return Ok(false);
    }
    let mut found: *mut T = std::ptr::null_mut();
    let result = loop {
        // SAFETY: the caller's entry and buffer; a stream we opened.
        match unsafe { parse(stream, entry, buf, len, &mut found) } {
            0 if !found.is_null() => {
                // SAFETY: a parsed entry, in the caller's storage.
                let (id, name) = fields(unsafe { &*found });
                let hit = match key {
                    Key::Id(wanted) => id == wanted,
                    Key::Name(wanted) => {
                        // SAFETY: parsed names are NUL-terminated.
                        !name.is_null() && unsafe { crate::sys::bytes(name) } == wanted
                    }
                };
                if hit {
                    break Ok(true);
                }
            }
            libc::ERANGE => break Err(libc::ERANGE),
            _ => break Ok(false),
        }
    };
    // SAFETY: the stream we opened.
    unsafe { libc::fclose(stream) };
    result
}

fn passwd_fields(p: &passwd) -> (u32, *const c_char) {
    (p.pw_uid, p.pw_name)
}

fn group_fields(g: &group) -> (u32, *const c_char) {
    (g.gr_gid, g.gr_name)
}

/// `fgetpwent_r`'s contract: the stream, the entry and its buffer, the result.
pub type Parser<T> =
    unsafe extern "C" fn(*mut FILE, *mut T, *mut c_char, size_t, *mut *mut T) -> c_int;

/// libc's `fgetpwent_r` (glibc), else the shim's (`accounts.rs`).
pub fn passwd_parser() -> Parser<passwd> {
    real!(fgetpwent_r: fn(*mut FILE, *mut passwd, *mut c_char, size_t, *mut *mut passwd) -> c_int)
        .unwrap_or(accounts::next_passwd)
}

/// libc's `fgetgrent_r` (glibc), else the shim's.
pub fn group_parser() -> Parser<group> {
    real!(fgetgrent_r: fn(*mut FILE, *mut group, *mut c_char, size_t, *mut *mut group) -> c_int)
        .unwrap_or(accounts::next_group)
}

/// A passwd lookup in the image (see [`search_image`]).
///
/// # Safety
/// The caller's `_r` arguments.
unsafe fn image_passwd(
    key: Key<'_>,
    pwd: *mut passwd,
    buf: *mut c_char,
    len: size_t,
) -> Result<bool, c_int> {
    if crate::state::get().is_none() {
        return Ok(false);
    }
    let parse = passwd_parser();
    // SAFETY: fgetpwent_r's contract is search_image's; the caller's arguments.
    unsafe { search_image(c"/etc/passwd", parse, passwd_fields, key, pwd, buf, len) }
}

/// A group lookup in the image (see [`search_image`]).
///
/// # Safety
/// The caller's `_r` arguments.
unsafe fn image_group(
    key: Key<'_>,
    grp: *mut group,
    buf: *mut c_char,
    len: size_t,
) -> Result<bool, c_int> {
    if crate::state::get().is_none() {
        return Ok(false);
    }
    let parse = group_parser();
    // SAFETY: fgetgrent_r's contract is search_image's; the caller's arguments.
    unsafe { search_image(c"/etc/group", parse, group_fields, key, grp, buf, len) }
}

/// Room for one entry's strings in the non-reentrant lookups' storage.
const STATIC_BUF: usize = 16384;

/// Storage for the non-reentrant lookups, which return a pointer valid until the next call.
pub(crate) struct Static<T> {
    entry: T,
    buf: [c_char; STATIC_BUF],
}

// SAFETY: the entry's pointers point into `buf` beside it; only used under its Mutex.
unsafe impl<T> Send for Static<T> {}

/// One non-reentrant lookup's storage, made on first use.
pub(crate) type StaticSlot<T> = std::sync::Mutex<Option<Box<Static<T>>>>;

static PASSWD_STATIC: StaticSlot<passwd> = std::sync::Mutex::new(None);
static GROUP_STATIC: StaticSlot<group> = std::sync::Mutex::new(None);

/// Runs a `_r` lookup (`search`: entry, buffer, length) into `slot`'s storage: the entry
/// found, or why none was (`Err(None)`: not there, `Err(Some(errno))`: the lookup failed).
pub(crate) fn in_static<T>(
    slot: &StaticSlot<T>,
    search: impl FnOnce(*mut T, *mut c_char, size_t) -> Result<bool, c_int>,
) -> Result<*mut T, Option<c_int>> {
    let mut slot = slot.lock().map_err(|_| None)?;
    let store = slot.get_or_insert_with(|| {
        Box::new(Static {
            // SAFETY: the lookups' entries (passwd, group, spwd, sgrp) are plain C
            // structures of pointers and numbers; all-zero is valid.
            entry: unsafe { std::mem::zeroed() },
            buf: [0; STATIC_BUF],
        })
    });
    let (entry, buf) = (&raw mut store.entry, store.buf.as_mut_ptr());
    match search(entry, buf, STATIC_BUF) {
        Ok(true) => Ok(entry),
        Ok(false) => Err(None),
        Err(code) => Err(Some(code)),
    }
}

/// The image's entry in static storage, or None.
fn image_passwd_static(key: Key<'_>) -> Option<*mut passwd> {
    // SAFETY: storage that outlives the call (boxed in a static).
    in_static(&PASSWD_STATIC, |entry, buf, len| unsafe {
        image_passwd(key, entry, buf, len)
    })
    .ok()
}

/// The image's entry in static storage, or None.
fn image_group_static(key: Key<'_>) -> Option<*mut group> {
    // SAFETY: as above.
    in_static(&GROUP_STATIC, |entry, buf, len| unsafe {
        image_group(key, entry, buf, len)
    })
    .ok()
}

fn own_passwd(uid: uid_t) -> Option<*mut passwd> {
    static ENTRY: OnceLock<Option<Shared<passwd>>> = OnceLock::new();
    let id = identity().filter(|id| id.uid == uid)?;
    let entry = ENTRY.get_or_init(|| {
        Some(Shared(passwd {
            pw_name: id.user.as_ptr().cast_mut(),
            pw_passwd: c"x".as_ptr().cast_mut(),
            pw_uid: id.uid,
            pw_gid: id.gid,
            pw_gecos: id.user.as_ptr().cast_mut(),
            pw_dir: id.home.as_ptr().cast_mut(),
            pw_shell: id.shell.as_ptr().cast_mut(),
        }))
    });
    entry.as_ref().map(|e| (&raw const e.0).cast_mut())
}

fn own_group(gid: gid_t) -> Option<*mut group> {
    static MEMBERS: Shared<[*mut c_char; 1]> = Shared([std::ptr::null_mut()]);
    static ENTRY: OnceLock<Option<Shared<group>>> = OnceLock::new();
    let id = identity().filter(|id| id.gid == gid)?;
    let entry = ENTRY.get_or_init(|| {
        Some(Shared(group {
            gr_name: id.group.as_ptr().cast_mut(),
            gr_passwd: c"x".as_ptr().cast_mut(),
            gr_gid: id.gid,
            gr_mem: MEMBERS.0.as_ptr().cast_mut(),
        }))
    });
    entry.as_ref().map(|e| (&raw const e.0).cast_mut())
}

/// # Safety
/// libc's contract for `getpwuid`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpwuid(uid: uid_t) -> *mut passwd {
    if let Some(found) = image_passwd_static(Key::Id(uid)) {
        return found;
    }
    let Some(next) = real!(getpwuid: fn(uid_t) -> *mut passwd) else {
        return std::ptr::null_mut();
    };
    // SAFETY: same contract.
    let found = unsafe { next(uid) };
    if found.is_null() {
        own_passwd(uid).unwrap_or(found)
    } else {
        found
    }
}

/// # Safety
/// libc's contract for `getpwnam`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpwnam(name: *const c_char) -> *mut passwd {
    if !name.is_null() {
        // SAFETY: a NUL-terminated name.
        if let Some(found) = image_passwd_static(Key::Name(unsafe { crate::sys::bytes(name) })) {
            return found;
        }
    }
    let Some(next) = real!(getpwnam: fn(*const c_char) -> *mut passwd) else {
        return std::ptr::null_mut();
    };
    // SAFETY: same contract.
    let found = unsafe { next(name) };
    if !found.is_null() || name.is_null() {
        return found;
    }
    // SAFETY: a NUL-terminated name.
    let wanted = unsafe { std::ffi::CStr::from_ptr(name) };
    match identity() {
        Some(id) if id.user.as_c_str() == wanted => own_passwd(id.uid).unwrap_or(found),
        _ => found,
    }
}

/// # Safety
/// libc's contract for `getgrgid`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getgrgid(gid: gid_t) -> *mut group {
    if let Some(found) = image_group_static(Key::Id(gid)) {
        return found;
    }
    let Some(next) = real!(getgrgid: fn(gid_t) -> *mut group) else {
        return std::ptr::null_mut();
    };
    // SAFETY: same contract.
    let found = unsafe { next(gid) };
    if found.is_null() {
        own_group(gid).unwrap_or(found)
    } else {
        found
    }
}

/// Copies `strings` into the caller's buffer for the `_r` variants; None if it is short.
unsafe fn copy_strings<const N: usize>(
    strings: [&[u8]; N],
    buf: *mut c_char,
    len: size_t,
) -> Option<[*mut c_char; N]> {
    let mut out = [std::ptr::null_mut(); N];
    let mut at = 0;
    for (slot, s) in out.iter_mut().zip(strings) {
        if at + s.len() + 1 > len {
            return None;
        }
        // SAFETY: `at + s.len() < len`: inside the caller's `len`-byte buffer.
        let start = unsafe { buf.add(at) };
        // SAFETY: as above, the byte after the string.
        let end = unsafe { start.add(s.len()) };
        // SAFETY: `start` has room for `s`, which is not in the caller's buffer.
        unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), start.cast(), s.len()) };
        // SAFETY: `end` is inside the buffer.
        unsafe { *end = 0 };
        *slot = start;
        at += s.len() + 1;
    }
    Some(out)
}

/// # Safety
/// libc's contract for `getpwuid_r`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpwuid_r(
    uid: uid_t,
    pwd: *mut passwd,
    buf: *mut c_char,
    len: size_t,
    result: *mut *mut passwd,
) -> c_int {
    // SAFETY: the caller's arguments.
    match unsafe { image_passwd(Key::Id(uid), pwd, buf, len) } {
        Ok(true) => {
            // SAFETY: the caller's out-pointer.
            unsafe { *result = pwd };
            return 0;
        }
        Err(code) => return code,
        Ok(false) => {}
    }
    let Some(next) =
        real!(getpwuid_r: fn(uid_t, *mut passwd, *mut c_char, size_t, *mut *mut passwd) -> c_int)
    else {
        return libc::ENOSYS;
    };
    // SAFETY: same contract.
    let code = unsafe { next(uid, pwd, buf, len, result) };
    // SAFETY: `result` is the caller's out-pointer.
    if code != 0 || unsafe { !(*result).is_null() } {
        return code;
    }
    let Some(id) = identity().filter(|id| id.uid == uid) else {
        return 0;
    };
    let strings = [
        id.user.as_bytes(),
        b"x",
        id.home.as_bytes(),
        id.shell.as_bytes(),
    ];
    // SAFETY: the caller's `len`-byte buffer.
    let Some([name, password, home, shell]) = (unsafe { copy_strings(strings, buf, len) }) else {
        return libc::ERANGE;
    };
    let entry = passwd {
        pw_name: name,
        pw_passwd: password,
        pw_uid: id.uid,
        pw_gid: id.gid,
        pw_gecos: name,
        pw_dir: home,
        pw_shell: shell,
    };
    // SAFETY: the caller's passwd structure.
    unsafe { *pwd = entry };
    // SAFETY: the caller's out-pointer.
    unsafe { *result = pwd };
    0
}

/// # Safety
/// libc's contract for `getgrgid_r`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getgrgid_r(
    gid: gid_t,
    grp: *mut group,
    buf: *mut c_char,
    len: size_t,
    result: *mut *mut group,
) -> c_int {
    // SAFETY: the caller's arguments.
    match unsafe { image_group(Key::Id(gid), grp, buf, len) } {
        Ok(true) => {
            // SAFETY: the caller's out-pointer.
            unsafe { *result = grp };
            return 0;
        }
        Err(code) => return code,
        Ok(false) => {}
    }
    let Some(next) =
        real!(getgrgid_r: fn(gid_t, *mut group, *mut c_char, size_t, *mut *mut group) -> c_int)
    else {
        return libc::ENOSYS;
    };
    // SAFETY: same contract.
    let code = unsafe { next(gid, grp, buf, len, result) };
    // SAFETY: `result` is the caller's out-pointer.
    if code != 0 || unsafe { !(*result).is_null() } {
        return code;
    }
    let Some(id) = identity().filter(|id| id.gid == gid) else {
        return 0;
    };
    let pointer_room = 2 * std::mem::size_of::<*mut c_char>();
    if len < pointer_room {
        return libc::ERANGE;
    }
    // The caller's buffer holds the member list (one NULL) first, then the strings.
    let members = buf.cast::<*mut c_char>();
    // SAFETY: `len >= pointer_room`: the list's first slot is inside the buffer (glibc and
    // musl hand over buffers aligned for pointers).
    unsafe { *members = std::ptr::null_mut() };
    // SAFETY: as above, the strings start after the list.
    let strings_at = unsafe { buf.add(pointer_room) };
    // SAFETY: the rest of the caller's buffer.
    let copied =
        unsafe { copy_strings([id.group.as_bytes(), b"x"], strings_at, len - pointer_room) };
    let Some([name, password]) = copied else {
        return libc::ERANGE;
    };
    let entry = group {
        gr_name: name,
        gr_passwd: password,
        gr_gid: id.gid,
        gr_mem: members,
    };
    // SAFETY: the caller's group structure.
    unsafe { *grp = entry };
    // SAFETY: the caller's out-pointer.
    unsafe { *result = grp };
    0
}

/// # Safety
/// libc's contract for `getgrnam`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getgrnam(name: *const c_char) -> *mut group {
    if !name.is_null() {
        // SAFETY: a NUL-terminated name.
        if let Some(found) = image_group_static(Key::Name(unsafe { crate::sys::bytes(name) })) {
            return found;
        }
    }
    match real!(getgrnam: fn(*const c_char) -> *mut group) {
        // SAFETY: same contract.
        Some(next) => unsafe { next(name) },
        None => std::ptr::null_mut(),
    }
}

/// `getpwnam_r` and `getgrnam_r`: the image's entry, else libc's.
macro_rules! by_name_r {
    ($name:ident, $t:ty, $search:ident) => {
        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            name: *const c_char,
            entry: *mut $t,
            buf: *mut c_char,
            len: size_t,
            result: *mut *mut $t,
        ) -> c_int {
            if !name.is_null() {
                // SAFETY: a NUL-terminated name; the caller's storage.
                match unsafe { $search(Key::Name(crate::sys::bytes(name)), entry, buf, len) } {
                    Ok(true) => {
                        // SAFETY: the caller's out-pointer.
                        unsafe { *result = entry };
                        return 0;
                    }
                    Err(code) => return code,
                    Ok(false) => {}
                }
            }
            match real!($name: fn(*const c_char, *mut $t, *mut c_char, size_t, *mut *mut $t) -> c_int) {
                // SAFETY: same contract.
                Some(next) => unsafe { next(name, entry, buf, len, result) },
                None => libc::ENOSYS,
            }
        }
    };
}

by_name_r!(getpwnam_r, passwd, image_passwd);
by_name_r!(getgrnam_r, group, image_group);
