//! What is fetched when: the access trace (kept, stored, prefetched first), a fetched
//! file's neighbours in its frame, and the background fill of everything left.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{FILL_THREADS, FillEnd, Filled, LazyFault, LazyTree, TraceSink, place};
use crate::frames;
use crate::skeleton::Placeholder;
use crate::trace::{self, FileAt};

impl LazyTree {
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

    /// Has the background fetches ([`Self::prefetch`], [`Self::fill_rest`]) stop before
    /// the tree's filesystem would have less than `bytes` free: what a command reads is
    /// still fetched when it asks (and fails with no space if it does not fit), but the
    /// files nobody asked for do not take the room a command's own output needs.
    pub fn keep_free_for_commands(&mut self, bytes: u64) {
        self.keep_free = bytes;
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
    ///
    /// The files fetched unasked that a command has read since join it first, in the order
    /// they were read (seen in their access times: a command reading a file the background
    /// fill brought asks nothing).
    pub fn save_trace(&self) -> io::Result<usize> {
        let Some(sink) = &self.trace_sink else {
            return Ok(0);
        };
        self.note_unasked_reads();
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

    /// Adds to the trace the files fetched before anyone asked for them that have been read
    /// since, in the order of their first read. Without it a cold start's trace lacks every
    /// file the background fill (or a neighbour's fetch) brought before the command reached
    /// it, which the shim never asks for: the next cold start waits for those, one round
    /// trip each, and only the one after has them all.
    ///
    /// A read is seen in the file's access time: a fill gives the file the image's times
    /// (access as modification, as tar does), long before its change time (its rename into
    /// place), and the first read sets the access time to now, at or past the change time
    /// (`relatime`, Linux's default, and `strictatime` do; under `noatime` nothing is
    /// found and the trace is as before). A file changed since (a later change time) or
    /// gone is not counted.
    fn note_unasked_reads(&self) {
        let unasked = {
            let mut log = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::take(&mut log.unasked)
        };
        if unasked.is_empty() {
            return;
        }
        let by_place = self.by_place();
        let mut read = Vec::new();
        let mut unread = Vec::new();
        for at in unasked {
            let Some(meta) = by_place
                .get(&at)
                .and_then(|(name, _)| fs::symlink_metadata(self.root.join(name)).ok())
                .filter(|meta| meta.is_file() && meta.blocks() > 0)
            else {
                continue;
            };
            let accessed = (meta.atime(), meta.atime_nsec());
            if accessed >= (meta.ctime(), meta.ctime_nsec()) {
                read.push((accessed, at));
            } else {
                unread.push(at);
            }
        }
        read.sort_unstable();
        let mut log = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, at) in read {
            if log.seen.insert(at) {
                log.order.push(at);
            }
        }
        log.unasked.extend(unread);
    }

    /// Each placeholder by its name in a trace: what a trace's entries point at.
    fn by_place(&self) -> HashMap<FileAt, (&PathBuf, &Placeholder)> {
        self.files
            .files
            .iter()
            .map(|(name, placeholder)| (place(placeholder), (name, placeholder)))
            .collect()
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
        let by_place = self.by_place();
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
        let (fetched, _stopped) = self.fill_groups(&groups, workers, self.keep_free)?;
        Ok(fetched)
    }

    /// Fills each group's files (all starting in one span) on `workers` threads, each
    /// taking the next group, until a group would leave less than `keep_free` bytes free
    /// (0: no limit); returns the bytes fetched, and the bytes free if it stopped so.
    fn fill_groups(
        &self,
        groups: &[Vec<&PathBuf>],
        workers: usize,
        keep_free: u64,
    ) -> Result<(u64, Option<u64>), LazyFault> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let fetched = AtomicU64::new(0);
        let stopped_at = Mutex::new(None);
        let work = || -> Result<(), LazyFault> {
            while let Some(group) = groups.get(next.fetch_add(1, Ordering::Relaxed)) {
                if let Some(free) = self.too_little_room(group, keep_free) {
                    next.store(groups.len(), Ordering::Relaxed);
                    *stopped_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(free);
                    return Ok(());
                }
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
            // Without another thread this one does the work.
            let helpers: Vec<_> = (1..workers.clamp(1, groups.len().max(1)))
                .map_while(|_| {
                    let helper = std::thread::Builder::new().name("scar-fill".into());
                    helper.spawn_scoped(scope, work).ok()
                })
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
        let stopped = stopped_at
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        Ok((fetched.into_inner(), stopped))
    }

    /// The bytes free on the tree's filesystem, when filling `group` would leave less than
    /// `keep_free` of them (never with `keep_free` 0, nor when the filesystem cannot say).
    fn too_little_room(&self, group: &[&PathBuf], keep_free: u64) -> Option<u64> {
        if keep_free == 0 {
            return None;
        }
        let stats = nix::sys::statvfs::statvfs(&self.root).ok()?;
        let free = stats
            .blocks_available()
            .saturating_mul(stats.fragment_size());
        let needed: u64 = group
            .iter()
            .filter_map(|name| self.files.files.get(*name))
            .map(|placeholder| placeholder.size)
            .sum();
        (free < needed.saturating_add(keep_free)).then_some(free)
    }

    /// Fills the other placeholders whose bytes start in the frame where those of the file
    /// with this device and inode start (one decoded frame serves them all: a command that
    /// reads many files in an order of its own would otherwise decode some frames many
    /// times); nothing for eStargz chunks, each decoded alone. Not accesses: they join the
    /// trace only if a command reads them later (see [`Self::save_trace`]). Returns the
    /// bytes fetched.
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

    /// Fetches every placeholder left, in the layers' order, on every core (at most
    /// [`FILL_THREADS`]): the files are grouped by the span their bytes start in, and each
    /// thread takes the next group, so a frame is decoded once and several at a time, as the
    /// eager pull decodes them. The threads inherit the caller's priority. Returns the bytes
    /// fetched.
    pub fn fill_all(&self) -> Result<u64, LazyFault> {
        match self.fill_remaining(0)? {
            FillEnd::Complete { bytes } | FillEnd::SpaceKept { bytes, .. } => Ok(bytes),
        }
    }

    /// [`Self::fill_all`] for the background: it stops where a file would leave less free
    /// space than [`Self::keep_free_for_commands`] asked for, and the tree stays lazy.
    pub fn fill_rest(&self) -> Result<FillEnd, LazyFault> {
        self.fill_remaining(self.keep_free)
    }

    fn fill_remaining(&self, keep_free: u64) -> Result<FillEnd, LazyFault> {
        let mut order: Vec<(&PathBuf, &Placeholder)> = self.files.files.iter().collect();
        order.sort_by_key(|(_, p)| (p.layer, p.offset));
        let groups: Vec<Vec<&PathBuf>> = order
            .chunk_by(|(_, a), (_, b)| self.span_of(a) == self.span_of(b))
            .map(|group| group.iter().map(|(name, _)| *name).collect())
            .collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let filled = self.fill_groups(&groups, cores.min(FILL_THREADS), keep_free);
        // The fill asked for every frame it wanted, or stopped to keep /tmp's room: either
        // way what the preload still holds goes (later fetches read the store).
        if let Some(preload) = &self.preload {
            preload.discard();
        }
        let (mut fetched, stopped) = filled?;
        if let Some(free) = stopped {
            return Ok(FillEnd::SpaceKept {
                bytes: fetched,
                free,
            });
        }
        // What a renamed directory took away from its names is filled where it went. When
        // every placeholder was filled, none can be elsewhere, and the walk (a `find` of the
        // whole image) is spared.
        let all_filled = {
            let filled = self.filled.lock().unwrap_or_else(PoisonError::into_inner);
            self.files
                .files
                .values()
                .all(|placeholder| filled.contains(&placeholder.inode))
        };
        let moved = if all_filled {
            HashMap::new()
        } else {
            self.walk_for_moved()
        };
        for (inode, at) in moved {
            if let Some(name) = self.by_inode.get(&inode)
                && let Filled::Fetched(bytes) = self.fill_at(name, &at)?
            {
                fetched += bytes;
            }
        }
        self.complete.store(true, Ordering::Release);
        Ok(FillEnd::Complete { bytes: fetched })
    }
}
