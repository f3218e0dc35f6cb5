//! A framed layer's skeleton: the layer's tar with the contents of its regular files left out,
//! so that a cold start can build the whole tree (directories, links, modes, times and every
//! file's size) before any file's bytes arrive, and fetch a file's bytes from the frames when
//! it is first used (lazy loading, [`crate::lazy`]).
//!
//! Why a tar: the skeleton is applied by the same applier as every layer, so whiteouts, opaque
//! directories, hard links and the confinement rules are the applier's, written once. A file
//! left out keeps its header with size 0 and gains two PAX records: `SIZE_RECORD`, its real
//! size, and `OFFSET_RECORD`, where its bytes begin in the layer's tar (which the frames
//! tile, so the offset names the frames to fetch). Files of at most [`INLINE_BYTES`] and
//! sparse files keep their data: a fetch would cost more than the bytes, and a placeholder
//! cannot describe holes.
//!
//! Trust: the staged manifest names the skeleton by digest (the [`ANNOTATION`] on the layer's
//! descriptor) as it names the frame index, and a file's bytes come from frames checked
//! against that index. The records are read only from a skeleton: in an ordinary layer they
//! mean nothing.

use std::fs::File;
use std::io::{self, BufReader, Seek, Write};
use std::os::unix::fs::FileExt;

/// The layer descriptor annotation (in the staged manifest) naming the layer's skeleton.
pub const ANNOTATION: &str = "dev.scar-rs.frames.skeleton";
/// The skeleton blob's media type.
pub const MEDIA_TYPE: &str = "application/vnd.scar-rs.frames.skeleton.v1.tar+zstd";
/// PAX record: the real size of a file whose bytes were left out.
pub(crate) const SIZE_RECORD: &str = "SCAR.lazy.size";
/// PAX record: where that file's bytes begin in the layer's tar.
pub(crate) const OFFSET_RECORD: &str = "SCAR.lazy.offset";
/// Files this small keep their bytes in the skeleton.
pub const INLINE_BYTES: u64 = 1024;
const BLOCK: u64 = 512;
const LEVEL: i32 = 3;

/// What a skeleton holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SkeletonStats {
    /// Tar entries.
    pub entries: u64,
    /// Files left out, to be fetched on first use.
    pub placeholders: u64,
    /// Their bytes.
    pub placeholder_bytes: u64,
}

/// Writes the skeleton of the uncompressed layer tar `tar` to `out`, zstd-compressed.
pub fn encode(tar: &File, out: impl Write) -> io::Result<SkeletonStats> {
    let mut reader = tar.try_clone()?;
    reader.rewind()?;
    let mut archive = tar::Archive::new(BufReader::new(reader));
    let mut builder = tar::Builder::new(zstd::Encoder::new(out, LEVEL)?);
    let mut stats = SkeletonStats::default();
    // One copy buffer for every entry: most are a few blocks, some are whole inline files.
    let mut buffer = vec![0u8; 64 * 1024];
    // Where the current entry's first extension header (PAX, GNU long name) begins.
    let mut span_start = 0u64;
    for entry in archive.entries_with_seek()? {
        let mut entry = entry?;
        stats.entries += 1;
        let header_at = entry.raw_header_position();
        let data_at = entry.raw_file_position();
        let size = entry.size();
        let end = data_at + size.next_multiple_of(BLOCK);
        if left_out(&mut entry)? {
            copy_extensions_but_pax(tar, span_start, header_at, builder.get_mut(), &mut buffer)?;
            let mut records: Vec<(String, Vec<u8>)> = Vec::new();
            if let Some(extensions) = entry.pax_extensions()? {
                for record in extensions {
                    let record = record?;
                    let key = String::from_utf8_lossy(record.key_bytes()).into_owned();
                    if key != "size" && !key.starts_with("SCAR.") {
                        records.push((key, record.value_bytes().to_vec()));
                    }
                }
            }
            records.push((SIZE_RECORD.into(), size.to_string().into_bytes()));
            records.push((OFFSET_RECORD.into(), data_at.to_string().into_bytes()));
            builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), &v[..])))?;
            let mut header = entry.header().clone();
            header.set_size(0);
            header.set_cksum();
            builder.get_mut().write_all(header.as_bytes())?;
            stats.placeholders += 1;
            stats.placeholder_bytes += size;
        } else {
            copy_range(tar, span_start, end, builder.get_mut(), &mut buffer)?;
        }
        span_start = end;
    }
    builder.into_inner()?.finish()?.flush()?;
    Ok(stats)
}

/// A regular file larger than [`INLINE_BYTES`], not sparse, not an old-style directory.
fn left_out<R: io::Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<bool> {
    let kind = entry.header().entry_type();
    if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous)
        || entry.size() <= INLINE_BYTES
        || entry.path_bytes().ends_with(b"/")
    {
        return Ok(false);
    }
    if let Some(extensions) = entry.pax_extensions()? {
        for record in extensions {
            if record?.key_bytes().starts_with(b"GNU.sparse.") {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Copies the extension headers in `from..to` but the PAX ones (the caller writes one PAX
/// header of its own: readers keep only the last).
fn copy_extensions_but_pax(
    tar: &File,
    from: u64,
    to: u64,
    out: &mut impl Write,
    buffer: &mut [u8],
) -> io::Result<()> {
    let mut at = from;
    let mut block = [0u8; BLOCK as usize];
    while at < to {
        tar.read_exact_at(&mut block, at)?;
        let header = tar::Header::from_byte_slice(&block);
        let span = BLOCK + header.entry_size()?.next_multiple_of(BLOCK);
        if header.entry_type() != tar::EntryType::XHeader {
            copy_range(tar, at, (at + span).min(to), out, buffer)?;
        }
        at += span;
    }
    Ok(())
}

fn copy_range(
    tar: &File,
    from: u64,
    to: u64,
    out: &mut impl Write,
    buffer: &mut [u8],
) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let n = usize::try_from((to - at).min(buffer.len() as u64)).map_err(io::Error::other)?;
        tar.read_exact_at(&mut buffer[..n], at)?;
        out.write_all(&buffer[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// A file whose bytes the skeleton left out, as the applier found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placeholder {
    /// The layer it comes from, from 0.
    pub layer: usize,
    /// Where its bytes begin in that layer's tar.
    pub offset: u64,
    /// How many.
    pub size: u64,
    /// The placeholder file's device and inode, as `stat` gives them: how a file the shim
    /// names by descriptor or through links is recognised.
    pub inode: (u64, u64),
}

/// Each left-out file of a skeleton (the zstd blob), read without applying it: where its
/// bytes begin in the layer's tar → how many there are.
pub(crate) fn left_out_files(skeleton: &[u8]) -> io::Result<std::collections::HashMap<u64, u64>> {
    let mut archive = tar::Archive::new(zstd::Decoder::new(skeleton)?);
    let mut files = std::collections::HashMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if let Some((offset, size)) = placeholder_records(&mut entry).map_err(io::Error::other)? {
            files.insert(offset, size);
        }
    }
    Ok(files)
}

/// The records of a left-out file, or `None` for an entry that carries its bytes. A record
/// that does not parse is an error: the skeleton is corrupt.
pub(crate) fn placeholder_records<R: io::Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<Option<(u64, u64)>, String> {
    let Some(extensions) = entry.pax_extensions().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let (mut size, mut offset) = (None, None);
    for record in extensions {
        let record = record.map_err(|e| e.to_string())?;
        let slot = match record.key_bytes() {
            k if k == SIZE_RECORD.as_bytes() => &mut size,
            k if k == OFFSET_RECORD.as_bytes() => &mut offset,
            _ => continue,
        };
        let value = std::str::from_utf8(record.value_bytes())
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("skeleton record {:?} is not a number", record.key()))?;
        *slot = Some(value);
    }
    match (size, offset) {
        (None, None) => Ok(None),
        (Some(size), Some(offset)) => Ok(Some((offset, size))),
        _ => Err("skeleton entry with only one of its two records".into()),
    }
}
