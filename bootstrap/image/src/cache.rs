//! The rootfs cache: one directory per image manifest digest, built in a staging directory
//! and renamed into place, so a reader never sees a half-built rootfs.
//!
//! ```text
//! CACHE/images/<key>/rootfs/       the unpacked image (key = first 24 hex digits of the digest)
//! CACHE/images/<key>/image.json    manifest digest, image config (Env, Entrypoint, …), layer stats
//! CACHE/images/<key>/incomplete    a lazy tree whose files are still arriving (see `lazy.rs`)
//! CACHE/images/<key>/aside/        where they are written before they are put in rootfs/
//! CACHE/staging/<key>/             a build in progress (or left by a killed process)
//! CACHE/locks/<key>.lock           flock held while building
//! CACHE/refs/<hash>                reference (+ platform) → manifest digest, to skip the GET
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::oci::ContainerConfig;
use crate::unpack::LayerStats;

/// A cache operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A filesystem call failed.
    #[error("rootfs cache: cannot {action} {path}: {error}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// `image.json` is unreadable.
    #[error("rootfs cache: corrupt {path}: {error}")]
    Corrupt {
        /// The metadata file.
        path: PathBuf,
        /// The parse error.
        error: serde_json::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |error| CacheError::Io {
        action,
        path: path.to_path_buf(),
        error,
    }
}

/// One applied layer, as recorded in `image.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// Blob digest.
    pub digest: String,
    /// Compressed size.
    pub size: u64,
    /// Media type (empty for docker-archive layers).
    pub media_type: String,
    /// What applying it did.
    pub stats: LayerStats,
}

/// `image.json`: everything known about a cached image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageMeta {
    /// The reference it was first pulled as.
    pub reference: String,
    /// The platform-specific manifest digest (the cache key).
    pub manifest_digest: String,
    /// The config blob digest.
    pub config_digest: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Env, Entrypoint, Cmd, WorkingDir, User.
    pub config: ContainerConfig,
    /// Layers in application order.
    pub layers: Vec<LayerRecord>,
}

/// A complete rootfs in the cache.
#[derive(Debug, Clone)]
pub struct CachedImage {
    /// `images/<key>`.
    pub dir: PathBuf,
    /// `images/<key>/rootfs`.
    pub rootfs: PathBuf,
    /// `images/<key>/image.json`, parsed.
    pub meta: ImageMeta,
}

/// The cache root.
#[derive(Debug, Clone)]
pub struct RootfsCache {
    root: PathBuf,
}

/// Holds the per-image build lock.
#[derive(Debug)]
pub struct BuildLock(#[allow(dead_code)] Flock<fs::File>);

/// A rootfs being built; removed on drop unless committed.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    final_dir: PathBuf,
    committed: bool,
}

fn key(digest: &str) -> String {
    let hex = digest.rsplit(':').next().unwrap_or(digest);
    hex.chars()
        .filter(char::is_ascii_hexdigit)
        .take(24)
        .collect()
}

impl RootfsCache {
    /// Opens (creating) the cache at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let root = root.into();
        for sub in ["images", "staging", "locks", "refs"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(Self { root })
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the rootfs of `manifest_digest` lives once built.
    pub fn image_dir(&self, manifest_digest: &str) -> PathBuf {
        self.root.join("images").join(key(manifest_digest))
    }

    /// The complete image for `manifest_digest`, if built. A lazy tree still filling is not
    /// complete: its builder holds the build lock until it is, and one whose builder died is
    /// built again.
    pub fn lookup(&self, manifest_digest: &str) -> Result<Option<CachedImage>, CacheError> {
        let dir = self.image_dir(manifest_digest);
        if dir.join(INCOMPLETE).exists() {
            return Ok(None);
        }
        let meta_path = dir.join("image.json");
        let bytes = match fs::read(&meta_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &meta_path)(e)),
        };
        let meta: ImageMeta =
            serde_json::from_slice(&bytes).map_err(|error| CacheError::Corrupt {
                path: meta_path,
                error,
            })?;
        if meta.manifest_digest != manifest_digest {
            return Ok(None);
        }
        Ok(Some(CachedImage {
            rootfs: dir.join("rootfs"),
            dir,
            meta,
        }))
    }

    /// Takes the build lock for `manifest_digest`, waiting for another builder to finish.
    pub fn lock(&self, manifest_digest: &str) -> Result<BuildLock, CacheError> {
        let path = self
            .root
            .join("locks")
            .join(format!("{}.lock", key(manifest_digest)));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(BuildLock)
            .map_err(|(_, errno)| io_err("lock", &path)(io::Error::from(errno)))
    }

    /// Starts a build. A staging directory already there was left by a killed process
    /// (we hold the lock), so it is discarded.
    pub fn stage(&self, manifest_digest: &str, _lock: &BuildLock) -> Result<Staging, CacheError> {
        let dir = self.root.join("staging").join(key(manifest_digest));
        if dir.exists() {
            tracing::warn!(path = %dir.display(), "removing a half-built rootfs left by an interrupted pull");
            fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        }
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(io_err("create", &rootfs))?;
        Ok(Staging {
            dir,
            final_dir: self.image_dir(manifest_digest),
            committed: false,
        })
    }

    /// The manifest digest a reference resolved to before, if remembered.
    pub fn alias(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.alias_path(name))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Remembers that `name` resolves to `manifest_digest`.
    pub fn set_alias(&self, name: &str, manifest_digest: &str) -> Result<(), CacheError> {
        let path = self.alias_path(name);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, manifest_digest).map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("rename", &path))
    }

    fn alias_path(&self, name: &str) -> PathBuf {
        let hash = hex::encode(Sha256::digest(name.as_bytes()));
        self.root.join("refs").join(&hash[..32])
    }
}

impl Staging {
    /// The directory layers are applied to.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Where the rootfs will live after [`Staging::commit`] (symlinks are made for it).
    pub fn final_rootfs(&self) -> PathBuf {
        self.final_dir.join("rootfs")
    }

    /// Makes the directory a lazy tree writes its files in before it puts them in the rootfs
    /// (beside it, so that no program in the tree sees them), and returns where it will be
    /// once committed.
    pub fn make_aside(&self) -> Result<PathBuf, CacheError> {
        let aside = self.dir.join(ASIDE);
        fs::create_dir(&aside).map_err(io_err("create", &aside))?;
        Ok(self.final_dir.join(ASIDE))
    }

    /// As [`Self::commit`], for a lazy tree whose files are still to come: it is marked
    /// incomplete, which [`RootfsCache::lookup`] does not trust, until [`mark_complete`].
    pub fn commit_incomplete(self, meta: ImageMeta) -> Result<CachedImage, CacheError> {
        let marker = self.dir.join(INCOMPLETE);
        fs::write(&marker, b"").map_err(io_err("create", &marker))?;
        self.commit(meta)
    }

    /// Writes `image.json` and moves the build into place atomically.
    pub fn commit(mut self, meta: ImageMeta) -> Result<CachedImage, CacheError> {
        let meta_path = self.dir.join("image.json");
        let json = serde_json::to_vec_pretty(&meta).map_err(|error| CacheError::Corrupt {
            path: meta_path.clone(),
            error,
        })?;
        let mut file = fs::File::create(&meta_path).map_err(io_err("create", &meta_path))?;
        file.write_all(&json).map_err(io_err("write", &meta_path))?;
        if self.final_dir.exists() {
            // Same 96-bit key, other digest: replace it (we hold its lock).
            fs::remove_dir_all(&self.final_dir).map_err(io_err("remove", &self.final_dir))?;
        }
        fs::rename(&self.dir, &self.final_dir).map_err(io_err("rename", &self.dir))?;
        self.committed = true;
        Ok(CachedImage {
            rootfs: self.final_dir.join("rootfs"),
            dir: self.final_dir.clone(),
            meta,
        })
    }
}

/// The marker of a lazy tree still filling.
const INCOMPLETE: &str = "incomplete";
/// A lazy tree's files on their way in (see [`Staging::make_aside`]).
const ASIDE: &str = "aside";

/// Declares the lazy tree of `image` complete: from now on [`RootfsCache::lookup`] finds it.
/// Its aside directory, empty by then, goes (a leftover there is only named in the log).
pub fn mark_complete(image: &CachedImage) -> Result<(), CacheError> {
    let marker = image.dir.join(INCOMPLETE);
    match fs::remove_file(&marker) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &marker)(e)),
        _ => {
            let aside = image.dir.join(ASIDE);
            if let Err(e) = fs::remove_dir(&aside)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %aside.display(), error = %e, "could not remove a complete tree's aside directory");
            }
            Ok(())
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed
            && let Err(e) = fs::remove_dir_all(&self.dir)
        {
            tracing::warn!(path = %self.dir.display(), error = %e, "could not remove a failed build");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(digest: &str) -> ImageMeta {
        ImageMeta {
            reference: "x".into(),
            manifest_digest: digest.into(),
            config_digest: "sha256:c".into(),
            platform: "linux/amd64".into(),
            config: ContainerConfig {
                cmd: Some(vec!["/bin/sh".into()]),
                ..Default::default()
            },
            layers: vec![],
        }
    }

    #[test]
    fn staged_build_is_invisible_until_commit_and_removed_if_dropped() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = RootfsCache::open(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
        let digest = format!("sha256:{}", "ab".repeat(32));
        let lock = cache.lock(&digest).unwrap_or_else(|e| panic!("{e}"));
        let staging = cache
            .stage(&digest, &lock)
            .unwrap_or_else(|e| panic!("{e}"));
        fs::write(staging.rootfs().join("f"), "x").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            cache
                .lookup(&digest)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        let staged_dir = staging.rootfs();
        drop(staging);
        assert!(!staged_dir.exists(), "a failed build leaves nothing behind");

        let staging = cache
            .stage(&digest, &lock)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            staging.final_rootfs(),
            cache.image_dir(&digest).join("rootfs")
        );
        let image = staging
            .commit(meta(&digest))
            .unwrap_or_else(|e| panic!("{e}"));
        let found = cache
            .lookup(&digest)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|i| i.meta);
        assert_eq!(found, Some(image.meta));
    }

    #[test]
    fn a_lazy_tree_is_not_trusted_until_marked_complete() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = RootfsCache::open(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
        let digest = format!("sha256:{}", "ef".repeat(32));
        let lock = cache.lock(&digest).unwrap_or_else(|e| panic!("{e}"));
        let staging = cache
            .stage(&digest, &lock)
            .unwrap_or_else(|e| panic!("{e}"));
        let image = staging
            .commit_incomplete(meta(&digest))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(image.rootfs.is_dir());
        let found = |cache: &RootfsCache| cache.lookup(&digest).unwrap_or_else(|e| panic!("{e}"));
        assert!(found(&cache).is_none(), "an incomplete tree was trusted");
        mark_complete(&image).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found(&cache).map(|i| i.meta), Some(image.meta.clone()));
        // Marking twice is harmless.
        mark_complete(&image).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn leftover_staging_is_discarded() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = RootfsCache::open(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
        let digest = format!("sha256:{}", "cd".repeat(32));
        let left = tmp
            .path()
            .join("staging")
            .join(key(&digest))
            .join("rootfs/half");
        fs::create_dir_all(&left).unwrap_or_else(|e| panic!("{e}"));
        let lock = cache.lock(&digest).unwrap_or_else(|e| panic!("{e}"));
        let staging = cache
            .stage(&digest, &lock)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!left.exists());
        assert!(staging.rootfs().is_dir());
    }

    #[test]
    fn aliases_round_trip() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = RootfsCache::open(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cache.alias("r|linux/amd64"), None);
        cache
            .set_alias("r|linux/amd64", "sha256:1")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cache.alias("r|linux/amd64").as_deref(), Some("sha256:1"));
    }
}
