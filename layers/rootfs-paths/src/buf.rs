//! A NUL-terminated path built on the stack.

/// Linux `PATH_MAX`, terminator included.
pub const PATH_MAX: usize = 4096;

/// Decimal digits of `n` in `buf`, which holds every `u64`.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    &buf[at..]
}

/// The `u32` that `digits` spell in decimal, or `None` for anything else (empty, a sign, a
/// space, a value past `u32::MAX`): ids in the kernel's and the account files' text.
pub fn parse_decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0_u32, |n, &d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// The path did not fit in `PATH_MAX` bytes; callers report `ENAMETOOLONG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A path under construction; always NUL-terminated so it can go straight to a syscall.
pub struct PathBuf {
    bytes: [u8; PATH_MAX],
    len: usize,
}

impl core::fmt::Debug for PathBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PathBuf({:?})", core::str::from_utf8(self.as_bytes()))
    }
}

impl Default for PathBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl PathBuf {
    pub const fn new() -> Self {
        Self {
            bytes: [0; PATH_MAX],
            len: 0,
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.bytes[0] = 0;
    }

    pub fn push(&mut self, part: &[u8]) -> Result<(), Overflow> {
        let end = self.len + part.len();
        if end >= PATH_MAX {
            return Err(Overflow);
        }
        self.bytes[self.len..end].copy_from_slice(part);
        self.bytes[end] = 0;
        self.len = end;
        Ok(())
    }

    pub fn set(&mut self, path: &[u8]) -> Result<(), Overflow> {
        self.clear();
        self.push(path)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The bytes with their terminator, for a C call.
    pub fn as_bytes_with_nul(&self) -> &[u8] {
        &self.bytes[..=self.len]
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.bytes.as_ptr()
    }

    /// The path as a C string: the buffer always holds its terminator, and a path taken
    /// from a C string has no NUL inside, so the string ends where the path does.
    pub fn as_c_str(&self) -> &core::ffi::CStr {
        core::ffi::CStr::from_bytes_until_nul(self.as_bytes_with_nul()).unwrap_or(c"")
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops the last component (`/a/b` → `/a`, `/a` → `/`).
    pub fn pop_component(&mut self) {
        let trimmed = match self.as_bytes().iter().rposition(|&b| b == b'/') {
            Some(0) => 1,
            Some(i) => i,
            None => 0,
        };
        self.len = trimmed;
        self.bytes[trimmed] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_keeps_a_terminator_and_refuses_overflow() {
        let mut p = PathBuf::new();
        p.push(b"/usr").unwrap_or_default();
        p.push(b"/bin").unwrap_or_default();
        assert_eq!(p.as_bytes_with_nul(), b"/usr/bin\0");
        let long = [b'a'; PATH_MAX];
        assert_eq!(p.push(&long), Err(Overflow));
        assert_eq!(p.as_bytes(), b"/usr/bin", "a failed push changes nothing");
    }

    #[test]
    fn pop_component_stops_at_root() {
        let mut p = PathBuf::new();
        p.set(b"/a/b").unwrap_or_default();
        p.pop_component();
        assert_eq!(p.as_bytes(), b"/a");
        p.pop_component();
        assert_eq!(p.as_bytes(), b"/");
    }
}
