//! Images from an OCI image layout: a directory (`oci:DIR[:TAG]`) or an S3 prefix
//! (`s3://BUCKET/PREFIX`, as `deployer init -db` stages images). Both are read through a
//! [`LayoutStore`]: small files whole, layers as streams.

use std::fmt::Debug;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use oci_client::manifest::{OciImageIndex, OciManifest};

use super::{
    BlobReader, LayerBytes, ResolvedImage, SourceError, layer_descriptors, no_matching_platform,
};
use crate::frames::{self, FileRanges, FrameIndex, FramedLayer, RangeSource};
use crate::oci::parse_config;
use crate::platform::Platform;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The largest `index.json`, manifest or config read whole: a "manifest" that never ends
/// must not exhaust memory (containerd's limits are of the same order).
pub const MAX_METADATA_BYTES: u64 = 4 * 1024 * 1024;

/// Opens a layout file that must be a regular file: a FIFO would hang the pull and
/// `/dev/zero` would never end. Opened non-blocking, so a FIFO is refused, not waited on.
fn open_regular(path: &std::path::Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Reads a small file whole, refusing one over [`MAX_METADATA_BYTES`].
pub(crate) fn read_capped(reader: impl io::Read, name: &str) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    reader
        .take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{name} is larger than {MAX_METADATA_BYTES} bytes: not an index, manifest or config"
            ),
        ));
    }
    Ok(bytes)
}

/// Where a layout's files are: paths are relative to the layout's root.
pub trait LayoutStore: Debug + Send + Sync {
    /// The layout's location, for messages.
    fn location(&self) -> String;
    /// Reads a small file whole.
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// Opens a layer for streaming.
    fn open(&self, path: &str) -> io::Result<BlobReader>;
    /// Opens a blob for ranged reads (a framed layer's frames).
    fn ranges(&self, path: &str) -> io::Result<Arc<dyn RangeSource>>;
    /// Replaces a small file whole (an access trace: [`crate::trace`]); readers see the old
    /// bytes or the new, never a mix.
    fn write(&self, path: &str, bytes: Vec<u8>) -> io::Result<()>;
}

/// A layout directory on disk.
#[derive(Debug, Clone)]
pub struct DirStore(pub PathBuf);

impl LayoutStore for DirStore {
    fn location(&self) -> String {
        self.0.display().to_string()
    }
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let full = self.0.join(path);
        read_capped(open_regular(&full)?, &full.display().to_string())
    }
    fn open(&self, path: &str) -> io::Result<BlobReader> {
        let file = open_regular(&self.0.join(path))?;
        // Reads block again (O_NONBLOCK only kept a FIFO from hanging the open).
        nix::fcntl::fcntl(
            &file,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .map_err(io::Error::from)?;
        Ok(Box::new(file))
    }
    fn ranges(&self, path: &str) -> io::Result<Arc<dyn RangeSource>> {
        // Positional reads never block on a regular file: O_NONBLOCK may stay.
        Ok(Arc::new(FileRanges(open_regular(&self.0.join(path))?)))
    }
    fn write(&self, path: &str, bytes: Vec<u8>) -> io::Result<()> {
        let full = self.0.join(path);
        let dir = full.parent().unwrap_or(&self.0);
        fs::create_dir_all(dir)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        io::Write::write_all(&mut temp, &bytes)?;
        // As readable as the layout's other files (a temporary file is the owner's alone).
        temp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        temp.persist(&full).map(drop).map_err(|e| e.error)
    }
}

/// An OCI layout.
#[derive(Debug, Clone)]
pub struct LayoutSource {
    store: Arc<dyn LayoutStore>,
    tag: Option<String>,
}

impl LayoutSource {
    /// `dir` holds `index.json`; `tag` selects by `org.opencontainers.image.ref.name`.
    pub fn new(dir: PathBuf, tag: Option<String>) -> Self {
        Self::with_store(Arc::new(DirStore(dir)), tag)
    }

    /// A layout in any store.
    pub fn with_store(store: Arc<dyn LayoutStore>, tag: Option<String>) -> Self {
        Self { store, tag }
    }

    fn fail(&self, message: impl Into<String>) -> SourceError {
        SourceError::Local {
            path: self.store.location(),
            message: message.into(),
        }
    }

    fn blob_path(&self, digest: &str) -> Result<String, SourceError> {
        let hex = crate::oci::sha256_hex(digest)
            .ok_or_else(|| self.fail(format!("malformed digest {digest:?}")))?;
        Ok(format!("blobs/sha256/{hex}"))
    }

    /// Reads a small blob (manifest, index, config) and checks its digest.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, SourceError> {
        let path = self.blob_path(digest)?;
        let bytes = self
            .store
            .read(&path)
            .map_err(|e| self.fail(format!("cannot read blob {digest}: {e}")))?;
        let actual = super::digest_of(&bytes);
        if actual != digest {
            return Err(self.fail(format!(
                "blob {digest} is corrupt (its content hashes to {actual})"
            )));
        }
        Ok(bytes)
    }

    fn select_from_index(
        &self,
        index: &OciImageIndex,
        platform: &Platform,
        top: bool,
    ) -> Result<String, SourceError> {
        let names = || {
            index
                .manifests
                .iter()
                .filter_map(|m| m.annotations.as_ref()?.get(REF_NAME).cloned())
                .collect::<Vec<_>>()
        };
        if top {
            match &self.tag {
                Some(tag) => {
                    return index
                        .manifests
                        .iter()
                        .find(|m| m.annotations.as_ref().and_then(|a| a.get(REF_NAME)) == Some(tag))
                        .map(|m| m.digest.clone())
                        .ok_or_else(|| {
                            self.fail(format!(
                                "no image tagged {tag:?} (tags: {})",
                                names().join(", ")
                            ))
                        });
                }
                None if index.manifests.len() == 1 => return Ok(index.manifests[0].digest.clone()),
                None if index.manifests.iter().all(|m| m.platform.is_none()) => {
                    return Err(self.fail(format!(
                        "holds several images; name one as oci:DIR:TAG (tags: {})",
                        names().join(", ")
                    )));
                }
                None => {}
            }
        }
        platform
            .select(&index.manifests)
            .map(|m| m.digest.clone())
            .ok_or_else(|| no_matching_platform(self.store.location(), platform, &index.manifests))
    }

    /// Reads `index.json`, follows indexes to `platform`, and reads the config.
    pub fn resolve(&self, platform: &Platform) -> Result<ResolvedImage, SourceError> {
        let index_bytes = self
            .store
            .read("index.json")
            .map_err(|e| self.fail(format!("not an OCI layout: cannot read index.json: {e}")))?;
        let index: OciImageIndex = serde_json::from_slice(&index_bytes)
            .map_err(|e| self.fail(format!("invalid index.json: {e}")))?;
        let mut digest = self.select_from_index(&index, platform, true)?;
        // Nested indexes are legal; a bound on depth keeps a cyclic layout from looping.
        for _ in 0..4 {
            let bytes = self.read_blob(&digest)?;
            let manifest = super::parse_manifest(&bytes)
                .map_err(|e| self.fail(format!("invalid manifest {digest}: {e}")))?;
            match manifest {
                OciManifest::ImageIndex(inner) => {
                    digest = self.select_from_index(&inner, platform, false)?
                }
                OciManifest::Image(m) => {
                    let layers = layer_descriptors(&m.layers)?;
                    let config_bytes = self.read_blob(&m.config.digest)?;
                    let (config, _) = parse_config(&config_bytes).map_err(|e| {
                        self.fail(format!("invalid config {}: {e}", m.config.digest))
                    })?;
                    return Ok(ResolvedImage {
                        manifest_digest: digest,
                        config_digest: m.config.digest.clone(),
                        config,
                        config_blob: config_bytes,
                        layers,
                    });
                }
            }
        }
        Err(self.fail("image indexes nested too deeply"))
    }

    /// Opens each layer for the pull: by its frames where it was staged re-encoded (the
    /// index is read and checked now, so a bad one fails before anything is written), else
    /// as a stream.
    pub fn open_for_pull(
        &self,
        layers: &[super::LayerDescriptor],
    ) -> Result<Vec<LayerBytes>, SourceError> {
        layers
            .iter()
            .map(|l| match &l.frames {
                None => Ok(LayerBytes::Stream(self.open_blob(l)?)),
                Some(index_digest) => {
                    let bytes = self.read_blob(index_digest)?;
                    let index = FrameIndex::parse(&bytes, index_digest, &l.digest)
                        .map_err(|e| self.fail(e.to_string()))?;
                    let path = self.blob_path(&index.blob)?;
                    let source = self.store.ranges(&path).map_err(|e| {
                        self.fail(format!("cannot open the frames of layer {}: {e}", l.digest))
                    })?;
                    Ok(LayerBytes::Framed(FramedLayer {
                        index,
                        source,
                        codec: frames::FrameCodec::Zstd,
                    }))
                }
            })
            .collect()
    }

    /// The access trace stored for the image with this manifest digest (none when it is
    /// missing or unreadable: a trace is only a hint), and where a new one is stored.
    pub fn trace(
        &self,
        manifest_digest: &str,
    ) -> (Vec<crate::trace::FileAt>, Option<crate::lazy::TraceSink>) {
        let Some(path) = crate::trace::location(manifest_digest) else {
            return (Vec::new(), None);
        };
        let given = match self.store.read(&path) {
            Ok(bytes) => crate::trace::parse(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::warn!(trace = %path, error = %e, "cannot read the access trace: files come in the skeletons' order");
                Vec::new()
            }
        };
        let store = Arc::clone(&self.store);
        let sink: crate::lazy::TraceSink = Box::new(move |bytes| store.write(&path, bytes));
        (given, Some(sink))
    }

    /// Opens every layer for a lazy tree: its frames and its skeleton's bytes (checked
    /// against the digest the manifest names), or its eStargz chunks and TOC. `None` unless
    /// every layer has one or the other.
    pub fn open_lazy(
        &self,
        layers: &[super::LayerDescriptor],
    ) -> Result<Option<crate::lazy::LazyLayers>, SourceError> {
        if layers
            .iter()
            .any(|l| l.frames.is_none() || l.skeleton.is_none())
        {
            return Ok(super::open_stargz(layers, |digest| {
                let path = self.blob_path(digest).map_err(io::Error::other)?;
                self.store.ranges(&path)
            }));
        }
        let mut framed = Vec::with_capacity(layers.len());
        for bytes in self.open_for_pull(layers)? {
            match bytes {
                LayerBytes::Framed(layer) => framed.push(layer),
                LayerBytes::Stream(_) => return Ok(None),
            }
        }
        let mut skeletons = Vec::with_capacity(layers.len());
        for digest in layers.iter().filter_map(|l| l.skeleton.as_deref()) {
            skeletons.push(self.read_blob(digest)?);
        }
        Ok(Some(crate::lazy::LazyLayers {
            framed,
            skeletons,
            prioritized: Vec::new(),
        }))
    }

    fn open_blob(&self, l: &super::LayerDescriptor) -> Result<BlobReader, SourceError> {
        let path = self.blob_path(&l.digest)?;
        self.store
            .open(&path)
            .map_err(|e| self.fail(format!("cannot open layer {}: {e}", l.digest)))
    }

    /// Opens each layer blob, as stored, for reading.
    pub fn open_layers(
        &self,
        layers: &[super::LayerDescriptor],
    ) -> Result<Vec<BlobReader>, SourceError> {
        layers.iter().map(|l| self.open_blob(l)).collect()
    }
}
