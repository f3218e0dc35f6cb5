//! Frames fetched while the skeletons are applied. Building the tree takes a second or more on
//! a real /tmp (ext4 journals every new inode), and all that time the link to the store sits
//! idle; a Lambda function's link carries 50–90 MB/s, so that second could have brought the
//! frames the command will ask for first (the access trace's) or, with no trace, the first
//! ones the background fill reads. Those frames are written, compressed as they came, to an
//! unnamed file beside the tree (nothing to leak if the process dies; page cache, not the
//! process's memory) and handed to the first fill that needs each, which decodes and checks
//! it as it would a frame from the store; the file's blocks are given back as each is taken.
//!
//! Only our own zstd frames are fetched so (an eStargz chunk is read in spans of its own),
//! new fetches stop when the tree is built ([`Preload::stop`]: from there the fill's own
//! reads take over, in the order they need), and at most [`PRELOAD_BYTES`] or an eighth of
//! the free space is used.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::frames::{FrameCodec, FramedLayer, RangeSource};
use crate::trace::FileAt;

/// The most compressed bytes fetched ahead: about two seconds of a function's link.
pub const PRELOAD_BYTES: u64 = 128 << 20;
/// Reads in flight at once: a store answers each after a round trip.
const WORKERS: usize = 4;

/// One layer's frames as the preload needs them.
struct LayerFrames {
    source: Arc<dyn RangeSource>,
    /// Per frame: (offset in the blob, compressed size).
    frames: Vec<(u64, u64)>,
    /// Where each frame's bytes begin in the layer's tar.
    starts: Vec<u64>,
}

/// Where a frame stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Being fetched: a fill that needs it waits.
    Coming,
    /// In the file at this offset, this long.
    Ready { at: u64, len: u64 },
}

/// Frames fetched ahead of the fill (see the module's head).
pub struct Preload {
    layers: Vec<Option<LayerFrames>>,
    file: File,
    slots: Mutex<HashMap<(usize, usize), Slot>>,
    changed: Condvar,
    stopped: AtomicBool,
    /// File space handed out (each frame its own range; holes once taken).
    reserved: AtomicU64,
    budget: u64,
    taken: AtomicUsize,
    /// Fetching threads still running.
    running: AtomicUsize,
}

impl std::fmt::Debug for Preload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preload")
            .field("reserved", &self.reserved.load(Ordering::Relaxed))
            .field("taken", &self.taken.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Preload {
    /// A preload of `layers`' zstd frames into an unnamed file in `dir` (on the tree's
    /// filesystem), of at most `budget` bytes; nothing is fetched before [`Self::start`].
    pub fn new(layers: &[FramedLayer], dir: &Path, budget: u64) -> std::io::Result<Arc<Self>> {
        let layers = layers
            .iter()
            .map(|layer| {
                (layer.codec == FrameCodec::Zstd).then(|| LayerFrames {
                    source: Arc::clone(&layer.source),
                    frames: layer
                        .index
                        .frames
                        .iter()
                        .map(|frame| (frame.offset, frame.size))
                        .collect(),
                    starts: super::frame_starts(layer),
                })
            })
            .collect();
        Ok(Arc::new(Self {
            layers,
            file: tempfile::tempfile_in(dir)?,
            slots: Mutex::default(),
            changed: Condvar::new(),
            stopped: AtomicBool::new(false),
            reserved: AtomicU64::new(0),
            budget,
            taken: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
        }))
    }

    /// The budget for a tree on the filesystem of `dir`: [`PRELOAD_BYTES`], or an eighth of
    /// its free space if less.
    pub fn budget_at(dir: &Path) -> u64 {
        nix::sys::statvfs::statvfs(dir).map_or(0, |stats| {
            let free = stats
                .blocks_available()
                .saturating_mul(stats.fragment_size());
            (free / 8).min(PRELOAD_BYTES)
        })
    }

    /// The frames that hold the files of `trace`, in its order, each once (a file's size is
    /// read from its layer's skeleton, the zstd blobs of `skeletons`; a file it does not list
    /// gets its first frame); with no trace, every frame in the layers' order (the background
    /// fill's).
    pub fn order(&self, trace: &[FileAt], skeletons: &[impl AsRef<[u8]>]) -> Vec<(usize, usize)> {
        if trace.is_empty() {
            return self
                .layers
                .iter()
                .enumerate()
                .flat_map(|(n, layer)| {
                    let frames = layer.as_ref().map_or(0, |l| l.frames.len());
                    (0..frames).map(move |frame| (n, frame))
                })
                .collect();
        }
        let traced: std::collections::BTreeSet<usize> = trace.iter().map(|at| at.layer).collect();
        let sizes: HashMap<usize, HashMap<u64, u64>> = traced
            .into_iter()
            .filter(|&layer| self.layers.get(layer).is_some_and(Option::is_some))
            .filter_map(|layer| {
                let files = crate::skeleton::left_out_files(skeletons.get(layer)?.as_ref());
                Some((layer, files.ok()?))
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut order = Vec::new();
        for at in trace {
            let Some(frames) = self.layers.get(at.layer).and_then(Option::as_ref) else {
                continue;
            };
            if frames.frames.is_empty() {
                continue;
            }
            let first = super::frame_holding(&frames.starts, at.offset);
            let size = sizes.get(&at.layer).and_then(|files| files.get(&at.offset));
            let last = size
                .map(|&size| {
                    super::frame_holding(
                        &frames.starts,
                        at.offset.saturating_add(size.saturating_sub(1)),
                    )
                })
                .unwrap_or(first)
                .max(first);
            for frame in first..=last {
                if seen.insert((at.layer, frame)) {
                    order.push((at.layer, frame));
                }
            }
        }
        order
    }

    /// Fetches the frames of `order` on a few threads of its own, in order, until the budget
    /// is spent, every frame is here or [`Self::stop`] is called. Best effort: a frame that
    /// cannot be fetched is left to the fill.
    pub fn start(self: &Arc<Self>, order: Vec<(usize, usize)>) {
        let order = Arc::new(order);
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..WORKERS.min(order.len()) {
            let (preload, order, next) = (Arc::clone(self), Arc::clone(&order), Arc::clone(&next));
            self.running.fetch_add(1, Ordering::AcqRel);
            let spawned = std::thread::Builder::new()
                .name("scar-preload".into())
                .spawn(move || {
                    // The skeleton's threads, which the command waits for, come first: these
                    // mostly wait on the store.
                    super::lower_own_priority();
                    while let Some(&frame) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if !preload.fetch(frame) {
                            break;
                        }
                    }
                    if preload.running.fetch_sub(1, Ordering::AcqRel) == 1 {
                        tracing::debug!(
                            frames = next.load(Ordering::Relaxed).min(order.len()),
                            of = order.len(),
                            bytes = preload.reserved.load(Ordering::Relaxed).min(preload.budget),
                            "frames fetched ahead of the fill"
                        );
                    }
                });
            if let Err(e) = spawned {
                self.running.fetch_sub(1, Ordering::AcqRel);
                tracing::debug!(error = %e, "cannot start preloading frames");
            }
        }
    }

    /// Fetches one frame into the file; false once no more should be fetched.
    fn fetch(&self, (layer, n): (usize, usize)) -> bool {
        let Some(&(offset, size)) = self
            .layers
            .get(layer)
            .and_then(Option::as_ref)
            .and_then(|l| l.frames.get(n))
        else {
            return true;
        };
        if self.stopped.load(Ordering::Acquire) {
            return false;
        }
        let at = self.reserved.fetch_add(size, Ordering::Relaxed);
        if at.saturating_add(size) > self.budget {
            return false;
        }
        self.set(layer, n, Some(Slot::Coming));
        // Whatever happens below, a fill waiting for this frame is let go.
        let mut landed = Landed {
            preload: self,
            frame: (layer, n),
            slot: None,
        };
        let fetched = self
            .layers
            .get(layer)
            .and_then(Option::as_ref)
            .map(|l| l.source.read_range(offset, size));
        landed.slot = match fetched {
            Some(Ok(bytes)) if bytes.len() as u64 == size => self
                .file
                .write_all_at(&bytes, at)
                .ok()
                .map(|()| Slot::Ready { at, len: size }),
            _ => None,
        };
        true
    }

    fn set(&self, layer: usize, n: usize, slot: Option<Slot>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match slot {
            Some(slot) => slots.insert((layer, n), slot),
            None => slots.remove(&(layer, n)),
        };
        self.changed.notify_all();
    }

    /// No new frame is fetched from now on (those on their way still land).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// Stops, and gives back the space of the frames nobody took (the tree is whole).
    pub fn discard(&self) {
        self.stop();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|_, slot| *slot == Slot::Coming);
        let _ = self.file.set_len(0);
    }

    /// Frame `n` of `layer`'s compressed bytes if it was fetched ahead (waiting for it if it
    /// is on its way), each frame once: its place in the file is given back. `None`: read it
    /// from the store.
    pub fn take(&self, layer: usize, n: usize) -> Option<Vec<u8>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, len) = loop {
            match slots.get(&(layer, n)) {
                None => return None,
                Some(Slot::Coming) => {
                    slots = self
                        .changed
                        .wait(slots)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(&Slot::Ready { at, len }) => break (at, len),
            }
        };
        slots.remove(&(layer, n));
        drop(slots);
        let mut bytes = vec![0; usize::try_from(len).ok()?];
        self.file.read_exact_at(&mut bytes, at).ok()?;
        self.taken.fetch_add(1, Ordering::Relaxed);
        // Best effort: a filesystem that cannot punch holes keeps the bytes until the file
        // is closed with the tree.
        let _ = nix::fcntl::fallocate(
            &self.file,
            nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
            i64::try_from(at).ok()?,
            i64::try_from(len).ok()?,
        );
        Some(bytes)
    }

    /// Frames handed to the fill so far.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }

    /// Whether its threads have all ended.
    pub fn is_idle(&self) -> bool {
        self.running.load(Ordering::Acquire) == 0
    }

    /// Frames fetched and not taken yet.
    pub fn waiting(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|slot| matches!(slot, Slot::Ready { .. }))
            .count()
    }
}

/// A frame's slot as its fetch left it, set when the fetch ends (or unwinds).
struct Landed<'p> {
    preload: &'p Preload,
    frame: (usize, usize),
    slot: Option<Slot>,
}

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        self.preload.set(self.frame.0, self.frame.1, self.slot);
    }
}
