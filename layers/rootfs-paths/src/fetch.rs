//! The fetch protocol of lazy trees, both ends: the shim asks bootstrap's fetcher (the
//! socket `protocol::FETCH` names) for a file or a program before using it, in one line,
//! and reads one line back. Written here once, without allocating, for the shim's exec path.
//!
//! Requests: `F DEV INO` (a file about to be opened, by device and inode), `X PATH` (a
//! program about to run or a library about to be loaded, by absolute host path), `L NAME`
//! (a library loaded by name alone). Answer: `0`, or the errno the call fails with.

use crate::buf::{PATH_MAX, decimal};

/// The longest request line, newline included.
pub const REQUEST_MAX: usize = 16 + PATH_MAX;

/// One request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `F DEV INO`.
    File {
        /// `st_dev`.
        dev: u64,
        /// `st_ino`.
        ino: u64,
    },
    /// `X PATH`: an absolute host path.
    Program(&'a [u8]),
    /// `L NAME`: a name without `/`.
    Library(&'a [u8]),
}

impl<'a> Request<'a> {
    /// The request's line in `buf`, newline included; `None` when it cannot be written (too
    /// long, a newline in a name, a relative program, a name with `/`).
    pub fn encode<'b>(&self, buf: &'b mut [u8; REQUEST_MAX]) -> Option<&'b [u8]> {
        let mut line = Line { buf, len: 0 };
        match *self {
            Self::File { dev, ino } => {
                let mut digits = [0u8; 20];
                line.push(b"F ")?;
                line.push(decimal(dev, &mut digits))?;
                line.push(b" ")?;
                line.push(decimal(ino, &mut digits))?;
            }
            Self::Program(path) if path.starts_with(b"/") && !path.contains(&b'\n') => {
                line.push(b"X ")?;
                line.push(path)?;
            }
            Self::Library(name) if is_plain_name(name) => {
                line.push(b"L ")?;
                line.push(name)?;
            }
            _ => return None,
        }
        line.push(b"\n")?;
        let len = line.len;
        Some(&line.buf[..len])
    }

    /// Reads a request line (without its newline); `None` for anything malformed.
    pub fn parse(line: &'a [u8]) -> Option<Self> {
        let (kind, rest) = (line.get(..2)?, line.get(2..)?);
        match kind {
            b"F " => {
                let space = rest.iter().position(|&b| b == b' ')?;
                Some(Self::File {
                    dev: parse_decimal(&rest[..space])?,
                    ino: parse_decimal(&rest[space + 1..])?,
                })
            }
            b"X " if rest.starts_with(b"/") && !rest.contains(&b'\n') => Some(Self::Program(rest)),
            b"L " if is_plain_name(rest) => Some(Self::Library(rest)),
            _ => None,
        }
    }
}

/// The answer line for `errno` (0: done).
pub fn encode_answer(errno: i32, buf: &mut [u8; 24]) -> &[u8] {
    let mut digits = [0u8; 20];
    let text = decimal(u64::from(errno.unsigned_abs()), &mut digits);
    buf[..text.len()].copy_from_slice(text);
    buf[text.len()] = b'\n';
    &buf[..=text.len()]
}

/// The errno an answer carries (0: done); `None` when it holds no number.
pub fn parse_answer(answer: &[u8]) -> Option<i32> {
    let end = answer
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(answer.len());
    let code = parse_decimal(&answer[..end])?;
    i32::try_from(code).ok()
}

/// The nanoseconds of a placeholder's access time. A placeholder has no block, as a file
/// made sparse on purpose (`truncate -s`) may have none; this mark, which a layer's whole-second
/// times never carry, lets `stat` tell them apart without asking the fetcher. Filling the
/// file gives it its times afresh, without the mark.
pub const PLACEHOLDER_ATIME_NSEC: u32 = 999_999_937;

/// Whether a regular file's `stat` describes a placeholder: bytes to come, no block, and
/// the mark in its access time.
pub fn is_placeholder(size: u64, blocks: u64, atime_nsec: u64) -> bool {
    size > 0 && blocks == 0 && atime_nsec == u64::from(PLACEHOLDER_ATIME_NSEC)
}

/// What `stat` reports for a placeholder of `size` bytes on a filesystem of `blksize`-byte
/// blocks, as the whole file will show once filled (written densely, as the eager pull
/// writes it): its 512-byte blocks, and its access time's nanoseconds, the modification
/// time's (`mtime_nsec`), which an eager pull sets both to.
pub fn placeholder_stat(size: u64, blksize: u64, mtime_nsec: u64) -> (u64, u64) {
    let block = if blksize >= 512 { blksize } else { 4096 };
    let blocks = size.div_ceil(block).saturating_mul(block / 512);
    (blocks, mtime_nsec)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

fn is_plain_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.contains(&b'/') && !name.contains(&b'\n')
}

struct Line<'b> {
    buf: &'b mut [u8; REQUEST_MAX],
    len: usize,
}

impl Line<'_> {
    fn push(&mut self, part: &[u8]) -> Option<()> {
        let slot = self.buf.get_mut(self.len..self.len + part.len())?;
        slot.copy_from_slice(part);
        self.len += part.len();
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn a_placeholder_is_told_from_a_sparse_file_by_its_mark_and_reports_its_dense_blocks() {
        let mark = u64::from(PLACEHOLDER_ATIME_NSEC);
        assert!(is_placeholder(5000, 0, mark));
        assert!(!is_placeholder(5000, 0, 0), "a file made sparse on purpose");
        assert!(!is_placeholder(5000, 16, mark), "a file with blocks");
        assert!(
            !is_placeholder(0, 0, mark),
            "an empty file has no bytes to come"
        );
        // 5000 bytes take two 4 KiB blocks, sixteen of 512 bytes.
        assert_eq!(placeholder_stat(5000, 4096, 0), (16, 0));
        assert_eq!(placeholder_stat(4096, 4096, 7), (8, 7));
        assert_eq!(placeholder_stat(1, 1024, 0), (2, 0));
        assert_eq!(
            placeholder_stat(1, 0, 0),
            (8, 0),
            "an unknown block size is 4 KiB"
        );
    }

    fn round_trip(request: Request<'_>) -> Option<Vec<u8>> {
        let mut buf = [0u8; REQUEST_MAX];
        let line = request.encode(&mut buf)?.to_vec();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(Request::parse(&line[..line.len() - 1]), Some(request));
        Some(line)
    }

    #[test]
    fn requests_round_trip_as_one_line() {
        let file = Request::File {
            dev: 2049,
            ino: u64::MAX,
        };
        assert_eq!(
            round_trip(file).as_deref(),
            Some(&b"F 2049 18446744073709551615\n"[..])
        );
        let program = Request::Program(b"/tmp/scar/images/k/rootfs/usr/bin/python3");
        assert_eq!(
            round_trip(program).as_deref(),
            Some(&b"X /tmp/scar/images/k/rootfs/usr/bin/python3\n"[..])
        );
        assert!(round_trip(Request::Library(b"libz.so.1")).is_some());
    }

    #[test]
    fn what_cannot_be_one_request_is_refused_at_both_ends() {
        let mut buf = [0u8; REQUEST_MAX];
        let long = [b'a'; PATH_MAX + 20];
        let mut path = [b'/'; PATH_MAX];
        path[1] = b'x';
        assert!(Request::Program(b"relative").encode(&mut buf).is_none());
        assert!(Request::Program(b"/a\nb").encode(&mut buf).is_none());
        assert!(Request::Library(b"a/b").encode(&mut buf).is_none());
        assert!(Request::Library(&long).encode(&mut buf).is_none());
        assert!(Request::Program(&path).encode(&mut buf).is_some());
        for bad in [
            &b""[..],
            b"F",
            b"F 1",
            b"F x 2",
            b"F 1 2 3",
            b"F -1 2",
            b"F 1 99999999999999999999999",
            b"X relative",
            b"Y /x",
            b"L ",
            b"L a/b",
        ] {
            assert_eq!(Request::parse(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn answers_carry_an_errno() {
        let mut buf = [0u8; 24];
        assert_eq!(encode_answer(0, &mut buf), b"0\n");
        assert_eq!(parse_answer(encode_answer(5, &mut buf)), Some(5));
        assert_eq!(parse_answer(b"0"), Some(0));
        assert_eq!(parse_answer(b""), None);
        assert_eq!(parse_answer(b"x\n"), None);
        assert_eq!(parse_answer(b"99999999999\n"), None);
    }
}
