//! The test kit both suites stand on, compiled once: where the harness lives and what it
//! serves ([`images`], the registries, the AWS stand-ins), pulling and comparing trees with
//! the reference unpacks, running commands as Lambda does against a real chroot
//! ([`lambda`]), the in-process Runtime API peer ([`runtime_api`]), and driving the deployer
//! against moto and ministack ([`stand`]).
//!
//! Helpers assert instead of returning errors: a failed helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod framed;
pub mod images;
pub mod lambda;
pub mod probe;
pub mod runtime_api;
pub mod stand;

pub use stand::{MINISTACK, MOTO, Ran, Stand, layer_zip, root, unique};

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use scar_image::{Credentials, Platform, PullError, PullOptions, Pulled, Puller, RegistryOptions};
use sha2::{Digest, Sha256};

/// An S3 client for a local stand-in (moto or ministack): test credentials, path-style
/// addressing, since stand-ins have no per-bucket DNS names.
pub async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    s3_client_for(&sdk_config(endpoint, "us-east-1").await)
}

/// The SDK configuration for a local stand-in: its endpoint, a region, test credentials.
pub async fn sdk_config(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    scar_image::aws_config_loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

/// An S3 client with path-style addressing, as stand-ins need.
pub fn s3_client_for(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// The harness directory made by `scripts/setup.sh`.
pub fn work() -> PathBuf {
    let dir = PathBuf::from(std::env::var("CRT_WORK").unwrap_or_else(|_| "/tmp/scar-crt".into()));
    assert!(
        dir.join("env.sh").exists(),
        "{} is not ready: run container-rootfs-tests/scripts/setup.sh (make test does)",
        dir.display()
    );
    dir
}

pub fn options(cache: &Path, credentials: Option<(&str, &str)>) -> PullOptions {
    PullOptions {
        cache_dir: cache.to_path_buf(),
        platform: Platform::current(),
        registry: RegistryOptions {
            insecure: vec![],
            credentials: credentials.map(|(u, p)| Credentials {
                username: u.into(),
                password: p.into(),
            }),
            ..RegistryOptions::default()
        },
        progress: false,
        lazy: false,
        lazy_trace: false,
    }
}

pub fn pull_with(reference: &str, options: PullOptions) -> Result<Pulled, PullError> {
    let reference = reference.parse().expect("reference");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async { Puller::new(options)?.pull(&reference).await })
}

/// [`pull_with`] returning the runtime too: a lazy tree read from a registry fetches its
/// files through it after the pull.
pub fn pull_keeping_runtime(
    reference: &str,
    options: PullOptions,
) -> (Result<Pulled, PullError>, tokio::runtime::Runtime) {
    let reference = reference.parse().expect("reference");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pulled = rt.block_on(async { Puller::new(options)?.pull(&reference).await });
    (pulled, rt)
}

pub fn pull(reference: &str, cache: &Path) -> Result<Pulled, PullError> {
    pull_with(reference, options(cache, None))
}

/// Names of entries in a cache subdirectory (`images`, `staging`).
pub fn entries(cache: &Path, sub: &str) -> Vec<String> {
    match fs::read_dir(cache.join(sub)) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File { sha256: String },
    Dir,
    Symlink { target: String },
    Special,
}

/// Paths, types, link targets and content hashes of a tree. Symlink targets are shown as
/// the image sees them (`root_prefix` stripped, per the rootfs convention).
pub fn tree(root: &Path, root_prefix: Option<&Path>) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, root_prefix, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, prefix: Option<&Path>, out: &mut BTreeMap<String, Node>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let node = if ft.is_symlink() {
            let target = fs::read_link(&path).unwrap();
            let target = match prefix.and_then(|p| target.strip_prefix(p).ok()) {
                Some(rest) => Path::new("/").join(rest),
                None => target,
            };
            Node::Symlink {
                target: target.to_string_lossy().into_owned(),
            }
        } else if ft.is_dir() {
            walk(root, &path, prefix, out);
            Node::Dir
        } else if ft.is_file() {
            let mut hasher = Sha256::new();
            let mut file = fs::File::open(&path).unwrap();
            let mut buf = vec![0; 1 << 16];
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Node::File {
                sha256: hex::encode(hasher.finalize()),
            }
        } else {
            Node::Special
        };
        out.insert(rel, node);
    }
}

/// Modes and mtimes of a tree (symlinks: mtime only).
pub fn attrs(root: &Path) -> BTreeMap<String, (u32, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let mode = if meta.file_type().is_symlink() {
                0
            } else {
                meta.permissions().mode() & 0o7777
            };
            out.insert(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                (mode, meta.mtime()),
            );
        }
    }
    out
}

/// What each path's mode and mtime must be, computed from the layer tar headers themselves
/// (merged with whiteouts), then passed through the documented unprivileged-unpack rules:
/// setuid/setgid dropped, files owner-readable, directories owner-rwx.
pub fn expected_attrs(layout: &Path, tag: &str) -> BTreeMap<String, (u32, i64)> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(&manifest_digest)).unwrap()).unwrap();
    let mut merged: BTreeMap<String, (u32, i64, bool)> = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let file = fs::File::open(blob(layer["digest"].as_str().unwrap())).unwrap();
        let reader: Box<dyn Read> = Box::new(flate2::read::MultiGzDecoder::new(file));
        let mut archive = tar::Archive::new(reader);
        let mut this_layer = std::collections::HashSet::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let name = entry
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/')
                .to_string();
            if name.is_empty() {
                continue;
            }
            let (dir, file) = name
                .rsplit_once('/')
                .map_or(("", name.as_str()), |(d, f)| (d, f));
            let under =
                |p: &str, d: &str| d.is_empty() || p == d || p.starts_with(&format!("{d}/"));
            if file == ".wh..wh..opq" {
                merged.retain(|p, _| !(under(p, dir) && p != dir) || this_layer.contains(p));
                continue;
            }
            if let Some(victim) = file.strip_prefix(".wh.") {
                let victim = if dir.is_empty() {
                    victim.to_string()
                } else {
                    format!("{dir}/{victim}")
                };
                merged.retain(|p, _| !under(p, &victim));
                continue;
            }
            let header = entry.header();
            let kind = header.entry_type();
            if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
                merged.remove(&name);
                continue;
            }
            let mut mode = header.mode().unwrap() & 0o7777 & !0o6000;
            let is_symlink = kind.is_symlink();
            if kind.is_dir() {
                mode |= 0o700;
            } else if !is_symlink {
                mode |= 0o400;
            }
            if !kind.is_dir() {
                merged.retain(|p, _| !p.starts_with(&format!("{name}/")));
            }
            merged.insert(
                name.clone(),
                (
                    if is_symlink { 0 } else { mode },
                    header.mtime().unwrap() as i64,
                    kind.is_hard_link(),
                ),
            );
            this_layer.insert(name);
        }
    }
    // A hard link shares its target's inode: mode and mtime are whatever the inode ends with.
    let links: Vec<String> = merged
        .iter()
        .filter(|(_, v)| v.2)
        .map(|(k, _)| k.clone())
        .collect();
    let mut out: BTreeMap<String, (u32, i64)> =
        merged.into_iter().map(|(k, v)| (k, (v.0, v.1))).collect();
    for link in links {
        out.remove(&link);
    }
    out
}

/// Panics listing up to 20 differences.
pub fn assert_same<V: std::fmt::Debug + PartialEq>(
    what: &str,
    ours: &BTreeMap<String, V>,
    reference: &BTreeMap<String, V>,
) {
    let mut diffs = Vec::new();
    for (path, theirs) in reference {
        match ours.get(path) {
            None => diffs.push(format!("missing {path}: {theirs:?}")),
            Some(mine) if mine != theirs => {
                diffs.push(format!("{path}: ours {mine:?}, reference {theirs:?}"))
            }
            _ => {}
        }
    }
    for path in ours.keys().filter(|p| !reference.contains_key(*p)) {
        diffs.push(format!("extra {path}"));
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} differences:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// One layer of a layout written by [`write_oci_layout`].
#[derive(Debug, Clone)]
pub struct LayoutLayer<'a> {
    /// The blob as stored (already compressed as `media_type` says).
    pub blob: &'a [u8],
    /// Its OCI media type.
    pub media_type: &'a str,
    /// The size the manifest declares, when not the blob's own.
    pub declared_size: Option<i64>,
}

/// Writes a one-image OCI layout (config, manifest, `index.json`) with `layers`; returns the
/// layers' digests.
pub fn write_oci_layout(dir: &Path, layers: &[LayoutLayer<'_>]) -> Vec<String> {
    fn put(dir: &Path, data: &[u8]) -> String {
        let hex = hex::encode(Sha256::digest(data));
        fs::write(dir.join("blobs/sha256").join(&hex), data).unwrap();
        format!("sha256:{hex}")
    }
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = put(dir, config);
    let mut digests = Vec::new();
    let mut descriptors = Vec::new();
    for layer in layers {
        let digest = put(dir, layer.blob);
        let size = layer.declared_size.unwrap_or(layer.blob.len() as i64);
        descriptors.push(
            serde_json::json!({"mediaType": layer.media_type, "digest": digest, "size": size}),
        );
        digests.push(digest);
    }
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descriptors});
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = put(dir, &manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest.len()}]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    digests
}

/// A debug binary of the workspace, as cargo built it for the tests: nextest names it in
/// `NEXTEST_BIN_EXE_<name>` when the test's own package has it, else it is in the target
/// directory (`CARGO_TARGET_DIR`, else `target/`).
pub fn debug_bin(name: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let bin = std::env::var_os(format!("NEXTEST_BIN_EXE_{name}"))
        .map_or_else(|| target.join("debug").join(name), PathBuf::from);
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p {name}` (make test does)",
        bin.display()
    );
    bin
}
