//! `fgetpwent_r`, `fgetgrent_r` and `fgetspent_r` for libcs that have none (musl).
//!
//! `ident.rs` answers lookups from the image's `/etc/passwd` and `/etc/group` with libc's
//! own parser where libc exports one (glibc). musl exports none and reads the files from
//! inside libc, out of the shim's reach, so a user a package script had just added to the
//! image was unknown to the next lookup there. These two parse with
//! `rootfs_paths::accounts` (musl's rules) and fill the caller's structure and buffer
//! exactly as glibc's functions of the same contract do.

use std::ffi::{c_char, c_int};

use libc::{FILE, group, passwd, size_t, spwd};
use rootfs_paths::accounts::{
    GroupLine, PasswdLine, ShadowLine, group_line, passwd_line, shadow_line,
};

/// The next passwd entry of `stream`, with `fgetpwent_r`'s contract: 0 and `*result` set,
/// `ENOENT` at the end, `ERANGE` when `buf` is short.
///
/// # Safety
/// `stream` is open for reading; `pwd`, `buf` (of `len` bytes) and `result` are writable.
pub unsafe extern "C" fn next_passwd(
    stream: *mut FILE,
    pwd: *mut passwd,
    buf: *mut c_char,
    len: size_t,
    result: *mut *mut passwd,
) -> c_int {
    // SAFETY: the caller's stream and out-pointer.
    unsafe {
        next_entry(stream, result, |bytes| {
            passwd_line(bytes).map(|line| fill_passwd(line, pwd, buf, len))
        })
    }
}

/// The next group entry of `stream`, with `fgetgrent_r`'s contract.
///
/// # Safety
/// As [`next_passwd`].
pub unsafe extern "C" fn next_group(
    stream: *mut FILE,
    grp: *mut group,
    buf: *mut c_char,
    len: size_t,
    result: *mut *mut group,
) -> c_int {
    // SAFETY: the caller's stream and out-pointer.
    unsafe {
        next_entry(stream, result, |bytes| {
            group_line(bytes).map(|line| fill_group(line, grp, buf, len))
        })
    }
}

/// The next shadow entry of `stream`, with `fgetspent_r`'s contract.
///
/// # Safety
/// As [`next_passwd`].
pub unsafe extern "C" fn next_shadow(
    stream: *mut FILE,
    entry: *mut spwd,
    buf: *mut c_char,
    len: size_t,
    result: *mut *mut spwd,
) -> c_int {
    // SAFETY: the caller's stream and out-pointer.
    unsafe {
        next_entry(stream, result, |bytes| {
            shadow_line(bytes).map(|line| fill_shadow(line, entry, buf, len))
        })
    }
}

/// Reads lines until `entry` makes an entry of one (`None`: a line to skip).
///
/// # Safety
/// `stream` is open for reading; `result` is writable.
unsafe fn next_entry<T>(
    stream: *mut FILE,
    result: *mut *mut T,
    mut entry: impl FnMut(&[u8]) -> Option<Result<*mut T, c_int>>,
) -> c_int {
    if result.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: the caller's out-pointer.
    unsafe { *result = std::ptr::null_mut() };
    let mut line = Line::new();
    loop {
        // SAFETY: the caller's stream.
        let start = unsafe { libc::ftello(stream) };
        // SAFETY: the caller's stream.
        let Some(bytes) = (unsafe { line.read(stream) }) else {
            return libc::ENOENT;
        };
        match entry(bytes) {
            None => {}
            Some(Ok(filled)) => {
                // SAFETY: the caller's out-pointer.
                unsafe { *result = filled };
                return 0;
            }
            Some(Err(code)) => {
                // As glibc's: a caller that grows its buffer reads the same line again.
                // SAFETY: the caller's stream, back where this line began.
                unsafe { libc::fseeko(stream, start, libc::SEEK_SET) };
                return code;
            }
        }
    }
}

/// One line from `getline`, whose buffer libc allocates and this frees.
struct Line {
    ptr: *mut c_char,
    cap: size_t,
}

impl Line {
    fn new() -> Self {
        Self {
            ptr: std::ptr::null_mut(),
            cap: 0,
        }
    }

    /// # Safety
    /// `stream` is open for reading.
    unsafe fn read(&mut self, stream: *mut FILE) -> Option<&[u8]> {
        // SAFETY: getline's contract: our buffer pointer and size, the caller's stream.
        let n = unsafe { libc::getline(&mut self.ptr, &mut self.cap, stream) };
        if n < 0 || self.ptr.is_null() {
            return None;
        }
        // SAFETY: getline wrote `n` bytes there.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), n as usize) })
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        // SAFETY: getline's buffer (or NULL), freed once.
        unsafe { libc::free(self.ptr.cast()) };
    }
}

/// Hands out the caller's buffer: pointer arrays first, then NUL-terminated strings.
struct Storage {
    buf: *mut c_char,
    len: usize,
    at: usize,
}

impl Storage {
    fn string(&mut self, s: &[u8]) -> Result<*mut c_char, c_int> {
        if self.at + s.len() + 1 > self.len {
            return Err(libc::ERANGE);
        }
        let start = self.buf.wrapping_add(self.at);
        // SAFETY: `at + s.len() < len`: inside the caller's buffer, which `s` is not in.
        unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), start.cast(), s.len()) };
        // SAFETY: as above, the byte after the string.
        unsafe { *start.wrapping_add(s.len()) = 0 };
        self.at += s.len() + 1;
        Ok(start)
    }

    /// `count` pointer slots, aligned for pointers.
    fn pointers(&mut self, count: usize) -> Result<*mut *mut c_char, c_int> {
        let pad = self
            .buf
            .wrapping_add(self.at)
            .align_offset(align_of::<*mut c_char>());
        let bytes = count * size_of::<*mut c_char>();
        if self.at + pad + bytes > self.len {
            return Err(libc::ERANGE);
        }
        self.at += pad + bytes;
        Ok(self.buf.wrapping_add(self.at - bytes).cast())
    }
}

fn fill_passwd(
    line: PasswdLine<'_>,
    pwd: *mut passwd,
    buf: *mut c_char,
    len: size_t,
) -> Result<*mut passwd, c_int> {
    let mut store = Storage { buf, len, at: 0 };
    let entry = passwd {
        pw_name: store.string(line.name)?,
        pw_passwd: store.string(line.password)?,
        pw_uid: line.uid,
        pw_gid: line.gid,
        pw_gecos: store.string(line.gecos)?,
        pw_dir: store.string(line.dir)?,
        pw_shell: store.string(line.shell)?,
    };
    // SAFETY: the caller's passwd structure.
    unsafe { pwd.write(entry) };
    Ok(pwd)
}

fn fill_group(
    line: GroupLine<'_>,
    grp: *mut group,
    buf: *mut c_char,
    len: size_t,
) -> Result<*mut group, c_int> {
    let mut store = Storage { buf, len, at: 0 };
    let count = line.members().count();
    let members = store.pointers(count + 1)?;
    for (i, member) in line.members().enumerate() {
        let name = store.string(member)?;
        // SAFETY: slot `i` of the `count + 1` just reserved.
        unsafe { members.wrapping_add(i).write(name) };
    }
    // SAFETY: the last slot reserved.
    unsafe { members.wrapping_add(count).write(std::ptr::null_mut()) };
    let entry = group {
        gr_name: store.string(line.name)?,
        gr_passwd: store.string(line.password)?,
        gr_gid: line.gid,
        gr_mem: members,
    };
    // SAFETY: the caller's group structure.
    unsafe { grp.write(entry) };
    Ok(grp)
}

fn fill_shadow(
    line: ShadowLine<'_>,
    entry: *mut spwd,
    buf: *mut c_char,
    len: size_t,
) -> Result<*mut spwd, c_int> {
    let mut store = Storage { buf, len, at: 0 };
    let [lstchg, min, max, warn, inact, expire, flag] = line.numbers;
    let filled = spwd {
        sp_namp: store.string(line.name)?,
        sp_pwdp: store.string(line.password)?,
        sp_lstchg: lstchg as libc::c_long,
        sp_min: min as libc::c_long,
        sp_max: max as libc::c_long,
        sp_warn: warn as libc::c_long,
        sp_inact: inact as libc::c_long,
        sp_expire: expire as libc::c_long,
        // An empty flag is -1, all ones as C converts it.
        sp_flag: flag as libc::c_ulong,
    };
    // SAFETY: the caller's spwd structure.
    unsafe { entry.write(filled) };
    Ok(entry)
}
