//! Image → cached rootfs: resolve, consult the cache, then stream every layer through
//! sha256 → decompress → tar into a staging directory and commit it atomically.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::cache::{self, BuildLock, CacheError, CachedImage, ImageMeta, LayerRecord, RootfsCache};
use crate::lazy::{FillEnd, LazyFault, LazyLayers, LazyTree, Preload, lower_own_priority};
use crate::platform::Platform;
use crate::reference::ImageReference;
use crate::source::archive::ArchiveSource;
use crate::source::layout::LayoutSource;
use crate::source::registry::{RegistryOptions, RegistrySource};
use crate::source::s3::S3Store;
use crate::source::{BlobReader, LayerBytes, LayerDescriptor, ResolvedImage, SourceError};
use crate::unpack::blob::BlobFault;
use crate::unpack::{LayerApplier, UnpackError};

/// Unpacked size ÷ compressed size assumed before a pull.
const UNPACKED_FACTOR: u64 = 2;

/// Why a pull failed. Whatever the cause, no rootfs is left half-built.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Resolving the image failed (registry, layout or archive).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A layer's bytes were wrong or did not arrive.
    #[error("layer {index} ({digest}): {fault}")]
    Blob {
        /// Position in the manifest, from 0.
        index: usize,
        /// The layer digest.
        digest: String,
        /// What was wrong.
        fault: BlobFault,
    },
    /// A layer's content could not be applied.
    #[error("layer {index} ({digest}): {error}")]
    Unpack {
        /// Position in the manifest, from 0.
        index: usize,
        /// The layer digest.
        digest: String,
        /// What went wrong.
        error: UnpackError,
    },
    /// The cache could not be read or written.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The cache's filesystem cannot hold the image.
    #[error(
        "not enough space in {dir} for the image: its layers are {compressed_mb} MB compressed, so it needs at least {needed_mb} MB unpacked, and only {available_mb} MB are free; raise the function's ephemeral storage (EphemeralStorage, 512 to 10240 MB) or use a smaller image"
    )]
    NoSpace {
        /// The cache directory.
        dir: String,
        /// Sum of the compressed layer sizes.
        compressed_mb: u64,
        /// The estimate of the unpacked size.
        needed_mb: u64,
        /// Free space there.
        available_mb: u64,
    },
    /// A lazy tree could not be built from the skeletons.
    #[error(transparent)]
    Lazy(#[from] LazyFault),
    /// A thread the pull needs could not be started (the process is out of threads or
    /// memory: a function's limit is 1,024).
    #[error("cannot start a thread to {task}: {source}")]
    Thread {
        /// What the thread was for.
        task: &'static str,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// A worker thread died (a bug, reported rather than panicking).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Everything a pull needs besides the reference.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Root of the rootfs cache.
    pub cache_dir: PathBuf,
    /// Platform to resolve indexes to.
    pub platform: Platform,
    /// Registry access.
    pub registry: RegistryOptions,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Build the tree from the layers' skeletons and fetch files on demand, where the image
    /// was staged with them ([`crate::lazy`]); other images are pulled whole.
    pub lazy: bool,
    /// For a lazy tree: fetch the files of the access trace stored beside the staged image
    /// first, and store the files this process's commands asked for there
    /// ([`crate::trace`]).
    pub lazy_trace: bool,
}

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The cached image.
    pub image: CachedImage,
    /// True when nothing had to be downloaded.
    pub cached: bool,
    /// The lazy tree, while some of its files are still to come: whoever reads the rootfs
    /// must fill a file before reading it ([`LazyTree::fill`]).
    pub lazy: Option<Arc<LazyTree>>,
}

/// A lazy tree this process built, and the thread filling the rest of it.
struct LazyImage {
    tree: Arc<LazyTree>,
    image: CachedImage,
    /// The build lock, held here (not by the filler's thread) until the tree is whole: a
    /// filler that could not be started, or that ended early, leaves it where the next
    /// pull's filler finds it.
    lock: Mutex<Option<BuildLock>>,
    /// The thread filling it, if one could be started.
    filler: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Pulls images into one cache.
#[derive(Clone)]
pub struct Puller {
    cache: RootfsCache,
    options: PullOptions,
    /// Lazy trees this process is filling, by manifest digest: the cache does not trust
    /// them yet, and their build lock is held by their filler (or by its ended thread's
    /// result, while the tree stays partial) as long as this process lives.
    lazy: Arc<Mutex<HashMap<String, Arc<LazyImage>>>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("cache", &self.cache)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

enum Layers {
    Registry(RegistrySource),
    Layout(LayoutSource),
    Archive(crate::source::archive::ArchiveLayers),
}

impl Puller {
    /// Opens the cache.
    pub fn new(options: PullOptions) -> Result<Self, PullError> {
        Ok(Self {
            cache: RootfsCache::open(&options.cache_dir)?,
            options,
            lazy: Arc::default(),
        })
    }

    /// The cache this puller fills.
    pub fn cache(&self) -> &RootfsCache {
        &self.cache
    }

    /// Pulls `reference` unless its rootfs is cached.
    pub async fn pull(&self, reference: &ImageReference) -> Result<Pulled, PullError> {
        let platform = &self.options.platform;
        let source = Source::open(reference, &self.options.registry).await?;
        let alias = source.alias(platform).await?;
        if let Some(hit) = alias
            .as_deref()
            .map(|a| self.cached(a))
            .transpose()?
            .flatten()
        {
            return Ok(hit);
        }
        let (resolved, layers) = source.resolve(platform).await?;
        let pulled = match self.still_filling(&resolved.manifest_digest) {
            Some(pulled) => pulled,
            None => match self.cache.lookup(&resolved.manifest_digest)? {
                Some(image) => Pulled {
                    image,
                    cached: true,
                    lazy: None,
                },
                None => self.build(reference, resolved, layers).await?,
            },
        };
        if let Some(alias) = alias {
            self.cache
                .set_alias(&alias, &pulled.image.meta.manifest_digest)?;
        }
        Ok(pulled)
    }

    /// Refuses early, before a byte is written, when the image cannot fit: layers unpack
    /// to at least twice their compressed size (gzip on typical images gives 2.5 to 3.5×).
    fn check_space(&self, layers: &[LayerDescriptor]) -> Result<(), PullError> {
        const MB: u64 = 1024 * 1024;
        let compressed: u64 = layers.iter().filter_map(|l| l.size).sum();
        let needed = compressed.saturating_mul(UNPACKED_FACTOR);
        let Ok(stats) = nix::sys::statvfs::statvfs(&self.options.cache_dir) else {
            return Ok(());
        };
        let available = stats
            .blocks_available()
            .saturating_mul(stats.fragment_size());
        if needed > available {
            return Err(PullError::NoSpace {
                dir: self.options.cache_dir.display().to_string(),
                compressed_mb: compressed.div_ceil(MB),
                needed_mb: needed.div_ceil(MB),
                available_mb: available / MB,
            });
        }
        Ok(())
    }

    fn cached(&self, alias: &str) -> Result<Option<Pulled>, PullError> {
        let Some(digest) = self.cache.alias(alias) else {
            return Ok(None);
        };
        if let Some(pulled) = self.still_filling(&digest) {
            return Ok(Some(pulled));
        }
        Ok(self.cache.lookup(&digest)?.map(|image| Pulled {
            image,
            cached: true,
            lazy: None,
        }))
    }

    /// A lazy tree of this process's: with the tree while files are still to come (its
    /// filler restarted if it gave up: a warm start resumes the fetch), without once whole.
    fn still_filling(&self, manifest_digest: &str) -> Option<Pulled> {
        let lazy = self.lazy.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = lazy.get(manifest_digest)?;
        let complete = entry.tree.is_complete();
        if !complete {
            let mut filler = entry.filler.lock().unwrap_or_else(PoisonError::into_inner);
            if filler
                .as_ref()
                .is_none_or(std::thread::JoinHandle::is_finished)
            {
                *filler = spawn_filler(self.cache.clone(), Arc::clone(entry));
            }
        }
        Some(Pulled {
            image: entry.image.clone(),
            cached: true,
            lazy: (!complete).then(|| Arc::clone(&entry.tree)),
        })
    }

    async fn build(
        &self,
        reference: &ImageReference,
        resolved: ResolvedImage,
        layers: Layers,
    ) -> Result<Pulled, PullError> {
        let cache = self.cache.clone();
        let digest = resolved.manifest_digest.clone();
        let lock = blocking(move || cache.lock(&digest)).await??;
        // Another process may have built it while we waited for the lock.
        if let Some(image) = self.cache.lookup(&resolved.manifest_digest)? {
            return Ok(Pulled {
                image,
                cached: true,
                lazy: None,
            });
        }
        let staging = self.cache.stage(&resolved.manifest_digest, &lock)?;
        // A lazy tree needs room only for the files its commands read (and for its
        // skeleton, whose lack of room is an error of its own): an image larger than /tmp
        // runs if what it reads fits.
        if self.options.lazy {
            let descriptors = resolved.layers.clone();
            let (lazy, learn_from) = match &layers {
                Layers::Layout(source) => {
                    let learn_from = self.options.lazy_trace.then(|| source.clone());
                    let source = source.clone();
                    (
                        blocking(move || source.open_lazy(&descriptors)).await??,
                        learn_from,
                    )
                }
                // A registry keeps no trace of ours: the image's prioritized files come
                // first, then the rest in the TOC's order.
                Layers::Registry(source) => {
                    let source = source.clone();
                    (
                        blocking(move || source.open_lazy(&descriptors)).await?,
                        None,
                    )
                }
                Layers::Archive(_) => (None, None),
            };
            if let Some(lazy) = lazy {
                return self
                    .build_lazy(reference, resolved, staging, lock, lazy, learn_from)
                    .await;
            }
        }
        self.check_space(&resolved.layers)?;
        let readers = layers
            .open_for_pull(&resolved.layers, self.options.registry.concurrency)
            .await?;
        let progress = progress_bar(self.options.progress, &resolved.layers);
        let (staging_root, final_root) = (staging.rootfs(), staging.final_rootfs());
        let descriptors = resolved.layers.clone();
        let records =
            blocking(move || apply_all(staging_root, final_root, &descriptors, readers, progress))
                .await??;
        let meta = ImageMeta {
            reference: reference.to_string(),
            manifest_digest: resolved.manifest_digest,
            config_digest: resolved.config_digest,
            platform: self.options.platform.to_string(),
            config: resolved.config,
            layers: records,
        };
        let image = staging.commit(meta)?;
        drop(lock);
        Ok(Pulled {
            image,
            cached: false,
            lazy: None,
        })
    }

    /// The tree from the skeletons, committed as incomplete, and a thread that fills the
    /// rest while the command runs (the files of the access trace stored in `learn_from`
    /// first); it holds the build lock until the tree is whole.
    async fn build_lazy(
        &self,
        reference: &ImageReference,
        resolved: ResolvedImage,
        staging: cache::Staging,
        lock: BuildLock,
        layers: LazyLayers,
        learn_from: Option<LayoutSource>,
    ) -> Result<Pulled, PullError> {
        let (staging_root, final_root) = (staging.rootfs(), staging.final_rootfs());
        let aside = staging.make_aside()?;
        let started = std::time::Instant::now();
        let LazyLayers {
            framed,
            skeletons,
            prioritized,
        } = layers;
        // While the skeletons are applied, the link to the store would sit idle: the frames
        // the command is likely to want first come meanwhile (lazy::Preload), into an
        // unnamed file, which can be made in the directory being built.
        let building = staging_root.parent().unwrap_or(&staging_root);
        let preload = Preload::new(&framed, building, Preload::budget_at(building))
            .inspect_err(|e| tracing::debug!(error = %e, "no frames fetched ahead"))
            .ok();
        let skeletons = Arc::new(skeletons);
        // The trace is read meanwhile too, and the preload starts from it (spawned now: a
        // future of `blocking` would start only when awaited, after the skeletons).
        let first_files = {
            let (preload, skeletons) = (preload.clone(), Arc::clone(&skeletons));
            let digest = resolved.manifest_digest.clone();
            tokio::task::spawn_blocking(move || {
                let (given, sink) = learn_from.map_or((Vec::new(), None), |s| s.trace(&digest));
                // A trace of ours, learnt from this image's cold starts, knows best.
                let given = if given.is_empty() { prioritized } else { given };
                if let Some(preload) = &preload {
                    preload.start(preload.order(&given, &skeletons));
                }
                (given, sink)
            })
        };
        let built =
            blocking(move || LazyTree::build(staging_root, final_root, aside, framed, &skeletons))
                .await;
        if let Some(preload) = &preload {
            preload.stop();
        }
        let (mut tree, stats) = built??;
        let (given, sink) = first_files
            .await
            .map_err(|e| PullError::Internal(e.to_string()))?;
        tree.learn(given, sink);
        if let Some(preload) = preload {
            tracing::debug!(
                frames = preload.waiting(),
                "frames fetched while the skeletons were applied"
            );
            tree.use_preload(preload);
        }
        if let Some(kept) = space_kept_for_commands(&self.options.cache_dir) {
            tree.keep_free_for_commands(kept);
        }
        let layers = resolved
            .layers
            .iter()
            .zip(stats)
            .map(|(l, stats)| LayerRecord {
                digest: l.digest.clone(),
                size: l.size.unwrap_or(0),
                media_type: l.media_type.clone(),
                stats,
            })
            .collect();
        let meta = ImageMeta {
            reference: reference.to_string(),
            manifest_digest: resolved.manifest_digest.clone(),
            config_digest: resolved.config_digest,
            platform: self.options.platform.to_string(),
            config: resolved.config,
            layers,
        };
        let image = staging.commit_incomplete(meta)?;
        tracing::info!(
            placeholders = tree.placeholders(),
            traced = tree.trace().len(),
            ms = started.elapsed().as_millis() as u64,
            "lazy tree built from the skeletons; files arrive on first use"
        );
        let tree = Arc::new(tree);
        let entry = Arc::new(LazyImage {
            tree: Arc::clone(&tree),
            image: image.clone(),
            lock: Mutex::new(Some(lock)),
            filler: Mutex::new(None),
        });
        let filler = spawn_filler(self.cache.clone(), Arc::clone(&entry));
        *entry.filler.lock().unwrap_or_else(PoisonError::into_inner) = filler;
        self.lazy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(resolved.manifest_digest, entry);
        Ok(Pulled {
            image,
            cached: false,
            lazy: Some(tree),
        })
    }
}

/// Room the background fill of a lazy tree leaves free for the commands on the cache's
/// filesystem: a tenth of it, and at least [`MIN_KEPT_FOR_COMMANDS`] (the commands' `/tmp`
/// is on it, and it is all they may write). `None` when the filesystem cannot say.
fn space_kept_for_commands(cache_dir: &std::path::Path) -> Option<u64> {
    let stats = nix::sys::statvfs::statvfs(cache_dir).ok()?;
    let size = stats.blocks().saturating_mul(stats.fragment_size());
    Some((size / 10).max(MIN_KEPT_FOR_COMMANDS))
}

/// See [`space_kept_for_commands`].
const MIN_KEPT_FOR_COMMANDS: u64 = 64 << 20;

/// Threads fetching the access trace's files: a store far away (S3) answers each frame after
/// a round trip, and the command waits on those files; each holds a decoded frame, and a
/// trace of the whole image (a command that read everything) must not crowd the command out.
const PREFETCH_WORKERS: usize = 2;

/// Attempts of the background fill before it gives up until the next pull resumes it.
const FILL_ATTEMPTS: u32 = 3;

/// Fills what the command has not asked for yet, then declares the tree complete and lets
/// the build lock go. Until then the lock stays in `entry` (taken again if this process lost
/// it) so other processes wait for a whole tree: the tree is this process's while partial
/// (the fill stopped to keep /tmp's room, or its fetches failed), and another that rebuilt it
/// meanwhile would replace it under the running commands. `None` when no thread could be
/// started (the process is out of threads): the next pull tries again.
fn spawn_filler(cache: RootfsCache, entry: Arc<LazyImage>) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("scar-filler".into())
        .spawn(move || fill_in_background(&cache, &entry))
        .inspect_err(|e| {
            tracing::warn!(
                error = %e,
                "cannot start the lazy tree's background fill; files still come on first \
                 use, and the next invocation tries again"
            );
        })
        .ok()
}

/// The body of [`spawn_filler`]'s thread.
fn fill_in_background(cache: &RootfsCache, entry: &LazyImage) {
    {
        let mut lock = entry.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if lock.is_none() {
            match cache.lock(&entry.image.meta.manifest_digest) {
                Ok(taken) => *lock = Some(taken),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot resume filling the lazy tree");
                    return;
                }
            }
        }
    }
    for attempt in 1..=FILL_ATTEMPTS {
        let started = std::time::Instant::now();
        // What the last cold starts' commands asked for is likely asked for again:
        // at the command's own priority, then the rest behind it (the command and its
        // fetches wait on files, the rest of the fill only on time).
        let fill = || {
            let traced = entry.tree.prefetch(PREFETCH_WORKERS)?;
            tracing::debug!(
                bytes = traced,
                ms = started.elapsed().as_millis() as u64,
                "the access trace's files prefetched"
            );
            lower_own_priority();
            entry.tree.fill_rest()
        };
        match fill() {
            Ok(FillEnd::SpaceKept { bytes, free }) => {
                // Said once: a warm start resumes the fill, which stops again.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::info!(
                        bytes,
                        free_mb = free / (1024 * 1024),
                        "the lazy tree stays partial: the rest of the image does not fit \
                         beside the room kept for the commands in /tmp, so each file \
                         comes when first used (raise the function's ephemeral storage \
                         to hold it all)"
                    );
                });
                return;
            }
            Ok(FillEnd::Complete { bytes }) => {
                if let Err(e) = cache::mark_complete(&entry.image) {
                    tracing::warn!(error = %e, "lazy tree whole, but not marked so");
                }
                tracing::info!(
                    bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "lazy tree complete"
                );
                // Whole and marked so: other processes may use it now.
                let mut lock = entry.lock.lock().unwrap_or_else(PoisonError::into_inner);
                drop(lock.take());
                return;
            }
            Err(e) => {
                tracing::warn!(attempt, error = %e, "filling the lazy tree failed");
                std::thread::sleep(Duration::from_secs(1 << attempt));
            }
        }
    }
}

impl Layers {
    fn open(
        &self,
        layers: &[LayerDescriptor],
        concurrency: usize,
    ) -> Result<Vec<BlobReader>, PullError> {
        Ok(match self {
            Self::Registry(source) => source.open_layers(layers, concurrency),
            Self::Layout(source) => source.open_layers(layers)?,
            Self::Archive(offsets) => offsets.open()?,
        })
    }

    /// As [`Self::open`], but a layout's layers staged as frames are read by their frames
    /// (their indexes are read now, on a blocking thread: an S3 layout blocks on its reads).
    async fn open_for_pull(
        &self,
        layers: &[LayerDescriptor],
        concurrency: usize,
    ) -> Result<Vec<LayerBytes>, PullError> {
        Ok(match self {
            Self::Layout(source) => {
                let (source, layers) = (source.clone(), layers.to_vec());
                blocking(move || source.open_for_pull(&layers)).await??
            }
            _ => self
                .open(layers, concurrency)?
                .into_iter()
                .map(LayerBytes::Stream)
                .collect(),
        })
    }
}

/// Where an image comes from, opened once from its reference: every kind is then asked the
/// same two questions, so the pull and [`fetch`] have one path for all of them.
enum Source {
    Registry(RegistrySource),
    Layout(LayoutSource),
    Archive(ArchiveSource, std::path::PathBuf),
}

impl Source {
    /// Prepares the source of `reference`; only an S3 layout connects now (nothing is read).
    async fn open(
        reference: &ImageReference,
        registry: &RegistryOptions,
    ) -> Result<Self, PullError> {
        Ok(match reference {
            ImageReference::Registry(r) => {
                Self::Registry(RegistrySource::connect(r.clone(), registry).await?)
            }
            ImageReference::OciLayout { dir, tag } => {
                Self::Layout(LayoutSource::new(dir.clone(), tag.clone()))
            }
            ImageReference::S3Layout { bucket, prefix } => {
                let store = S3Store::connect(bucket.clone(), prefix.clone()).await;
                Self::Layout(LayoutSource::with_store(Arc::new(store), None))
            }
            ImageReference::DockerArchive { file } => {
                Self::Archive(ArchiveSource::new(file.clone()), file.clone())
            }
        })
    }

    /// A cache key known before resolving, where resolving costs more than finding it: the
    /// registry's top digest (one HEAD), an archive's path, size and mtime (no indexing
    /// pass). A layout resolves from its own index at once: none.
    async fn alias(&self, platform: &Platform) -> Result<Option<String>, PullError> {
        Ok(match self {
            Self::Registry(source) => {
                let top = source.head_digest().await?;
                let r = source.reference();
                Some(format!(
                    "{}/{}@{top}|{platform}",
                    r.registry(),
                    r.repository()
                ))
            }
            Self::Archive(_, file) => archive_alias(file),
            Self::Layout(_) => None,
        })
    }

    /// The image for `platform` and a way to open its layers.
    async fn resolve(self, platform: &Platform) -> Result<(ResolvedImage, Layers), PullError> {
        match self {
            Self::Registry(source) => {
                let (resolved, _) = source.resolve(platform).await?;
                Ok((resolved, Layers::Registry(source)))
            }
            Self::Layout(source) => {
                let platform = platform.clone();
                let resolved = blocking({
                    let source = source.clone();
                    move || source.resolve(&platform)
                })
                .await??;
                Ok((resolved, Layers::Layout(source)))
            }
            Self::Archive(source, _) => {
                let (resolved, offsets) = blocking(move || source.resolve()).await??;
                Ok((resolved, Layers::Archive(offsets)))
            }
        }
    }
}

/// Resolves an image and opens its layers' bytes as stored, without unpacking or caching
/// anything: for copying an image elsewhere (`deployer init -db` stages images in S3).
pub async fn fetch(
    reference: &ImageReference,
    platform: &Platform,
    registry: &RegistryOptions,
) -> Result<(ResolvedImage, Vec<BlobReader>), PullError> {
    let (resolved, layers) = Source::open(reference, registry)
        .await?
        .resolve(platform)
        .await?;
    let readers = layers.open(&resolved.layers, registry.concurrency)?;
    Ok((resolved, readers))
}

/// A docker-archive is identified by path, size and mtime so that a second pull skips the
/// indexing pass; any change to the file makes a new key.
fn archive_alias(file: &std::path::Path) -> Option<String> {
    let meta = std::fs::metadata(file).ok()?;
    let path = std::fs::canonicalize(file).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!(
        "docker-archive:{}|{}|{mtime}",
        path.display(),
        meta.len()
    ))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PullError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PullError::Internal(e.to_string()))
}

pub(crate) type Progress = Option<Arc<dyn Fn(u64) + Send + Sync>>;

fn progress_bar(enabled: bool, layers: &[LayerDescriptor]) -> Progress {
    if !enabled {
        return None;
    }
    let total = layers.iter().filter_map(|l| l.size).sum();
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    Some(Arc::new(move |n| bar.inc(n)))
}

/// Every layer in order onto a fresh applier (`pipeline.rs`), then the directory times.
fn apply_all(
    staging_root: PathBuf,
    final_root: PathBuf,
    layers: &[LayerDescriptor],
    readers: Vec<LayerBytes>,
    progress: Progress,
) -> Result<Vec<LayerRecord>, PullError> {
    let mut applier = LayerApplier::new(staging_root, final_root);
    let records = crate::pipeline::apply_all(&mut applier, layers, readers, &progress)?;
    applier.finish().map_err(|error| PullError::Unpack {
        index: layers.len(),
        digest: "(directory times)".into(),
        error,
    })?;
    Ok(records)
}
