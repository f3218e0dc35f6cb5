//! The per-entry loop: one tar stream applied onto the staging rootfs.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use tar::EntryType;

use super::UnpackError;
use super::finisher::{self, Content, Finisher, Job, Made, Report, Target};
use super::path::{self, Whiteout};
use super::path_set::PathSet;
use super::sparse::Sparse;
use crate::skeleton::{self, Placeholder};

/// Counts for one layer, logged and stored in `image.json`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries read.
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Bytes of regular file content written.
    pub file_bytes: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Device nodes and fifos skipped.
    pub skipped_special: u64,
}

const COPY_BUFFER: usize = 256 * 1024;
const SPECIAL_BITS: u32 = 0o6000;

/// Applies layers in order onto a staging directory.
#[derive(Debug)]
pub struct LayerApplier {
    staging: PathBuf,
    final_root: PathBuf,
    /// Every symlink in the rootfs, relative. The staging tree is private to this process, so
    /// this set is the whole truth about which parents must not be written through.
    symlinks: PathSet,
    /// Directory mtimes, applied once at the end: creating children changes them.
    dir_mtimes: HashMap<PathBuf, i64>,
    buffer: Vec<u8>,
    umask: u32,
    /// Layers applied so far: the next one's number.
    layers_applied: usize,
    /// When applying skeletons: the files left for later, by name.
    lazy: Option<LazyFiles>,
    /// When applying skeletons: the threads that make new files and finish each one's
    /// length or bytes, mode and times (`finisher.rs`); `None`, the applier does it itself.
    finisher: Option<Finisher>,
    /// Directories this applier made or found, none removed since: a new file in one of them
    /// can be made by the finisher, as nothing but a name of the same layer can be in its
    /// way, and the applier waits for every such name before touching it again.
    known_dirs: PathSet,
    /// Files handed to the finisher to make, not yet reported, by name.
    unmade: HashMap<PathBuf, Unmade>,
    /// The next file's place in the order files are handed over.
    next_ticket: u64,
    /// The layers' own text of the symlinks whose target climbs above the root (stored in
    /// its absolute form), by name: what a hard link to one of them copies.
    climbing_texts: HashMap<PathBuf, PathBuf>,
}

/// A file the finisher is making.
#[derive(Debug)]
struct Unmade {
    /// Its place in the order files were handed over: names found taken are made in it.
    ticket: u64,
    /// For a placeholder, what the lazy tree lists once its inode is known.
    placeholder: Option<Placeholder>,
}

/// Inline files of a skeleton up to this size travel to the finisher with their bytes.
const HANDED_OVER_BYTES: u64 = 64 * 1024;

/// What a tree built from skeletons still lacks: each placeholder's bytes, where they are,
/// and the other names (hard links) of each placeholder.
#[derive(Debug, Default, Clone)]
pub struct LazyFiles {
    /// Placeholders by path relative to the rootfs.
    pub files: HashMap<PathBuf, Placeholder>,
    /// Hard links to a placeholder: the link's path, and the placeholder's.
    pub links: HashMap<PathBuf, PathBuf>,
    /// Directory mtimes as the layers set them: filling a file must not change them.
    pub dir_mtimes: HashMap<PathBuf, i64>,
    /// The names in `files` and in `links`, for what a removed directory held.
    names: PathSet,
}

impl LazyFiles {
    fn add_placeholder(&mut self, rel: &Path, placeholder: Placeholder) {
        self.names.insert(rel);
        self.files.insert(rel.to_path_buf(), placeholder);
    }

    fn add_link(&mut self, rel: &Path, target: PathBuf) {
        self.names.insert(rel);
        self.links.insert(rel.to_path_buf(), target);
    }

    /// `rel` (and, for a directory, everything below it) removed by a layer: its
    /// placeholders and links go, and a placeholder that keeps a hard link elsewhere lives
    /// on under that name.
    fn forget(&mut self, rel: &Path, directory: bool) {
        let gone = if directory {
            self.names.remove_under(rel)
        } else if self.names.contains(rel) {
            self.names.remove(rel);
            vec![rel.to_path_buf()]
        } else {
            return;
        };
        for name in &gone {
            self.links.remove(name);
        }
        for name in gone {
            let Some(placeholder) = self.files.remove(&name) else {
                continue;
            };
            let mut survivors: Vec<PathBuf> = self
                .links
                .iter()
                .filter(|(_, target)| **target == name)
                .map(|(link, _)| link.clone())
                .collect();
            survivors.sort();
            let Some(heir) = survivors.first().cloned() else {
                continue;
            };
            self.links.remove(&heir);
            for link in &survivors[1..] {
                self.links.insert(link.clone(), heir.clone());
            }
            self.files.insert(heir, placeholder);
        }
    }
}

/// Per-layer state: what this layer itself wrote (whiteouts only hide lower layers).
#[derive(Default)]
struct LayerState {
    written: PathSet,
    symlinks: HashSet<PathBuf>,
    stats: LayerStats,
}

impl LayerApplier {
    /// Applies onto `staging` (an existing empty directory); symlinks are made for the
    /// rootfs's eventual home `final_root`.
    pub fn new(staging: PathBuf, final_root: PathBuf) -> Self {
        Self {
            staging,
            final_root,
            symlinks: PathSet::default(),
            dir_mtimes: HashMap::new(),
            buffer: vec![0; COPY_BUFFER],
            umask: current_umask(),
            layers_applied: 0,
            lazy: None,
            finisher: None,
            known_dirs: PathSet::default(),
            unmade: HashMap::new(),
            next_ticket: 0,
            climbing_texts: HashMap::new(),
        }
    }

    /// Applies skeletons ([`crate::skeleton`]): a file whose bytes were left out becomes a
    /// placeholder of its real size, mode and times, listed by [`Self::take_lazy_files`].
    pub fn for_skeletons(staging: PathBuf, final_root: PathBuf) -> Self {
        // Without threads (none could be started) the applier finishes each file itself.
        let finisher = Finisher::start()
            .inspect_err(|e| tracing::debug!(error = %e, "no file-finishing threads"))
            .ok();
        Self {
            lazy: Some(LazyFiles::default()),
            finisher,
            ..Self::new(staging, final_root)
        }
    }

    /// As [`Self::for_skeletons`], with every file made on the applier's own thread: the
    /// reference the finisher's way is checked against.
    #[cfg(test)]
    pub(crate) fn for_skeletons_on_one_thread(staging: PathBuf, final_root: PathBuf) -> Self {
        Self {
            lazy: Some(LazyFiles::default()),
            ..Self::new(staging, final_root)
        }
    }

    /// The placeholders made so far (empty unless built [`Self::for_skeletons`]).
    pub fn take_lazy_files(&mut self) -> LazyFiles {
        let mut lazy = self.lazy.take().unwrap_or_default();
        lazy.dir_mtimes = self.dir_mtimes.clone();
        lazy
    }

    /// Applies one uncompressed tar stream.
    pub fn apply(&mut self, stream: impl Read) -> Result<LayerStats, UnpackError> {
        let mut archive = tar::Archive::new(super::guard::HeaderGuard::new(stream));
        let mut layer = LayerState::default();
        let layer_number = self.layers_applied;
        self.layers_applied += 1;
        for entry in archive.entries().map_err(UnpackError::Stream)? {
            let mut entry = entry.map_err(UnpackError::Stream)?;
            layer.stats.entries += 1;
            let header_name = entry.path().map_err(UnpackError::Stream)?.into_owned();
            let header_kind = entry.header().entry_type();
            let sparse =
                check_pax(&mut entry, header_kind).map_err(|reason| UnpackError::Unsafe {
                    path: header_name.display().to_string(),
                    reason,
                })?;
            // A sparse file's header names `GNUSparseFile.N/…`; its records name the file.
            let raw = match sparse.as_ref().and_then(|s| s.name.as_deref()) {
                Some(name) => PathBuf::from(std::ffi::OsStr::from_bytes(name)),
                None => header_name,
            };
            let unsafe_entry = |reason: &str| UnpackError::Unsafe {
                path: raw.display().to_string(),
                reason: reason.to_string(),
            };
            let rel = match path::entry_name(&raw) {
                Ok(rel) => rel,
                // `./` itself: the rootfs directory already exists and keeps its own mode.
                Err(path::NameError::Empty) if entry.header().entry_type().is_dir() => continue,
                Err(e) => return Err(unsafe_entry(e.reason())),
            };
            if self.is_being_made(&rel) {
                self.settle_unmade(true)?;
            }
            if let Some(link) = self.symlinked_ancestor(&rel) {
                return Err(unsafe_entry(&format!(
                    "parent {} is a symlink",
                    link.display()
                )));
            }
            match path::whiteout(&rel) {
                Whiteout::Remove(name) => {
                    self.settle_unmade(true)?;
                    let victim = rel.with_file_name(name);
                    // Only what lower layers made goes (the OCI rule): what this layer put
                    // at or below the name stays, as an opaque marker keeps it.
                    let below_is_ours = layer.written.has_under(&victim);
                    if below_is_ours && !self.symlinks.contains(&victim) {
                        self.clear_lower(&victim, &layer.written)?;
                    } else if !layer.written.contains(&victim) {
                        self.remove(&victim)?;
                    }
                    layer.stats.whiteouts += 1;
                    continue;
                }
                Whiteout::Opaque => {
                    self.settle_unmade(true)?;
                    let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
                    self.clear_lower(&dir, &layer.written)?;
                    layer.stats.whiteouts += 1;
                    continue;
                }
                Whiteout::Metadata => continue,
                Whiteout::Invalid => {
                    return Err(unsafe_entry(
                        "invalid whiteout name (it would delete its own directory or a parent)",
                    ));
                }
                Whiteout::None => {}
            }
            // Whatever this entry makes replaces a placeholder of the same name.
            if let Some(lazy) = self.lazy.as_mut() {
                lazy.forget(&rel, false);
            }
            let header = entry.header();
            let mode = header.mode().map_err(UnpackError::Stream)? & 0o7777 & !SPECIAL_BITS;
            let mtime = header.mtime().map_err(UnpackError::Stream)? as i64;
            let mut kind = header.entry_type();
            // Old V7 tars mark a directory by a trailing `/` on a regular entry, and GNU tar
            // reads it so (no file name ends with `/`); as a file, it would swallow the next
            // header as its content.
            if kind == EntryType::Regular && entry.path_bytes().ends_with(b"/") {
                kind = EntryType::Directory;
            }
            if sparse.is_some() && !matches!(kind, EntryType::Regular | EntryType::Continuous) {
                return Err(unsafe_entry(
                    "sparse records on an entry that is not a file",
                ));
            }
            match kind {
                EntryType::Directory => {
                    // A directory with a size (some old tars write one) would have its
                    // "content" read as data by our reader while GNU tar reads the next
                    // header there: the tree would differ, so it is refused by name.
                    let size = entry.header().entry_size().map_err(UnpackError::Stream)?;
                    if size > 0 {
                        return Err(unsafe_entry(&format!(
                            "directory entry with a size ({size} bytes): ambiguous layout"
                        )));
                    }
                    if layer.symlinks.contains(&rel) {
                        return Err(unsafe_entry(
                            "directory replaces a symlink of the same layer",
                        ));
                    }
                    self.make_dir(&rel, mode | 0o700)?;
                    self.dir_mtimes.insert(rel.clone(), mtime);
                    layer.stats.dirs += 1;
                }
                EntryType::Regular | EntryType::Continuous => {
                    let mode = mode | 0o400;
                    let left_out = match self.lazy {
                        Some(_) => skeleton::placeholder_records(&mut entry)
                            .map_err(|reason| unsafe_entry(&reason))?,
                        None => None,
                    };
                    if sparse.is_none() && self.can_hand_over_creation(&rel) {
                        let handed = match left_out {
                            Some((offset, size)) => Some((
                                Content::Length(size),
                                Some(Placeholder {
                                    layer: layer_number,
                                    offset,
                                    size,
                                    inode: (0, 0),
                                }),
                            )),
                            None if entry.size() <= HANDED_OVER_BYTES => {
                                let mut bytes = Vec::with_capacity(entry.size() as usize);
                                entry.read_to_end(&mut bytes).map_err(UnpackError::Stream)?;
                                layer.stats.file_bytes += bytes.len() as u64;
                                Some((Content::Bytes(bytes), None))
                            }
                            None => None,
                        };
                        if let Some((content, placeholder)) = handed {
                            self.hand_over_creation(&rel, content, placeholder, mode, mtime)?;
                            layer.stats.files += 1;
                            layer.written.insert_owned(rel);
                            continue;
                        }
                    }
                    let (full, file) =
                        self.create_fresh(&rel, |full| finisher::create_file(full, mode))?;
                    if let Some((offset, size)) = left_out {
                        let meta = file.metadata().map_err(|e| UnpackError::io(&full, e))?;
                        // Sparse on every filesystem /tmp may be: no block is written.
                        self.hand_over(file, full, Content::Length(size), mode, mtime)?;
                        let placeholder = Placeholder {
                            layer: layer_number,
                            offset,
                            size,
                            inode: (meta.dev(), meta.ino()),
                        };
                        if let Some(lazy) = self.lazy.as_mut() {
                            lazy.add_placeholder(&rel, placeholder);
                        }
                        layer.stats.files += 1;
                        layer.written.insert_owned(rel);
                        continue;
                    }
                    let written = match &sparse {
                        Some(sparse) => {
                            // The PAX `size` record's, when there is one.
                            let data_size = entry.size();
                            self.write_sparse(file, &mut entry, sparse, data_size, mode, mtime)
                                .map_err(|reason| unsafe_entry(&reason))?
                        }
                        None if self.finisher.is_some() && entry.size() <= HANDED_OVER_BYTES => {
                            let mut bytes = Vec::with_capacity(entry.size() as usize);
                            entry.read_to_end(&mut bytes).map_err(UnpackError::Stream)?;
                            let written = bytes.len() as u64;
                            self.hand_over(file, full, Content::Bytes(bytes), mode, mtime)?;
                            written
                        }
                        None => self.write_file(file, &full, &mut entry, mode, mtime)?,
                    };
                    layer.stats.files += 1;
                    layer.stats.file_bytes += written;
                }
                EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(UnpackError::Stream)?
                        .ok_or_else(|| unsafe_entry("symlink without a target"))?;
                    let stored = path::confined_link_target(&rel, &target, &self.final_root);
                    let (full, ()) =
                        self.create_fresh(&rel, |full| std::os::unix::fs::symlink(&stored, full))?;
                    let time = FileTime::from_unix_time(mtime, 0);
                    filetime::set_symlink_file_times(&full, time, time)
                        .map_err(|e| UnpackError::io(&full, e))?;
                    self.remember_link_text(&rel, &target, &stored);
                    self.symlinks.insert(&rel);
                    layer.symlinks.insert(rel.clone());
                    layer.stats.symlinks += 1;
                }
                EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(UnpackError::Stream)?
                        .ok_or_else(|| unsafe_entry("hard link without a target"))?;
                    let target_rel = path::entry_name(&target)
                        .map_err(|e| unsafe_entry(&format!("hard link target {}", e.reason())))?;
                    if self.is_being_made(&target_rel) {
                        self.settle_unmade(true)?;
                    }
                    if self.symlinked_ancestor(&target_rel).is_some() {
                        return Err(unsafe_entry("hard link target lies below a symlink"));
                    }
                    let source = self.staging.join(&target_rel);
                    if self.symlinks.contains(&target_rel) {
                        // A hard link to a symlink is that symlink in another directory, where
                        // a relative target means something else (`a/b -> ..` linked as `q`
                        // climbs one level higher): it is made again as a symlink, its target
                        // confined from its new place, as chroot would resolve it.
                        let full = self.prepare(&rel)?;
                        self.relink_symlink(&target_rel, &rel, &full)?;
                        self.symlinks.insert(&rel);
                    } else {
                        self.create_fresh(&rel, |full| fs::hard_link(&source, full))?;
                        if let Some(lazy) = self.lazy.as_mut() {
                            let target = lazy.links.get(&target_rel).unwrap_or(&target_rel);
                            if lazy.files.contains_key(target) {
                                let target = target.clone();
                                lazy.add_link(&rel, target);
                            }
                        }
                    }
                    layer.stats.hardlinks += 1;
                }
                EntryType::Char | EntryType::Block | EntryType::Fifo => {
                    layer.stats.skipped_special += 1;
                    continue;
                }
                // `git archive` starts its tars with one (the commit id): metadata for the
                // archive, nothing for the tree. Docker and containerd ignore it too.
                EntryType::XGlobalHeader => continue,
                // Per-entry PAX and GNU long-name records are consumed by the tar crate;
                // anything else (sparse files, dumpdirs, unknown types) is refused by name
                // rather than half-understood.
                other => {
                    return Err(unsafe_entry(&format!(
                        "unsupported entry type {}",
                        entry_type_name(other)
                    )));
                }
            }
            layer.written.insert_owned(rel);
        }
        // The next layer's whiteouts, and the stats, see every file of this one.
        self.settle_unmade(true)?;
        Ok(layer.stats)
    }

    /// Once every layer is applied: rewrites the symlinks whose `..` would climb through
    /// another symlink, then sets directory mtimes, last of all so that no later write
    /// disturbs them.
    pub fn finish(mut self) -> Result<(), UnpackError> {
        self.settle_unmade(true)?;
        if let Some(finisher) = self.finisher.take() {
            finisher
                .finish()
                .map_err(|(path, e)| UnpackError::io(path, e))?;
        }
        self.confine_climbing_links()?;
        for (rel, mtime) in &self.dir_mtimes {
            // A directory a later layer replaced, by a symlink or below one, is not ours to
            // touch: following that path would change a file outside the rootfs.
            if self.symlinks.contains(rel) || self.symlinked_ancestor(rel).is_some() {
                continue;
            }
            let full = self.staging.join(rel);
            match fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => {}
                // Removed by a later layer's whiteout, or now a file.
                Ok(_) => continue,
                // Removed, or gone with a parent that a later layer made a file.
                Err(e) if is_gone(&e) => continue,
                Err(e) => return Err(UnpackError::io(full, e)),
            }
            let time = FileTime::from_unix_time(*mtime, 0);
            filetime::set_symlink_file_times(&full, time, time)
                .map_err(|e| UnpackError::io(&full, e))?;
        }
        Ok(())
    }

    /// The final tree's symlinks are all known now: a relative target that climbs with `..`
    /// after passing through one of them is stored in its absolute, `..`-free form.
    fn confine_climbing_links(&self) -> Result<(), UnpackError> {
        for link in self.symlinks.iter() {
            let full = self.staging.join(link);
            let Ok(target) = fs::read_link(&full) else {
                continue;
            };
            if !path::climbs_through_a_symlink(link, &target, |p| self.symlinks.contains(p)) {
                continue;
            }
            let mtime = fs::symlink_metadata(&full)
                .map(|m| FileTime::from_last_modification_time(&m))
                .map_err(|e| UnpackError::io(&full, e))?;
            let stored = path::absolute_link_target(link, &target, &self.final_root);
            fs::remove_file(&full).map_err(|e| UnpackError::io(&full, e))?;
            std::os::unix::fs::symlink(&stored, &full).map_err(|e| UnpackError::io(&full, e))?;
            filetime::set_symlink_file_times(&full, mtime, mtime)
                .map_err(|e| UnpackError::io(&full, e))?;
        }
        Ok(())
    }

    /// A copy of the symlink at `source_rel` made at `rel` (host path `full`): the layer's text
    /// of its target (see [`Self::remember_link_text`]) confined from `rel`'s directory; the
    /// stored form of an absolute target is already confined.
    fn relink_symlink(
        &mut self,
        source_rel: &Path,
        rel: &Path,
        full: &Path,
    ) -> Result<(), UnpackError> {
        let source = self.staging.join(source_rel);
        let stored = fs::read_link(&source).map_err(|e| UnpackError::io(&source, e))?;
        let text = match self.climbing_texts.get(source_rel) {
            Some(text) => text.clone(),
            None => stored,
        };
        let target = if text.is_absolute() {
            text.clone()
        } else {
            path::confined_link_target(rel, &text, &self.final_root)
        };
        self.remember_link_text(rel, &text, &target);
        let mtime = fs::symlink_metadata(&source)
            .map(|m| FileTime::from_last_modification_time(&m))
            .map_err(|e| UnpackError::io(source, e))?;
        std::os::unix::fs::symlink(&target, full).map_err(|e| UnpackError::io(full, e))?;
        filetime::set_symlink_file_times(full, mtime, mtime).map_err(|e| UnpackError::io(full, e))
    }

    /// Keeps the text of the symlink at `rel` when the form stored (`stored`) is not the
    /// layer's (`text`: a relative target that climbs above the root, stored absolute), for a
    /// hard link to it: made elsewhere, the text climbs from its new place (as `link(2)` and
    /// umoci would have it), not from the old one.
    fn remember_link_text(&mut self, rel: &Path, text: &Path, stored: &Path) {
        if text.is_relative() && stored != text {
            self.climbing_texts
                .insert(rel.to_path_buf(), text.to_path_buf());
        } else {
            self.climbing_texts.remove(rel);
        }
    }

    fn symlinked_ancestor<'p>(&self, rel: &'p Path) -> Option<&'p Path> {
        self.symlinks.ancestor_of(rel)
    }

    /// Makes `rel` with `make` in one system call where nothing stands in its way, which is
    /// the common case (a new name in an existing directory). Only when the call finds
    /// something there (a lower layer's entry, `EEXIST`) or no parent (a tar that omits
    /// directory entries, `ENOENT`) does [`Self::prepare`] look, clear the way and create
    /// the parents, before the second and last try. Every `make` refuses to follow or
    /// replace an existing final component (`O_EXCL`, `symlink`, `link`), and parents are
    /// kept free of symlinks by the caller, so the first try is as confined as the second.
    fn create_fresh<T>(
        &mut self,
        rel: &Path,
        make: impl Fn(&Path) -> io::Result<T>,
    ) -> Result<(PathBuf, T), UnpackError> {
        let full = self.staging.join(rel);
        match make(&full) {
            Ok(made) => return Ok((full, made)),
            Err(e) if in_the_way(&e) => {}
            Err(e) => return Err(UnpackError::io(&full, e)),
        }
        let full = self.prepare(rel)?;
        let made = make(&full).map_err(|e| UnpackError::io(&full, e))?;
        Ok((full, made))
    }

    /// Makes room for a non-directory entry at `rel`: parents exist, nothing is in the way.
    fn prepare(&mut self, rel: &Path) -> Result<PathBuf, UnpackError> {
        // What is in the way may be a directory with files still being made below it.
        self.settle_unmade(true)?;
        let full = self.staging.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_dir() => self.remove(rel)?,
            Ok(_) => {
                fs::remove_file(&full).map_err(|e| UnpackError::io(&full, e))?;
                self.symlinks.remove(rel);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    self.ensure_parents(parent)?;
                }
            }
            Err(e) => return Err(UnpackError::io(&full, e)),
        }
        Ok(full)
    }

    /// Tars may omit directory entries; missing parents are created like `mkdir -p`.
    fn ensure_parents(&mut self, rel_dir: &Path) -> Result<(), UnpackError> {
        let full = self.staging.join(rel_dir);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return self.make_dir(rel_dir, 0o755),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&full).map_err(|e| UnpackError::io(&full, e))?;
            }
            Err(e) => return Err(UnpackError::io(&full, e)),
        }
        for dir in rel_dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
            self.known_dirs.insert(dir);
        }
        Ok(())
    }

    fn make_dir(&mut self, rel: &Path, mode: u32) -> Result<(), UnpackError> {
        self.make_dir_on_disk(rel, mode)?;
        self.known_dirs.insert(rel);
        Ok(())
    }

    fn make_dir_on_disk(&mut self, rel: &Path, mode: u32) -> Result<(), UnpackError> {
        let full = self.staging.join(rel);
        // The common case first, in one system call: a new directory whose mode the umask
        // leaves whole. A name already taken or a missing parent goes the long way below.
        match fs::DirBuilder::new().mode(mode).create(&full) {
            Ok(()) if mode & self.umask == 0 => return Ok(()),
            Ok(()) => {
                return fs::set_permissions(&full, fs::Permissions::from_mode(mode))
                    .map_err(|e| UnpackError::io(&full, e));
            }
            Err(e) if in_the_way(&e) => {}
            Err(e) => return Err(UnpackError::io(&full, e)),
        }
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                // A lower layer's file or symlink gives way to a directory (overlay semantics).
                fs::remove_file(&full).map_err(|e| UnpackError::io(&full, e))?;
                self.symlinks.remove(rel);
                fs::create_dir(&full).map_err(|e| UnpackError::io(&full, e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    self.ensure_parents(parent)?;
                }
                fs::create_dir(&full).map_err(|e| UnpackError::io(&full, e))?;
            }
            Err(e) => return Err(UnpackError::io(&full, e)),
        }
        fs::set_permissions(&full, fs::Permissions::from_mode(mode))
            .map_err(|e| UnpackError::io(&full, e))
    }

    /// Fills the new `file` (at `full`) with an entry's data, then sets its mode and times.
    fn write_file(
        &mut self,
        mut file: fs::File,
        full: &Path,
        data: &mut impl Read,
        mode: u32,
        mtime: i64,
    ) -> Result<u64, UnpackError> {
        let mut total = 0u64;
        loop {
            let n = match data.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Stream(e)),
            };
            file.write_all(&self.buffer[..n])
                .map_err(|e| UnpackError::io(full, e))?;
            total += n as u64;
        }
        self.finish_file(&file, mode, mtime)
            .map_err(|e| UnpackError::io(full, e))?;
        Ok(total)
    }

    /// A new file's length or bytes, mode and times, set by the finisher's threads when
    /// there are any (their failure is reported by [`Self::finish`]), else here.
    fn hand_over(
        &mut self,
        file: fs::File,
        path: PathBuf,
        content: Content,
        mode: u32,
        mtime: i64,
    ) -> Result<(), UnpackError> {
        let job = Job {
            target: Target::Open(file),
            path,
            content,
            chmod: self.chmod_for(mode),
            mtime,
        };
        match &mut self.finisher {
            Some(finisher) => finisher.send(job),
            None => finisher::finish_now(job),
        }
        .map_err(|(path, e)| UnpackError::io(path, e))
    }

    /// Whether the finisher can make the new file `rel`: its directory is one the applier
    /// knows to be there (so the only failure that leaves work undone is a name taken), and
    /// `rel` is not a directory (replacing one removes a tree: the applier's long way).
    fn can_hand_over_creation(&self, rel: &Path) -> bool {
        self.finisher.is_some()
            && rel
                .parent()
                .is_some_and(|p| p.as_os_str().is_empty() || self.known_dirs.contains(p))
            && !self.known_dirs.contains(rel)
    }

    /// Hands the new file `rel` to the finisher to make; a placeholder is listed once its
    /// inode is reported ([`Self::settle_unmade`]).
    fn hand_over_creation(
        &mut self,
        rel: &Path,
        content: Content,
        placeholder: Option<Placeholder>,
        mode: u32,
        mtime: i64,
    ) -> Result<(), UnpackError> {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let job = Job {
            target: Target::Create { mode },
            path: self.staging.join(rel),
            content,
            chmod: self.chmod_for(mode),
            mtime,
        };
        let Some(finisher) = self.finisher.as_mut() else {
            return Err(UnpackError::io(
                &job.path,
                io::Error::other("no finisher to make the file"),
            ));
        };
        finisher
            .send(job)
            .map_err(|(path, e)| UnpackError::io(path, e))?;
        self.unmade.insert(
            rel.to_path_buf(),
            Unmade {
                ticket,
                placeholder,
            },
        );
        // Reports read as they come keep the table small; a name found taken waits.
        if self.unmade.len() >= 1024 {
            self.settle_unmade(false)?;
        }
        Ok(())
    }

    /// Whether `rel`, or a directory above it, is a file the finisher is still making.
    fn is_being_made(&self, rel: &Path) -> bool {
        if self.unmade.is_empty() {
            return false;
        }
        if self.unmade.contains_key(rel) {
            return true;
        }
        // Every directory on disk is known (made by `make_dir` or `ensure_parents`, forgotten
        // by `remove`), and no name being made is: below a known directory, nothing above
        // `rel` is being made, and the common case costs no more lookups.
        if rel
            .parent()
            .is_some_and(|p| p.as_os_str().is_empty() || self.known_dirs.contains(p))
        {
            return false;
        }
        rel.ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .any(|p| self.unmade.contains_key(p))
    }

    /// Takes the finisher's reports on the files it makes: all of them when `all` (or when
    /// a name was found taken), else those in. A placeholder made is listed; a name found
    /// taken (a lower layer's file there) goes the applier's long way, in the tar's order,
    /// once every file handed over before it is made.
    fn settle_unmade(&mut self, all: bool) -> Result<(), UnpackError> {
        let Some(finisher) = self.finisher.as_mut() else {
            return Ok(());
        };
        if self.unmade.is_empty() {
            return Ok(());
        }
        let mut reports = finisher.reports_in();
        if all || reports.iter().any(|r| matches!(r.made, Made::Taken(_))) {
            let rest = finisher
                .all_reports()
                .map_err(|(path, e)| UnpackError::io(path, e))?;
            reports.extend(rest);
        }
        let mut taken = Vec::new();
        for Report { path, made } in reports {
            let rel = path
                .strip_prefix(&self.staging)
                .unwrap_or(&path)
                .to_path_buf();
            let Some(unmade) = self.unmade.remove(&rel) else {
                continue;
            };
            match made {
                Made::Done(dev, ino) => {
                    if let (Some(mut placeholder), Some(lazy)) =
                        (unmade.placeholder, self.lazy.as_mut())
                    {
                        placeholder.inode = (dev, ino);
                        lazy.add_placeholder(&rel, placeholder);
                    }
                }
                Made::Taken(job) => taken.push((rel, unmade, job)),
                Made::Failed(e) => return Err(UnpackError::io(path, e)),
            }
        }
        taken.sort_by_key(|(_, unmade, _)| unmade.ticket);
        for (rel, unmade, job) in taken {
            self.make_in_place_of(&rel, unmade, job)?;
        }
        Ok(())
    }

    /// The long way for a file whose name the finisher found taken: what is there goes, as
    /// for any entry, and the file is made and handed over open.
    fn make_in_place_of(
        &mut self,
        rel: &Path,
        unmade: Unmade,
        job: Job,
    ) -> Result<(), UnpackError> {
        let Target::Create { mode, .. } = job.target else {
            return Err(UnpackError::io(
                &job.path,
                io::Error::other("a file handed back as taken was already open"),
            ));
        };
        let (full, file) = self.create_fresh(rel, |full| finisher::create_file(full, mode))?;
        if let (Some(mut placeholder), true) = (unmade.placeholder, self.lazy.is_some()) {
            let meta = file.metadata().map_err(|e| UnpackError::io(&full, e))?;
            placeholder.inode = (meta.dev(), meta.ino());
            if let Some(lazy) = self.lazy.as_mut() {
                lazy.add_placeholder(rel, placeholder);
            }
        }
        let job = Job {
            target: Target::Open(file),
            path: full,
            ..job
        };
        match &mut self.finisher {
            Some(finisher) => finisher.send(job),
            None => finisher::finish_now(job),
        }
        .map_err(|(path, e)| UnpackError::io(path, e))
    }

    /// The mode to set on a new file: `mode`, when the umask took bits from it at creation.
    fn chmod_for(&self, mode: u32) -> Option<u32> {
        (mode & self.umask != 0).then_some(mode)
    }

    /// The mode the umask took bits from, and the entry's times.
    fn finish_file(&self, file: &fs::File, mode: u32, mtime: i64) -> io::Result<()> {
        super::finisher::settle(file, self.chmod_for(mode), mtime)
    }

    /// A sparse file (`sparse.rs`), with its holes; a bad map is the reason it is refused.
    fn write_sparse(
        &mut self,
        mut file: fs::File,
        data: &mut impl Read,
        sparse: &Sparse,
        data_size: u64,
        mode: u32,
        mtime: i64,
    ) -> Result<u64, String> {
        let written = sparse.extract(data, &mut file, data_size, &mut self.buffer)?;
        self.finish_file(&file, mode, mtime)
            .map_err(|e| e.to_string())?;
        Ok(written)
    }

    /// Deletes `rel` (file, link or whole tree) if present.
    fn remove(&mut self, rel: &Path) -> Result<(), UnpackError> {
        self.settle_unmade(true)?;
        let full = self.staging.join(rel);
        let result = match fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_dir() => {
                self.symlinks.remove_under(rel);
                self.known_dirs.remove_under(rel);
                if let Some(lazy) = self.lazy.as_mut() {
                    lazy.forget(rel, true);
                }
                fs::remove_dir_all(&full)
            }
            Ok(_) => {
                self.symlinks.remove(rel);
                if let Some(lazy) = self.lazy.as_mut() {
                    lazy.forget(rel, false);
                }
                fs::remove_file(&full)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_gone(&e) => Ok(()),
            Err(e) => Err(UnpackError::io(full, e)),
        }
    }

    /// Opaque directory: everything below `dir` that this layer did not write goes.
    fn clear_lower(&mut self, dir: &Path, written: &PathSet) -> Result<(), UnpackError> {
        let full = self.staging.join(dir);
        let children = match fs::read_dir(&full) {
            Ok(children) => children,
            Err(e) if is_gone(&e) => return Ok(()),
            Err(e) => return Err(UnpackError::io(full, e)),
        };
        let mut names = Vec::new();
        for child in children {
            names.push(child.map_err(|e| UnpackError::io(&full, e))?.file_name());
        }
        for name in names {
            let rel = dir.join(&name);
            // A directory this layer made only as a parent of its own entries is kept, as
            // they are.
            if !written.contains(&rel) && !written.has_under(&rel) {
                self.remove(&rel)?;
            } else if fs::symlink_metadata(self.staging.join(&rel)).is_ok_and(|m| m.is_dir()) {
                self.clear_lower(&rel, written)?;
            }
        }
        Ok(())
    }
}

/// Whether a lookup failed because nothing is there: no such name, or a parent that is not a
/// directory (a later layer made it a file, and whatever was below went with it).
fn is_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Whether a failed create found the name taken (`EEXIST`) or no parent (`ENOENT`): the cases
/// the long way through `prepare` handles.
fn in_the_way(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
    )
}

/// The process umask (read by setting it and putting it back: there is no getter before
/// Linux 4.7's /proc field, and this runs once per pull).
fn current_umask() -> u32 {
    use nix::sys::stat::{Mode, umask};
    let old = umask(Mode::from_bits_truncate(0o022));
    umask(old);
    old.bits()
}

/// Reads an entry's PAX records: its sparse file description, if any (`sparse.rs`), and
/// refuses, by name, what GNU tar refuses or what would come out silently wrong: malformed
/// records, and a global header that sets anything but a comment (it would apply to every
/// later entry, which our reader does not do).
fn check_pax<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    kind: EntryType,
) -> Result<Option<Sparse>, String> {
    let extensions = match entry.pax_extensions() {
        Ok(Some(extensions)) => extensions,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("unreadable PAX records: {e}")),
    };
    let mut sparse = Sparse::default();
    let mut is_sparse = false;
    for record in extensions {
        let record = record.map_err(|e| format!("malformed PAX record: {e}"))?;
        let key = record.key_bytes();
        if key.contains(&0) {
            // GNU tar and Go's reader refuse these too: no key holds a NUL.
            return Err("malformed PAX record: its key holds a NUL byte".into());
        }
        if sparse.record(key, record.value_bytes())? {
            is_sparse = true;
            continue;
        }
        if kind == EntryType::XGlobalHeader && key != b"comment" {
            return Err(format!(
                "PAX global header sets {:?} for every later entry: not supported",
                String::from_utf8_lossy(key)
            ));
        }
    }
    Ok(is_sparse.then_some(sparse))
}

/// A tar entry type as a person reads it.
fn entry_type_name(kind: EntryType) -> String {
    let byte = kind.as_byte();
    let name = match byte {
        b'D' => "GNU dumpdir",
        b'S' => "GNU sparse file",
        b'M' => "GNU multi-volume continuation",
        b'V' => "GNU volume label",
        b'N' => "GNU old long name",
        b'K' | b'L' => "GNU long name",
        b'x' | b'g' => "PAX header",
        _ => "unknown type",
    };
    if byte.is_ascii_graphic() {
        format!("{name} ('{}')", byte as char)
    } else {
        format!("{name} (byte {byte})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, EntryType)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_path(name).expect("name");
            header.set_entry_type(*kind);
            header.set_mode(0o755);
            header.set_mtime(1_000_000);
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, &[][..]).expect("append");
        }
        builder.into_inner().expect("tar")
    }

    fn tree_of(layers: &[Vec<u8>]) -> Result<Vec<String>, UnpackError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let mut applier = LayerApplier::new(root.clone(), root.clone());
        for layer in layers {
            applier.apply(&layer[..])?;
        }
        applier.finish()?;
        // Directories end with `/`: the listing says what each name is.
        let mut names: Vec<String> = crate::lazy::tests::walk(&root, false)
            .into_iter()
            .map(|(name, kind)| {
                if kind.starts_with("dir") {
                    format!("{name}/")
                } else {
                    name
                }
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Whiteouts and opaque markers below what a lower layer made a file have nothing to
    /// hide (umoci applies them so), rather than failing the pull with "Not a directory".
    #[test]
    fn whiteouts_below_a_file_hide_nothing() {
        let lower = layer(&[("a", EntryType::Regular)]);
        for marker in ["a/.wh.b", "a/.wh..wh..opq", "a/b/.wh.c"] {
            let upper = layer(&[(marker, EntryType::Regular)]);
            let tree = tree_of(&[lower.clone(), upper]).expect(marker);
            assert_eq!(tree, ["a"], "{marker}");
        }
    }

    /// A whiteout hides only what lower layers made (the OCI rule): what its own layer put
    /// below the name, before or after it, stays.
    #[test]
    fn a_whiteout_keeps_what_its_own_layer_made_below_the_name() {
        let lower = layer(&[("a/", EntryType::Directory), ("a/old", EntryType::Regular)]);
        let before = layer(&[("a/new", EntryType::Regular), (".wh.a", EntryType::Regular)]);
        let after = layer(&[(".wh.a", EntryType::Regular), ("a/new", EntryType::Regular)]);
        // Below a directory the layer made only as the parent of its own file.
        let deeper = layer(&[
            ("a/b/new", EntryType::Regular),
            (".wh.a", EntryType::Regular),
        ]);
        let opaque = layer(&[
            ("a/b/new", EntryType::Regular),
            ("a/.wh..wh..opq", EntryType::Regular),
        ]);
        for (upper, expected) in [
            (before, &["a/", "a/new"][..]),
            (after, &["a/", "a/new"]),
            (deeper, &["a/", "a/b/", "a/b/new"]),
            (opaque, &["a/", "a/b/", "a/b/new"]),
        ] {
            let tree = tree_of(&[lower.clone(), upper]).expect("tree");
            assert_eq!(tree, expected);
        }
    }

    /// A layer that makes a file of a lower layer's directory removes the directories below
    /// it too; setting their times at the end must not trip over them (it once failed the
    /// whole pull with "Not a directory").
    #[test]
    fn a_directory_made_a_file_by_a_later_layer_takes_its_subdirectories_with_it() {
        for skeleton in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path().to_path_buf();
            let mut applier = if skeleton {
                LayerApplier::for_skeletons(root.clone(), root.clone())
            } else {
                LayerApplier::new(root.clone(), root.clone())
            };
            let lower = layer(&[("a/", EntryType::Directory), ("a/b/", EntryType::Directory)]);
            applier.apply(&lower[..]).expect("lower layer");
            applier
                .apply(&layer(&[("a", EntryType::Regular)])[..])
                .expect("upper layer");
            applier.finish().expect("finish");
            let meta = fs::symlink_metadata(root.join("a")).expect("a");
            assert!(meta.is_file(), "skeleton {skeleton}: a is a file");
            assert_eq!(meta.mtime(), 1_000_000);
        }
    }
}
