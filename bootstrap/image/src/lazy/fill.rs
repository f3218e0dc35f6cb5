//! One file made whole: its turn (one thread fetches, the others wait), its bytes read from
//! the frames that hold them, written aside and exchanged with the placeholder.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use filetime::FileTime;

use super::{
    CACHED_FRAMES, CACHED_SPANS, FILL_THREADS, Filled, LazyFault, LazyTree, READ_AHEAD,
    frame_holding, frame_of, place, still_placeholder,
};
use crate::frames;
use crate::skeleton::Placeholder;

/// A frame read ahead, counted in [`LazyTree::read_ahead_slot`] until dropped.
struct ReadAheadSlot<'t>(&'t AtomicUsize);

impl Drop for ReadAheadSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// Why a placeholder's bytes could not be copied.
enum CopyFailure {
    /// The frames did not give them.
    Read(String),
    /// The new file did not take them.
    Write(io::Error),
}

impl LazyTree {
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
        self.fill_at(name, &[])
    }

    /// [`Self::fill`] for the tree's own fetches, which are not the commands' accesses: a
    /// file fetched so is remembered, to join the trace if a command reads it later.
    pub(super) fn fill_unrecorded(&self, rel: &Path) -> Result<Filled, LazyFault> {
        let filled = self.fill_at(rel, &[])?;
        let name = self.files.links.get(rel).map_or(rel, PathBuf::as_path);
        if let (Filled::Fetched(_), Some(placeholder)) = (filled, self.files.files.get(name)) {
            let mut log = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
            if !log.seen.contains(&place(placeholder)) {
                log.unasked.push(place(placeholder));
            }
        }
        Ok(filled)
    }

    /// Makes the file with this device and inode complete (see [`Self::fill`]); any other
    /// file is [`Filled::Present`]. A placeholder no longer at its name went with a directory
    /// the command renamed: it is filled where it is now.
    pub fn fill_inode(&self, dev: u64, ino: u64) -> Result<Filled, LazyFault> {
        let Some(rel) = self.by_inode.get(&(dev, ino)) else {
            return Ok(Filled::Present);
        };
        let filled = self.fill(rel)?;
        let at_its_name = fs::symlink_metadata(self.root.join(rel))
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == (dev, ino));
        let filled_before = || {
            self.filled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&(dev, ino))
        };
        if filled != Filled::Present || at_its_name || filled_before() {
            return Ok(filled);
        }
        match self.moved_to((dev, ino)) {
            Some(at) => self.fill_at(rel, &at),
            None => Ok(Filled::Present),
        }
    }

    /// Where the placeholder of `inode` is now, away from its name (each of its names
    /// there): from the last walk of the tree if it is still there, else from a new walk
    /// (one at a time: the others wait for its answer).
    fn moved_to(&self, inode: (u64, u64)) -> Option<Vec<PathBuf>> {
        let mut moved = self.moved.lock().unwrap_or_else(PoisonError::into_inner);
        let still_there = |at: &Vec<PathBuf>| {
            at.first().is_some_and(|at| {
                fs::symlink_metadata(self.root.join(at))
                    .is_ok_and(|meta| (meta.dev(), meta.ino()) == inode && meta.blocks() == 0)
            })
        };
        if let Some(at) = moved.get(&inode).filter(|at| still_there(at)) {
            return Some(at.clone());
        }
        *moved = self.walk_for_moved();
        moved.get(&inode).cloned()
    }

    /// Every placeholder of the tree that is not at its name (nor at one of its hard links'),
    /// by inode, with each name it has there.
    pub(super) fn walk_for_moved(&self) -> HashMap<(u64, u64), Vec<PathBuf>> {
        let walk = self.walks.fetch_add(1, Ordering::Relaxed) + 1;
        let started = std::time::Instant::now();
        let mut found = HashMap::new();
        let mut dirs = vec![PathBuf::new()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = fs::read_dir(self.root.join(&dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let rel = dir.join(entry.file_name());
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    dirs.push(rel);
                    continue;
                }
                let inode = (meta.dev(), meta.ino());
                let Some(name) = self.by_inode.get(&inode) else {
                    continue;
                };
                let elsewhere = *name != rel
                    && self
                        .other_names
                        .get(name)
                        .is_none_or(|links| !links.contains(&rel));
                let placeholder = self.files.files.get(name);
                if elsewhere && placeholder.is_some_and(|p| still_placeholder(&meta, p)) {
                    found.entry(inode).or_insert_with(Vec::new).push(rel);
                }
            }
        }
        tracing::debug!(
            walk,
            moved = found.len(),
            ms = started.elapsed().as_millis() as u64,
            "walked the tree for placeholders a renamed directory took away"
        );
        found
    }

    /// Fills the placeholder the skeleton named `name` (or a hard link to it), found at the
    /// names `at` where a renamed directory took it (at its name when `at` is empty).
    pub(super) fn fill_at(&self, name: &Path, at: &[PathBuf]) -> Result<Filled, LazyFault> {
        let name = self.files.links.get(name).map_or(name, PathBuf::as_path);
        let Some(placeholder) = self.files.files.get(name) else {
            return Ok(Filled::Present);
        };
        let _turn = match self.take_turn(name) {
            Some(turn) => turn,
            // Another thread filled it while this one waited.
            None => return Ok(Filled::Present),
        };
        self.fetch(name, at, placeholder)
    }

    /// Makes the file a host path inside the tree names complete, following its symlinks
    /// (they are confined to the tree); a path outside the tree or missing is left alone.
    ///
    /// A file with a block of its own is whole whatever its inode number: a filesystem
    /// that reuses numbers (ext4) gives a filled placeholder's number to the next file it
    /// makes, and looking that file up by inode would find the old placeholder's name with
    /// something else at it, which is what a renamed directory looks like (a walk of the
    /// whole tree).
    pub fn fill_path(&self, host: &Path) -> Result<Filled, LazyFault> {
        match unfilled_inode(host) {
            Some((dev, ino)) => self.fill_inode(dev, ino),
            None => Ok(Filled::Present),
        }
    }

    /// [`Self::fill_path`] for several files at once, up to [`FILL_THREADS`] at a time: a
    /// program's libraries are each a round trip to the store and a frame or more, which
    /// one after the other add up (ImageMagick's `convert` started 0.9 s sooner behind a
    /// function's link). After a failure no new fill starts (the caller fails anyway); the
    /// first is returned once the fills under way have ended.
    pub fn fill_paths(&self, hosts: &[PathBuf]) -> Result<(), LazyFault> {
        let mut unfilled: Vec<(u64, u64)> =
            hosts.iter().filter_map(|h| unfilled_inode(h)).collect();
        // One file by two names (`/lib` and `/usr/lib` on a merged-/usr image) is one fill.
        unfilled.sort_unstable();
        unfilled.dedup();
        if let [(dev, ino)] = unfilled.as_slice() {
            return self.fill_inode(*dev, *ino).map(drop);
        }
        let next = AtomicUsize::new(0);
        let fault = std::sync::Mutex::new(None);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let work = || {
            while !failed.load(Ordering::Acquire)
                && let Some(&(dev, ino)) = unfilled.get(next.fetch_add(1, Ordering::Relaxed))
            {
                if let Err(e) = self.fill_inode(dev, ino) {
                    failed.store(true, Ordering::Release);
                    let mut first = fault.lock().unwrap_or_else(PoisonError::into_inner);
                    first.get_or_insert(e);
                }
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..unfilled.len().min(FILL_THREADS) {
                // Without another thread this one does the work.
                let helper = std::thread::Builder::new().name("scar-fill".into());
                if helper.spawn_scoped(scope, work).is_err() {
                    break;
                }
            }
            work();
        });
        fault
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(Ok(()), Err)
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

    /// Fetches the placeholder the skeleton named `name`; where a renamed directory took it,
    /// `moved` holds the names it has now (else it is empty).
    fn fetch(
        &self,
        name: &Path,
        moved: &[PathBuf],
        placeholder: &Placeholder,
    ) -> Result<Filled, LazyFault> {
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
        let at = moved.first().map_or(name, PathBuf::as_path);
        let full = self.root.join(at);
        let meta = match fs::symlink_metadata(&full) {
            Ok(meta) if still_placeholder(&meta, placeholder) => meta,
            // Removed or replaced since the skeleton was applied: nothing of ours is there.
            _ => return Ok(Filled::Present),
        };
        // A directory the command renamed keeps the mtime it had; the skeleton's record is
        // for the directory of `name`.
        let moved_dirs: Vec<(PathBuf, FileTime)> = moved
            .iter()
            .filter_map(|at| {
                let dir = self.root.join(at.parent()?);
                let meta = fs::symlink_metadata(&dir).ok()?;
                Some((dir, FileTime::from_last_modification_time(&meta)))
            })
            .collect();
        let links: Vec<PathBuf> = self
            .other_names
            .get(name)
            .into_iter()
            .flatten()
            .chain(moved.iter().skip(1))
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
        self.filled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((meta.dev(), meta.ino()));
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
        if moved.is_empty() {
            self.keep_dir_mtime(name);
        }
        for (dir, mtime) in moved_dirs {
            let _ = filetime::set_file_mtime(dir, mtime);
        }
        Ok(Filled::Fetched(placeholder.size))
    }

    /// Writes the placeholder's bytes, read from the frames that hold them. The frames after
    /// the first are read ahead on other threads (at most [`READ_AHEAD`] for the whole
    /// tree), so that a file of many frames (a JDK's `modules`, 130 MB) does not wait for
    /// each read in turn: from S3, each is a round trip before it decodes.
    fn copy_bytes(&self, placeholder: &Placeholder, out: &mut fs::File) -> Result<(), CopyFailure> {
        let layer = placeholder.layer;
        let starts = &self.starts[layer];
        let end = placeholder.offset + placeholder.size;
        let mut at = placeholder.offset;
        let (_, mut frame) = frame_of(&self.starts, placeholder);
        let last = frame_holding(starts, end.saturating_sub(1));
        // eStargz chunks are read by spans of several already.
        let reads_ahead = self
            .layers
            .get(layer)
            .is_some_and(|l| l.codec == frames::FrameCodec::Zstd);
        let read = |problem: String| CopyFailure::Read(problem);
        std::thread::scope(|scope| {
            let mut ahead = std::collections::VecDeque::new();
            let mut next_ahead = frame + 1;
            while at < end {
                while reads_ahead && ahead.len() < READ_AHEAD && next_ahead <= last {
                    let Some(slot) = self.read_ahead_slot() else {
                        break;
                    };
                    let n = next_ahead;
                    // Without a thread the frame is read in its turn.
                    let Ok(reading) = std::thread::Builder::new()
                        .name("scar-read-ahead".into())
                        .spawn_scoped(scope, move || self.frame(layer, n))
                    else {
                        break;
                    };
                    ahead.push_back((n, reading, slot));
                    next_ahead += 1;
                }
                let read_ahead = if ahead.front().is_some_and(|(n, _, _)| *n == frame) {
                    ahead.pop_front()
                } else {
                    None
                };
                let bytes = match read_ahead {
                    // Its slot goes back as it is taken: the frame stays in the frame cache.
                    Some((_, reading, _slot)) => reading
                        .join()
                        .unwrap_or_else(|_| Err("a frame-reading thread panicked".into())),
                    None => self.frame(layer, frame),
                }
                .map_err(read)?;
                let start = starts[frame];
                let from = usize::try_from(at - start).map_err(|e| read(e.to_string()))?;
                let to = usize::try_from(end.min(start + bytes.len() as u64) - start)
                    .map_err(|e| read(e.to_string()))?;
                let slice = bytes
                    .get(from..to)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        read(format!("frame {frame} does not hold bytes {at}..{end}"))
                    })?;
                out.write_all(slice).map_err(CopyFailure::Write)?;
                at += slice.len() as u64;
                frame += 1;
                next_ahead = next_ahead.max(frame + 1);
            }
            Ok(())
        })
    }

    /// One of the tree's [`READ_AHEAD`] slots for a frame read ahead, if one is free: held
    /// until its frame is taken or given up, so that no more than that many frames are
    /// read beside the fills' own.
    fn read_ahead_slot(&self) -> Option<ReadAheadSlot<'_>> {
        self.reading_ahead
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |taken| {
                (taken < READ_AHEAD).then_some(taken + 1)
            })
            .ok()
            .map(|_| ReadAheadSlot(&self.reading_ahead))
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
        let mut cache = self.frames.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(at) = cache
                .kept
                .iter()
                .position(|(l, f, _)| (*l, *f) == (layer, n))
                && let Some(hit) = cache.kept.remove(at)
            {
                // The most recently used at the back.
                let bytes = Arc::clone(&hit.2);
                cache.kept.push_back(hit);
                return Ok(bytes);
            }
            if cache.reading.insert((layer, n)) {
                break;
            }
            // Another thread reads it: its bytes land in the cache (or, if its read failed,
            // this thread reads it in turn).
            cache = self
                .frame_read
                .wait(cache)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(cache);
        let reading = FrameReading {
            tree: self,
            frame: (layer, n),
        };
        // Read without the lock: other threads fetch other files meanwhile. A frame fetched
        // ahead is decoded and checked as one from the store (and read again if it fails).
        let ahead = self
            .preload
            .as_ref()
            .and_then(|preload| preload.take(layer, n))
            .and_then(|bytes| frames::Span::of_frame(framed, n, bytes));
        let started = std::time::Instant::now();
        let preloaded = ahead.is_some();
        let bytes = match ahead {
            Some(span) => frames::frame_in_span(framed, Some(&span), n),
            None => frames::read_frame(framed, n),
        };
        let bytes = Arc::new(bytes.map_err(|e| e.to_string())?);
        // Where a fill's time goes: the store's answers, frame by frame.
        tracing::trace!(
            layer,
            frame = n,
            preloaded,
            ms = started.elapsed().as_millis() as u64,
            "frame read"
        );
        let mut cache = self.frames.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.kept.len() >= CACHED_FRAMES {
            cache.kept.pop_front();
        }
        cache.kept.push_back((layer, n, Arc::clone(&bytes)));
        drop(cache);
        drop(reading);
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
pub(super) fn swap_in(new: &Path, name: &Path, was: &fs::Metadata) -> io::Result<bool> {
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

/// The device and inode of the placeholder at `host` (following links), if it is one: a
/// file with a length and no block of its own.
fn unfilled_inode(host: &Path) -> Option<(u64, u64)> {
    let meta = fs::metadata(host).ok()?;
    (meta.is_file() && meta.len() > 0 && meta.blocks() == 0).then(|| (meta.dev(), meta.ino()))
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

/// A frame being read by this thread ([`super::FrameCache::reading`]): ended however the read
/// ends, so that threads waiting for it go on.
struct FrameReading<'t> {
    tree: &'t LazyTree,
    frame: (usize, usize),
}

impl Drop for FrameReading<'_> {
    fn drop(&mut self) {
        let mut cache = self
            .tree
            .frames
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache.reading.remove(&self.frame);
        self.tree.frame_read.notify_all();
    }
}
