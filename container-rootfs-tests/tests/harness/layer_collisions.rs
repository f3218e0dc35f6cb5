//! Layers whose names collide, as real images' layers do (a file over a lower directory or
//! symlink, a directory over a file, whiteouts and opaque markers before and after the
//! entries of their own layer, hard links, links that climb), generated at random from a
//! fixed seed and applied both by our pull and by umoci, the reference unpacker: the trees
//! must be the same, or our pull refuses by one of the rules umoci does not have. Each image
//! both unpack is also staged as `deployer stage` stages it and built lazily from its
//! skeletons (the finisher's threads making the files), then filled: the same tree again.
//! Case numbers are stable, so a failure is reproduced by its number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use common::framed::{framed_layout, lazy_layers};
use common::*;

/// Names every layer draws from: few, so that they collide.
const NAMES: &[&str] = &["a", "a/b", "a/b/c", "a/d", "e", "e/f", "a/b/g", "h"];
const WHITEOUTS: &[&str] = &[
    "a/.wh.b",
    ".wh.a",
    "a/.wh..wh..opq",
    "e/.wh.f",
    ".wh.h",
    "a/b/.wh..wh..opq",
];
const TARGETS: &[&str] = &["a", "a/b", "e", "h", "a/b/c", "e/f"];
const CASES: u64 = 500;

/// What our pull refuses on purpose where umoci goes ahead (docs/limits.md): writing below a
/// symlink (umoci resolves it inside the rootfs; we refuse rather than follow any link while
/// unpacking), and a directory entry over a symlink of its own layer (ambiguous).
const OUR_REFUSALS: &[&str] = &[
    "is a symlink",
    "lies below a symlink",
    "replaces a symlink of the same layer",
];

/// xorshift64*: a few lines, and the same cases on every machine.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// One random layer, and a listing of it for failure messages.
fn layer(rng: &mut Rng, number: usize, listing: &mut String) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for _ in 0..1 + rng.below(9) {
        let mut header = tar::Header::new_gnu();
        let (name, kind, link, data) = if rng.below(7) == 0 {
            (rng.pick(WHITEOUTS), tar::EntryType::Regular, None, vec![])
        } else {
            let name = rng.pick(NAMES);
            match rng.below(12) {
                0..6 => {
                    // Over a skeleton's inline bound (1 KiB) one time in three: placeholders.
                    let data = vec![rng.below(256) as u8; rng.below(3000)];
                    (name, tar::EntryType::Regular, None, data)
                }
                6..9 => (name, tar::EntryType::Directory, None, vec![]),
                9 | 10 => {
                    let target = rng.pick(TARGETS);
                    let target = match rng.below(3) {
                        0 => format!("../{target}"),
                        1 => format!("/{target}"),
                        _ => target.to_owned(),
                    };
                    (name, tar::EntryType::Symlink, Some(target), vec![])
                }
                _ => (
                    name,
                    tar::EntryType::Link,
                    Some(rng.pick(TARGETS).to_owned()),
                    vec![],
                ),
            }
        };
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = &link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        let mode = [0o644, 0o755, 0o600, 0o700, 0o555][rng.below(5)];
        header.set_mode(mode);
        header.set_mtime(1_000_000 + rng.below(1000) as u64);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, &data[..]).unwrap();
        listing.push_str(&format!(
            "  layer {number}: {name} {kind:?} {} {mode:o} {} bytes\n",
            link.unwrap_or_default(),
            data.len()
        ));
    }
    builder.into_inner().unwrap()
}

/// An OCI layout of `layers` (uncompressed tars) tagged `t`, with the config's `diff_ids`
/// that umoci checks.
fn image(dir: &Path, layers: &[Vec<u8>]) {
    use sha2::{Digest, Sha256};
    let put = |data: &[u8]| {
        let hex = hex::encode(Sha256::digest(data));
        fs::write(dir.join("blobs/sha256").join(&hex), data).unwrap();
        serde_json::json!({"digest": format!("sha256:{hex}"), "size": data.len()})
    };
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", hex::encode(Sha256::digest(l))))
        .collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let mut config = put(&serde_json::to_vec(&config).unwrap());
    config["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let mut layer = put(l);
            layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
            layer
        })
        .collect();
    let manifest = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": layers});
    let mut manifest = put(&serde_json::to_vec(&manifest).unwrap());
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    manifest["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "t"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A symlink target as it resolves lexically from `link`'s directory: one that climbs above
/// the root stops there (as in a chroot), which our pull stores as the absolute path.
fn resolved_target(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_owned();
    }
    let mut at: Vec<&str> = Path::new(link)
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    let mut climbed = false;
    for part in Path::new(target).components() {
        match part {
            Component::ParentDir => climbed |= at.pop().is_none(),
            Component::Normal(name) => at.push(name.to_str().unwrap_or("?")),
            _ => {}
        }
    }
    if climbed {
        format!("/{}", at.join("/"))
    } else {
        target.to_owned()
    }
}

/// The image of `layout` staged with frames and skeletons, built lazily in `dir` and filled.
fn lazy_tree_filled(layout: &Path, dir: &Path) -> Result<PathBuf, String> {
    let framed = framed_layout(layout, "t");
    let (layers, skeletons) = lazy_layers(framed.path());
    let (root, aside) = (dir.join("lazy"), dir.join("aside"));
    fs::create_dir(&root).unwrap();
    fs::create_dir(&aside).unwrap();
    let (tree, _) =
        scar_image::lazy::LazyTree::build(root.clone(), root.clone(), aside, layers, &skeletons)
            .map_err(|e| e.to_string())?;
    tree.fill_all().map_err(|e| e.to_string())?;
    Ok(root)
}

/// Types, contents, link targets (resolved), modes (a directory's owner bits always rwx in
/// ours: an unprivileged user must go through it) and file mtimes of a tree.
fn described(root: &Path, prefix: Option<&Path>, owner_rwx: bool) -> BTreeMap<String, String> {
    let modes = attrs(root);
    tree(root, prefix)
        .into_iter()
        .map(|(name, node)| {
            let (mode, mtime) = modes.get(&name).copied().unwrap_or_default();
            let text = match node {
                Node::Dir if owner_rwx => format!("dir {:o}", mode | 0o700),
                Node::Dir => format!("dir {mode:o}"),
                Node::Symlink { target } => format!("link {}", resolved_target(&name, &target)),
                other => format!("{other:?} {mode:o} {mtime}"),
            };
            (name, text)
        })
        .collect()
}

#[test]
#[ignore = "needs scripts/setup.sh (umoci): run `make test`"]
fn colliding_layers_give_umocis_tree_or_a_named_refusal() {
    let mut rng = Rng(0x5ca7_c011_1de5_0001);
    let mut failures = Vec::new();
    let (mut same, mut refused, mut umoci_refused, mut both_refused) = (0, 0, 0, 0);
    for case in 0..CASES {
        let mut listing = String::new();
        let layers: Vec<Vec<u8>> = (0..1 + rng.below(3))
            .map(|n| layer(&mut rng, n, &mut listing))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("image");
        image(&layout, &layers);
        let bundle = dir.path().join("bundle");
        let umoci = Command::new("umoci")
            .args(["--log", "error", "unpack", "--rootless", "--image"])
            .arg(format!("{}:t", layout.display()))
            .arg(&bundle)
            .output()
            .expect("umoci (scripts/setup.sh installs it)");
        let ours = pull(
            &format!("oci:{}:t", layout.display()),
            &dir.path().join("cache"),
        );
        match (ours, umoci.status.success()) {
            (Ok(pulled), true) => {
                let rootfs: PathBuf = pulled.image.rootfs.clone();
                let ours = described(&rootfs, Some(&rootfs), false);
                let theirs = described(&bundle.join("rootfs"), None, true);
                let lazy = lazy_tree_filled(&layout, dir.path())
                    .map(|root| described(&root, Some(&root), false));
                if lazy.as_ref() != Ok(&theirs) {
                    failures.push(format!(
                        "case {case}: the lazy tree differs: {lazy:?}\n{listing}"
                    ));
                }
                if ours == theirs {
                    same += 1;
                } else {
                    let differ: Vec<String> = ours
                        .keys()
                        .chain(theirs.keys())
                        .filter(|k| ours.get(*k) != theirs.get(*k))
                        .map(|k| {
                            format!("    {k}: ours {:?}, umoci {:?}", ours.get(k), theirs.get(k))
                        })
                        .collect();
                    failures.push(format!(
                        "case {case}: trees differ\n{listing}{}",
                        differ.join("\n")
                    ));
                }
            }
            (Err(e), true) => {
                let e = e.to_string();
                if OUR_REFUSALS.iter().any(|r| e.contains(r)) {
                    refused += 1;
                } else {
                    failures.push(format!(
                        "case {case}: umoci unpacks it, ours fails: {e}\n{listing}"
                    ));
                }
            }
            (Ok(_), false) => umoci_refused += 1,
            (Err(_), false) => both_refused += 1,
        }
    }
    eprintln!(
        "{CASES} images: {same} the same tree, {refused} refused by our rules only, \
         {umoci_refused} refused by umoci only, {both_refused} by both"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        same >= 40,
        "too few images compared ({same}): the generator drifted"
    );
}
