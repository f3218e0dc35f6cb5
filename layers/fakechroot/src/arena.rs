//! Scratch memory for building an exec's argv and envp without malloc.
//!
//! Exec wrappers run in vfork children (glibc's posix_spawn, Python's subprocess), where
//! malloc may deadlock on a lock held by the parent's other threads. An anonymous mapping
//! is safe there, is lazily backed, and disappears with the old image on success.

use std::ffi::{c_char, c_int};

#[derive(Debug)]
pub struct Arena {
    base: *mut u8,
    cap: usize,
    used: usize,
}

const PAGE: usize = 4096;

impl Arena {
    pub fn new(size: usize) -> Result<Self, c_int> {
        let cap = size.div_ceil(PAGE) * PAGE;
        // SAFETY: a raw anonymous private mapping; no libc state involved.
        let base = unsafe {
            crate::sys::raw_syscall!(
                libc::SYS_mmap,
                std::ptr::null_mut::<u8>(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1_i32,
                0,
            )
        };
        if base < 0 {
            return Err(libc::ENOMEM);
        }
        Ok(Self {
            base: base as *mut u8,
            cap,
            used: 0,
        })
    }

    fn take(&mut self, len: usize, align: usize) -> Result<*mut u8, c_int> {
        let start = self.used.div_ceil(align) * align;
        let end = start.checked_add(len).ok_or(libc::E2BIG)?;
        if end > self.cap {
            return Err(libc::E2BIG);
        }
        self.used = end;
        // SAFETY: inside the mapping.
        Ok(unsafe { self.base.add(start) })
    }

    /// `len` bytes of scratch space, zeroed.
    pub fn bytes(&mut self, len: usize) -> Result<&mut [u8], c_int> {
        let start = self.take(len, 1)?;
        // SAFETY: `take` reserved `len` bytes inside the mapping, which lives as long as
        // `self` and is handed out once.
        Ok(unsafe { std::slice::from_raw_parts_mut(start, len) })
    }

    /// The concatenation of `parts`, NUL-terminated.
    pub fn string(&mut self, parts: &[&[u8]]) -> Result<*const c_char, c_int> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let out = self.take(len + 1, 1)?;
        let mut at = 0;
        for part in parts {
            // SAFETY: `at + part.len() <= len`, inside the `len + 1` bytes just taken.
            let dest = unsafe { out.add(at) };
            // SAFETY: `dest` has room for `part`, and parts never overlap the fresh region.
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), dest, part.len()) };
            at += part.len();
        }
        // SAFETY: `len` is the last byte of the `len + 1` bytes taken.
        let end = unsafe { out.add(len) };
        // SAFETY: `end` is inside the region and writable.
        unsafe { *end = 0 };
        Ok(out.cast_const().cast())
    }

    /// A pointer vector with room for `len` entries and the NULL after them.
    pub fn vector(&mut self, len: usize) -> Result<Vector, c_int> {
        let bytes = (len + 1)
            .checked_mul(std::mem::size_of::<*const c_char>())
            .ok_or(libc::E2BIG)?;
        let ptr = self
            .take(bytes, std::mem::align_of::<*const c_char>())?
            .cast::<*const c_char>();
        Ok(Vector {
            ptr,
            cap: len,
            len: 0,
        })
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmapping the region mapped in `new`.
        unsafe { crate::sys::raw_syscall!(libc::SYS_munmap, self.base, self.cap) };
    }
}

/// A NULL-terminated `char *[]` inside an arena.
#[derive(Debug)]
pub struct Vector {
    ptr: *mut *const c_char,
    cap: usize,
    len: usize,
}

impl Vector {
    pub fn push(&mut self, item: *const c_char) -> Result<(), c_int> {
        if self.len == self.cap {
            return Err(libc::E2BIG);
        }
        // SAFETY: `len < cap`, and the vector has `cap + 1` slots (the last for the NULL).
        let slot = unsafe { self.ptr.add(self.len) };
        // SAFETY: `slot` and the one after it are inside the vector's slots.
        let next = unsafe { slot.add(1) };
        // SAFETY: `slot` is a valid, writable slot of the vector.
        unsafe { *slot = item };
        // SAFETY: `next` is at most slot `cap`, kept for the NULL.
        unsafe { *next = std::ptr::null() };
        self.len += 1;
        Ok(())
    }

    pub fn extend(&mut self, items: &[*const c_char]) -> Result<(), c_int> {
        items.iter().try_for_each(|&item| self.push(item))
    }

    pub fn as_ptr(&self) -> *const *const c_char {
        if self.len == 0 {
            // SAFETY: slot 0 exists (capacity + 1 entries were reserved).
            unsafe { *self.ptr = std::ptr::null() };
        }
        self.ptr.cast_const()
    }

    pub fn as_slice(&self) -> &[*const c_char] {
        // SAFETY: the first `len` slots are initialised.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The entries of a NULL-terminated `char *[]` (empty for NULL).
///
/// # Safety
/// `list` is NULL or a valid NULL-terminated array that outlives `'a`.
pub unsafe fn entries<'a>(list: *const *const c_char) -> &'a [*const c_char] {
    if list.is_null() {
        return &[];
    }
    let mut len = 0;
    loop {
        // SAFETY: entries up to and including the terminating NULL are inside the array.
        let entry = unsafe { list.add(len) };
        // SAFETY: `entry` points at an initialised entry of the array.
        if unsafe { *entry }.is_null() {
            break;
        }
        len += 1;
    }
    // SAFETY: the `len` entries before the NULL, valid for `'a` by the caller's promise.
    unsafe { std::slice::from_raw_parts(list, len) }
}
