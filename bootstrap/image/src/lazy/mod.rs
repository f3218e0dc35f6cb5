//! Lazy loading: a rootfs built from the layers' skeletons ([`crate::skeleton`]), whose files
//! are placeholders of their real size, mode and times until their bytes are fetched from the
//! layers' frames.
//!
//! A placeholder is a sparse file of its real length with no block written: `stat` already
//! reports what the image holds, and through the shim its blocks too (its access time carries
//! `rootfs_paths::fetch::PLACEHOLDER_ATIME_NSEC`, which tells it from a file sparse on
//! purpose). [`LazyTree::fill`] fetches one file on first use: the frames
//! that cover its bytes are read and checked ([`crate::frames`]), the bytes written to a new
//! file in the tree's aside directory, which gets the placeholder's mode and times and is
//! exchanged with it (and with every hard link to it), so no reader ever sees a partial file.
//! The aside directory lies beside the tree, on its filesystem, not in it: a program listing
//! a directory while its files arrive sees the names the image holds and no other. Two
//! threads asking for one file fetch it once: the second waits for the first.
//! [`LazyTree::fill_all`] fetches whatever is left, in the layers' order, which makes the tree
//! an ordinary complete rootfs.
//!
//! A name whose placeholder a later layer replaced, or that the command itself replaced since,
//! is left alone: a file is filled only while it is still the placeholder the skeleton made
//! (a regular file of the recorded size with no block), and hard links only while they are
//! still that same inode.
//!
//! The tree keeps its access trace ([`crate::trace`]): the files asked for through
//! [`LazyTree::fill`], in order, after those of the trace it was given. [`LazyTree::prefetch`]
//! fetches the given trace's files first; [`LazyTree::save_trace`] stores what was learnt.
//!
//! | part | file |
//! |---|---|
//! | the tree built from the skeletons, what it holds | `mod.rs` |
//! | one file made whole | `fill.rs` |
//! | what is fetched when: the trace, neighbours, the background fill | `order.rs` |
//! | frames fetched while the tree is built | `preload.rs` |

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::frames::{self, FramedLayer};
use crate::skeleton::Placeholder;
use crate::trace::FileAt;
use crate::unpack::{LayerApplier, LayerStats, LazyFiles, UnpackError};

mod fill;
mod order;
mod preload;

pub use preload::{PRELOAD_BYTES, Preload};
#[cfg(test)]
pub(crate) mod tests;

/// Why a file of a lazy tree could not be filled.
#[derive(Debug, thiserror::Error)]
pub enum LazyFault {
    /// The skeleton names bytes the frames do not hold.
    #[error("skeleton of layer {layer}: {problem}")]
    Skeleton {
        /// The layer, from 0.
        layer: usize,
        /// What is wrong.
        problem: String,
    },
    /// A skeleton could not be applied.
    #[error("skeleton of layer {layer}: {error}")]
    Apply {
        /// The layer, from 0.
        layer: usize,
        /// Why.
        error: UnpackError,
    },
    /// A file's bytes did not arrive or could not be written.
    #[error("cannot fetch /{}: {problem}", path.display())]
    Fetch {
        /// The file, relative to the rootfs.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// `/tmp` filled up while a file's bytes were written: the function's configuration,
    /// not the image.
    #[error(
        "no space left on device while writing /{}: the image's files do not fit in /tmp \
         (raise the function's ephemeral storage, up to 10240 MB)",
        path.display()
    )]
    NoSpace {
        /// The file, relative to the rootfs.
        path: PathBuf,
    },
}

impl LazyFault {
    /// Whether `/tmp` filled up (while a file was fetched or the skeleton applied).
    pub fn is_no_space(&self) -> bool {
        matches!(
            self,
            Self::NoSpace { .. }
                | Self::Apply {
                    error: UnpackError::NoSpace { .. },
                    ..
                }
        )
    }
}

/// What [`LazyTree::fill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// The file's bytes were fetched and put in place.
    Fetched(u64),
    /// Nothing to do: not a placeholder, or already filled.
    Present,
}

/// What a lazy tree is built from: each layer's frames and skeleton, in order.
#[derive(Debug)]
pub struct LazyLayers {
    /// The frames.
    pub framed: Vec<FramedLayer>,
    /// The skeletons (zstd).
    pub skeletons: Vec<Vec<u8>>,
    /// Files the image's author listed to fetch first (an eStargz image's prioritized
    /// files), for a cold start with no access trace of ours.
    pub prioritized: Vec<FileAt>,
}

/// A decoded frame kept for the next files, which usually lie in the same one: (layer,
/// frame, bytes).
type CachedFrame = (usize, usize, Arc<Vec<u8>>);

/// The decoded frames kept, and those on their way.
struct FrameCache {
    /// Most recently used last.
    kept: std::collections::VecDeque<CachedFrame>,
    /// Frames a thread is reading from the store: another thread that wants one waits for
    /// it rather than read it again (a program's libraries, filled together, often share
    /// frames, and each read is a round trip and up to 16 MiB).
    reading: HashSet<(usize, usize)>,
}
/// Decoded frames kept (4 MiB each): a program's files are spread over a few frames at a
/// time, and the background fill reads others meanwhile.
const CACHED_FRAMES: usize = 8;

/// Threads of [`LazyTree::fill_all`] at most: each holds a frame being decoded (4 MiB).
pub const FILL_THREADS: usize = 4;

/// Frames read ahead of the one being written, for the whole tree (each 4 MiB decoded).
const READ_AHEAD: usize = 2;

/// Compressed bytes of consecutive small frames read with one request (eStargz chunks are
/// often a few KiB: one request per file would make a registry answer thousands).
const SPAN_BYTES: u64 = 4 << 20;
/// Spans kept (4 MiB each, compressed): a program's files lie in a few places of the image at
/// a time, each filling thread works through one, and a registry answers each read after a
/// round trip (a few ms on a local one, tens over the internet), far longer than a chunk
/// takes to decode.
const CACHED_SPANS: usize = 4 + FILL_THREADS;

/// Where a tree's access trace is stored (its encoded bytes, replacing the last).
pub type TraceSink = Box<dyn Fn(Vec<u8>) -> io::Result<()> + Send + Sync>;

/// The files asked for, in order: the stored trace's, then the new ones.
#[derive(Debug, Default)]
struct TraceLog {
    order: Vec<FileAt>,
    seen: HashSet<FileAt>,
    /// The first entries of `order` that came from the stored trace: to prefetch.
    given: usize,
    /// The first entries of `order` that the stored trace holds.
    stored: usize,
    /// Files fetched that nobody had asked for (by the background fill, the prefetch or as
    /// a fetched file's neighbours), not known to have been read since: the shim asks only
    /// for placeholders, so a command reading one of these asks nothing
    /// ([`LazyTree::save_trace`] looks at their access times).
    unasked: Vec<FileAt>,
}

/// A rootfs built from skeletons, and what it still lacks.
pub struct LazyTree {
    root: PathBuf,
    /// Where files are written before they are exchanged with their placeholders.
    aside: PathBuf,
    layers: Vec<FramedLayer>,
    /// Per layer, each frame's offset in the layer's tar.
    starts: Vec<Vec<u64>>,
    /// Per layer, the frames of each span: the unit read at once and filled together (one
    /// frame, for our own 4 MiB frames; up to [`SPAN_BYTES`] of eStargz chunks).
    spans: Vec<Vec<std::ops::Range<usize>>>,
    files: LazyFiles,
    /// Each placeholder's other names (hard links).
    other_names: HashMap<PathBuf, Vec<PathBuf>>,
    /// Each placeholder by `(device, inode)`: how the shim names a file it is about to open,
    /// whatever path (relative, through links, by directory descriptor) it was given.
    by_inode: HashMap<(u64, u64), PathBuf>,
    /// The placeholders whose bytes start in each span (layer, span).
    by_span: HashMap<(usize, usize), Vec<PathBuf>>,
    /// Set once every placeholder was filled.
    complete: AtomicBool,
    in_flight: Mutex<HashSet<PathBuf>>,
    /// Placeholders found away from their names (a directory holding them was renamed), by
    /// inode: where the last walk of the tree saw them (each of its names there).
    moved: Mutex<HashMap<(u64, u64), Vec<PathBuf>>>,
    /// Placeholders filled, by inode: one asked for by inode and no longer at its name was
    /// filled by another thread (a walk would look for it in vain), not moved.
    filled: Mutex<HashSet<(u64, u64)>>,
    /// Walks of the whole tree for moved placeholders so far: each costs about as much as
    /// `find` over the image (0.2 s for 1.9 GB), so the debug log and the tests count them.
    walks: std::sync::atomic::AtomicUsize,
    /// Frames being read ahead (see [`READ_AHEAD`]).
    reading_ahead: std::sync::atomic::AtomicUsize,
    landed: Condvar,
    frames: Mutex<FrameCache>,
    /// Signalled when a frame read ends (see [`FrameCache::reading`]).
    frame_read: Condvar,
    /// Spans of small frames read, most recently used last: (layer, span, compressed bytes).
    spans_read: Mutex<std::collections::VecDeque<(usize, usize, Arc<frames::Span>)>>,
    trace: Mutex<TraceLog>,
    trace_sink: Option<TraceSink>,
    /// Bytes the background fetches ([`Self::prefetch`], [`Self::fill_rest`]) leave free on
    /// the tree's filesystem, for the commands (0: no limit).
    keep_free: u64,
    /// Frames fetched while the tree was built, taken before the store is asked.
    preload: Option<Arc<Preload>>,
}

/// How [`LazyTree::fill_rest`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillEnd {
    /// Every file is in place: the tree is whole.
    Complete {
        /// Bytes fetched.
        bytes: u64,
    },
    /// Stopped before the next files would have left less than the space kept for the
    /// commands; the others arrive when asked for.
    SpaceKept {
        /// Bytes fetched.
        bytes: u64,
        /// Bytes free on the tree's filesystem when it stopped.
        free: u64,
    },
}

impl std::fmt::Debug for LazyTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyTree")
            .field("root", &self.root)
            .field("placeholders", &self.files.files.len())
            .finish_non_exhaustive()
    }
}

impl LazyTree {
    /// The tree at `root`, built from the skeletons of `layers` (in order), which left `files`.
    /// Every placeholder must lie inside its layer's frames. Files are written in `aside` (a
    /// directory outside the tree, on its filesystem) before they are put in place.
    pub fn new(
        root: PathBuf,
        aside: PathBuf,
        layers: Vec<FramedLayer>,
        files: LazyFiles,
    ) -> Result<Self, LazyFault> {
        for placeholder in files.files.values() {
            let layer = layers.get(placeholder.layer).ok_or(LazyFault::Skeleton {
                layer: placeholder.layer,
                problem: format!("the image has {} framed layers", layers.len()),
            })?;
            let end = placeholder.offset.checked_add(placeholder.size);
            if end.is_none_or(|end| end > layer.index.unpacked_size()) {
                return Err(LazyFault::Skeleton {
                    layer: placeholder.layer,
                    problem: format!(
                        "a file of {} bytes at offset {} lies beyond the layer's {} bytes",
                        placeholder.size,
                        placeholder.offset,
                        layer.index.unpacked_size()
                    ),
                });
            }
        }
        let starts: Vec<Vec<u64>> = layers.iter().map(frame_starts).collect();
        let by_inode = files
            .files
            .iter()
            .map(|(rel, placeholder)| (placeholder.inode, rel.clone()))
            .collect();
        let spans: Vec<Vec<std::ops::Range<usize>>> = layers.iter().map(spans_of).collect();
        let mut by_span: HashMap<(usize, usize), Vec<PathBuf>> = HashMap::new();
        for (rel, placeholder) in &files.files {
            by_span
                .entry(span_of(&starts, &spans, placeholder))
                .or_default()
                .push(rel.clone());
        }
        let mut other_names: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        for (link, target) in &files.links {
            other_names
                .entry(target.clone())
                .or_default()
                .push(link.clone());
        }
        Ok(Self {
            root,
            aside,
            layers,
            starts,
            spans,
            files,
            other_names,
            by_inode,
            by_span,
            complete: AtomicBool::new(false),
            in_flight: Mutex::new(HashSet::new()),
            moved: Mutex::default(),
            filled: Mutex::default(),
            walks: std::sync::atomic::AtomicUsize::new(0),
            reading_ahead: std::sync::atomic::AtomicUsize::new(0),
            landed: Condvar::new(),
            frames: Mutex::new(FrameCache {
                kept: std::collections::VecDeque::with_capacity(CACHED_FRAMES),
                reading: HashSet::new(),
            }),
            frame_read: Condvar::new(),
            spans_read: Mutex::new(std::collections::VecDeque::with_capacity(CACHED_SPANS)),
            trace: Mutex::default(),
            trace_sink: None,
            keep_free: 0,
            preload: None,
        })
    }

    /// Builds the tree in `staging` (an empty directory) from each layer's skeleton (the zstd
    /// blob, in the layers' order): every directory, link and file is in place, with each
    /// file that was left out a placeholder. Files are filled at `root`, where the caller
    /// moves the tree (a rename: the inodes stay) before the first fill; symlinks are made
    /// for that place. Files are written in `aside` before they are put in place (see
    /// [`Self::new`]). Returns each layer's counts too.
    pub fn build(
        staging: PathBuf,
        root: PathBuf,
        aside: PathBuf,
        layers: Vec<FramedLayer>,
        skeletons: &[impl AsRef<[u8]>],
    ) -> Result<(Self, Vec<LayerStats>), LazyFault> {
        if skeletons.len() != layers.len() {
            return Err(LazyFault::Skeleton {
                layer: skeletons.len().min(layers.len()),
                problem: format!("{} skeletons for {} layers", skeletons.len(), layers.len()),
            });
        }
        let mut applier = LayerApplier::for_skeletons(staging.clone(), root.clone());
        let mut stats = Vec::with_capacity(skeletons.len());
        for (layer, skeleton) in skeletons.iter().enumerate() {
            let apply = |applier: &mut LayerApplier| {
                let tar = zstd::Decoder::new(skeleton.as_ref()).map_err(UnpackError::Stream)?;
                applier.apply(tar)
            };
            stats.push(apply(&mut applier).map_err(|error| LazyFault::Apply { layer, error })?);
        }
        let files = applier.take_lazy_files();
        applier.finish().map_err(|error| LazyFault::Apply {
            layer: layers.len(),
            error,
        })?;
        let mut tree = Self::new(staging, aside, layers, files)?;
        tree.root = root;
        Ok((tree, stats))
    }

    /// The span where a placeholder's bytes start: (layer, span).
    fn span_of(&self, placeholder: &Placeholder) -> (usize, usize) {
        span_of(&self.starts, &self.spans, placeholder)
    }

    /// The rootfs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Placeholders the skeletons made (filled or not).
    pub fn placeholders(&self) -> usize {
        self.files.files.len()
    }

    /// Has the fills take their frames from `preload` first (see [`Preload`]).
    pub fn use_preload(&mut self, preload: Arc<Preload>) {
        self.preload = Some(preload);
    }

    /// Whether every placeholder has been filled (by [`Self::fill_all`]).
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }
}

/// The calling thread at the lowest CPU priority (Linux: `nice` is per thread).
pub(crate) fn lower_own_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id changes only
    // this thread's nice value.
    let done = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
    };
    if done != 0 {
        tracing::debug!("could not lower a background thread's priority");
    }
}

/// Each span's frames: one frame each for our zstd frames; consecutive eStargz chunks up to
/// [`SPAN_BYTES`] compressed.
fn spans_of(layer: &FramedLayer) -> Vec<std::ops::Range<usize>> {
    let frames = &layer.index.frames;
    if layer.codec == frames::FrameCodec::Zstd {
        return (0..frames.len()).map(|n| n..n + 1).collect();
    }
    let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
    let mut bytes = 0;
    for (n, frame) in frames.iter().enumerate() {
        match spans.last_mut() {
            Some(span) if bytes + frame.size <= SPAN_BYTES => {
                span.end = n + 1;
                bytes += frame.size;
            }
            _ => {
                spans.push(n..n + 1);
                bytes = frame.size;
            }
        }
    }
    spans
}

/// The layer and span where a placeholder's bytes start.
fn span_of(
    starts: &[Vec<u64>],
    spans: &[Vec<std::ops::Range<usize>>],
    placeholder: &Placeholder,
) -> (usize, usize) {
    let (layer, frame) = frame_of(starts, placeholder);
    let span = spans.get(layer).map_or(0, |spans| {
        spans
            .partition_point(|span| span.end <= frame)
            .min(spans.len().saturating_sub(1))
    });
    (layer, span)
}

/// The layer and frame where a placeholder's bytes start, given each layer's frame starts.
fn frame_of(starts: &[Vec<u64>], placeholder: &Placeholder) -> (usize, usize) {
    let frame = starts
        .get(placeholder.layer)
        .map_or(0, |starts| frame_holding(starts, placeholder.offset));
    (placeholder.layer, frame)
}

/// Where each frame of `layer` begins in the layer's tar (the frames tile it).
fn frame_starts(layer: &FramedLayer) -> Vec<u64> {
    let mut at = 0;
    layer
        .index
        .frames
        .iter()
        .map(|frame| {
            let start = at;
            at += frame.unpacked;
            start
        })
        .collect()
}

/// The frame that holds byte `offset` of a layer's tar, given where its frames begin.
fn frame_holding(starts: &[u64], offset: u64) -> usize {
    starts
        .partition_point(|&start| start <= offset)
        .saturating_sub(1)
}

/// A placeholder's name in an access trace.
fn place(placeholder: &Placeholder) -> FileAt {
    FileAt {
        layer: placeholder.layer,
        offset: placeholder.offset,
    }
}

/// A regular file of the placeholder's size with no block of its own.
fn still_placeholder(meta: &fs::Metadata, placeholder: &Placeholder) -> bool {
    meta.file_type().is_file() && meta.len() == placeholder.size && meta.blocks() == 0
}
