use super::fill::swap_in;
use super::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::AtomicUsize;

use crate::frames::{FrameIndex, RangeSource};
use crate::trace;

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
    ok(lower.append_pax_extensions([("path", &b"usr/lib/named-by-pax"[..]), ("comment", b"kept")]));
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
    /// How long each read takes, in ms (a store's round trip).
    pause_ms: std::sync::atomic::AtomicU64,
    /// Reads under way, and the most there were at once.
    reading: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl Memory {
    fn new(blob: Vec<u8>, broken: bool) -> Arc<Self> {
        Arc::new(Self {
            blob,
            reads: AtomicUsize::new(0),
            broken,
            watched: Mutex::default(),
            listings: Mutex::default(),
            pause_ms: std::sync::atomic::AtomicU64::new(0),
            reading: AtomicUsize::new(0),
            most_at_once: AtomicUsize::new(0),
        })
    }
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
        let at_once = self.reading.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(at_once, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(
            self.pause_ms.load(Ordering::Relaxed),
        ));
        self.reading.fetch_sub(1, Ordering::SeqCst);
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
    let memory = Memory::new(blob, broken);
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

/// Starts `tree`'s trace afresh, stored into the returned list (each trace stored, in turn).
fn learn_into_memory(tree: &mut LazyTree) -> Arc<Mutex<Vec<Vec<u8>>>> {
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
    stored
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
    let stored = learn_into_memory(&mut tree);
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
fn files_fetched_unasked_and_read_since_join_the_trace_in_the_order_read() {
    let tars = layers();
    let dir = ok(tempfile::tempdir());
    let (mut tree, _) = lazy_tree(dir.path(), &tars, false);
    let stored = learn_into_memory(&mut tree);
    let at = |name: &str| place(&tree.files.files[Path::new(name)]);
    // The background fill brings three files; a command asks for a fourth, then reads
    // two of the three, which it finds whole and does not ask for.
    for name in ["usr/lib/f3", "usr/lib/f4", "usr/lib/f8"] {
        assert!(matches!(
            ok(tree.fill_unrecorded(Path::new(name))),
            Filled::Fetched(_)
        ));
    }
    ok(tree.fill(Path::new("usr/lib/f9")));
    for name in ["usr/lib/f8", "usr/lib/f3"] {
        ok(fs::read(rootfs(&dir).join(name)));
        // Apart in the kernel's coarse clock, so that the order read is seen.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(ok(tree.save_trace()), 3);
    let saved = ok(stored.lock().map_err(|_| "poisoned"))[0].clone();
    assert_eq!(
        trace::parse(&saved),
        vec![at("usr/lib/f9"), at("usr/lib/f8"), at("usr/lib/f3")]
    );
    // Read later, the third joins the next trace stored; the others are not added twice.
    ok(fs::read(rootfs(&dir).join("usr/lib/f4")));
    ok(tree.fill(Path::new("usr/lib/f2")));
    assert_eq!(ok(tree.save_trace()), 5);
    let saved = ok(stored.lock().map_err(|_| "poisoned"))[1].clone();
    assert_eq!(
        trace::parse(&saved),
        vec![
            at("usr/lib/f9"),
            at("usr/lib/f8"),
            at("usr/lib/f3"),
            at("usr/lib/f2"),
            at("usr/lib/f4")
        ]
    );
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
    f2_is_still_a_whole_placeholder(&dir);
}

/// `usr/lib/f2` is the placeholder the skeleton made, and nothing was left aside.
fn f2_is_still_a_whole_placeholder(dir: &tempfile::TempDir) {
    let meta = ok(fs::metadata(rootfs(dir).join("usr/lib/f2")));
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
    f2_is_still_a_whole_placeholder(&dir);
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

/// A directory the command renames takes its placeholders along (a shell's `mv`, pip's
/// stash of a package it replaces): asked for by inode, as the shim asks, or by path, as
/// the fetcher's program requests do, a placeholder is filled where it went, its hard link
/// there too; the background fill fills the rest there, and the renamed directory holds the
/// eager tree's bytes, modes, times and links.
#[test]
fn placeholders_in_a_renamed_directory_fill_where_they_went() {
    let tars = layers();
    let (eager, lazy) = (ok(tempfile::tempdir()), ok(tempfile::tempdir()));
    eager_tree(eager.path(), &tars);
    let (tree, _memories) = lazy_tree(lazy.path(), &tars, false);
    let root = rootfs(&lazy);
    ok(fs::rename(root.join("usr/lib"), root.join("usr/lib-moved")));
    let moved_mtime = ok(fs::metadata(root.join("usr/lib-moved"))).mtime();
    let f3 = root.join("usr/lib-moved/f3");
    let meta = ok(fs::metadata(&f3));
    assert_eq!((meta.len(), meta.blocks()), (70_000, 0), "a placeholder");
    assert_eq!(
        ok(tree.fill_inode(meta.dev(), meta.ino())),
        Filled::Fetched(70_000)
    );
    assert_eq!(
        ok(fs::read(&f3)),
        ok(fs::read(eager.path().join("usr/lib/f3")))
    );
    let hard = ok(fs::metadata(root.join("usr/lib-moved/hard")));
    assert_eq!(
        hard.ino(),
        ok(fs::metadata(&f3)).ino(),
        "its hard link, filled with it"
    );
    assert_eq!(
        ok(tree.fill_path(&root.join("usr/lib-moved/f8"))),
        Filled::Fetched(70_000)
    );
    ok(tree.fill_all());
    assert!(tree.is_complete());
    // An absolute link names its target by host path: walked from the moved directory, it
    // reads differently (and dangles, as it would under chroot).
    let without_abs = |dir: PathBuf| {
        let mut found = walk(&dir, true);
        assert!(found.remove("abs").is_some());
        found
    };
    assert_eq!(
        without_abs(root.join("usr/lib-moved")),
        without_abs(eager.path().join("usr/lib"))
    );
    assert_eq!(
        ok(fs::metadata(root.join("usr/lib-moved"))).mtime(),
        moved_mtime,
        "the renamed directory keeps its time"
    );
}

/// The walks of the whole tree `tree` made so far.
fn walks(tree: &LazyTree) -> usize {
    tree.walks.load(Ordering::Relaxed)
}

#[test]
fn a_placeholder_another_caller_filled_is_not_looked_for_in_the_tree() {
    let tars = layers();
    let dir = ok(tempfile::tempdir());
    let (tree, _memories) = lazy_tree(dir.path(), &tars, false);
    let f8 = rootfs(&dir).join("usr/lib/f8");
    let placeholder = ok(fs::metadata(&f8));
    // The shim saw the placeholder and asks by its inode; the background fill came first.
    assert_eq!(
        ok(tree.fill(Path::new("usr/lib/f8"))),
        Filled::Fetched(70_000)
    );
    assert_eq!(
        ok(tree.fill_inode(placeholder.dev(), placeholder.ino())),
        Filled::Present
    );
    assert_eq!(walks(&tree), 0);
}

#[test]
fn a_whole_file_with_a_placeholders_inode_number_is_not_looked_for_in_the_tree() {
    // What ext4 does when it gives a filled placeholder's inode number to a new file: a whole
    // file whose number the tree knows, away from that placeholder's name. Made here without
    // relying on the filesystem's choice: the placeholder itself written and moved.
    let tars = layers();
    let dir = ok(tempfile::tempdir());
    let (tree, _memories) = lazy_tree(dir.path(), &tars, false);
    let root = rootfs(&dir);
    ok(fs::write(
        root.join("usr/lib/f8"),
        b"the command's own bytes",
    ));
    ok(fs::rename(root.join("usr/lib/f8"), root.join("opt/mine")));
    assert_eq!(ok(tree.fill_path(&root.join("opt/mine"))), Filled::Present);
    assert_eq!(walks(&tree), 0);
    assert_eq!(
        ok(fs::read(root.join("opt/mine"))),
        b"the command's own bytes"
    );
    // A placeholder that did move is still found, by one walk.
    ok(fs::rename(root.join("usr/lib/f3"), root.join("opt/f3")));
    assert_eq!(
        ok(tree.fill_path(&root.join("opt/f3"))),
        Filled::Fetched(70_000)
    );
    assert_eq!(walks(&tree), 1);
}

#[test]
fn a_tree_whose_placeholders_all_filled_at_their_names_is_not_walked() {
    let tars = layers();
    let dir = ok(tempfile::tempdir());
    let (tree, _memories) = lazy_tree(dir.path(), &tars, false);
    ok(tree.fill(Path::new("usr/lib/f3")));
    ok(tree.fill_all());
    assert!(tree.is_complete());
    assert_eq!(walks(&tree), 0);
    // One the command removed may have gone anywhere: the tree is walked for it.
    let other = ok(tempfile::tempdir());
    let (tree, _memories) = lazy_tree(other.path(), &tars, false);
    ok(fs::remove_file(rootfs(&other).join("usr/lib/f8")));
    ok(tree.fill_all());
    assert!(tree.is_complete());
    assert_eq!(walks(&tree), 1);
}

#[test]
fn the_background_fill_leaves_the_room_kept_for_the_commands() {
    let tars = layers();
    let dir = ok(tempfile::tempdir());
    let (mut tree, _memories) = lazy_tree(dir.path(), &tars, false);
    let root = rootfs(&dir);
    // More than the filesystem has free: nothing nobody asked for may be fetched.
    let stats = ok(nix::sys::statvfs::statvfs(&root));
    let free = stats.blocks_available() * stats.fragment_size();
    tree.keep_free_for_commands(free.saturating_mul(2));
    let end = ok(tree.fill_rest());
    assert!(
        matches!(end, FillEnd::SpaceKept { bytes: 0, .. }),
        "{end:?}"
    );
    assert!(!tree.is_complete());
    let huge = ok(fs::metadata(root.join("usr/lib/huge.so")));
    assert_eq!(
        (huge.len(), huge.blocks()),
        (9 << 20, 0),
        "still a placeholder"
    );
    // A file a command asks for comes all the same (and fails with no space if it does not
    // fit: its program needs it).
    assert_eq!(
        ok(tree.fill(Path::new("usr/lib/huge.so"))),
        Filled::Fetched(9 << 20)
    );
    // A static program's wait for the whole tree fills it whole.
    assert!(ok(tree.fill_all()) > 0);
    assert!(tree.is_complete());
    // With room enough, the background fill completes the tree.
    let other = ok(tempfile::tempdir());
    let (mut tree, _memories) = lazy_tree(other.path(), &tars, false);
    tree.keep_free_for_commands(1 << 20);
    assert!(matches!(ok(tree.fill_rest()), FillEnd::Complete { bytes } if bytes > 9 << 20));
    assert!(tree.is_complete());
}

#[test]
fn a_file_of_several_frames_reads_each_once_ahead_and_gives_its_slots_back() {
    let tars = layers();
    let dir = ok(tempfile::tempdir());
    let (tree, memories) = lazy_tree(dir.path(), &tars, false);
    let name = Path::new("usr/lib/huge.so");
    assert_eq!(ok(tree.fill(name)), Filled::Fetched(9 << 20));
    assert_eq!(ok(fs::read(rootfs(&dir).join(name))), bytes(3, 9 << 20));
    let reads = memories[0].reads.load(Ordering::Relaxed);
    assert!((2..=3).contains(&reads), "{reads} ranged reads");
    assert_eq!(tree.reading_ahead.load(Ordering::Relaxed), 0);
    // Reads that fail: the error is the file's, and no slot is kept.
    let other = ok(tempfile::tempdir());
    let (tree, _memories) = lazy_tree(other.path(), &tars, true);
    let err = tree.fill(name).map(|_| ()).unwrap_err().to_string();
    assert!(err.starts_with("cannot fetch /usr/lib/huge.so: "), "{err}");
    assert_eq!(tree.reading_ahead.load(Ordering::Relaxed), 0);
    let meta = ok(fs::metadata(rootfs(&other).join(name)));
    assert_eq!(
        (meta.len(), meta.blocks()),
        (9 << 20, 0),
        "still a placeholder"
    );
}

/// The lower layer's `usr/lib/fN` files that lie in one frame each, by that frame.
fn single_frame_files(tree: &LazyTree) -> BTreeMap<usize, Vec<(u64, u64)>> {
    let mut by_frame: BTreeMap<usize, Vec<(u64, u64)>> = BTreeMap::new();
    for n in 0..40u64 {
        let Some(placeholder) = tree.files.files.get(Path::new(&format!("usr/lib/f{n}"))) else {
            continue; // kept in the skeleton: no fetch
        };
        let starts = &tree.starts[placeholder.layer];
        let first = frame_holding(starts, placeholder.offset);
        let last = frame_holding(starts, placeholder.offset + placeholder.size - 1);
        if placeholder.layer == 0 && first == last {
            by_frame
                .entry(first)
                .or_default()
                .push((n, placeholder.size));
        }
    }
    by_frame
}

#[test]
fn files_filled_together_are_fetched_at_once() {
    // A frame closes at the first entry past 4 MiB: one frame for each file.
    let sizes = [(1, 9 << 19), (2, 9 << 19), (3, 1 << 19)];
    let mut layer = tar::Builder::new(Vec::new());
    for (n, size) in sizes {
        file(
            &mut layer,
            &format!("lib{n}.so"),
            &bytes(n, size),
            0o755,
            1_500_000_000,
        );
    }
    let dir = ok(tempfile::tempdir());
    let (tree, memories) = lazy_tree(dir.path(), &[ok(layer.into_inner())], false);
    assert_eq!(tree.starts[0].len(), sizes.len(), "one frame each");
    // Each read is slow enough that fills one after the other would never overlap.
    memories[0].pause_ms.store(200, Ordering::Relaxed);
    let hosts: Vec<PathBuf> = sizes
        .iter()
        .map(|(n, _)| rootfs(&dir).join(format!("lib{n}.so")))
        .collect();
    ok(tree.fill_paths(&hosts));
    assert_eq!(memories[0].most_at_once.load(Ordering::SeqCst), sizes.len());
    for ((n, size), host) in sizes.iter().zip(&hosts) {
        assert_eq!(ok(fs::read(host)), bytes(*n, *size), "lib{n}.so");
    }
}

#[test]
fn files_filled_together_read_the_frame_they_share_once() {
    let tars = layers();
    let dir = ok(tempfile::tempdir());
    let (tree, memories) = lazy_tree(dir.path(), &tars, false);
    let Some(sharing) = single_frame_files(&tree).into_values().max_by_key(Vec::len) else {
        panic!("no file of the test layer lies in one frame");
    };
    assert!(
        sharing.len() >= 4,
        "the test layer has files sharing a frame: {sharing:?}"
    );
    // Slow reads: every fill asks for the frame before the first read ends.
    memories[0].pause_ms.store(200, Ordering::Relaxed);
    let hosts: Vec<PathBuf> = sharing
        .iter()
        .map(|(n, _)| rootfs(&dir).join(format!("usr/lib/f{n}")))
        .collect();
    ok(tree.fill_paths(&hosts));
    assert_eq!(memories[0].reads.load(Ordering::Relaxed), 1);
    for ((n, size), host) in sharing.iter().zip(&hosts) {
        assert_eq!(ok(fs::read(host)), bytes(*n, *size), "usr/lib/f{n}");
    }
    // A read that fails lets the fills waiting for its frame go on (each reads it in turn,
    // and fails), and no new fill starts: the files stay placeholders.
    let other = ok(tempfile::tempdir());
    let (tree, memories) = lazy_tree(other.path(), &tars, true);
    memories[0].pause_ms.store(50, Ordering::Relaxed);
    let hosts: Vec<PathBuf> = sharing
        .iter()
        .map(|(n, _)| rootfs(&other).join(format!("usr/lib/f{n}")))
        .collect();
    let err = tree.fill_paths(&hosts).map(drop).unwrap_err().to_string();
    assert!(err.contains("connection reset by peer"), "{err}");
    let attempts = memories[0].reads.load(Ordering::Relaxed) as u32;
    assert_eq!(attempts % frames::ATTEMPTS, 0, "{attempts} reads");
    assert!((1..=FILL_THREADS as u32).contains(&(attempts / frames::ATTEMPTS)));
    for host in &hosts {
        assert_eq!(
            ok(fs::metadata(host)).blocks(),
            0,
            "{} a placeholder",
            host.display()
        );
    }
}

/// The frames of `framed` as layers of a tree (or a preload) reading `sources`.
fn framed_layers(framed: &[Framed], sources: &[Arc<Memory>]) -> Vec<FramedLayer> {
    framed
        .iter()
        .zip(sources)
        .map(|(f, source)| FramedLayer {
            index: f.index.clone(),
            source: Arc::clone(source) as Arc<dyn RangeSource>,
            codec: crate::frames::FrameCodec::Zstd,
        })
        .collect()
}

fn memory(blob: Vec<u8>) -> Arc<Memory> {
    Memory::new(blob, false)
}

fn settled(preload: &Preload) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !preload.is_idle() {
        assert!(
            std::time::Instant::now() < deadline,
            "the preload never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A tree of `framed` in `dir`, reading `sources`, that takes its frames from `preload`.
fn tree_with_preload(
    dir: &Path,
    framed: &[Framed],
    sources: &[Arc<Memory>],
    preload: Arc<Preload>,
) -> LazyTree {
    let (root, aside) = (dir.join("rootfs"), dir.join("aside"));
    ok(fs::create_dir(&root));
    let skeletons: Vec<&Vec<u8>> = framed.iter().map(|f| &f.skeleton).collect();
    let (mut tree, _) = ok(LazyTree::build(
        root.clone(),
        root,
        aside,
        framed_layers(framed, sources),
        &skeletons,
    ));
    tree.use_preload(preload);
    tree
}

/// The test layers, a directory with an `aside/` for a preload's file, the layers framed in
/// memory and the sources their frames are read from.
type FramedInADir = (
    [Vec<u8>; 2],
    tempfile::TempDir,
    Vec<Framed>,
    Vec<Arc<Memory>>,
);

/// See [`FramedInADir`].
fn framed_in_a_dir() -> FramedInADir {
    let tars = layers();
    let dir = ok(tempfile::tempdir());
    ok(fs::create_dir(dir.path().join("aside")));
    let framed: Vec<Framed> = tars.iter().map(|t| framed(t, false)).collect();
    let sources = framed.iter().map(|f| Arc::clone(&f.memory)).collect();
    (tars, dir, framed, sources)
}

#[test]
fn preload_frames_fetched_while_the_tree_is_built_are_not_fetched_again() {
    let (tars, dir, framed, sources) = framed_in_a_dir();
    let frames: usize = framed.iter().map(|f| f.index.frames.len()).sum();
    assert!(frames >= 4, "{frames} frames");
    let preload = ok(Preload::new(
        &framed_layers(&framed, &sources),
        &dir.path().join("aside"),
        PRELOAD_BYTES,
    ));
    // No trace: every frame, in the layers' order (the background fill's).
    let order = preload.order(&[], &[] as &[Vec<u8>]);
    assert_eq!(order.len(), frames);
    assert_eq!(order[0], (0, 0));
    preload.start(order);
    settled(&preload);
    assert_eq!(preload.waiting(), frames);
    let fetched = |sources: &[Arc<Memory>]| -> usize {
        sources
            .iter()
            .map(|m| m.reads.load(Ordering::Relaxed))
            .sum()
    };
    assert_eq!(fetched(&sources), frames);
    let tree = tree_with_preload(dir.path(), &framed, &sources, Arc::clone(&preload));
    ok(tree.fill_all());
    assert_eq!(
        fetched(&sources),
        frames,
        "no frame read from the store twice"
    );
    assert!(preload.taken() > 0);
    assert_eq!(
        preload.waiting(),
        0,
        "the tree whole, the frames left are given back"
    );
    let eager = ok(tempfile::tempdir());
    eager_tree(eager.path(), &tars);
    assert_eq!(walk(&rootfs(&dir), true), walk(eager.path(), true));
}

#[test]
fn preload_a_frame_fetched_ahead_that_does_not_check_is_fetched_again() {
    let (_, dir, framed, good) = framed_in_a_dir();
    // The preload reads a store whose bytes were damaged on the way.
    let damaged: Vec<Arc<Memory>> = framed
        .iter()
        .map(|f| memory(f.memory.blob.iter().map(|b| b ^ 0x5a).collect()))
        .collect();
    let preload = ok(Preload::new(
        &framed_layers(&framed, &damaged),
        &dir.path().join("aside"),
        PRELOAD_BYTES,
    ));
    preload.start(preload.order(&[], &[] as &[Vec<u8>]));
    settled(&preload);
    let tree = tree_with_preload(dir.path(), &framed, &good, Arc::clone(&preload));
    let name = Path::new("usr/lib/f9");
    assert!(matches!(ok(tree.fill(name)), Filled::Fetched(_)));
    assert!(ok(fs::read(rootfs(&dir).join(name))) == bytes(9, 300_000));
    assert_eq!(preload.taken(), 1);
    assert!(
        good[0].reads.load(Ordering::Relaxed) >= 1,
        "read again from the store"
    );
}

#[test]
fn preload_follows_the_trace_and_stops_at_its_budget_or_when_told() {
    let tars = layers();
    let dir = ok(tempfile::tempdir());
    let (tree, _) = lazy_tree(dir.path(), &tars, false);
    let framed: Vec<Framed> = tars.iter().map(|t| framed(t, false)).collect();
    let sources: Vec<Arc<Memory>> = framed.iter().map(|f| Arc::clone(&f.memory)).collect();
    let layers = framed_layers(&framed, &sources);
    let file = |name: &str| &tree.files.files[Path::new(name)];
    let (f5, f9, huge) = (
        file("usr/lib/f5"),
        file("usr/lib/f9"),
        file("usr/lib/huge.so"),
    );
    let preload = ok(Preload::new(
        &layers,
        &dir.path().join("aside"),
        PRELOAD_BYTES,
    ));
    // The frames of each file, in the trace's order, each once: huge.so's all of them (its
    // size from the skeleton); without the skeleton, each file's first.
    let trace = [place(f5), place(huge), place(f9), place(huge)];
    let skeletons: Vec<&Vec<u8>> = framed.iter().map(|f| &f.skeleton).collect();
    let frames_of = |p: &Placeholder, whole: bool| {
        let (layer, first) = frame_of(&tree.starts, p);
        let end = Placeholder {
            offset: p.offset + p.size - 1,
            ..*p
        };
        let last = if whole {
            frame_of(&tree.starts, &end).1
        } else {
            first
        };
        (first..=last).map(move |frame| (layer, frame))
    };
    for whole in [true, false] {
        let mut expected = vec![];
        for frame in [f5, huge, f9].into_iter().flat_map(|p| frames_of(p, whole)) {
            if !expected.contains(&frame) {
                expected.push(frame);
            }
        }
        let order = if whole {
            preload.order(&trace, &skeletons)
        } else {
            preload.order(&trace, &[] as &[Vec<u8>])
        };
        assert_eq!(order, expected, "whole files: {whole}");
    }
    assert!(
        frames_of(huge, true).count() >= 2,
        "huge.so lies in several frames"
    );
    let reads = || {
        sources
            .iter()
            .map(|m| m.reads.load(Ordering::Relaxed))
            .sum::<usize>()
    };
    // A budget of one frame: one frame.
    let first = framed[0].index.frames[0].size;
    let small = ok(Preload::new(&layers, &dir.path().join("aside"), first));
    small.start(small.order(&[], &[] as &[Vec<u8>]));
    settled(&small);
    assert_eq!((small.waiting(), reads()), (1, 1));
    // Told to stop before it began: nothing.
    let stopped = ok(Preload::new(
        &layers,
        &dir.path().join("aside"),
        PRELOAD_BYTES,
    ));
    stopped.stop();
    stopped.start(stopped.order(&[], &[] as &[Vec<u8>]));
    settled(&stopped);
    assert_eq!((stopped.waiting(), reads()), (0, 1));
}
