//! Lazy loading: a rootfs built from the layers' skeletons ([`crate::skeleton`]), whose files
//! are placeholders of their real size, mode and times until their bytes are fetched from the
//! layers' frames.
//!
//! A placeholder is a sparse file of its real length with no block written: `stat` already
//! reports what the image holds. [`LazyTree::fill`] fetches one file on first use: the frames
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

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use filetime::FileTime;

use crate::frames::{self, FramedLayer};
use crate::skeleton::Placeholder;
use crate::trace::{self, FileAt};
use crate::unpack::{LayerApplier, LayerStats, LazyFiles, UnpackError};

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

/// Why a placeholder's bytes could not be copied.
enum CopyFailure {
    /// The frames did not give them.
    Read(String),
    /// The new file did not take them.
    Write(io::Error),
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
/// Decoded frames kept (4 MiB each): a program's files are spread over a few frames at a
/// time, and the background fill reads others meanwhile.
const CACHED_FRAMES: usize = 8;

/// Threads of [`LazyTree::fill_all`] at most: each holds a frame being decoded (4 MiB).
pub const FILL_THREADS: usize = 4;

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
    landed: Condvar,
    frames: Mutex<std::collections::VecDeque<CachedFrame>>,
    /// Spans of small frames read, most recently used last: (layer, span, compressed bytes).
    spans_read: Mutex<std::collections::VecDeque<(usize, usize, Arc<frames::Span>)>>,
    trace: Mutex<TraceLog>,
    trace_sink: Option<TraceSink>,
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
        let starts: Vec<Vec<u64>> = layers
            .iter()
            .map(|layer| {
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
            })
            .collect();
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
            landed: Condvar::new(),
            frames: Mutex::new(std::collections::VecDeque::with_capacity(CACHED_FRAMES)),
            spans_read: Mutex::new(std::collections::VecDeque::with_capacity(CACHED_SPANS)),
            trace: Mutex::default(),
            trace_sink: None,
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

    /// Starts the access trace from a stored one (`given`, whose files [`Self::prefetch`]
    /// fetches), and names where [`Self::save_trace`] stores it.
    pub fn learn(&mut self, given: Vec<FileAt>, sink: Option<TraceSink>) {
        let log = self.trace.get_mut().unwrap_or_else(PoisonError::into_inner);
        for entry in given {
            if log.seen.insert(entry) {
                log.order.push(entry);
            }
        }
        log.given = log.order.len();
        log.stored = log.order.len();
        self.trace_sink = sink;
    }

    /// The access trace so far: the given one, then the files asked for since.
    pub fn trace(&self) -> Vec<FileAt> {
        self.trace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .order
            .clone()
    }

    /// Whether files were asked for that the stored trace lacks, and there is a place to
    /// store it ([`Self::save_trace`] would write).
    pub fn has_unsaved_trace(&self) -> bool {
        self.trace_sink.is_some() && {
            let log = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
            log.order.len() > log.stored
        }
    }

    /// Stores the access trace if files were asked for that the stored one lacks; returns
    /// the entries stored (0 when there was nothing new, or nowhere to store it).
    pub fn save_trace(&self) -> io::Result<usize> {
        let Some(sink) = &self.trace_sink else {
            return Ok(0);
        };
        let (bytes, entries) = {
            let log = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
            if log.order.len() == log.stored {
                return Ok(0);
            }
            (trace::encode(&log.order), log.order.len())
        };
        sink(bytes)?;
        let mut log = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
        log.stored = log.stored.max(entries);
        Ok(entries)
    }

    /// Fetches the files of the given trace (see [`Self::learn`]) on `workers` threads, in
    /// the trace's order: the files are grouped by the span their bytes start in, each
    /// group followed by the span's other files (a zstd frame's), and each worker takes the
    /// next group (one read serves a group; a store far away is read several spans at a
    /// time). Returns the bytes fetched. Entries that name no placeholder are skipped: a
    /// trace is only a hint.
    pub fn prefetch(&self, workers: usize) -> Result<u64, LazyFault> {
        let wanted: Vec<FileAt> = {
            let log = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
            log.order[..log.given].to_vec()
        };
        if wanted.is_empty() {
            return Ok(0);
        }
        let by_place: HashMap<FileAt, (&PathBuf, &Placeholder)> = self
            .files
            .files
            .iter()
            .map(|(name, p)| (place(p), (name, p)))
            .collect();
        let mut groups: Vec<Vec<&PathBuf>> = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut group_of: HashMap<(usize, usize), usize> = HashMap::new();
        for (name, placeholder) in wanted.iter().filter_map(|at| by_place.get(at)) {
            let span = self.span_of(placeholder);
            let group = *group_of.entry(span).or_insert_with(|| {
                groups.push(Vec::new());
                spans.push(span);
                groups.len() - 1
            });
            groups[group].push(name);
        }
        // A frame decoded for the trace's files serves the other files that start in it, as
        // for a file the shim asks for: left for the background fill, they had the frame
        // decoded a second time, and a trace names only the files its first run asked for
        // (a scattered part of most frames of a command that reads everything), which made
        // such a command slower with its trace than without.
        for (group, span) in groups.iter_mut().zip(&spans) {
            if !self.serves_neighbours(span.0) {
                continue;
            }
            let named: HashSet<&PathBuf> = group.iter().copied().collect();
            let others: Vec<&PathBuf> = self
                .by_span
                .get(span)
                .into_iter()
                .flatten()
                .filter(|name| !named.contains(name))
                .collect();
            group.extend(others);
        }
        self.fill_groups(&groups, workers)
    }

    /// Fills each group's files (all starting in one span) on `workers` threads, each
    /// taking the next group; returns the bytes fetched.
    fn fill_groups(&self, groups: &[Vec<&PathBuf>], workers: usize) -> Result<u64, LazyFault> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let fetched = AtomicU64::new(0);
        let work = || -> Result<(), LazyFault> {
            while let Some(group) = groups.get(next.fetch_add(1, Ordering::Relaxed)) {
                for name in group {
                    match self.fill_unrecorded(name) {
                        Ok(Filled::Fetched(bytes)) => {
                            fetched.fetch_add(bytes, Ordering::Relaxed);
                        }
                        Ok(Filled::Present) => {}
                        Err(e) => {
                            // The others stop at their next group.
                            next.store(groups.len(), Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
            }
            Ok(())
        };
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..workers.clamp(1, groups.len().max(1)))
                .map(|_| scope.spawn(work))
                .collect();
            let mut result = work();
            for helper in helpers {
                let joined = helper.join().unwrap_or_else(|_| {
                    Err(LazyFault::Fetch {
                        path: PathBuf::new(),
                        problem: "a filling thread panicked".into(),
                    })
                });
                result = result.and(joined);
            }
            result
        })?;
        Ok(fetched.into_inner())
    }

    /// Fills the other placeholders whose bytes start in the frame where those of the file
    /// with this device and inode start (one decoded frame serves them all: a command that
    /// reads many files in an order of its own would otherwise decode some frames many
    /// times); nothing for eStargz chunks, each decoded alone. Not accesses: they stay out
    /// of the trace. Returns the bytes fetched.
    pub fn fill_neighbours_of_inode(&self, dev: u64, ino: u64) -> Result<u64, LazyFault> {
        let Some(placeholder) = self
            .by_inode
            .get(&(dev, ino))
            .and_then(|rel| self.files.files.get(rel))
        else {
            return Ok(0);
        };
        if !self.serves_neighbours(placeholder.layer) {
            return Ok(0);
        }
        let neighbours: Vec<&PathBuf> = self
            .by_span
            .get(&self.span_of(placeholder))
            .into_iter()
            .flatten()
            .collect();
        let mut fetched = 0;
        for name in neighbours {
            if let Filled::Fetched(bytes) = self.fill_unrecorded(name)? {
                fetched += bytes;
            }
        }
        Ok(fetched)
    }

    /// Whether a decoded span of `layer` is worth filling every file that starts in it: a
    /// zstd frame is decoded whole, an eStargz chunk alone (from a span the command's own
    /// fetch kept), so there a neighbour costs no decoding it would save later, only cores
    /// the command needs now.
    fn serves_neighbours(&self, layer: usize) -> bool {
        self.layers
            .get(layer)
            .is_some_and(|l| l.codec == frames::FrameCodec::Zstd)
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

    /// Makes `rel` (a path relative to the rootfs, as the skeleton named it or a hard link
    /// to it) complete, fetching its bytes if it is still a placeholder; a placeholder asked
    /// for joins the access trace.
    pub fn fill(&self, rel: &Path) -> Result<Filled, LazyFault> {
        let name = self.files.links.get(rel).map_or(rel, PathBuf::as_path);
        if let Some(placeholder) = self.files.files.get(name) {
            let mut log = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
            if log.seen.insert(place(placeholder)) {
                log.order.push(place(placeholder));
            }
        }
        self.fill_unrecorded(name)
    }

    /// [`Self::fill`] for the tree's own fetches, which are not the commands' accesses.
    fn fill_unrecorded(&self, rel: &Path) -> Result<Filled, LazyFault> {
        let name = self.files.links.get(rel).map_or(rel, PathBuf::as_path);
        let Some(placeholder) = self.files.files.get(name) else {
            return Ok(Filled::Present);
        };
        let _turn = match self.take_turn(name) {
            Some(turn) => turn,
            // Another thread filled it while this one waited.
            None => return Ok(Filled::Present),
        };
        self.fetch(name, placeholder)
    }

    /// Makes the file with this device and inode complete (see [`Self::fill`]); any other
    /// file is [`Filled::Present`].
    pub fn fill_inode(&self, dev: u64, ino: u64) -> Result<Filled, LazyFault> {
        match self.by_inode.get(&(dev, ino)) {
            Some(rel) => self.fill(rel),
            None => Ok(Filled::Present),
        }
    }

    /// Makes the file a host path inside the tree names complete, following its symlinks
    /// (they are confined to the tree); a path outside the tree or missing is left alone.
    pub fn fill_path(&self, host: &Path) -> Result<Filled, LazyFault> {
        let Ok(meta) = fs::metadata(host) else {
            return Ok(Filled::Present);
        };
        self.fill_inode(meta.dev(), meta.ino())
    }

    /// Whether every placeholder has been filled (by [`Self::fill_all`]).
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// Fetches every placeholder left, in the layers' order, on every core (at most
    /// [`FILL_THREADS`]): the files are grouped by the span their bytes start in, and each
    /// thread takes the next group, so a frame is decoded once and several at a time, as the
    /// eager pull decodes them. The threads inherit the caller's priority. Returns the bytes
    /// fetched.
    pub fn fill_all(&self) -> Result<u64, LazyFault> {
        let mut order: Vec<(&PathBuf, &Placeholder)> = self.files.files.iter().collect();
        order.sort_by_key(|(_, p)| (p.layer, p.offset));
        let groups: Vec<Vec<&PathBuf>> = order
            .chunk_by(|(_, a), (_, b)| self.span_of(a) == self.span_of(b))
            .map(|group| group.iter().map(|(name, _)| *name).collect())
            .collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let fetched = self.fill_groups(&groups, cores.min(FILL_THREADS))?;
        self.complete.store(true, Ordering::Release);
        Ok(fetched)
    }

    /// Waits while another thread fills `name`; then claims it, unless it was filled.
    fn take_turn(&self, name: &Path) -> Option<Turn<'_>> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut waited = false;
        while in_flight.contains(name) {
            waited = true;
            in_flight = self
                .landed
                .wait(in_flight)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if waited && !self.is_placeholder(name) {
            return None;
        }
        in_flight.insert(name.to_path_buf());
        Some(Turn {
            tree: self,
            name: name.to_path_buf(),
        })
    }

    fn is_placeholder(&self, name: &Path) -> bool {
        let Some(placeholder) = self.files.files.get(name) else {
            return false;
        };
        fs::symlink_metadata(self.root.join(name))
            .is_ok_and(|meta| still_placeholder(&meta, placeholder))
    }

    fn fetch(&self, name: &Path, placeholder: &Placeholder) -> Result<Filled, LazyFault> {
        let fault = |problem: String| LazyFault::Fetch {
            path: name.to_path_buf(),
            problem,
        };
        let io_fault = |what: &str, e: io::Error| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                LazyFault::NoSpace {
                    path: name.to_path_buf(),
                }
            } else {
                fault(format!("{what}: {e}"))
            }
        };
        let full = self.root.join(name);
        let meta = match fs::symlink_metadata(&full) {
            Ok(meta) if still_placeholder(&meta, placeholder) => meta,
            // Removed or replaced since the skeleton was applied: nothing of ours is there.
            _ => return Ok(Filled::Present),
        };
        let links: Vec<PathBuf> = self
            .other_names
            .get(name)
            .into_iter()
            .flatten()
            .filter(|link| {
                fs::symlink_metadata(self.root.join(link))
                    .is_ok_and(|m| m.ino() == meta.ino() && m.dev() == meta.dev())
            })
            .cloned()
            .collect();
        let mut temp = tempfile::Builder::new()
            .prefix("file-")
            .tempfile_in(&self.aside)
            .map_err(|e| {
                io_fault(
                    &format!("cannot create a file in {}", self.aside.display()),
                    e,
                )
            })?;
        self.copy_bytes(placeholder, temp.as_file_mut())
            .map_err(|failure| match failure {
                CopyFailure::Read(problem) => fault(problem),
                CopyFailure::Write(e) => io_fault("cannot write it", e),
            })?;
        let time = FileTime::from_last_modification_time(&meta);
        temp.as_file()
            .set_permissions(meta.permissions())
            .and_then(|()| filetime::set_file_handle_times(temp.as_file(), Some(time), Some(time)))
            .map_err(|e| io_fault("cannot set its mode and times", e))?;
        // Dropped, the temporary name removes what is left there: the placeholder.
        let temp = temp.into_temp_path();
        let placed =
            swap_in(&temp, &full, &meta).map_err(|e| io_fault("cannot put it in place", e))?;
        if !placed {
            return Ok(Filled::Present);
        }
        for link in &links {
            let link_full = self.root.join(link);
            // As for the file: dropped, the temporary name removes what is left there.
            tempfile::Builder::new()
                .prefix("link-")
                .make_in(&self.aside, |aside| fs::hard_link(&full, aside))
                .and_then(|made| swap_in(made.path(), &link_full, &meta))
                .map_err(|e| {
                    io_fault(&format!("cannot fill its hard link /{}", link.display()), e)
                })?;
            self.keep_dir_mtime(link);
        }
        self.keep_dir_mtime(name);
        Ok(Filled::Fetched(placeholder.size))
    }

    /// Writes the placeholder's bytes, read from the frames that hold them.
    fn copy_bytes(&self, placeholder: &Placeholder, out: &mut fs::File) -> Result<(), CopyFailure> {
        let starts = &self.starts[placeholder.layer];
        let end = placeholder.offset + placeholder.size;
        let mut at = placeholder.offset;
        let (_, mut frame) = frame_of(&self.starts, placeholder);
        let read = |problem: String| CopyFailure::Read(problem);
        while at < end {
            let bytes = self.frame(placeholder.layer, frame).map_err(read)?;
            let start = starts[frame];
            let from = usize::try_from(at - start).map_err(|e| read(e.to_string()))?;
            let to = usize::try_from(end.min(start + bytes.len() as u64) - start)
                .map_err(|e| read(e.to_string()))?;
            let slice = bytes
                .get(from..to)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| read(format!("frame {frame} does not hold bytes {at}..{end}")))?;
            out.write_all(slice).map_err(CopyFailure::Write)?;
            at += slice.len() as u64;
            frame += 1;
        }
        Ok(())
    }

    /// Frame `n` of `layer`: a zstd frame from the cache or read and cached; an eStargz
    /// chunk decoded from its span (not cached: each is one file's, read once).
    fn frame(&self, layer: usize, n: usize) -> Result<Arc<Vec<u8>>, String> {
        let framed = self
            .layers
            .get(layer)
            .filter(|l| n < l.index.frames.len())
            .ok_or_else(|| format!("layer {layer} has no frame {n}"))?;
        if framed.codec != frames::FrameCodec::Zstd {
            // A chunk is decoded from its span, read once for the files around it.
            let span = self.span_read(layer, n);
            return frames::frame_in_span(framed, span.as_deref(), n)
                .map(Arc::new)
                .map_err(|e| e.to_string());
        }
        {
            let mut cache = self.frames.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = cache.iter().position(|(l, f, _)| (*l, *f) == (layer, n))
                && let Some(hit) = cache.remove(at)
            {
                // The most recently used at the back.
                let bytes = Arc::clone(&hit.2);
                cache.push_back(hit);
                return Ok(bytes);
            }
        }
        // Read without the lock: other threads fetch other files meanwhile.
        let bytes = Arc::new(frames::read_frame(framed, n).map_err(|e| e.to_string())?);
        let mut cache = self.frames.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHED_FRAMES {
            cache.pop_front();
        }
        cache.push_back((layer, n, Arc::clone(&bytes)));
        Ok(bytes)
    }

    /// The span of `layer` holding frame `n`, from the spans kept or read now (and kept);
    /// `None` if it cannot be read at once (its frames are then read one by one).
    fn span_read(&self, layer: usize, n: usize) -> Option<Arc<frames::Span>> {
        let spans = self.spans.get(layer)?;
        let id = spans.partition_point(|span| span.end <= n);
        {
            let mut kept = self
                .spans_read
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = kept.iter().position(|(l, s, _)| (*l, *s) == (layer, id))
                && let Some(hit) = kept.remove(at)
            {
                let span = Arc::clone(&hit.2);
                kept.push_back(hit);
                return Some(span);
            }
        }
        // Read without the lock: other threads fetch other files meanwhile.
        let span = Arc::new(frames::read_span(
            self.layers.get(layer)?,
            spans.get(id)?.clone(),
        )?);
        let mut kept = self
            .spans_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= CACHED_SPANS {
            kept.pop_front();
        }
        kept.push_back((layer, id, Arc::clone(&span)));
        Some(span)
    }

    /// Puts back the mtime the layers gave the directory of `name`: creating and renaming a
    /// file in it changed it. Best effort: a directory the command changed is its own.
    fn keep_dir_mtime(&self, name: &Path) {
        let dir = name.parent().unwrap_or(Path::new(""));
        let mtime = match self.files.dir_mtimes.get(dir) {
            Some(&mtime) => mtime,
            None => return,
        };
        let _ = filetime::set_file_mtime(self.root.join(dir), FileTime::from_unix_time(mtime, 0));
    }
}

/// Puts the filled file `new` (in the aside directory) at `name`, which held the placeholder
/// `was`, and says whether it did. The two names are exchanged and the one that comes out is
/// checked: a rename over `name` would overwrite a file the command put there since the
/// placeholder was checked, or bring back a name it removed. The placeholder lands at `new`,
/// for the caller to remove; the command's file is put back. Where the filesystem cannot
/// exchange two names, `new` is renamed over `name`.
fn swap_in(new: &Path, name: &Path, was: &fs::Metadata) -> io::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    let exchange = || renameat_with(CWD, new, CWD, name, RenameFlags::EXCHANGE);
    match exchange() {
        Ok(()) => {}
        Err(Errno::NOENT) => return Ok(false),
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP | Errno::PERM) => {
            fs::rename(new, name)?;
            return Ok(true);
        }
        Err(e) => return Err(e.into()),
    }
    let swapped_out = fs::symlink_metadata(new)?;
    if (swapped_out.dev(), swapped_out.ino()) == (was.dev(), was.ino()) {
        return Ok(true);
    }
    exchange()?;
    Ok(false)
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
    let frame = starts.get(placeholder.layer).map_or(0, |starts| {
        starts
            .partition_point(|&start| start <= placeholder.offset)
            .saturating_sub(1)
    });
    (placeholder.layer, frame)
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

/// One thread's claim on one file; others wait until it is dropped.
struct Turn<'t> {
    tree: &'t LazyTree,
    name: PathBuf,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .tree
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.remove(&self.name);
        self.tree.landed.notify_all();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::AtomicUsize;

    use crate::frames::{FrameIndex, RangeSource};

    fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    fn bytes(seed: u64, size: u64) -> Vec<u8> {
        (0..size)
            .map(|i| (i.wrapping_mul(seed | 1) >> 3) as u8)
            .collect()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], mode: u32, mtime: u64) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        ok(b.append_data(&mut h, name, data));
    }

    fn special(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(1_600_000_000);
        h.set_entry_type(kind);
        match kind {
            tar::EntryType::Directory | tar::EntryType::Regular => {
                ok(b.append_data(&mut h, name, io::empty()))
            }
            _ => ok(b.append_link(&mut h, name, target)),
        }
    }

    /// Two layers using what a skeleton must carry: large files cut across frames, small
    /// ones kept inline, hard and symbolic links, a long name and PAX records, and in the
    /// upper layer a whiteout, an opaque directory and files replaced both ways.
    pub(crate) fn layers() -> [Vec<u8>; 2] {
        let mut lower = tar::Builder::new(Vec::new());
        special(&mut lower, tar::EntryType::Directory, "usr/", "");
        special(&mut lower, tar::EntryType::Directory, "usr/lib/", "");
        special(&mut lower, tar::EntryType::Directory, "etc/", "");
        special(&mut lower, tar::EntryType::Directory, "opt/", "");
        file(
            &mut lower,
            "usr/lib/huge.so",
            &bytes(3, 9 << 20),
            0o755,
            1_500_000_001,
        );
        for n in 0..40u64 {
            let size = [10, 1024, 1025, 70_000, 300_000][n as usize % 5];
            file(
                &mut lower,
                &format!("usr/lib/f{n}"),
                &bytes(n, size),
                0o640,
                1_500_000_100 + n,
            );
        }
        // Its directory has an entry: a parent a tar leaves out gets the time it was made,
        // which differs between two builds.
        special(
            &mut lower,
            tar::EntryType::Directory,
            &format!("usr/{}/", "long".repeat(40)),
            "",
        );
        file(
            &mut lower,
            &format!("usr/{}/deep", "long".repeat(40)),
            &bytes(9, 5000),
            0o600,
            1_500_000_002,
        );
        file(
            &mut lower,
            "etc/config",
            &bytes(5, 200),
            0o644,
            1_500_000_003,
        );
        file(
            &mut lower,
            "opt/gone",
            &bytes(6, 50_000),
            0o644,
            1_500_000_004,
        );
        file(
            &mut lower,
            "opt/replaced-small",
            &bytes(7, 50_000),
            0o644,
            1_500_000_005,
        );
        file(
            &mut lower,
            "opt/replaced-large",
            &bytes(8, 50),
            0o644,
            1_500_000_006,
        );
        special(&mut lower, tar::EntryType::Directory, "opt/cleared/", "");
        file(
            &mut lower,
            "opt/cleared/old",
            &bytes(10, 50_000),
            0o644,
            1_500_000_007,
        );
        special(
            &mut lower,
            tar::EntryType::Link,
            "usr/lib/hard",
            "usr/lib/f3",
        );
        special(
            &mut lower,
            tar::EntryType::Link,
            "etc/hard2",
            "usr/lib/hard",
        );
        special(
            &mut lower,
            tar::EntryType::Symlink,
            "usr/lib/abs",
            "/usr/lib/f4",
        );
        special(&mut lower, tar::EntryType::Symlink, "usr/lib/rel", "f4");
        let mut pax = tar::Header::new_ustar();
        let data = bytes(11, 40_000);
        pax.set_size(data.len() as u64);
        pax.set_mode(0o644);
        pax.set_entry_type(tar::EntryType::Regular);
        ok(lower
            .append_pax_extensions([("path", &b"usr/lib/named-by-pax"[..]), ("comment", b"kept")]));
        ok(lower.append_data(&mut pax, "usr/lib/with-pax", data.as_slice()));
        let mut upper = tar::Builder::new(Vec::new());
        special(&mut upper, tar::EntryType::Regular, "opt/.wh.gone", "");
        special(&mut upper, tar::EntryType::Directory, "opt/cleared/", "");
        special(
            &mut upper,
            tar::EntryType::Regular,
            "opt/cleared/.wh..wh..opq",
            "",
        );
        file(
            &mut upper,
            "opt/cleared/new",
            &bytes(12, 60_000),
            0o700,
            1_600_000_001,
        );
        file(
            &mut upper,
            "opt/replaced-small",
            &bytes(13, 20),
            0o644,
            1_600_000_002,
        );
        file(
            &mut upper,
            "opt/replaced-large",
            &bytes(14, 80_000),
            0o644,
            1_600_000_003,
        );
        file(
            &mut upper,
            "usr/lib/f5",
            &bytes(15, 90_000),
            0o644,
            1_600_000_004,
        );
        [ok(lower.into_inner()), ok(upper.into_inner())]
    }

    struct Memory {
        blob: Vec<u8>,
        reads: AtomicUsize,
        broken: bool,
        /// A directory to list at each read, while a file is on its way, and its listings.
        watched: Mutex<Option<PathBuf>>,
        listings: Mutex<Vec<Vec<String>>>,
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = ok(fs::read_dir(dir))
            .map(|e| ok(e).file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    impl RangeSource for Memory {
        fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            if let Some(dir) = &*ok(self.watched.lock()) {
                ok(self.listings.lock()).push(names(dir));
            }
            if self.broken {
                return Err(io::Error::other("connection reset by peer"));
            }
            let from = usize::try_from(offset).map_err(io::Error::other)?;
            let to = usize::try_from(offset + len).map_err(io::Error::other)?;
            Ok(self.blob.get(from..to).unwrap_or(&[]).to_vec())
        }
    }

    struct Framed {
        index: FrameIndex,
        memory: Arc<Memory>,
        skeleton: Vec<u8>,
    }

    fn framed(tar: &[u8], broken: bool) -> Framed {
        let (mut blob, mut skeleton) = (Vec::new(), Vec::new());
        let index = ok(frames::encode(
            tar,
            "sha256:layer",
            &mut blob,
            &mut skeleton,
        ));
        let memory = Arc::new(Memory {
            blob,
            reads: AtomicUsize::new(0),
            broken,
            watched: Mutex::default(),
            listings: Mutex::default(),
        });
        Framed {
            index,
            memory,
            skeleton,
        }
    }

    /// Where [`lazy_tree`] builds the tree in its directory.
    fn rootfs(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("rootfs")
    }

    /// A lazy tree of `tars` in `dir` (its rootfs and aside directories).
    fn lazy_tree(dir: &Path, tars: &[Vec<u8>], broken: bool) -> (LazyTree, Vec<Arc<Memory>>) {
        let (root, aside) = (dir.join("rootfs"), dir.join("aside"));
        ok(fs::create_dir(&root));
        ok(fs::create_dir(&aside));
        let framed: Vec<Framed> = tars.iter().map(|t| framed(t, broken)).collect();
        let layers = framed
            .iter()
            .map(|f| FramedLayer {
                index: f.index.clone(),
                source: Arc::clone(&f.memory) as Arc<dyn RangeSource>,
                codec: crate::frames::FrameCodec::Zstd,
            })
            .collect();
        let skeletons: Vec<&Vec<u8>> = framed.iter().map(|f| &f.skeleton).collect();
        let (tree, _) = ok(LazyTree::build(
            root.clone(),
            root,
            aside,
            layers,
            &skeletons,
        ));
        (tree, framed.iter().map(|f| Arc::clone(&f.memory)).collect())
    }

    pub(crate) fn eager_tree(root: &Path, tars: &[Vec<u8>]) {
        let mut applier = LayerApplier::new(root.to_path_buf(), root.to_path_buf());
        for tar in tars {
            ok(applier.apply(tar.as_slice()));
        }
        ok(applier.finish());
    }

    /// Each name: (kind, mode, size, mtime, symlink target relative to the root, inode group,
    /// contents if `with_data`).
    pub(crate) fn walk(root: &Path, with_data: bool) -> BTreeMap<String, String> {
        let mut found = BTreeMap::new();
        let mut inodes: HashMap<u64, String> = HashMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in ok(fs::read_dir(&dir)) {
                let path = ok(entry).path();
                let rel = ok(path.strip_prefix(root)).display().to_string();
                let meta = ok(fs::symlink_metadata(&path));
                let kind = if meta.is_dir() {
                    stack.push(path.clone());
                    "dir".to_string()
                } else if meta.file_type().is_symlink() {
                    let target = ok(fs::read_link(&path));
                    let target = target
                        .strip_prefix(root)
                        .map_or(target.clone(), Path::to_path_buf);
                    format!("link -> {}", target.display())
                } else {
                    let first = inodes.entry(meta.ino()).or_insert_with(|| rel.clone());
                    let data = if with_data {
                        let mut data = Vec::new();
                        ok(ok(fs::File::open(&path)).read_to_end(&mut data));
                        format!(
                            " sha={}",
                            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data))
                        )
                    } else {
                        String::new()
                    };
                    format!("file {} inode-of {first}{data}", meta.len())
                };
                let mode = meta.permissions().mode() & 0o7777;
                let mtime = if meta.is_dir() || !meta.file_type().is_symlink() {
                    meta.mtime()
                } else {
                    0
                };
                found.insert(rel, format!("{kind} mode {mode:o} mtime {mtime}"));
            }
        }
        found
    }

    #[test]
    fn the_skeleton_tree_has_the_eager_trees_metadata_and_fills_to_its_bytes() {
        let tars = layers();
        let (eager, lazy) = (ok(tempfile::tempdir()), ok(tempfile::tempdir()));
        eager_tree(eager.path(), &tars);
        let (tree, memories) = lazy_tree(lazy.path(), &tars, false);
        assert_eq!(walk(&rootfs(&lazy), false), walk(eager.path(), false));
        assert!(
            tree.placeholders() > 20,
            "{} placeholders",
            tree.placeholders()
        );
        assert!(rootfs(&lazy).join("usr/lib/named-by-pax").is_file());
        assert_eq!(
            memories
                .iter()
                .map(|m| m.reads.load(Ordering::Relaxed))
                .sum::<usize>(),
            0
        );
        let huge = ok(fs::metadata(rootfs(&lazy).join("usr/lib/huge.so")));
        assert_eq!((huge.len(), huge.blocks()), (9 << 20, 0));
        let fetched = ok(tree.fill_all());
        assert!(fetched > 9 << 20, "{fetched} bytes fetched");
        assert_eq!(walk(&rootfs(&lazy), true), walk(eager.path(), true));
        assert_eq!(ok(tree.fill_all()), 0, "a second pass has nothing to fetch");
    }

    /// A placeholder a later layer removes, whose hard link elsewhere stays: the link is the
    /// file now, and it fills to the bytes (as in the eager tree), also when the removal is
    /// of the directory holding it; a stale inode names nothing.
    #[test]
    fn a_removed_placeholders_surviving_hard_link_still_fills() {
        let mut lower = tar::Builder::new(Vec::new());
        special(&mut lower, tar::EntryType::Directory, "a/", "");
        special(&mut lower, tar::EntryType::Directory, "d/", "");
        special(&mut lower, tar::EntryType::Directory, "keep/", "");
        file(
            &mut lower,
            "a/big",
            &bytes(21, 70_000),
            0o644,
            1_500_000_000,
        );
        file(
            &mut lower,
            "d/inner",
            &bytes(22, 80_000),
            0o644,
            1_500_000_000,
        );
        special(&mut lower, tar::EntryType::Link, "keep/one", "a/big");
        special(&mut lower, tar::EntryType::Link, "keep/two", "a/big");
        special(&mut lower, tar::EntryType::Link, "keep/three", "d/inner");
        let mut upper = tar::Builder::new(Vec::new());
        special(&mut upper, tar::EntryType::Regular, "a/.wh.big", "");
        special(&mut upper, tar::EntryType::Regular, ".wh.d", "");
        let tars = [ok(lower.into_inner()), ok(upper.into_inner())];
        let (eager, lazy) = (ok(tempfile::tempdir()), ok(tempfile::tempdir()));
        eager_tree(eager.path(), &tars);
        let (tree, _) = lazy_tree(lazy.path(), &tars, false);
        assert_eq!(tree.placeholders(), 2, "keep/one (or two) and keep/three");
        assert_eq!(
            ok(tree.fill(Path::new("keep/two"))),
            Filled::Fetched(70_000)
        );
        let inner = ok(fs::metadata(rootfs(&lazy).join("keep/three")));
        assert_eq!(
            ok(tree.fill_inode(inner.dev(), inner.ino())),
            Filled::Fetched(80_000)
        );
        assert_eq!(walk(&rootfs(&lazy), true), walk(eager.path(), true));
    }

    #[test]
    fn a_fetched_files_frame_fills_its_other_files_and_only_those() {
        let tars = layers();
        let dir = ok(tempfile::tempdir());
        let (tree, _) = lazy_tree(dir.path(), &tars, false);
        let is_placeholder = |name: &Path| {
            let meta = ok(fs::metadata(rootfs(&dir).join(name)));
            meta.len() > 0 && meta.blocks() == 0
        };
        let asked = Path::new("usr/lib/f3");
        let frame = frame_of(&tree.starts, &tree.files.files[asked]);
        let (same, other): (Vec<_>, Vec<_>) = tree
            .files
            .files
            .iter()
            .partition(|(_, p)| frame_of(&tree.starts, p) == frame);
        assert!(
            same.len() > 1 && !other.is_empty(),
            "{} {}",
            same.len(),
            other.len()
        );
        let meta = ok(fs::metadata(rootfs(&dir).join(asked)));
        let fetched = ok(tree.fill_neighbours_of_inode(meta.dev(), meta.ino()));
        assert_eq!(fetched, same.iter().map(|(_, p)| p.size).sum::<u64>());
        assert!(same.iter().all(|(name, _)| !is_placeholder(name)));
        assert!(other.iter().all(|(name, _)| is_placeholder(name)));
        assert!(tree.trace().is_empty(), "neighbours are not accesses");
        assert_eq!(ok(tree.fill_neighbours_of_inode(meta.dev(), meta.ino())), 0);
        assert_eq!(
            ok(tree.fill_neighbours_of_inode(0, 0)),
            0,
            "no such placeholder"
        );
    }

    #[test]
    fn the_trace_of_one_cold_start_is_prefetched_by_the_next() {
        let tars = layers();
        let is_placeholder = |root: &Path, name: &str| {
            let meta = ok(fs::metadata(root.join(name)));
            meta.len() > 0 && meta.blocks() == 0
        };
        let first = ok(tempfile::tempdir());
        let (mut tree, _) = lazy_tree(first.path(), &tars, false);
        let stored: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let sink = Arc::clone(&stored);
        tree.learn(
            Vec::new(),
            Some(Box::new(move |bytes| {
                sink.lock()
                    .map_err(|_| io::Error::other("poisoned"))?
                    .push(bytes);
                Ok(())
            })),
        );
        assert_eq!(
            ok(tree.save_trace()),
            0,
            "nothing asked for, nothing stored"
        );
        assert!(!tree.has_unsaved_trace());
        // Asked for: two files, one twice, a hard link's name, and names with no placeholder.
        for name in [
            "usr/lib/f9",
            "usr/lib/huge.so",
            "usr/lib/f9",
            "etc/hard2",
            "etc",
            "nope",
        ] {
            ok(tree.fill(Path::new(name)));
        }
        let trace = tree.trace();
        assert_eq!(trace.len(), 3, "{trace:?}");
        assert!(tree.has_unsaved_trace());
        assert_eq!(ok(tree.save_trace()), 3);
        assert!(!tree.has_unsaved_trace());
        assert_eq!(ok(tree.save_trace()), 0, "already stored");
        let saved = ok(stored.lock().map_err(|_| "poisoned"))[0].clone();
        assert_eq!(trace::parse(&saved), trace);
        ok(tree.fill_all());
        assert_eq!(tree.trace(), trace, "the background fill is not an access");

        // The next cold start: the trace's files arrive by prefetch, with the other files
        // whose bytes start in the frames theirs start in (decoded for them anyway), and no
        // others.
        let next = ok(tempfile::tempdir());
        let (mut tree, _) = lazy_tree(next.path(), &tars, false);
        let mut given = trace::parse(&saved);
        given.insert(
            1,
            FileAt {
                layer: 5,
                offset: 0,
            },
        );
        tree.learn(given, None);
        assert!(is_placeholder(&rootfs(&next), "usr/lib/f9"));
        // huge.so starts in the lower layer's first frame and ends in its third, where f3
        // and f9 start with every other lower file left out of the skeleton: eight runs of
        // 1,025, 70,000 and 300,000 bytes (f2-f4, f7-f9, …, f37-f39), named-by-pax and deep.
        assert_eq!(
            ok(tree.prefetch(3)),
            (9 << 20) + 8 * (1025 + 70_000 + 300_000) + 40_000 + 5_000
        );
        for name in ["usr/lib/f9", "usr/lib/huge.so", "usr/lib/f3"] {
            assert!(
                !is_placeholder(&rootfs(&next), name),
                "{name} not prefetched"
            );
        }
        for name in ["usr/lib/f4", "usr/lib/f8", "usr/lib/named-by-pax"] {
            assert!(
                !is_placeholder(&rootfs(&next), name),
                "{name}, in a traced file's frame, not prefetched"
            );
        }
        // The upper layer's files start in its own frame, which no traced file starts in.
        for name in ["usr/lib/f5", "opt/cleared/new"] {
            assert!(is_placeholder(&rootfs(&next), name), "{name} prefetched");
        }
        assert_eq!(
            ok(fs::read(rootfs(&next).join("usr/lib/f9"))),
            bytes(9, 300_000)
        );
        assert_eq!(
            ok(fs::read(rootfs(&next).join("usr/lib/f4"))),
            bytes(4, 300_000)
        );
        assert_eq!(ok(tree.save_trace()), 0, "no sink: nowhere to store it");
    }

    #[test]
    fn one_file_is_fetched_alone_and_once_for_concurrent_callers() {
        let tars = layers();
        let dir = ok(tempfile::tempdir());
        let (tree, memories) = lazy_tree(dir.path(), &tars, false);
        let name = Path::new("usr/lib/huge.so");
        let results: Vec<Filled> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| ok(tree.fill(name)))).collect();
            handles
                .into_iter()
                .map(|h| ok(h.join().map_err(|_| "panicked")))
                .collect()
        });
        assert_eq!(
            results
                .iter()
                .filter(|r| **r == Filled::Fetched(9 << 20))
                .count(),
            1
        );
        // 9 MiB spans three frames of the lower layer; nothing else was read.
        let reads = memories[0].reads.load(Ordering::Relaxed);
        assert!((2..=3).contains(&reads), "{reads} ranged reads");
        assert_eq!(memories[1].reads.load(Ordering::Relaxed), 0);
        assert_eq!(ok(fs::read(rootfs(&dir).join(name))), bytes(3, 9 << 20));
        // A hard link's name fills its whole group, and the group stays one inode.
        assert_eq!(
            ok(tree.fill(Path::new("etc/hard2"))),
            Filled::Fetched(70_000)
        );
        let ino = |p: &str| ok(fs::metadata(rootfs(&dir).join(p))).ino();
        assert_eq!(ino("usr/lib/f3"), ino("usr/lib/hard"));
        assert_eq!(ino("usr/lib/f3"), ino("etc/hard2"));
        assert_eq!(
            ok(fs::read(rootfs(&dir).join("usr/lib/hard"))),
            bytes(3, 70_000)
        );
        assert_eq!(ok(tree.fill(Path::new("usr/lib/f3"))), Filled::Present);
    }

    #[test]
    fn a_failed_fetch_names_the_file_and_leaves_the_placeholder_whole() {
        let tars = layers();
        let dir = ok(tempfile::tempdir());
        let (tree, _) = lazy_tree(dir.path(), &tars, true);
        let err = tree
            .fill(Path::new("usr/lib/f2"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot fetch /usr/lib/f2: "), "{err}");
        assert!(err.contains("connection reset by peer"), "{err}");
        let meta = ok(fs::metadata(rootfs(&dir).join("usr/lib/f2")));
        assert_eq!((meta.len(), meta.blocks()), (1025, 0));
        assert!(names(&dir.path().join("aside")).is_empty());
    }

    /// The whole fill on several threads stops at a failed fetch, names a file, and does not
    /// call the tree complete; the placeholders it could not fill stay whole.
    #[test]
    fn a_failed_fill_of_the_whole_tree_is_not_complete() {
        let tars = layers();
        let dir = ok(tempfile::tempdir());
        let (tree, _) = lazy_tree(dir.path(), &tars, true);
        let err = tree.fill_all().map(|_| ()).unwrap_err().to_string();
        assert!(err.starts_with("cannot fetch /"), "{err}");
        assert!(!tree.is_complete());
        let meta = ok(fs::metadata(rootfs(&dir).join("usr/lib/f2")));
        assert_eq!((meta.len(), meta.blocks()), (1025, 0));
        assert!(names(&dir.path().join("aside")).is_empty());
    }

    /// A program listing a directory while one of its files arrives sees the image's names
    /// and no other: the file is written outside the tree.
    #[test]
    fn a_file_on_its_way_is_not_in_the_tree() {
        let tars = layers();
        let dir = ok(tempfile::tempdir());
        let (tree, memories) = lazy_tree(dir.path(), &tars, false);
        let lib = rootfs(&dir).join("usr/lib");
        let before = names(&lib);
        *ok(memories[0].watched.lock()) = Some(lib.clone());
        assert_eq!(
            ok(tree.fill(Path::new("usr/lib/f2"))),
            Filled::Fetched(1025)
        );
        let listings = ok(memories[0].listings.lock()).clone();
        assert!(!listings.is_empty(), "no frame read");
        assert!(
            listings.iter().all(|l| *l == before),
            "{listings:?} / {before:?}"
        );
        assert_eq!(names(&lib), before);
        assert!(names(&dir.path().join("aside")).is_empty());
    }

    /// The filled file takes the placeholder's name only while the name is the placeholder:
    /// a file the command put there, or its removal, stands.
    #[test]
    fn a_filled_file_replaces_only_the_placeholder() {
        let dir = ok(tempfile::tempdir());
        let (name, new) = (dir.path().join("name"), dir.path().join("new"));
        let put = |path: &Path, text: &str| ok(fs::write(path, text));
        put(&name, "placeholder");
        let was = ok(fs::symlink_metadata(&name));
        put(&new, "filled");
        assert!(ok(swap_in(&new, &name, &was)));
        assert_eq!(ok(fs::read_to_string(&name)), "filled");
        assert_eq!(ok(fs::symlink_metadata(&new)).ino(), was.ino());

        ok(fs::remove_file(&name));
        put(&name, "the command's");
        assert!(!ok(swap_in(&new, &name, &was)));
        assert_eq!(ok(fs::read_to_string(&name)), "the command's");
        assert_eq!(ok(fs::read_to_string(&new)), "placeholder");

        ok(fs::remove_file(&name));
        assert!(!ok(swap_in(&new, &name, &was)));
        assert!(!name.exists(), "a removed name came back");
    }

    #[test]
    fn a_skeleton_naming_bytes_beyond_its_layer_is_refused() {
        let tars = layers();
        let dir = ok(tempfile::tempdir());
        let (tree, _) = lazy_tree(dir.path(), &tars, false);
        let mut files = tree.files.clone();
        let layers = tree.layers.clone();
        if let Some(p) = files.files.values_mut().next() {
            p.offset = layers[p.layer].index.unpacked_size();
        }
        let err = LazyTree::new(rootfs(&dir), dir.path().join("aside"), layers, files)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lies beyond the layer's"), "{err}");
    }
}
