//! A bound on what the tar reader holds in memory. The `tar` crate reads a PAX header's
//! records and a GNU long name whole; a layer that declares gigabytes for one (a few MB of
//! gzip) would exhaust a function's memory. This reader watches the stream's headers as the
//! bytes pass through, unchanged, and fails the read when such a header is larger than
//! [`MAX_META_BYTES`] (Go's `archive/tar` allows 1 MiB as well).

use std::io::{self, Read};

/// The largest PAX header (`x`, `g`) or GNU long name (`L`, `K`) accepted.
pub const MAX_META_BYTES: u64 = 1024 * 1024;

const BLOCK: usize = 512;

enum State {
    /// Filling the next 512-byte header (`filled` bytes of the guard's block so far).
    Header { filled: usize },
    /// Inside an entry's data (padded to whole blocks); PAX records are kept to find `size`.
    Data {
        remaining: u64,
        records: Option<Vec<u8>>,
    },
    /// After an entry this guard cannot follow (GNU sparse headers carry extension blocks):
    /// the unpacker refuses that entry anyway, so the rest passes unwatched.
    Unwatched,
}

/// Passes a tar stream through, refusing oversized metadata headers.
pub struct HeaderGuard<R> {
    inner: R,
    state: State,
    /// The header being read; one buffer for the whole stream.
    block: [u8; BLOCK],
    /// A PAX `size` record, which replaces the next entry's header size.
    next_size: Option<u64>,
}

impl<R: Read> HeaderGuard<R> {
    /// Watches `inner`, a plain (decompressed) tar stream.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            state: State::Header { filled: 0 },
            block: [0; BLOCK],
            next_size: None,
        }
    }

    fn watch(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Unwatched => return Ok(()),
                State::Header { filled } => {
                    let n = (BLOCK - *filled).min(bytes.len());
                    self.block[*filled..*filled + n].copy_from_slice(&bytes[..n]);
                    *filled += n;
                    bytes = &bytes[n..];
                    if *filled == BLOCK {
                        self.on_header()?;
                    }
                }
                State::Data { remaining, records } => {
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    if let Some(records) = records {
                        records.extend_from_slice(&bytes[..n]);
                    }
                    *remaining -= n as u64;
                    bytes = &bytes[n..];
                    if *remaining == 0 {
                        if let Some(records) = records.take() {
                            self.next_size = pax_size(&records);
                        }
                        self.state = State::Header { filled: 0 };
                    }
                }
            }
        }
        Ok(())
    }

    fn on_header(&mut self) -> io::Result<()> {
        let fresh = State::Header { filled: 0 };
        let header = &self.block;
        if header.iter().all(|&b| b == 0) {
            self.state = fresh;
            return Ok(());
        }
        let kind = header[156];
        let declared = numeric(&header[124..136]);
        let meta = matches!(kind, b'x' | b'g' | b'L' | b'K');
        let size = if meta {
            declared
        } else {
            self.next_size.take().or(declared)
        };
        let Some(size) = size else {
            // The tar crate names an unreadable size itself.
            self.state = State::Unwatched;
            return Ok(());
        };
        if meta && size > MAX_META_BYTES {
            let what = if matches!(kind, b'x' | b'g') {
                "PAX header"
            } else {
                "GNU long name"
            };
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a {what} of {size} bytes (at most {MAX_META_BYTES} are read)"),
            ));
        }
        if kind == b'S' {
            self.state = State::Unwatched;
            return Ok(());
        }
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        self.state = if padded == 0 {
            fresh
        } else {
            State::Data {
                remaining: padded,
                records: (kind == b'x').then(Vec::new),
            }
        };
        Ok(())
    }
}

/// A tar numeric field: octal text, or base-256 when the high bit is set.
fn numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size` record of PAX data, if any.
fn pax_size(records: &[u8]) -> Option<u64> {
    // The data is padded to a whole block with NULs.
    let end = records.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let mut rest = &records[..end];
    let mut size = None;
    while let Some(space) = rest.iter().position(|&b| b == b' ') {
        let Some(length) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
        else {
            break;
        };
        let Some(record) = rest.get(space + 1..length) else {
            break;
        };
        if let Some(value) = record.strip_prefix(b"size=") {
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        }
        rest = &rest[length..];
    }
    size
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.watch(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: u8, size: u64) -> Vec<u8> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_size(size);
        header.set_path("x").unwrap();
        header.set_cksum();
        header.as_bytes().to_vec()
    }

    fn read_all(bytes: &[u8], chunk: usize) -> io::Result<()> {
        let mut guard = HeaderGuard::new(bytes);
        let mut buf = vec![0; chunk];
        while guard.read(&mut buf)? > 0 {}
        Ok(())
    }

    #[test]
    fn oversized_metadata_headers_fail_the_read_whatever_the_chunking() {
        for kind in [b'x', b'g', b'L', b'K'] {
            let big = entry(kind, MAX_META_BYTES + 1);
            for chunk in [1, 100, 512, 4096] {
                let err = read_all(&big, chunk).unwrap_err();
                assert!(err.to_string().contains("at most"), "{err}");
            }
        }
        // A large regular file is data, not metadata.
        let mut file = entry(b'0', 3 * MAX_META_BYTES);
        file.resize(file.len() + 3 * MAX_META_BYTES as usize, b'a');
        file.extend(entry(b'x', 10));
        file.resize(file.len() + 512, 0);
        read_all(&file, 7000).unwrap();
    }

    #[test]
    fn a_pax_size_record_moves_the_next_header() {
        // The PAX record says the next file holds 1024 bytes though its header says 0: the
        // header after that is then found 1024 bytes later, and it is oversized.
        let record = b"13 size=1024\n";
        let mut stream = entry(b'x', record.len() as u64);
        stream.extend_from_slice(record);
        stream.resize(1024, 0);
        stream.extend(entry(b'0', 0));
        stream.resize(stream.len() + 1024, b'z');
        stream.extend(entry(b'L', MAX_META_BYTES * 2));
        assert!(read_all(&stream, 333).is_err());
        assert_eq!(numeric(b"\x80\0\0\0\0\0\0\0\0\0\x01\0"), Some(256));
        assert_eq!(numeric(b"00000001750\0"), Some(1000));
    }
}
