//! Shadow lookups (`getspnam`, `getspnam_r`, and glibc's `getsgnam`, `getsgnam_r` for
//! groups) answer from the image's `/etc/shadow` and `/etc/gshadow`.
//!
//! Both libcs open these files from inside libc, out of the shim's reach, so inside the
//! container these read the host's: its file, which the Lambda user cannot read, or a
//! module that the host's `nsswitch.conf` names (systemd's makes up `root:!*:…`). A
//! password or an expiry that a script set in the image with `chpasswd` or `chage` was
//! then never seen by `su`, PAM or Python's `spwd`. Inside the container only the image's
//! file answers, parsed by libc's own `fgetspent_r` (glibc) or by `accounts.rs` (musl,
//! whose rules for the name it asks with are kept here); a name it lacks is not found,
//! never looked up on the host. Enumeration (`getspent`, `getsgent`) is in `ident_list.rs`.

use std::ffi::{c_char, c_int};

use libc::{FILE, size_t, spwd};

use crate::accounts;
use crate::ident::{Key, Parser, StaticSlot, in_static, search_image};
use crate::state;
use crate::sys::{self, real};

/// libc's `fgetspent_r` (glibc), else the shim's (`accounts.rs`).
pub fn shadow_parser() -> Parser<spwd> {
    real!(fgetspent_r: fn(*mut FILE, *mut spwd, *mut c_char, size_t, *mut *mut spwd) -> c_int)
        .unwrap_or(accounts::next_shadow)
}

fn shadow_fields(entry: &spwd) -> (u32, *const c_char) {
    (u32::MAX, entry.sp_namp)
}

/// musl refuses a name that could leave `/etc/tcb` (empty, leading `.`, a `/`) with
/// `EINVAL`, and a buffer without room for the name and a hundred bytes with `ERANGE`,
/// before it reads anything; glibc reads the file whatever the name.
fn refused_by_libc(name: &[u8], len: size_t) -> Option<c_int> {
    if !cfg!(target_env = "musl") {
        return None;
    }
    if name.is_empty() || name.starts_with(b".") || name.contains(&b'/') {
        return Some(libc::EINVAL);
    }
    (len < name.len() + 100).then_some(libc::ERANGE)
}

/// The image's entry for `name` into the caller's storage (see `ident::search_image`).
///
/// # Safety
/// `getspnam_r`'s contract for `entry`, `buf` and `len`.
unsafe fn image_shadow(
    name: &[u8],
    entry: *mut spwd,
    buf: *mut c_char,
    len: size_t,
) -> Result<bool, c_int> {
    if let Some(code) = refused_by_libc(name, len) {
        return Err(code);
    }
    let parse = shadow_parser();
    // SAFETY: fgetspent_r's contract is search_image's; the caller's arguments.
    unsafe {
        search_image(
            c"/etc/shadow",
            parse,
            shadow_fields,
            Key::Name(name),
            entry,
            buf,
            len,
        )
    }
}

/// `getXXnam` and `getXXnam_r` over the image's file: inside the container only `$search`
/// answers; outside it (no rootfs), libc's.
macro_rules! by_name {
    ($get:ident, $get_r:ident, $t:ty, $slot:ident, $search:ident) => {
        static $slot: StaticSlot<$t> = std::sync::Mutex::new(None);

        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $get(name: *const c_char) -> *mut $t {
            if state::get().is_none() || name.is_null() {
                return match real!($get: fn(*const c_char) -> *mut $t) {
                    // SAFETY: libc's function, the caller's argument.
                    Some(next) => unsafe { next(name) },
                    None => std::ptr::null_mut(),
                };
            }
            // SAFETY: a NUL-terminated name (the contract).
            let name = unsafe { sys::bytes(name) };
            // SAFETY: storage that outlives the call (boxed in a static).
            match in_static(&$slot, |entry, buf, len| unsafe { $search(name, entry, buf, len) }) {
                Ok(found) => found,
                Err(code) => {
                    if let Some(code) = code {
                        sys::set_errno(code);
                    }
                    std::ptr::null_mut()
                }
            }
        }

        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $get_r(
            name: *const c_char,
            entry: *mut $t,
            buf: *mut c_char,
            len: size_t,
            result: *mut *mut $t,
        ) -> c_int {
            if state::get().is_none() || name.is_null() || result.is_null() {
                return match real!($get_r: fn(*const c_char, *mut $t, *mut c_char, size_t, *mut *mut $t) -> c_int)
                {
                    // SAFETY: libc's function, the caller's arguments.
                    Some(next) => unsafe { next(name, entry, buf, len, result) },
                    None => libc::ENOSYS,
                };
            }
            // SAFETY: the caller's out-pointer, checked above.
            unsafe { *result = std::ptr::null_mut() };
            // SAFETY: a NUL-terminated name (the contract).
            let name = unsafe { sys::bytes(name) };
            // SAFETY: the caller's storage (the contract).
            match unsafe { $search(name, entry, buf, len) } {
                Ok(true) => {
                    // SAFETY: the caller's out-pointer.
                    unsafe { *result = entry };
                    0
                }
                Ok(false) => 0,
                Err(code) => code,
            }
        }
    };
}

by_name!(getspnam, getspnam_r, spwd, SHADOW_STATIC, image_shadow);

/// glibc's `struct sgrp` (`<gshadow.h>`), which the libc crate does not define.
#[cfg(target_env = "gnu")]
#[repr(C)]
pub struct GroupShadow {
    name: *mut c_char,
    password: *mut c_char,
    administrators: *mut *mut c_char,
    members: *mut *mut c_char,
}

/// glibc's `fgetsgent_r` (there since 2.10, so in every glibc the shim loads into); without
/// it, no entry.
#[cfg(target_env = "gnu")]
pub fn group_shadow_parser() -> Parser<GroupShadow> {
    /// No entries: the end of the file at once.
    unsafe extern "C" fn none(
        _: *mut FILE,
        _: *mut GroupShadow,
        _: *mut c_char,
        _: size_t,
        _: *mut *mut GroupShadow,
    ) -> c_int {
        libc::ENOENT
    }
    real!(fgetsgent_r: fn(*mut FILE, *mut GroupShadow, *mut c_char, size_t, *mut *mut GroupShadow) -> c_int)
        .unwrap_or(none)
}

#[cfg(target_env = "gnu")]
fn group_shadow_fields(entry: &GroupShadow) -> (u32, *const c_char) {
    (u32::MAX, entry.name)
}

/// The image's `/etc/gshadow` entry for `name` into the caller's storage.
///
/// # Safety
/// `getsgnam_r`'s contract for `entry`, `buf` and `len`.
#[cfg(target_env = "gnu")]
unsafe fn image_group_shadow(
    name: &[u8],
    entry: *mut GroupShadow,
    buf: *mut c_char,
    len: size_t,
) -> Result<bool, c_int> {
    let parse = group_shadow_parser();
    // SAFETY: fgetsgent_r's contract is search_image's; the caller's arguments.
    unsafe {
        search_image(
            c"/etc/gshadow",
            parse,
            group_shadow_fields,
            Key::Name(name),
            entry,
            buf,
            len,
        )
    }
}

#[cfg(target_env = "gnu")]
by_name!(
    getsgnam,
    getsgnam_r,
    GroupShadow,
    GROUP_SHADOW_STATIC,
    image_group_shadow
);
