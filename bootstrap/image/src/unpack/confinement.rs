//! The rootfs's promise, proven on generated layers: whatever sequence of directories,
//! files, symlinks (with `.`, `..` and absolute targets), hard links and whiteouts the layers
//! hold, every path of the tree a pull commits, followed through its links by the kernel,
//! stays inside the rootfs.
//!
//! The rootfs sits three levels down in a sandbox where every name the generator uses also
//! exists as a directory outside it, so a link that escapes resolves (and is caught) instead
//! of dangling.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::LayerApplier;

const NAMES: [&str; 3] = ["a", "q", "a/b"];

#[derive(Debug, Clone)]
enum Item {
    Dir(&'static str),
    File(&'static str),
    Symlink(&'static str, String),
    HardLink(&'static str, &'static str),
    Whiteout(&'static str),
}

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&NAMES[..])
}

fn target() -> impl Strategy<Value = String> {
    let part = prop::sample::select(&["a", "b", "q", ".", "..", "x"][..]);
    (any::<bool>(), prop::collection::vec(part, 1..7)).prop_map(|(absolute, parts)| {
        format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"))
    })
}

fn item() -> impl Strategy<Value = Item> {
    // Symlinks are what can escape: most items are symlinks.
    prop_oneof![
        1 => name().prop_map(Item::Dir),
        1 => name().prop_map(Item::File),
        6 => (name(), target()).prop_map(|(n, t)| Item::Symlink(n, t)),
        1 => (name(), name()).prop_map(|(n, t)| Item::HardLink(n, t)),
        1 => name().prop_map(Item::Whiteout),
    ]
}

fn tar_of(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        let (path, kind, link) = match item {
            Item::Dir(n) => ((*n).to_owned(), tar::EntryType::Directory, None),
            Item::File(n) => ((*n).to_owned(), tar::EntryType::Regular, None),
            Item::Symlink(n, t) => ((*n).to_owned(), tar::EntryType::Symlink, Some(t.clone())),
            Item::HardLink(n, t) => ((*n).to_owned(), tar::EntryType::Link, Some((*t).to_owned())),
            Item::Whiteout(n) => {
                let p = Path::new(n);
                let whiteout = format!(
                    ".wh.{}",
                    p.file_name().unwrap_or_default().to_string_lossy()
                );
                let path = p
                    .parent()
                    .map_or(PathBuf::from(&whiteout), |d| d.join(&whiteout));
                (path.display().to_string(), tar::EntryType::Regular, None)
            }
        };
        let bytes = path.as_bytes();
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        if let Some(link) = link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_cksum();
        let _ = builder.append(&header, &b""[..]);
    }
    builder.into_inner().unwrap_or_default()
}

/// Every path below `dir`, not following symlinks.
fn paths(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            paths(&path, out);
        }
    }
}

fn check(layers: &[Vec<Item>]) -> Result<(), TestCaseError> {
    let sandbox = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut level = sandbox.path().to_path_buf();
    for depth in 0..4 {
        if depth > 0 {
            level = level.join(format!("r{depth}"));
        }
        for name in ["a", "b", "q", "x", "a/b", "q/a"] {
            let _ = std::fs::create_dir_all(level.join(name));
        }
    }
    let rootfs = level.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut applier = LayerApplier::new(rootfs.clone(), rootfs.clone());
    for layer in layers {
        if applier.apply(&tar_of(layer)[..]).is_err() {
            // A refused layer's staging tree is deleted, never committed (the hostile-layer
            // tests check that): the promise is about the trees a pull commits.
            return Ok(());
        }
    }
    if applier.finish().is_err() {
        return Ok(());
    }
    let mut all = Vec::new();
    paths(&rootfs, &mut all);
    for path in all {
        for probe in [path.clone(), path.join("a"), path.join("q")] {
            if let Ok(real) = probe.canonicalize() {
                prop_assert!(
                    real.starts_with(&rootfs),
                    "{} resolves to {} outside the rootfs (layers {layers:?})",
                    probe.display(),
                    real.display()
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn every_path_followed_through_its_links_stays_inside(
        layers in prop::collection::vec(prop::collection::vec(item(), 1..8), 1..3)
    ) {
        check(&layers)?;
    }
}

#[test]
fn the_known_escapes_are_among_what_the_property_catches() {
    for escape in ["q/q/q/q/../../../../x", "q/../x", "q/a/../../x"] {
        let chain = vec![vec![
            Item::Symlink("q", ".".into()),
            Item::Symlink("a", escape.into()),
        ]];
        check(&chain).unwrap();
    }
    // Found by the property: a hard link moves a relative symlink one level up.
    let moved = vec![vec![
        Item::Symlink("a/b", "..".into()),
        Item::HardLink("q", "a/b"),
    ]];
    check(&moved).unwrap();
}
