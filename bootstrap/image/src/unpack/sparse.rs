//! PAX sparse files, extracted as GNU tar extracts them: with their holes.
//!
//! GNU tar stores a sparse file under `--format=posix` in one of three encodings, all marked
//! by `GNU.sparse.*` PAX records: 0.0 (repeated `GNU.sparse.offset`/`numbytes` records), 0.1
//! (one `GNU.sparse.map` record) and 1.0 (the map as decimal lines at the start of the data,
//! padded to a 512-byte block). The data holds only the non-hole chunks, in order. Extracted
//! naively, 1.0 would leave the map in the file and every format would put the chunks end to
//! end; the real name (`GNU.sparse.name`) would be replaced by `GNUSparseFile.N/…`.
//!
//! The map is checked before a byte is written: chunks in order, without overlap, inside the
//! real size, within the data (data past the last chunk is skipped, as GNU tar skips it); at
//! most [`MAX_CHUNKS`] chunks and a real size of at most [`MAX_REAL_SIZE`]; a larger apparent
//! size is refused by name.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// The most chunks a map may have.
pub const MAX_CHUNKS: usize = 100_000;
/// The largest real (apparent) size of a sparse file: holes cost no disk, but every reader
/// of the file (a checksum, a copy out of the function) reads the zeros.
pub const MAX_REAL_SIZE: u64 = 4 << 30;

/// What the `GNU.sparse.*` records say about one entry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sparse {
    /// The file's real name, when the records give it.
    pub name: Option<Vec<u8>>,
    real_size: Option<u64>,
    version: (u64, u64),
    /// Format 0.1's map, or 0.0's offsets and sizes as they came.
    map_record: Option<Vec<u8>>,
    offsets: Vec<u64>,
    sizes: Vec<u64>,
}

fn number(value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "sparse map: {:?} is not a number",
                String::from_utf8_lossy(value)
            )
        })
}

impl Sparse {
    /// Takes one PAX record; `false` when it is not a sparse record.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> Result<bool, String> {
        match key {
            b"GNU.sparse.major" => self.version.0 = number(value)?,
            b"GNU.sparse.minor" => self.version.1 = number(value)?,
            b"GNU.sparse.name" => self.name = Some(value.to_vec()),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => self.real_size = Some(number(value)?),
            b"GNU.sparse.map" => self.map_record = Some(value.to_vec()),
            b"GNU.sparse.offset" => self.offsets.push(number(value)?),
            b"GNU.sparse.numbytes" => self.sizes.push(number(value)?),
            b"GNU.sparse.numblocks" => {
                number(value)?;
            }
            other if other.starts_with(b"GNU.sparse.") => {
                return Err(format!(
                    "unknown sparse record {:?}",
                    String::from_utf8_lossy(other)
                ));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The real size, checked.
    fn real_size(&self) -> Result<u64, String> {
        let size = self
            .real_size
            .ok_or("sparse file without GNU.sparse.realsize or GNU.sparse.size")?;
        if size > MAX_REAL_SIZE {
            return Err(format!(
                "sparse file of {size} bytes: larger than {MAX_REAL_SIZE} bytes"
            ));
        }
        Ok(size)
    }

    /// Writes the file: reads the map (from the records, or for 1.0 from the start of
    /// `data`), then each chunk at its offset; the holes stay holes. Returns the bytes of data.
    pub fn extract(
        &self,
        data: &mut impl Read,
        file: &mut (impl Write + Seek + FileLen),
        data_size: u64,
        buffer: &mut [u8],
    ) -> Result<u64, String> {
        let real_size = self.real_size()?;
        let (map, map_bytes) = if self.version == (1, 0) {
            read_data_map(data)?
        } else if self.version != (0, 0) {
            return Err(format!(
                "sparse format {}.{} is not one GNU tar writes",
                self.version.0, self.version.1
            ));
        } else if let Some(record) = &self.map_record {
            (parse_pairs(record.split(|&b| b == b','))?, 0)
        } else {
            if self.offsets.len() != self.sizes.len() {
                return Err("sparse map: offsets and sizes do not pair up".into());
            }
            (
                self.offsets
                    .iter()
                    .copied()
                    .zip(self.sizes.iter().copied())
                    .collect(),
                0,
            )
        };
        check_map(&map, real_size, data_size.saturating_sub(map_bytes))?;
        let mut written = 0;
        for &(offset, size) in &map {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| e.to_string())?;
            let mut left = size;
            while left > 0 {
                let want = buffer
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = match data.read(&mut buffer[..want]) {
                    Ok(0) => return Err("sparse data ends before its map".into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.to_string()),
                };
                file.write_all(&buffer[..n]).map_err(|e| e.to_string())?;
                left -= n as u64;
                written += n as u64;
            }
        }
        file.set_file_len(real_size).map_err(|e| e.to_string())?;
        Ok(written)
    }
}

/// `set_len`, as a trait so tests can extract into memory.
pub trait FileLen {
    fn set_file_len(&mut self, len: u64) -> io::Result<()>;
}

impl FileLen for std::fs::File {
    fn set_file_len(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

fn parse_pairs<'a>(mut numbers: impl Iterator<Item = &'a [u8]>) -> Result<Vec<(u64, u64)>, String> {
    let mut map = Vec::new();
    while let Some(offset) = numbers.next() {
        if offset.is_empty() && map.is_empty() {
            break;
        }
        let size = numbers
            .next()
            .ok_or("sparse map: an offset without a size")?;
        map.push((number(offset)?, number(size)?));
        if map.len() > MAX_CHUNKS {
            return Err(format!("sparse map of more than {MAX_CHUNKS} chunks"));
        }
    }
    Ok(map)
}

/// Format 1.0: the count, then offset and size lines, padded to 512 bytes.
fn read_data_map(data: &mut impl Read) -> Result<(Vec<(u64, u64)>, u64), String> {
    let mut text = Vec::new();
    let mut block = [0u8; 512];
    let mut wanted: Option<usize> = None;
    loop {
        data.read_exact(&mut block)
            .map_err(|_| "sparse map: the data ends inside the map".to_string())?;
        text.extend_from_slice(&block);
        let lines = text.iter().filter(|&&b| b == b'\n').count();
        if wanted.is_none() && lines >= 1 {
            let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
            let count = usize::try_from(number(first)?).map_err(|e| e.to_string())?;
            if count > MAX_CHUNKS {
                return Err(format!("sparse map of more than {MAX_CHUNKS} chunks"));
            }
            wanted = Some(1 + 2 * count);
        }
        if let Some(wanted) = wanted
            && lines >= wanted
        {
            let mut lines = text.split(|&b| b == b'\n');
            lines.next();
            let pairs: Vec<&[u8]> = lines.take(wanted - 1).collect();
            let map = parse_pairs(pairs.into_iter())?;
            return Ok((map, text.len() as u64));
        }
    }
}

fn check_map(map: &[(u64, u64)], real_size: u64, data_size: u64) -> Result<(), String> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(offset, size) in map {
        let chunk_end = offset
            .checked_add(size)
            .ok_or("sparse map: a chunk overflows")?;
        if offset < end || chunk_end > real_size {
            return Err(format!(
                "sparse map: chunk {offset}+{size} overlaps another or lies outside the {real_size}-byte file"
            ));
        }
        end = chunk_end;
        total += size;
    }
    if total > data_size {
        return Err(format!(
            "sparse map: its chunks hold {total} bytes, the data only {data_size}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Memory(io::Cursor<Vec<u8>>);

    impl Write for Memory {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Memory {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.0.seek(pos)
        }
    }
    impl FileLen for Memory {
        fn set_file_len(&mut self, len: u64) -> io::Result<()> {
            self.0.get_mut().resize(len as usize, 0);
            Ok(())
        }
    }

    fn extract(sparse: &Sparse, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Memory(io::Cursor::new(Vec::new()));
        sparse.extract(&mut &data[..], &mut out, data.len() as u64, &mut [0; 7])?;
        Ok(out.0.into_inner())
    }

    fn records(pairs: &[(&str, &str)]) -> Sparse {
        let mut sparse = Sparse::default();
        for (k, v) in pairs {
            assert!(sparse.record(k.as_bytes(), v.as_bytes()).unwrap());
        }
        sparse
    }

    #[test]
    fn the_three_formats_put_chunks_at_their_offsets() {
        let v00 = records(&[
            ("GNU.sparse.size", "10"),
            ("GNU.sparse.offset", "2"),
            ("GNU.sparse.numbytes", "3"),
            ("GNU.sparse.offset", "8"),
            ("GNU.sparse.numbytes", "2"),
        ]);
        assert_eq!(extract(&v00, b"abcde").unwrap(), b"\0\0abc\0\0\0de");
        let v01 = records(&[("GNU.sparse.size", "10"), ("GNU.sparse.map", "2,3,8,2")]);
        assert_eq!(extract(&v01, b"abcde").unwrap(), b"\0\0abc\0\0\0de");
        let v10 = records(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.realsize", "10"),
            ("GNU.sparse.name", "real"),
        ]);
        let mut data = b"2\n2\n3\n8\n2\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"abcde");
        assert_eq!(extract(&v10, &data).unwrap(), b"\0\0abc\0\0\0de");
        assert_eq!(v10.name.as_deref(), Some(&b"real"[..]));
        // Data past the last chunk is skipped, as GNU tar does.
        let longer = records(&[("GNU.sparse.size", "4"), ("GNU.sparse.map", "1,2")]);
        assert_eq!(extract(&longer, b"abc").unwrap(), b"\0ab\0");
        // Only holes.
        let holes = records(&[("GNU.sparse.size", "4"), ("GNU.sparse.map", "")]);
        assert_eq!(extract(&holes, b"").unwrap(), b"\0\0\0\0");
    }

    #[test]
    fn bad_maps_are_refused_before_writing() {
        for (pairs, data, expected) in [
            (
                &[("GNU.sparse.size", "10"), ("GNU.sparse.map", "5,3,2,2")][..],
                &b"abcde"[..],
                "overlaps",
            ),
            (
                &[("GNU.sparse.size", "4"), ("GNU.sparse.map", "2,3")][..],
                b"abc",
                "outside",
            ),
            (
                &[("GNU.sparse.size", "10"), ("GNU.sparse.map", "0,6")][..],
                b"abcde",
                "hold 6 bytes, the data only 5",
            ),
            (
                &[("GNU.sparse.map", "0,3")][..],
                b"abc",
                "without GNU.sparse.realsize",
            ),
            (
                &[
                    ("GNU.sparse.size", "99999999999999"),
                    ("GNU.sparse.map", "0,3"),
                ][..],
                b"abc",
                "larger than",
            ),
            (
                &[("GNU.sparse.size", "10"), ("GNU.sparse.map", "0")][..],
                b"",
                "without a size",
            ),
            (
                &[("GNU.sparse.size", "10"), ("GNU.sparse.map", "x,1")][..],
                b"a",
                "not a number",
            ),
            (
                &[("GNU.sparse.size", "10"), ("GNU.sparse.major", "2")][..],
                b"",
                "not one GNU tar writes",
            ),
        ] {
            let sparse = records(pairs);
            let error = extract(&sparse, data).unwrap_err();
            assert!(error.contains(expected), "{pairs:?}: {error}");
        }
    }
}
