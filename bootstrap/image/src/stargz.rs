//! eStargz layers loaded lazily as they are, from a registry or a layout: no staging.
//!
//! An eStargz blob (the stargz-snapshotter project's format, written by `ctr-remote image
//! optimize`, `nerdctl image convert --estargz` or BuildKit's `compression=estargz`) is an
//! ordinary gzip layer in which every chunk of every regular file begins a gzip member of its
//! own, followed by a table of contents (`stargz.index.json`, a tar entry in a gzip member of
//! its own) and a 51-byte footer giving the TOC's offset. The manifest names the TOC by the
//! digest of its JSON ([`TOC_ANNOTATION`]), and the TOC names each chunk by the digest of its
//! bytes: every byte a lazy tree takes from the blob is checked against the manifest, as the
//! frames of an image we staged are.
//!
//! Such a layer is read the way a staged one is ([`crate::lazy`]): each chunk is a frame of a
//! [`FramedLayer`] with the [`FrameCodec::GzipChunk`] codec (a ranged read from the chunk's
//! member to the next chunk's, decoded only as far as the chunk goes), the frames' unpacked
//! space is the chunks end to end, and a skeleton in [`crate::skeleton`]'s format is written
//! from the TOC: its entries in order, each regular file with bytes a placeholder at its first
//! chunk. The tree, the fetcher, the trace and the background fill are the lazy tree's own.
//!
//! zstd:chunked layers as stargz-snapshotter writes them (`nerdctl image convert --zstdchunked`,
//! the containers project's first layout) are the same with zstd frames for gzip members,
//! the TOC compressed in a zstd skippable frame and a 40-byte footer: read the same way.
//!
//! The tree is the one the eager pull of the same blob gives (it reads the blob as the gzip
//! tar it is): the TOC lists the tar's entries in the tar's order, with their modes, owners,
//! times, links and extended attributes, and the TOC's own tar entry, the last in the blob, is
//! added last with the header the blob gives it. A layer this module cannot read (no footer,
//! a TOC that does not match its digest, chunks out of order or too large) is refused with
//! the reason; the pull then reads the image eagerly.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::frames::{Frame, FrameCodec, FrameIndex, FramedLayer, MAX_FRAME_BYTES, RangeSource};
use crate::oci::Compression;
use crate::skeleton::{OFFSET_RECORD, SIZE_RECORD};

/// The layer descriptor annotation naming the digest of the layer's TOC JSON.
pub const TOC_ANNOTATION: &str = "containerd.io/snapshot/stargz/toc.digest";
/// The footer: an empty gzip member whose extra field holds the TOC's offset.
const FOOTER_BYTES: u64 = 51;
/// zstd:chunked's footer, in a skippable frame of its own.
const ZSTD_FOOTER_BYTES: u64 = 40;
/// The entry after the files the image's author prioritized (`ctr-remote image optimize`
/// records the files a run of the image read; `--estargz-prioritized-files` lists them).
const PREFETCH_LANDMARK: &str = ".prefetch.landmark";
/// The TOC's name in its tar entry.
const TOC_NAME: &str = "stargz.index.json";
/// The most read for a TOC, compressed and as JSON. An entry takes about 200 bytes: room for
/// a few hundred thousand files, and a bound on what a hostile blob can make the pull hold.
const MAX_TOC_BYTES: u64 = 64 << 20;
const LEVEL: i32 = 3;

/// PAX records of one entry: (key, value).
type PaxRecords = Vec<(String, Vec<u8>)>;

/// Why an eStargz layer cannot be loaded lazily.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("eStargz layer {layer}: {problem}")]
pub struct StargzFault {
    /// The layer's digest.
    pub layer: String,
    /// What is wrong.
    pub problem: String,
}

/// The table of contents.
#[derive(Debug, Deserialize)]
struct Toc {
    version: u32,
    entries: Vec<TocEntry>,
}

/// One TOC entry, as the estargz package writes it (its fields are omitted when zero).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TocEntry {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    size: u64,
    #[serde(rename = "modtime")]
    mod_time: String,
    link_name: String,
    mode: u32,
    uid: u64,
    gid: u64,
    user_name: String,
    group_name: String,
    offset: u64,
    dev_major: u32,
    dev_minor: u32,
    /// Values are base64, as Go encodes bytes.
    xattrs: BTreeMap<String, String>,
    chunk_offset: u64,
    chunk_size: u64,
    chunk_digest: String,
}

/// An eStargz layer ready for a lazy tree.
#[derive(Debug)]
pub struct StargzLayer {
    /// Its chunks as frames.
    pub framed: FramedLayer,
    /// Its skeleton (zstd), written from the TOC.
    pub skeleton: Vec<u8>,
    /// Where the prioritized files' bytes begin (the regular files the TOC lists before
    /// `PREFETCH_LANDMARK`), as the skeleton's placeholders name them.
    pub prioritized: Vec<u64>,
}

/// Reads the footer and TOC of the eStargz blob `layer` (`blob_size` bytes in `source`,
/// gzip, or zstd for zstd:chunked), checks the TOC against `toc_digest` (the manifest's
/// [`TOC_ANNOTATION`]), and returns the layer's chunks as frames with the skeleton of its
/// tree.
pub fn open(
    source: Arc<dyn RangeSource>,
    layer: &str,
    blob_size: u64,
    toc_digest: &str,
    compression: Compression,
) -> Result<StargzLayer, StargzFault> {
    let fault = |problem: String| StargzFault {
        layer: layer.to_string(),
        problem,
    };
    let read = |offset: u64, len: u64, what: &str| -> Result<Vec<u8>, String> {
        let bytes = source
            .read_range(offset, len)
            .map_err(|e| format!("cannot read its {what}: {e}"))?;
        if bytes.len() as u64 != len {
            return Err(format!(
                "its {what} read returned {} bytes, not {len}",
                bytes.len()
            ));
        }
        Ok(bytes)
    };
    let found = match compression {
        Compression::Gzip => gzip_toc(blob_size, &read),
        Compression::Zstd => zstd_toc(blob_size, &read),
        Compression::None => Err("an uncompressed layer has no eStargz TOC".into()),
    }
    .map_err(fault)?;
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&found.json)));
    if actual != toc_digest {
        return Err(fault(format!(
            "its TOC hashes to {actual}, the manifest names {toc_digest}"
        )));
    }
    let toc: Toc = serde_json::from_slice(&found.json)
        .map_err(|e| fault(format!("its TOC does not parse: {e}")))?;
    if toc.version != 1 {
        return Err(fault(format!(
            "TOC version {}: only 1 is read",
            toc.version
        )));
    }
    let frames = chunk_frames(&toc.entries, found.content_end).map_err(fault)?;
    let toc_entry = found.header.as_ref().map(|h| (h, found.json.as_slice()));
    let skeleton = skeleton(&toc.entries, toc_entry).map_err(fault)?;
    Ok(StargzLayer {
        framed: FramedLayer {
            index: FrameIndex {
                schema_version: 1,
                layer: layer.to_string(),
                blob: layer.to_string(),
                blob_size,
                frames,
            },
            source,
            codec: match compression {
                Compression::Zstd => FrameCodec::ZstdChunk,
                _ => FrameCodec::GzipChunk,
            },
        },
        skeleton,
        prioritized: prioritized(&toc.entries),
    })
}

/// A layer's TOC as found in its blob.
struct FoundToc {
    /// The JSON.
    json: Vec<u8>,
    /// Its tar header, where the TOC is a tar entry of the layer (eStargz, not zstd:chunked).
    header: Option<tar::Header>,
    /// Where the chunks end: the TOC's first byte.
    content_end: u64,
}

/// A ranged read of the blob: `(offset, len, what)` to exactly `len` bytes.
type ReadRange<'a> = dyn Fn(u64, u64, &str) -> Result<Vec<u8>, String> + 'a;

/// eStargz: the 51-byte gzip footer gives the TOC's offset; the TOC is a tar entry in the
/// gzip member from there to the footer.
fn gzip_toc(blob_size: u64, read: &ReadRange<'_>) -> Result<FoundToc, String> {
    let footer_at = blob_size
        .checked_sub(FOOTER_BYTES)
        .ok_or_else(|| format!("{blob_size} bytes: too short for a footer"))?;
    let toc_offset = toc_offset(&read(footer_at, FOOTER_BYTES, "footer")?)?;
    let toc_len = footer_at
        .checked_sub(toc_offset)
        .filter(|&len| len > 0)
        .ok_or_else(|| format!("its footer puts the TOC at {toc_offset}, past the end"))?;
    if toc_len > MAX_TOC_BYTES {
        return Err(format!(
            "its TOC is {toc_len} bytes compressed; at most {MAX_TOC_BYTES} are read"
        ));
    }
    let (header, json) = toc_entry(&read(toc_offset, toc_len, "TOC")?)?;
    Ok(FoundToc {
        json,
        header: Some(header),
        content_end: toc_offset,
    })
}

/// zstd:chunked (as stargz-snapshotter writes it, the containers project's v1 layout): the
/// blob ends with a zstd skippable frame holding a 40-byte footer (the TOC's offset,
/// compressed and raw sizes, the manifest type 1, then `GNUlInUx`); the TOC is the zstd
/// compressed JSON in the skippable frame before it.
fn zstd_toc(blob_size: u64, read: &ReadRange<'_>) -> Result<FoundToc, String> {
    const SKIPPABLE: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];
    let footer_at = blob_size
        .checked_sub(ZSTD_FOOTER_BYTES + 8)
        .ok_or_else(|| format!("{blob_size} bytes: too short for a footer"))?;
    let frame = read(footer_at, ZSTD_FOOTER_BYTES + 8, "footer")?;
    let word = |at: usize| {
        frame
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes)
    };
    if frame[..4] != SKIPPABLE || frame[4..8] != [40, 0, 0, 0] || frame[40..] != *b"GnUlInUx" {
        return Err("its footer is not zstd:chunked's".into());
    }
    let (toc_offset, compressed, raw, kind) = (word(8), word(16), word(24), word(32));
    if kind != 1 {
        return Err(format!(
            "its TOC is of manifest type {kind}: only 1 is read"
        ));
    }
    if compressed > MAX_TOC_BYTES || raw > MAX_TOC_BYTES {
        return Err(format!(
            "its TOC is {compressed} bytes compressed, {raw} raw; at most {MAX_TOC_BYTES} are read"
        ));
    }
    let content_end = toc_offset
        .checked_sub(8)
        .filter(|_| {
            toc_offset
                .checked_add(compressed)
                .is_some_and(|end| end <= footer_at)
        })
        .ok_or_else(|| format!("its footer puts the TOC at {toc_offset}, outside the blob"))?;
    let mut json = Vec::new();
    zstd::Decoder::new(read(toc_offset, compressed, "TOC")?.as_slice())
        .and_then(|decoder| decoder.take(raw + 1).read_to_end(&mut json))
        .map_err(|e| format!("its TOC does not decompress: {e}"))?;
    if json.len() as u64 != raw {
        return Err(format!(
            "its TOC decompresses to {} bytes, its footer says {raw}",
            json.len()
        ));
    }
    Ok(FoundToc {
        json,
        header: None,
        content_end,
    })
}

/// Where the bytes of the regular files before [`PREFETCH_LANDMARK`] begin, in the frames'
/// unpacked space; none without a landmark.
fn prioritized(entries: &[TocEntry]) -> Vec<u64> {
    let Some(landmark) = entries.iter().position(|e| e.name == PREFETCH_LANDMARK) else {
        return Vec::new();
    };
    placed(&entries[..landmark])
        .filter(|(entry, _)| entry.kind == "reg" && entry.size > 0)
        .map(|(_, place)| place)
        .collect()
}

/// The TOC's entries but chunks, each with where a regular file's bytes begin in the frames'
/// unpacked space (the chunks end to end, as [`chunk_frames`] lays them out): the place its
/// placeholder names.
fn placed(entries: &[TocEntry]) -> impl Iterator<Item = (&TocEntry, u64)> {
    entries
        .iter()
        .filter(|e| e.kind != "chunk")
        .scan(0u64, |unpacked, entry| {
            let place = *unpacked;
            if entry.kind == "reg" {
                *unpacked += entry.size;
            }
            Some((entry, place))
        })
}

/// The TOC's offset, from the footer's gzip extra field: subfield `SG`, 22 bytes, the offset
/// in 16 hex digits then `STARGZ`.
fn toc_offset(footer: &[u8]) -> Result<u64, String> {
    let mut decoder = flate2::read::GzDecoder::new(footer);
    io::copy(&mut (&mut decoder).take(FOOTER_BYTES), &mut io::sink())
        .map_err(|e| format!("its footer is not a gzip member: {e}"))?;
    let extra = decoder
        .header()
        .and_then(flate2::GzHeader::extra)
        .ok_or("its footer has no extra field: not eStargz")?;
    match extra {
        [
            b'S',
            b'G',
            22,
            0,
            offset @ ..,
            b'S',
            b'T',
            b'A',
            b'R',
            b'G',
            b'Z',
        ] if offset.len() == 16 => std::str::from_utf8(offset)
            .ok()
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| "its footer's TOC offset is not hexadecimal".to_string()),
        _ => Err("its footer's extra field is not eStargz's".into()),
    }
}

/// The TOC's tar header and JSON, from the TOC's gzip member.
fn toc_entry(member: &[u8]) -> Result<(tar::Header, Vec<u8>), String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(member));
    let problem = |e: io::Error| format!("its TOC member does not read: {e}");
    let mut entry = archive
        .entries()
        .map_err(problem)?
        .next()
        .ok_or("its TOC member holds no tar entry")?
        .map_err(problem)?;
    if entry.path_bytes().as_ref() != TOC_NAME.as_bytes() {
        return Err(format!(
            "its TOC member holds {:?}, not {TOC_NAME}",
            String::from_utf8_lossy(&entry.path_bytes())
        ));
    }
    if entry.size() > MAX_TOC_BYTES {
        return Err(format!(
            "its TOC is {} bytes; at most {MAX_TOC_BYTES} are read",
            entry.size()
        ));
    }
    let mut json = Vec::new();
    entry.read_to_end(&mut json).map_err(problem)?;
    Ok((entry.header().clone(), json))
}

/// The layer's chunks as frames, in order: each from its member's offset to the next
/// chunk's (the TOC's for the last), holding the chunk's bytes first. Checks that the chunks
/// lie in the blob in order and cover each file exactly once.
fn chunk_frames(entries: &[TocEntry], content_end: u64) -> Result<Vec<Frame>, String> {
    let starts: Vec<u64> = entries
        .iter()
        .map(|e| e.offset)
        .filter(|&o| o > 0)
        .collect();
    if let Some(pair) = starts.windows(2).find(|pair| pair[0] >= pair[1]) {
        return Err(format!(
            "its TOC lists chunks out of order (offset {} then {})",
            pair[0], pair[1]
        ));
    }
    if starts.last().is_some_and(|&last| last >= content_end) {
        return Err("its TOC lists a chunk past the TOC itself".into());
    }
    let mut frames = Vec::with_capacity(starts.len());
    // The file whose chunks are being read: its name, size, and bytes covered so far.
    let mut file: Option<(&str, u64, u64)> = None;
    let mut next_start = starts.iter().skip(1).chain(std::iter::once(&content_end));
    for entry in entries {
        let continues = entry.kind == "chunk";
        if !continues {
            close_file(file.take())?;
        }
        let is_content = continues || (entry.kind == "reg" && entry.size > 0);
        if !is_content {
            if entry.offset > 0 {
                return Err(format!("{:?}: a {} with bytes", entry.name, entry.kind));
            }
            continue;
        }
        if !continues {
            file = Some((&entry.name, entry.size, 0));
        }
        let Some((name, size, covered)) = file.as_mut() else {
            return Err(format!("{:?}: a chunk of no file", entry.name));
        };
        if entry.name != *name || entry.chunk_offset != *covered || entry.offset == 0 {
            return Err(format!(
                "{name:?}: chunk at {} of the file (blob offset {}) does not follow its bytes so far ({covered})",
                entry.chunk_offset, entry.offset
            ));
        }
        let len = match entry.chunk_size {
            0 => *size - *covered,
            n => n.min(*size - *covered),
        };
        let end = *next_start.next().unwrap_or(&content_end);
        let compressed = end - entry.offset;
        if len == 0 || len > MAX_FRAME_BYTES || compressed > MAX_FRAME_BYTES {
            return Err(format!(
                "{name:?}: a chunk of {len} bytes ({compressed} compressed); chunks of 1 to {MAX_FRAME_BYTES} are read"
            ));
        }
        if !is_sha256(&entry.chunk_digest) {
            return Err(format!(
                "{name:?}: chunk digest {:?} is not sha256",
                entry.chunk_digest
            ));
        }
        frames.push(Frame {
            offset: entry.offset,
            size: compressed,
            unpacked: len,
            digest: entry.chunk_digest.clone(),
        });
        *covered += len;
    }
    close_file(file)?;
    Ok(frames)
}

/// Checks that a file's chunks covered all of it.
fn close_file(file: Option<(&str, u64, u64)>) -> Result<(), String> {
    match file {
        Some((name, size, covered)) if covered != size => Err(format!(
            "{name:?}: its chunks cover {covered} of its {size} bytes"
        )),
        _ => Ok(()),
    }
}

fn is_sha256(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The skeleton (zstd tar) of the TOC's entries, then the TOC's own entry with its bytes
/// where the layer holds it as one (eStargz).
/// A regular file with bytes is a placeholder at its place ([`placed`]).
fn skeleton(entries: &[TocEntry], toc: Option<(&tar::Header, &[u8])>) -> Result<Vec<u8>, String> {
    let written = |e: io::Error| format!("cannot write its skeleton: {e}");
    let mut builder = tar::Builder::new(zstd::Encoder::new(Vec::new(), LEVEL).map_err(written)?);
    for (entry, place) in placed(entries) {
        let (header, records) = header_of(entry, place)?;
        if !records.is_empty() {
            builder
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), &v[..])))
                .map_err(written)?;
        }
        builder
            .get_mut()
            .write_all(header.as_bytes())
            .map_err(written)?;
    }
    if let Some((header, json)) = toc {
        builder.append(header, json).map_err(written)?;
    }
    builder
        .into_inner()
        .and_then(zstd::Encoder::finish)
        .map_err(written)
}

/// A TOC entry's tar header (no data) and the PAX records it needs: names too long for the
/// header, extended attributes, and a placeholder's size and place.
fn header_of(entry: &TocEntry, place: u64) -> Result<(tar::Header, PaxRecords), String> {
    use tar::EntryType;
    let kind = match entry.kind.as_str() {
        "dir" => EntryType::Directory,
        "reg" => EntryType::Regular,
        "symlink" => EntryType::Symlink,
        "hardlink" => EntryType::Link,
        "char" => EntryType::Char,
        "block" => EntryType::Block,
        "fifo" => EntryType::Fifo,
        other => {
            return Err(format!(
                "{:?}: entry type {other:?} is not eStargz's",
                entry.name
            ));
        }
    };
    let mut header = tar::Header::new_gnu();
    let mut records = PaxRecords::new();
    header.set_entry_type(kind);
    header.set_size(0);
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(mtime(&entry.mod_time).map_err(|e| format!("{:?}: {e}", entry.name))?);
    let old = header.as_old_mut();
    for (field, value, record) in [
        (&mut old.name[..], &entry.name, "path"),
        (&mut old.linkname[..], &entry.link_name, "linkpath"),
    ] {
        if value.len() <= field.len() {
            field[..value.len()].copy_from_slice(value.as_bytes());
        } else {
            records.push((record.into(), value.as_bytes().to_vec()));
        }
    }
    for (value, record) in [(&entry.user_name, "uname"), (&entry.group_name, "gname")] {
        let set = if record == "uname" {
            header.set_username(value)
        } else {
            header.set_groupname(value)
        };
        if set.is_err() {
            records.push((record.into(), value.as_bytes().to_vec()));
        }
    }
    if matches!(kind, EntryType::Char | EntryType::Block) {
        header
            .set_device_major(entry.dev_major)
            .and_then(|()| header.set_device_minor(entry.dev_minor))
            .map_err(|e| format!("{:?}: {e}", entry.name))?;
    }
    for (name, value) in &entry.xattrs {
        let value = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| format!("{:?}: extended attribute {name}: {e}", entry.name))?;
        records.push((format!("SCHILY.xattr.{name}"), value));
    }
    if kind == EntryType::Regular && entry.size > 0 {
        records.push((SIZE_RECORD.into(), entry.size.to_string().into_bytes()));
        records.push((OFFSET_RECORD.into(), place.to_string().into_bytes()));
    }
    header.set_cksum();
    Ok((header, records))
}

/// Seconds since the epoch of an RFC 3339 time (the TOC's `modtime`); none or before the
/// epoch is 0, as a tar header can hold.
fn mtime(rfc3339: &str) -> Result<u64, String> {
    if rfc3339.is_empty() {
        return Ok(0);
    }
    let time = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("modification time {rfc3339:?}: {e}"))?;
    Ok(u64::try_from(time.unix_timestamp()).unwrap_or(0))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::frames::tests::Memory;
    use crate::lazy::tests::{eager_tree, layers, walk};
    use crate::lazy::{Filled, LazyFault, LazyTree};
    use flate2::write::GzEncoder;
    use serde_json::{Value, json};

    fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    /// An eStargz blob being written as the estargz package writes one: gzip members opened
    /// and closed around each chunk of file data.
    struct Writer {
        blob: Vec<u8>,
        /// The bytes of the member being written.
        member: Option<Vec<u8>>,
        compression: Compression,
    }

    impl Writer {
        fn write(&mut self, bytes: &[u8]) {
            self.member.get_or_insert_default().extend_from_slice(bytes);
        }

        fn close(&mut self) {
            if let Some(member) = self.member.take() {
                let compressed = self.compress(&member);
                self.blob.extend(compressed);
            }
        }

        fn compress(&self, bytes: &[u8]) -> Vec<u8> {
            match self.compression {
                Compression::Zstd => ok(zstd::bulk::compress(bytes, 1)),
                _ => {
                    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    ok(gz.write_all(bytes));
                    ok(gz.finish())
                }
            }
        }
    }

    fn rfc3339(seconds: u64) -> String {
        let at = ok(time::OffsetDateTime::from_unix_timestamp(ok(
            i64::try_from(seconds),
        )));
        ok(at.format(&time::format_description::well_known::Rfc3339))
    }

    /// `tar` as an eStargz blob with `chunk`-byte chunks, its TOC passed through `edit`
    /// first; returns the blob and the TOC's digest. The tar's own bytes are kept (headers,
    /// extension headers, padding), as the estargz package keeps the entries it rewrites.
    fn estargz(tar: &[u8], chunk: u64, edit: impl Fn(&mut Value)) -> (Vec<u8>, String) {
        encode(tar, chunk, edit, Compression::Gzip)
    }

    /// [`estargz`] in gzip, or zstd:chunked in zstd (the TOC and the footer in skippable
    /// frames, as stargz-snapshotter writes them).
    fn encode(
        tar: &[u8],
        chunk: u64,
        edit: impl Fn(&mut Value),
        compression: Compression,
    ) -> (Vec<u8>, String) {
        encode_json(
            tar,
            chunk,
            |mut toc| {
                edit(&mut toc);
                ok(serde_json::to_vec(&toc))
            },
            compression,
        )
    }

    /// [`encode`] with the TOC's JSON bytes written by `json` from its value (the fuzz
    /// targets damage the bytes themselves).
    pub(crate) fn encode_json(
        tar: &[u8],
        chunk: u64,
        json: impl Fn(Value) -> Vec<u8>,
        compression: Compression,
    ) -> (Vec<u8>, String) {
        let mut out = Writer {
            blob: Vec::new(),
            member: None,
            compression,
        };
        let mut entries = Vec::new();
        let mut archive = tar::Archive::new(tar);
        let mut span_start = 0usize;
        for entry in ok(archive.entries()) {
            let entry = ok(entry);
            let header = entry.header();
            let data_at = ok(usize::try_from(entry.raw_file_position()));
            let size = entry.size();
            let end = data_at + ok(usize::try_from(size.next_multiple_of(512)));
            out.write(&tar[span_start..data_at]);
            let kind = match header.entry_type() {
                tar::EntryType::Directory => "dir",
                tar::EntryType::Symlink => "symlink",
                tar::EntryType::Link => "hardlink",
                _ => "reg",
            };
            let mut toc = json!({
                "name": ok(entry.path()).display().to_string(),
                "type": kind,
                "modtime": rfc3339(ok(header.mtime())),
                "mode": ok(header.mode()),
            });
            if let Some(link) = ok(entry.link_name()) {
                toc["linkName"] = json!(link.display().to_string());
            }
            if size > 0 {
                toc["size"] = json!(size);
            }
            let mut at = 0;
            while at < size {
                out.close();
                let len = chunk.min(size - at);
                let from = data_at + ok(usize::try_from(at));
                let bytes = &tar[from..from + ok(usize::try_from(len))];
                let mut piece = if at == 0 {
                    toc.clone()
                } else {
                    json!({"name": toc["name"], "type": "chunk", "chunkOffset": at})
                };
                piece["offset"] = json!(out.blob.len());
                if len == chunk && size > chunk {
                    piece["chunkSize"] = json!(len);
                }
                piece["chunkDigest"] =
                    json!(format!("sha256:{}", hex::encode(Sha256::digest(bytes))));
                out.write(bytes);
                entries.push(piece);
                at += len;
            }
            if size == 0 {
                entries.push(toc);
            }
            out.write(&tar[data_at + ok(usize::try_from(size))..end]);
            span_start = end;
        }
        out.close();
        let toc_offset = out.blob.len();
        let json = json(json!({"version": 1, "entries": entries}));
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&json)));
        if compression == Compression::Zstd {
            let skippable = |bytes: &[u8]| {
                let mut frame = vec![0x50, 0x2a, 0x4d, 0x18];
                frame.extend(ok(u32::try_from(bytes.len())).to_le_bytes());
                frame.extend_from_slice(bytes);
                frame
            };
            let compressed = out.compress(&json);
            let mut footer = Vec::new();
            for word in [toc_offset + 8, compressed.len(), json.len(), 1] {
                footer.extend((word as u64).to_le_bytes());
            }
            footer.extend(b"GnUlInUx");
            out.blob.extend(skippable(&compressed));
            out.blob.extend(skippable(&footer));
            return (out.blob, digest);
        }
        let mut toc_tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(json.len() as u64);
        header.set_mode(0);
        ok(toc_tar.append_data(&mut header, TOC_NAME, json.as_slice()));
        out.write(&ok(toc_tar.into_inner()));
        out.close();
        // Go's gzip writer at NoCompression: an empty stored block, 51 bytes in all.
        out.blob.extend([
            0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 26, 0, b'S', b'G', 22, 0,
        ]);
        out.blob.extend(format!("{toc_offset:016x}STARGZ").bytes());
        out.blob
            .extend([1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        (out.blob, digest)
    }

    fn opened(blob: &[u8], toc: &str) -> Result<StargzLayer, StargzFault> {
        opened_as(blob, toc, Compression::Gzip)
    }

    fn opened_as(
        blob: &[u8],
        toc: &str,
        compression: Compression,
    ) -> Result<StargzLayer, StargzFault> {
        open(
            Arc::new(Memory(blob.to_vec(), Default::default())),
            "sha256:layer",
            blob.len() as u64,
            toc,
            compression,
        )
    }

    fn problem(blob: &[u8], toc: &str) -> String {
        match opened(blob, toc) {
            Ok(_) => panic!("an eStargz layer that should be refused was opened"),
            Err(fault) => fault.problem,
        }
    }

    /// A lazy tree of `blobs` (eStargz layers, lowest first) in `dir`, and the blobs' reads.
    fn lazy_tree(
        dir: &std::path::Path,
        blobs: &[(Vec<u8>, String)],
    ) -> (LazyTree, Vec<Arc<Memory>>) {
        lazy_tree_of(dir, blobs, Compression::Gzip)
    }

    /// [`lazy_tree`] of layers in `compression`.
    fn lazy_tree_of(
        dir: &std::path::Path,
        blobs: &[(Vec<u8>, String)],
        compression: Compression,
    ) -> (LazyTree, Vec<Arc<Memory>>) {
        let (root, aside) = (dir.join("rootfs"), dir.join("aside"));
        ok(std::fs::create_dir(&root));
        ok(std::fs::create_dir(&aside));
        let memories: Vec<Arc<Memory>> = blobs
            .iter()
            .map(|(b, _)| Arc::new(Memory(b.clone(), Default::default())))
            .collect();
        let layers: Vec<StargzLayer> = blobs
            .iter()
            .zip(&memories)
            .map(|((b, t), memory)| {
                let source: Arc<dyn RangeSource> = memory.clone();
                ok(open(source, "sha256:layer", b.len() as u64, t, compression))
            })
            .collect();
        let skeletons: Vec<&Vec<u8>> = layers.iter().map(|l| &l.skeleton).collect();
        let framed = layers.iter().map(|l| l.framed.clone()).collect();
        let tree = ok(LazyTree::build(
            root.clone(),
            root,
            aside,
            framed,
            &skeletons,
        ))
        .0;
        (tree, memories)
    }

    fn reads(memories: &[Arc<Memory>]) -> usize {
        memories
            .iter()
            .map(|m| m.1.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    fn tree_frames(blobs: &[(Vec<u8>, String)], compression: Compression) -> usize {
        blobs
            .iter()
            .map(|(b, t)| ok(opened_as(b, t, compression)).framed.index.frames.len())
            .sum()
    }

    /// The lazy tests' two layers (large files cut in many chunks, small ones, hard and
    /// symbolic links, a long name and PAX records, a whiteout, an opaque directory, files
    /// replaced both ways) as eStargz and as zstd:chunked: the tree has the eager tree's
    /// metadata before any chunk is read, and its bytes once filled. The eager tree is the
    /// blobs read as the gzip or zstd tars they are, as every other tool reads them (a zstd
    /// reader skips the skippable frames holding the TOC).
    #[test]
    fn an_estargz_or_zstd_chunked_tree_is_the_eager_tree_of_its_blobs() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let blobs: Vec<(Vec<u8>, String)> = layers()
                .iter()
                .map(|t| encode(t, 64 << 10, |_| {}, compression))
                .collect();
            let (eager, lazy) = (ok(tempfile::tempdir()), ok(tempfile::tempdir()));
            let tars: Vec<Vec<u8>> = blobs
                .iter()
                .map(|(blob, _)| {
                    let mut tar = Vec::new();
                    match compression {
                        Compression::Zstd => {
                            ok(ok(zstd::Decoder::new(blob.as_slice())).read_to_end(&mut tar))
                        }
                        _ => ok(flate2::read::MultiGzDecoder::new(blob.as_slice())
                            .read_to_end(&mut tar)),
                    };
                    tar
                })
                .collect();
            eager_tree(eager.path(), &tars);
            let (tree, memories) = lazy_tree_of(lazy.path(), &blobs, compression);
            let root = lazy.path().join("rootfs");
            assert_eq!(
                walk(&root, false),
                walk(eager.path(), false),
                "{compression:?}"
            );
            assert_eq!(
                root.join(TOC_NAME).is_file(),
                compression == Compression::Gzip,
                "the TOC is a tar entry of eStargz only"
            );
            let huge = ok(std::fs::metadata(root.join("usr/lib/huge.so")));
            assert_eq!(huge.len(), 9 << 20);
            let opening = reads(&memories);
            assert!(ok(tree.fill_all()) > 9 << 20);
            assert_eq!(
                walk(&root, true),
                walk(eager.path(), true),
                "{compression:?}"
            );
            // Small chunks are read a span at a time, not one request each.
            let chunks = tree_frames(&blobs, compression);
            let filling = reads(&memories) - opening;
            assert!(filling * 4 < chunks, "{filling} reads for {chunks} chunks");
        }
    }

    /// A command's fetches of files lying near each other read their span once, not one
    /// request per file (a registry answers each after a round trip).
    #[test]
    fn files_asked_for_one_by_one_share_their_spans_reads() {
        let blob = estargz(&layers()[0], 64 << 10, |_| {});
        let dir = ok(tempfile::tempdir());
        let (tree, memories) = lazy_tree(dir.path(), &[blob]);
        let before = reads(&memories);
        let asked = 12;
        for n in 0..asked {
            let name = format!("usr/lib/f{}", n * 3);
            assert!(
                matches!(
                    ok(tree.fill(std::path::Path::new(&name))),
                    Filled::Fetched(_)
                ),
                "{name}"
            );
        }
        let made = reads(&memories) - before;
        assert!(made * 3 < asked, "{made} reads for {asked} files");
    }

    /// zstd:chunked footers and TOCs that are not what they claim are refused by name.
    #[test]
    fn a_zstd_chunked_layer_whose_footer_or_toc_lies_is_refused() {
        let (blob, toc) = encode(&layers()[1], 64 << 10, |_| {}, Compression::Zstd);
        let zstd_problem = |blob: &[u8], toc: &str| match opened_as(blob, toc, Compression::Zstd) {
            Ok(_) => panic!("a zstd:chunked layer that should be refused was opened"),
            Err(fault) => fault.problem,
        };
        assert!(
            ok(opened_as(&blob, &toc, Compression::Zstd))
                .framed
                .index
                .frames
                .len()
                > 1
        );
        let mut foreign = blob.clone();
        let end = foreign.len();
        foreign[end - 1] ^= 1;
        assert!(zstd_problem(&foreign, &toc).contains("not zstd:chunked's"));
        let mut beyond = blob.clone();
        let at = beyond.len() - 40;
        beyond[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(zstd_problem(&beyond, &toc).contains("outside the blob"));
        let named = format!("sha256:{}", "0".repeat(64));
        assert!(zstd_problem(&blob, &named).contains("the manifest names"));
        // A gzip layer's footer is not one.
        let (gzip, gzip_toc) = estargz(&layers()[1], 64 << 10, |_| {});
        assert!(zstd_problem(&gzip, &gzip_toc).contains("not zstd:chunked's"));
    }

    /// The files before the prefetch landmark are the image's prioritized files, fetched
    /// first when no trace of ours says otherwise.
    #[test]
    fn the_files_before_the_prefetch_landmark_are_prefetched() {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, size) in [
            ("first", 70_000),
            ("empty", 0),
            ("second", 5_000),
            (PREFETCH_LANDMARK, 1),
            ("later", 90_000),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o644);
            ok(tar.append_data(&mut header, name, vec![7u8; size as usize].as_slice()));
        }
        let blob = estargz(&ok(tar.into_inner()), 64 << 10, |_| {});
        let prioritized = ok(opened(&blob.0, &blob.1)).prioritized;
        assert_eq!(prioritized, vec![0, 70_000]);
        let dir = ok(tempfile::tempdir());
        let (mut tree, _) = lazy_tree(dir.path(), &[blob]);
        let given = prioritized
            .into_iter()
            .map(|offset| crate::trace::FileAt { layer: 0, offset })
            .collect();
        tree.learn(given, None);
        // The two files named, not the later one.
        assert_eq!(ok(tree.prefetch(1)), 75_000);
    }

    #[test]
    fn a_toc_other_than_the_manifest_names_is_refused() {
        let (blob, _) = estargz(&layers()[1], 64 << 10, |_| {});
        let named = format!("sha256:{}", "0".repeat(64));
        assert!(problem(&blob, &named).contains("the manifest names"));
    }

    #[test]
    fn a_layer_without_an_estargz_footer_is_refused() {
        let mut plain = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        ok(plain.write_all(&layers()[1]));
        let plain = ok(plain.finish());
        let toc = format!("sha256:{}", "0".repeat(64));
        assert!(
            problem(&plain, &toc).contains("footer"),
            "{}",
            problem(&plain, &toc)
        );
        assert!(problem(&plain[..20], &toc).contains("too short"));
        let (mut blob, toc) = estargz(&layers()[1], 64 << 10, |_| {});
        let at = blob.len() - 51 + 16;
        blob[at..at + 16].copy_from_slice(b"ffffffffffffffff");
        assert!(problem(&blob, &toc).contains("past the end"));
    }

    /// TOCs the manifest names (their digests match) that lie about the chunks.
    #[test]
    fn a_toc_whose_chunks_do_not_tile_its_files_is_refused() {
        let tar = &layers()[0];
        let chunk_entries = |toc: &mut Value| -> Vec<usize> {
            let entries = toc["entries"].as_array().map(Vec::len).unwrap_or(0);
            (0..entries)
                .filter(|&n| toc["entries"][n]["type"] == "chunk")
                .collect()
        };
        let swapped = estargz(tar, 64 << 10, |toc| {
            let chunks = chunk_entries(toc);
            let (a, b) = (chunks[0], chunks[1]);
            let first = toc["entries"][a]["offset"].clone();
            toc["entries"][a]["offset"] = toc["entries"][b]["offset"].clone();
            toc["entries"][b]["offset"] = first;
        });
        assert!(problem(&swapped.0, &swapped.1).contains("out of order"));
        let dropped = estargz(tar, 64 << 10, |toc| {
            let last = chunk_entries(toc).last().copied().unwrap_or(0);
            if let Some(entries) = toc["entries"].as_array_mut() {
                entries.remove(last);
            }
        });
        assert!(problem(&dropped.0, &dropped.1).contains("cover"));
        let unknown = estargz(tar, 64 << 10, |toc| {
            toc["entries"][0]["type"] = json!("socket");
        });
        assert!(problem(&unknown.0, &unknown.1).contains("not eStargz's"));
        let bad_digest = estargz(tar, 64 << 10, |toc| {
            let n = chunk_entries(toc)[0];
            toc["entries"][n]["chunkDigest"] = json!("md5:00");
        });
        assert!(problem(&bad_digest.0, &bad_digest.1).contains("not sha256"));
    }

    /// A chunk whose bytes changed in the blob: the TOC still reads, the file it belongs to
    /// fails by name (after its retries) and the others fill.
    #[test]
    fn a_corrupt_chunk_fails_its_file_by_name() {
        let (mut blob, toc) = estargz(&layers()[0], 64 << 10, |_| {});
        let layer = ok(opened(&blob, &toc));
        let frame = layer.framed.index.frames[3].clone();
        let at = ok(usize::try_from(frame.offset + frame.size / 2));
        blob[at] ^= 0x5a;
        let dir = ok(tempfile::tempdir());
        let (tree, _) = lazy_tree(dir.path(), &[(blob, toc)]);
        match tree.fill_all() {
            Err(LazyFault::Fetch { path, problem }) => {
                assert!(path.starts_with("usr/lib"), "{}", path.display());
                assert!(
                    problem.contains("digest mismatch") || problem.contains("decompress"),
                    "{problem}"
                );
            }
            other => panic!("a corrupt chunk filled: {other:?}"),
        }
    }
}
