//! Layers re-encoded for parallel cold starts: the layer's tar cut into independent zstd
//! frames of a few MiB, each beginning where a tar entry begins, and an index of the frames'
//! offsets, sizes and digests. `deployer init -db` and `deployer stage` write both next to
//! the original blob; the pull uses them when a staged layer names its index.
//!
//! Why: a gzip stream decompresses on one core, from its first byte to its last. Independent
//! frames are fetched with parallel ranged reads and decompressed on every core, then applied
//! in order by the one applier, so whiteouts, hard links and opaque directories give exactly
//! the eager pull's tree (the tar's order carries their meaning).
//!
//! Trust: the staged manifest names the index by digest (the [`ANNOTATION`] on the layer's
//! descriptor), the index is bound to that layer's digest and names each frame by digest, so
//! every byte is checked against the manifest frame by frame before it is decompressed. The
//! frames concatenated are also a valid `tar+zstd` blob, which any OCI tool reads.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The layer descriptor annotation (in the staged manifest) naming the layer's frame index.
pub const ANNOTATION: &str = "dev.scar-rs.frames.index";
/// The index's media type, for the index blob and its descriptor.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.scar-rs.frames.index.v1+json";
/// The concatenated frames are an ordinary zstd layer.
pub const FRAMED_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// A frame closes at the first entry boundary past this many tar bytes: large enough that a
/// ranged GET's latency is small beside its transfer, small enough for every core to get work
/// on a 50 MB layer.
pub const TARGET_FRAME_BYTES: u64 = 4 << 20;
/// An entry larger than this is cut inside its data, so frames stay bounded whatever the files.
const MAX_CUT_BYTES: u64 = 2 * TARGET_FRAME_BYTES;
/// The most a frame may hold, compressed or not, as read: an index promising more is refused
/// before anything is fetched (it bounds the pull's memory).
pub const MAX_FRAME_BYTES: u64 = 16 << 20;
/// zstd's default level: about gzip -6's ratio, several times gzip's decompression speed.
const LEVEL: i32 = 3;
/// Attempts per frame: a ranged read that fails or returns the wrong bytes is tried again.
pub(crate) const ATTEMPTS: u32 = 3;

/// One frame of the framed blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Frame {
    /// Offset in the framed blob.
    pub offset: u64,
    /// Compressed size.
    pub size: u64,
    /// Size of the tar bytes it holds.
    pub unpacked: u64,
    /// `sha256:` digest of the compressed bytes.
    pub digest: String,
}

/// A layer's frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FrameIndex {
    /// Format version, 1.
    pub schema_version: u32,
    /// Digest of the original layer blob this index re-encodes.
    pub layer: String,
    /// Digest of the framed blob (the frames concatenated).
    pub blob: String,
    /// Its size.
    pub blob_size: u64,
    /// The frames, in order, covering the blob without gap.
    pub frames: Vec<Frame>,
}

/// Why a framed layer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameFault {
    /// The index is not one this runtime can trust or use.
    #[error("frame index {digest}: {problem}")]
    Index {
        /// The index's digest, from the manifest.
        digest: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A frame did not arrive, arrived wrong, or did not decompress.
    #[error("frame {frame} (bytes {offset}..{end} of {blob}): {problem}")]
    Frame {
        /// Its position, from 0.
        frame: usize,
        /// Its offset in the blob.
        offset: u64,
        /// Its end.
        end: u64,
        /// The framed blob.
        blob: String,
        /// What went wrong (after the retries, for transfer faults).
        problem: String,
    },
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl FrameIndex {
    /// Reads an index fetched as `digest` for the layer `layer`, checking everything a reader
    /// relies on: the digest, the binding to the layer, frames that tile the blob, sizes that
    /// bound memory.
    pub fn parse(bytes: &[u8], digest: &str, layer: &str) -> Result<Self, FrameFault> {
        let fault = |problem: String| FrameFault::Index {
            digest: digest.to_string(),
            problem,
        };
        let actual = sha256(bytes);
        if actual != digest {
            return Err(fault(format!("its content hashes to {actual}: corrupt")));
        }
        let index: Self =
            serde_json::from_slice(bytes).map_err(|e| fault(format!("not a frame index: {e}")))?;
        if index.schema_version != 1 {
            return Err(fault(format!(
                "schema version {}: only version 1 is read",
                index.schema_version
            )));
        }
        if index.layer != layer {
            return Err(fault(format!(
                "it re-encodes layer {}, not {layer}",
                index.layer
            )));
        }
        if crate::oci::sha256_hex(&index.blob).is_none() {
            return Err(fault(format!("malformed blob digest {:?}", index.blob)));
        }
        if index.frames.is_empty() {
            return Err(fault("no frames".into()));
        }
        let mut at = 0u64;
        for (n, frame) in index.frames.iter().enumerate() {
            if frame.offset != at {
                return Err(fault(format!(
                    "frame {n} starts at {} where the previous one ends at {at}",
                    frame.offset
                )));
            }
            if frame.size == 0 || frame.size > MAX_FRAME_BYTES || frame.unpacked > MAX_FRAME_BYTES {
                return Err(fault(format!(
                    "frame {n} is {} bytes compressed, {} unpacked: frames are 1 to {MAX_FRAME_BYTES} bytes",
                    frame.size, frame.unpacked
                )));
            }
            if crate::oci::sha256_hex(&frame.digest).is_none() {
                return Err(fault(format!("frame {n} has a malformed digest")));
            }
            at += frame.size;
        }
        if at != index.blob_size {
            return Err(fault(format!(
                "the frames cover {at} bytes of a {}-byte blob",
                index.blob_size
            )));
        }
        Ok(index)
    }

    /// The fault of frame `n`, named by its place in the blob.
    fn fault(&self, n: usize, problem: String) -> FrameFault {
        let frame = &self.frames[n];
        FrameFault::Frame {
            frame: n,
            offset: frame.offset,
            end: frame.offset + frame.size,
            blob: self.blob.clone(),
            problem,
        }
    }

    /// Bytes of tar the frames hold.
    pub fn unpacked_size(&self) -> u64 {
        self.frames.iter().map(|f| f.unpacked).sum()
    }
}

/// Re-encodes a layer blob as stored (gzip, zstd or plain tar; sniffed) into frames written
/// to `out`, returning their index, and writes the layer's skeleton ([`crate::skeleton`]) to
/// `skeleton`. The tar is decompressed to a temporary file first: the entry boundaries are
/// found in one pass, the frames cut in a second, the skeleton written in a third.
pub fn encode(
    layer_blob: impl Read + Send,
    layer: &str,
    out: &mut impl Write,
    skeleton: &mut impl Write,
) -> io::Result<FrameIndex> {
    let faults = crate::unpack::blob::FaultSlot::default();
    let mut tar = crate::unpack::blob::decompressed(layer_blob, None, &faults)?;
    let mut spooled = tempfile::tempfile()?;
    let length = io::copy(&mut tar, &mut spooled)?;
    let boundaries = entry_starts(&spooled)?;
    let mut frames = Vec::new();
    let mut blob = Sha256::new();
    let mut offset = 0u64;
    let mut emit = |from: u64, to: u64| -> io::Result<()> {
        let len = usize::try_from(to - from).map_err(io::Error::other)?;
        let mut plain = vec![0; len];
        spooled.read_exact_at(&mut plain, from)?;
        let compressed = zstd::bulk::compress(&plain, LEVEL)?;
        blob.update(&compressed);
        out.write_all(&compressed)?;
        frames.push(Frame {
            offset,
            size: compressed.len() as u64,
            unpacked: to - from,
            digest: sha256(&compressed),
        });
        offset += compressed.len() as u64;
        Ok(())
    };
    let mut start = 0u64;
    for cut in boundaries.into_iter().chain([length]) {
        while cut - start > MAX_CUT_BYTES {
            emit(start, start + TARGET_FRAME_BYTES)?;
            start += TARGET_FRAME_BYTES;
        }
        if (cut - start >= TARGET_FRAME_BYTES || cut == length) && cut > start {
            emit(start, cut)?;
            start = cut;
        }
    }
    out.flush()?;
    crate::skeleton::encode(&spooled, skeleton)?;
    Ok(FrameIndex {
        schema_version: 1,
        layer: layer.to_string(),
        blob: format!("sha256:{}", hex::encode(blob.finalize())),
        blob_size: offset,
        frames,
    })
}

/// Offsets where a tar entry begins and no extension header (pax, GNU long name or link)
/// belongs to it: cutting there leaves every entry whole within one frame's start.
fn entry_starts(tar: &File) -> io::Result<Vec<u64>> {
    let mut file = tar.try_clone()?;
    file.rewind()?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut starts = Vec::new();
    for entry in archive.entries_with_seek()? {
        let mut entry = entry?;
        let plain = entry.pax_extensions()?.is_none()
            && entry.path_bytes() == entry.header().path_bytes()
            && entry.link_name_bytes() == entry.header().link_name_bytes();
        if plain && entry.raw_header_position() > 0 {
            starts.push(entry.raw_header_position());
        }
    }
    Ok(starts)
}

/// Ranged reads of the framed blob where it is stored.
pub trait RangeSource: Send + Sync {
    /// `len` bytes at `offset` (fewer or more is a fault the caller names).
    fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>>;
}

/// How a frame's bytes are encoded and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCodec {
    /// A zstd frame of ours: its compressed bytes match the frame's digest, and it
    /// decompresses to exactly its `unpacked` bytes.
    Zstd,
    /// An eStargz chunk ([`crate::stargz`]): the gzip member(s) from the chunk's offset to the
    /// next chunk's, whose first `unpacked` decompressed bytes are the chunk and match the
    /// frame's digest (what follows them, tar padding and the next entries' headers, is not
    /// read).
    GzipChunk,
    /// A zstd:chunked chunk: the same, in zstd frames.
    ZstdChunk,
}

/// A framed layer ready to be read: its checked index and where its frames are.
#[derive(Clone)]
pub struct FramedLayer {
    /// The index.
    pub index: FrameIndex,
    /// The framed blob.
    pub source: Arc<dyn RangeSource>,
    /// How its frames are encoded.
    pub codec: FrameCodec,
}

impl std::fmt::Debug for FramedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedLayer")
            .field("blob", &self.index.blob)
            .field("frames", &self.index.frames.len())
            .finish_non_exhaustive()
    }
}

/// Readers working at once: more than the cores, since part of each frame's time is the
/// ranged read's latency; bounded, since each holds up to two frames in memory.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    (cores * 2).clamp(4, 8)
}

/// Fetches, verifies and decompresses every frame on `workers` threads and hands each
/// frame's tar bytes to `deliver` in order; `deliver` returns false when its reader went
/// away (the rest is then abandoned). Returns whether every frame was delivered; `progress`
/// gets each frame's compressed size.
pub fn read_frames(
    layer: &FramedLayer,
    workers: usize,
    progress: &(dyn Fn(u64) + Sync),
    mut deliver: impl FnMut(Vec<u8>) -> bool,
) -> Result<bool, FrameFault> {
    // An index without frames is refused by `parse`; `max(1)` keeps this total anyway.
    let workers = workers.clamp(1, layer.index.frames.len().max(1));
    std::thread::scope(|scope| {
        let mut lanes: Vec<Receiver<Result<Vec<u8>, FrameFault>>> = Vec::with_capacity(workers);
        for lane in 0..workers {
            // One frame waiting per worker while it reads the next: bounded memory.
            let (sender, receiver) = sync_channel(1);
            lanes.push(receiver);
            let reader = move || {
                for n in (lane..layer.index.frames.len()).step_by(workers) {
                    let frame = read_frame(layer, n);
                    let failed = frame.is_err();
                    if sender.send(frame).is_err() || failed {
                        return;
                    }
                }
            };
            // Returning drops the lanes: the readers already started stop at their next send.
            std::thread::Builder::new()
                .name("scar-frames".into())
                .spawn_scoped(scope, reader)
                .map_err(|e| {
                    layer
                        .index
                        .fault(lane, format!("cannot start its reader thread: {e}"))
                })?;
        }
        for (n, frame) in layer.index.frames.iter().enumerate() {
            let bytes = lanes[n % workers].recv().map_err(|_| {
                layer
                    .index
                    .fault(n, "its reader thread ended without an answer".into())
            })??;
            progress(frame.size);
            if !deliver(bytes) {
                // Dropping the lanes makes every worker's next send fail: they stop.
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// One frame, read until it arrives whole and matches its digest, then decompressed.
pub(crate) fn read_frame(layer: &FramedLayer, n: usize) -> Result<Vec<u8>, FrameFault> {
    let frame = &layer.index.frames[n];
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(100 << attempt));
        }
        let compressed = match layer.source.read_range(frame.offset, frame.size) {
            Ok(bytes) if bytes.len() as u64 == frame.size => bytes,
            Ok(bytes) => {
                last = format!(
                    "the read returned {} bytes, not {}",
                    bytes.len(),
                    frame.size
                );
                continue;
            }
            Err(e) => {
                last = format!("read failed: {e}");
                continue;
            }
        };
        match decode(layer, n, &compressed) {
            Ok(plain) => return Ok(plain),
            Err(Decoded::Retry(problem)) => last = problem,
            Err(Decoded::Final(fault)) => return Err(fault),
        }
    }
    Err(layer
        .index
        .fault(n, format!("after {ATTEMPTS} attempts: {last}")))
}

/// Why a frame's bytes did not decode.
enum Decoded {
    /// They may have gone wrong on the way: reading again may help.
    Retry(String),
    /// They are the ones the index names: the index itself is wrong.
    Final(FrameFault),
}

/// Frame `n` of `layer` from its compressed bytes, checked.
fn decode(layer: &FramedLayer, n: usize, compressed: &[u8]) -> Result<Vec<u8>, Decoded> {
    let frame = &layer.index.frames[n];
    match layer.codec {
        // Only the decompressed chunk is named by a digest: bytes that went wrong on the
        // way show as a stream that does not decode or a mismatch, so both are retried.
        FrameCodec::GzipChunk => {
            let decoder = flate2::read::MultiGzDecoder::new(compressed);
            return chunk(decoder, frame).map_err(Decoded::Retry);
        }
        FrameCodec::ZstdChunk => {
            let decoder = zstd::Decoder::with_buffer(compressed)
                .map_err(|e| Decoded::Retry(format!("does not decompress: {e}")))?;
            return chunk(decoder, frame).map_err(Decoded::Retry);
        }
        FrameCodec::Zstd => {}
    }
    let actual = sha256(compressed);
    if actual != frame.digest {
        return Err(Decoded::Retry(format!(
            "digest mismatch: expected {}, got {actual}",
            frame.digest
        )));
    }
    let fault = |problem: String| Decoded::Final(layer.index.fault(n, problem));
    let capacity = usize::try_from(frame.unpacked).map_err(|e| fault(e.to_string()))?;
    let plain = zstd::bulk::decompress(compressed, capacity)
        .map_err(|e| fault(format!("does not decompress: {e}")))?;
    if plain.len() as u64 != frame.unpacked {
        return Err(fault(format!(
            "decompresses to {} bytes where the index says {}",
            plain.len(),
            frame.unpacked
        )));
    }
    Ok(plain)
}

/// Consecutive frames' compressed bytes, read at once: a store far away (a registry, S3)
/// answers each read after a round trip, and eStargz chunks are often a few KiB.
#[derive(Debug)]
pub(crate) struct Span {
    frames: std::ops::Range<usize>,
    /// Offset of the first frame in the blob.
    base: u64,
    bytes: Vec<u8>,
}

impl Span {
    /// Frame `n`'s compressed bytes, read elsewhere (fetched ahead of need), as a span.
    pub(crate) fn of_frame(layer: &FramedLayer, n: usize, bytes: Vec<u8>) -> Option<Self> {
        Some(Self {
            frames: n..n + 1,
            base: layer.index.frames.get(n)?.offset,
            bytes,
        })
    }
}

/// Reads frames `frames` of `layer` with one ranged read; `None` when it fails or comes back
/// short (each frame is then read alone, with its retries).
pub(crate) fn read_span(layer: &FramedLayer, frames: std::ops::Range<usize>) -> Option<Span> {
    let all = layer.index.frames.get(frames.clone())?;
    let (first, last) = (all.first()?, all.last()?);
    let len = last.offset + last.size - first.offset;
    let bytes = layer.source.read_range(first.offset, len).ok()?;
    (bytes.len() as u64 == len).then_some(Span {
        frames,
        base: first.offset,
        bytes,
    })
}

/// Frame `n` decoded from `span` if the span holds it and its bytes check; else read alone.
pub(crate) fn frame_in_span(
    layer: &FramedLayer,
    span: Option<&Span>,
    n: usize,
) -> Result<Vec<u8>, FrameFault> {
    if let Some(span) = span.filter(|s| s.frames.contains(&n)) {
        let frame = &layer.index.frames[n];
        let from = usize::try_from(frame.offset - span.base).unwrap_or(usize::MAX);
        let to = usize::try_from(frame.size).map_or(usize::MAX, |size| from.saturating_add(size));
        if let Some(Ok(plain)) = span.bytes.get(from..to).map(|c| decode(layer, n, c)) {
            return Ok(plain);
        }
    }
    read_frame(layer, n)
}

/// The first `unpacked` bytes that `decoder` gives, checked against the frame's digest; the
/// rest of its stream is left undecoded.
fn chunk(decoder: impl Read, frame: &Frame) -> Result<Vec<u8>, String> {
    let capacity = usize::try_from(frame.unpacked).map_err(|e| e.to_string())?;
    let mut plain = Vec::with_capacity(capacity);
    decoder
        .take(frame.unpacked)
        .read_to_end(&mut plain)
        .map_err(|e| format!("does not decompress: {e}"))?;
    if plain.len() != capacity {
        return Err(format!(
            "decompresses to {} bytes where the table of contents says {}",
            plain.len(),
            frame.unpacked
        ));
    }
    let actual = sha256(&plain);
    if actual != frame.digest {
        return Err(format!(
            "digest mismatch: expected {}, got {actual}",
            frame.digest
        ));
    }
    Ok(plain)
}

/// A framed blob in a local file (an OCI layout on disk).
#[derive(Debug)]
pub struct FileRanges(pub File);

impl RangeSource for FileRanges {
    fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; usize::try_from(len).map_err(io::Error::other)?];
        let mut filled = 0;
        while filled < bytes.len() {
            match self.0.read_at(&mut bytes[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        bytes.truncate(filled);
        Ok(bytes)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A tar of many files of pseudo-random sizes (some larger than a frame), one with a
    /// long name (a GNU extension header), a hard link and a whiteout.
    fn sample_tar() -> Vec<u8> {
        static SAMPLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        SAMPLE.get_or_init(build_sample_tar).clone()
    }

    fn build_sample_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut seed = 7u64;
        for n in 0..300u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let size = match n % 50 {
                0 => 9 << 20,
                _ => (seed >> 40) % 200_000,
            };
            let data: Vec<u8> = (0..size)
                .map(|i| (i.wrapping_mul(seed) >> 7) as u8)
                .collect();
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            let name = if n == 77 {
                format!("d/{}/long", "x".repeat(150))
            } else {
                format!("d/f{n}")
            };
            builder
                .append_data(&mut header, name, data.as_slice())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Link);
        link.set_size(0);
        builder
            .append_link(&mut link, "d/hard", "d/f1")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut whiteout = tar::Header::new_gnu();
        whiteout.set_size(0);
        builder
            .append_data(&mut whiteout, "d/.wh.f2", io::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        builder.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
        gz.finish().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A blob in memory, counting the reads.
    pub(crate) struct Memory(pub(crate) Vec<u8>, pub(crate) AtomicUsize);

    impl RangeSource for Memory {
        fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            let from = usize::try_from(offset).map_err(io::Error::other)?;
            let to = usize::try_from(offset + len).map_err(io::Error::other)?;
            Ok(self
                .0
                .get(from..to.min(self.0.len()))
                .unwrap_or(&[])
                .to_vec())
        }
    }

    fn framed(tar: &[u8]) -> (FrameIndex, Vec<u8>) {
        let mut blob = Vec::new();
        let index = encode(
            io::Cursor::new(gzip(tar)),
            "sha256:layer",
            &mut blob,
            &mut io::sink(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (index, blob)
    }

    fn read_all(index: FrameIndex, source: Arc<dyn RangeSource>) -> Result<Vec<u8>, FrameFault> {
        let mut out = Vec::new();
        let layer = FramedLayer {
            index,
            source,
            codec: FrameCodec::Zstd,
        };
        read_frames(&layer, 3, &|_| {}, |bytes| {
            out.extend_from_slice(&bytes);
            true
        })?;
        Ok(out)
    }

    fn entries(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(tar);
        let mut found = BTreeMap::new();
        for entry in archive.entries().unwrap_or_else(|e| panic!("{e}")) {
            let mut entry = entry.unwrap_or_else(|e| panic!("{e}"));
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .unwrap_or_else(|e| panic!("{e}"));
            found.insert(path, data);
        }
        found
    }

    /// Out of threads (the command has the function's 1,024), a layer's read fails naming
    /// why, instead of panicking.
    #[test]
    fn a_read_that_cannot_start_its_readers_fails_naming_why() {
        crate::no_threads::without_threads(
            "frames::tests::a_read_that_cannot_start_its_readers_fails_naming_why",
            || {
                let (index, blob) = framed(&sample_tar());
                let fault = read_all(index, Arc::new(Memory(blob, AtomicUsize::new(0))))
                    .expect_err("no reader could start");
                assert!(
                    fault.to_string().contains("cannot start its reader thread"),
                    "{fault}"
                );
            },
        );
    }

    #[test]
    fn frames_give_back_the_tar_byte_for_byte_and_the_blob_is_one_zstd_stream() {
        let tar = sample_tar();
        let (index, blob) = framed(&tar);
        assert!(index.frames.len() > 10, "{} frames", index.frames.len());
        assert_eq!(index.blob, sha256(&blob));
        assert_eq!(index.unpacked_size(), tar.len() as u64);
        let source = Arc::new(Memory(blob.clone(), AtomicUsize::new(0)));
        assert_eq!(read_all(index.clone(), source.clone()), Ok(tar.clone()));
        assert_eq!(source.1.load(Ordering::Relaxed), index.frames.len());
        // Any zstd reader sees the plain layer.
        let whole = zstd::decode_all(blob.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(whole, tar);
        // Every frame is bounded.
        assert!(index.frames.iter().all(|f| f.unpacked <= MAX_CUT_BYTES));
    }

    #[test]
    fn frames_begin_where_an_entry_begins_or_inside_a_file_too_big_for_one() {
        let tar = sample_tar();
        let (index, blob) = framed(&tar);
        let starts = entry_starts_of(&tar);
        let mut big_files = Vec::new();
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().unwrap_or_else(|e| panic!("{e}")) {
            let entry = entry.unwrap_or_else(|e| panic!("{e}"));
            if entry.size() > MAX_CUT_BYTES {
                let from = entry.raw_file_position();
                big_files.push(from..from + entry.size());
            }
        }
        assert_eq!(big_files.len(), 6);
        let mut at = 0u64;
        let mut inside_big_files = 0;
        for frame in &index.frames {
            if big_files.iter().any(|r| r.contains(&at)) {
                inside_big_files += 1;
            } else {
                assert!(
                    at == 0 || starts.contains(&at),
                    "a frame starts at {at}, not at an entry"
                );
            }
            at += frame.unpacked;
        }
        // Each 9 MiB file holds at most two cuts.
        assert!((1..=12).contains(&inside_big_files), "{inside_big_files}");
        let blob_entries = entries(&zstd::decode_all(blob.as_slice()).unwrap_or_default());
        assert_eq!(blob_entries, entries(&tar));
    }

    fn entry_starts_of(tar: &[u8]) -> Vec<u64> {
        let mut file = tempfile::tempfile().unwrap_or_else(|e| panic!("{e}"));
        file.write_all(tar).unwrap_or_else(|e| panic!("{e}"));
        entry_starts(&file).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_long_name_header_stays_with_its_entry() {
        let tar = sample_tar();
        let starts = entry_starts_of(&tar);
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().unwrap_or_else(|e| panic!("{e}")) {
            let entry = entry.unwrap_or_else(|e| panic!("{e}"));
            if entry.path_bytes().ends_with(b"/long") {
                assert!(!starts.contains(&entry.raw_header_position()));
                return;
            }
        }
        panic!("no long-named entry");
    }

    #[test]
    fn a_corrupt_frame_is_named_after_the_retries() {
        let tar = sample_tar();
        let (index, mut blob) = framed(&tar);
        let third = index.frames[2].clone();
        blob[usize::try_from(third.offset + 10).unwrap_or(0)] ^= 0xff;
        let source = Arc::new(Memory(blob, AtomicUsize::new(0)));
        let fault = read_all(index.clone(), source.clone()).err();
        let Some(FrameFault::Frame { frame, problem, .. }) = fault else {
            panic!("{fault:?}");
        };
        assert_eq!(frame, 2);
        assert!(
            problem.contains("digest mismatch") && problem.contains("3 attempts"),
            "{problem}"
        );
    }

    #[test]
    fn a_short_read_is_retried_and_named() {
        let tar = sample_tar();
        let (index, blob) = framed(&tar);
        let truncated = blob[..blob.len() - 100].to_vec();
        let fault = read_all(
            index.clone(),
            Arc::new(Memory(truncated, AtomicUsize::new(0))),
        )
        .err();
        let last = index.frames.len() - 1;
        assert!(
            matches!(&fault, Some(FrameFault::Frame { frame, problem, .. }) if *frame == last && problem.contains("returned")),
            "{fault:?}"
        );
    }

    /// Succeeds on the second attempt at each frame, as a flaky store would.
    struct Flaky(Vec<u8>, std::sync::Mutex<std::collections::HashSet<u64>>);

    impl RangeSource for Flaky {
        fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
            let first = self.1.lock().map(|mut s| s.insert(offset)).unwrap_or(false);
            if first {
                return Err(io::Error::other("503 SlowDown"));
            }
            Memory(self.0.clone(), AtomicUsize::new(0)).read_range(offset, len)
        }
    }

    #[test]
    fn a_transient_failure_is_retried() {
        let tar = sample_tar();
        let (index, blob) = framed(&tar);
        let source = Arc::new(Flaky(blob, Default::default()));
        assert_eq!(read_all(index, source), Ok(tar));
    }

    #[test]
    fn an_index_is_refused_when_anything_it_promises_cannot_hold() {
        let (index, _) = framed(&sample_tar());
        let bytes = serde_json::to_vec(&index).unwrap_or_default();
        let digest = sha256(&bytes);
        assert_eq!(
            FrameIndex::parse(&bytes, &digest, "sha256:layer"),
            Ok(index.clone())
        );
        let refused =
            |bytes: &[u8], digest: &str, layer: &str, expected: &str| match FrameIndex::parse(
                bytes, digest, layer,
            ) {
                Err(FrameFault::Index { problem, .. }) => {
                    assert!(problem.contains(expected), "{problem} lacks {expected}")
                }
                other => panic!("{other:?}"),
            };
        refused(&bytes, &sha256(b"other"), "sha256:layer", "corrupt");
        refused(&bytes, &digest, "sha256:another", "re-encodes layer");
        let mut gap = index.clone();
        gap.frames[1].offset += 1;
        let gap = serde_json::to_vec(&gap).unwrap_or_default();
        refused(&gap, &sha256(&gap), "sha256:layer", "frame 1 starts at");
        let mut huge = index.clone();
        huge.frames[0].unpacked = 1 << 40;
        let huge = serde_json::to_vec(&huge).unwrap_or_default();
        refused(&huge, &sha256(&huge), "sha256:layer", "frames are 1 to");
        let mut short = index;
        short.blob_size += 1;
        let short = serde_json::to_vec(&short).unwrap_or_default();
        refused(&short, &sha256(&short), "sha256:layer", "cover");
    }

    #[test]
    fn an_abandoned_read_stops_the_workers() {
        let (index, blob) = framed(&sample_tar());
        let frames = index.frames.len();
        let source = Arc::new(Memory(blob, AtomicUsize::new(0)));
        let layer = FramedLayer {
            index,
            source: source.clone(),
            codec: FrameCodec::Zstd,
        };
        let mut taken = 0;
        let complete = read_frames(&layer, 2, &|_| {}, |_| {
            taken += 1;
            taken < 3
        });
        assert_eq!(complete, Ok(false));
        // At most the frames in flight were read beyond the three delivered.
        assert!(source.1.load(Ordering::Relaxed) <= 3 + 2 * 2, "{}", frames);
    }
}
