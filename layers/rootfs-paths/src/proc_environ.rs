//! One variable of a process's environment as it started, read from `/proc/<pid>/environ`
//! (`NAME=value` entries, each ended by a NUL) a chunk at a time, so that no environment,
//! however large, is held whole: how the shim learns another process's `SCAR_FC_EXE`
//! ([`crate::proc_exe`]) and, for loaders without `--argv0`, its `SCAR_FC_ARGV0`
//! ([`crate::proc_cmdline`]).

/// The value was longer than the room given for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// Finds one variable in an environment file, fed a chunk at a time.
#[derive(Debug)]
pub struct Finder<'a> {
    /// `NAME=`.
    assignment: &'a [u8],
    /// Bytes of `assignment` matched from the start of the current entry; `None` once the
    /// entry is another variable (until its NUL).
    matched: Option<usize>,
    /// Bytes of the value copied so far, once `assignment` matched.
    value: Option<usize>,
}

impl<'a> Finder<'a> {
    pub fn new(assignment: &'a [u8]) -> Self {
        Self {
            assignment,
            matched: Some(0),
            value: None,
        }
    }

    /// Reads the next bytes of the file, copying the value into `out`: `Some` with its
    /// length once the entry's NUL is read, `None` while more is needed.
    pub fn feed(&mut self, bytes: &[u8], out: &mut [u8]) -> Option<Result<usize, TooLong>> {
        for &byte in bytes {
            if let Some(len) = self.value {
                if byte == 0 {
                    return Some(Ok(len));
                }
                let Some(slot) = out.get_mut(len) else {
                    return Some(Err(TooLong));
                };
                *slot = byte;
                self.value = Some(len + 1);
                continue;
            }
            self.matched = match (self.matched, byte) {
                (_, 0) => Some(0),
                (Some(at), _) if self.assignment.get(at) == Some(&byte) => {
                    if at + 1 == self.assignment.len() {
                        self.value = Some(0);
                    }
                    Some(at + 1)
                }
                _ => None,
            };
        }
        None
    }

    /// The file ended: a last entry without its NUL still counts.
    pub fn finish(&self) -> Option<usize> {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(file: &[u8], chunk: usize, room: usize) -> Option<Result<std::vec::Vec<u8>, TooLong>> {
        let mut out = std::vec![0u8; room];
        let mut finder = Finder::new(b"SCAR_FC_EXE=");
        for piece in file.chunks(chunk.max(1)) {
            if let Some(found) = finder.feed(piece, &mut out) {
                return Some(found.map(|len| out[..len].to_vec()));
            }
        }
        finder.finish().map(|len| Ok(out[..len].to_vec()))
    }

    #[test]
    fn the_variable_is_found_at_an_entry_start_whatever_the_chunks() {
        let file =
            b"PATH=/bin\0XSCAR_FC_EXE=/no\0A=SCAR_FC_EXE=/no\0SCAR_FC_EXE=/usr/bin/sleep\0Z=1\0";
        for chunk in 1..file.len() + 1 {
            assert_eq!(
                find(file, chunk, 64),
                Some(Ok(b"/usr/bin/sleep".to_vec())),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn absent_empty_unterminated_and_too_long_values() {
        assert_eq!(find(b"A=1\0B=2\0", 3, 64), None);
        assert_eq!(find(b"", 3, 64), None);
        assert_eq!(
            find(b"SCAR_FC_EXE=\0", 3, 64),
            Some(Ok(std::vec::Vec::new()))
        );
        assert_eq!(
            find(b"A=1\0SCAR_FC_EXE=/x", 2, 64),
            Some(Ok(b"/x".to_vec()))
        );
        assert_eq!(find(b"SCAR_FC_EXE=/long/path\0", 4, 5), Some(Err(TooLong)));
        // A name that only begins like it, and one cut short by its NUL.
        assert_eq!(find(b"SCAR_FC_EXEC=/x\0SCAR_FC_EX\0", 1, 64), None);
    }
}
