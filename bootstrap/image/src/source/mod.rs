//! Where layers come from: a registry, an OCI layout (on disk or in S3), or a `docker save`
//! archive. Every
//! source yields the same [`ResolvedImage`] and, per layer, a plain byte stream that the
//! unpacker verifies and decompresses.

pub mod archive;
pub mod auth;
pub mod ecr;
pub mod layout;
pub mod registry;
pub mod s3;

use std::io::{self, Read};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::oci::{Compression, ContainerConfig};

/// A layer to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// Digest of the bytes as stored (`sha256:…`).
    pub digest: String,
    /// Size in bytes as stored, when known.
    pub size: Option<u64>,
    /// Media type (empty for docker-archive layers).
    pub media_type: String,
    /// Compression the media type declares; `None` means "sniff the bytes".
    pub compression: Option<Compression>,
    /// Digest of the layer's frame index, when it was staged re-encoded ([`crate::frames`]).
    pub frames: Option<String>,
    /// Digest of the layer's skeleton, when it was staged with one ([`crate::skeleton`]).
    pub skeleton: Option<String>,
    /// Digest of the layer's eStargz table of contents, when it is one ([`crate::stargz`]).
    pub stargz_toc: Option<String>,
}

/// An image resolved to one platform.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The platform-specific manifest digest (or, for docker-archive, the config digest).
    pub manifest_digest: String,
    /// The config blob digest.
    pub config_digest: String,
    /// Env, Entrypoint, Cmd, WorkingDir, User.
    pub config: ContainerConfig,
    /// The config blob as stored (a few KiB), for copying the image elsewhere.
    pub config_blob: Vec<u8>,
    /// Layers, base first.
    pub layers: Vec<LayerDescriptor>,
}

/// A layer's bytes, read on a blocking thread.
pub type BlobReader = Box<dyn Read + Send>;

/// A layer as the pull reads it: one stream, or independent frames read in parallel.
pub enum LayerBytes {
    /// The blob as stored, verified against the layer digest as it streams.
    Stream(BlobReader),
    /// Frames, each verified against the index the manifest names.
    Framed(crate::frames::FramedLayer),
}

/// Chunks buffered per layer ahead of the unpacker (a chunk is at most a few tens of KiB).
const CHANNEL_CHUNKS: usize = 16;

/// A blocking `Read` over the chunks a download task sends; dropping it ends the download.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            rx,
            chunk: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Why an image could not be resolved or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The registry answered with an error or could not be reached.
    #[error("registry {registry}: {message}")]
    Registry {
        /// Host of the registry.
        registry: String,
        /// What went wrong, in words.
        message: String,
        /// HTTP status, when there was one.
        status: Option<u16>,
    },
    /// The index has no image for this platform.
    #[error("{reference} has no image for {platform} (available: {available})")]
    NoMatchingPlatform {
        /// The reference.
        reference: String,
        /// The wanted platform.
        platform: String,
        /// The platforms the index offers.
        available: String,
    },
    /// A layer whose media type we cannot unpack.
    #[error("layer {digest} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The layer.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// A manifest gives a layer a negative size: no size and free-space check could hold.
    #[error(
        "layer {digest} has size {size} in the manifest; a layer's size must be known and not negative"
    )]
    BadSize {
        /// The layer.
        digest: String,
        /// The size the manifest gives.
        size: i64,
    },
    /// A local layout or archive that is unreadable or malformed.
    #[error("{path}: {message}")]
    Local {
        /// The layout directory or archive file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The error for an index with no entry for `platform`, listing what it does offer.
pub fn no_matching_platform(
    reference: String,
    platform: &crate::platform::Platform,
    entries: &[oci_client::manifest::ImageIndexEntry],
) -> SourceError {
    let available = entries
        .iter()
        .filter_map(|m| m.platform.as_ref())
        .map(|p| format!("{}/{}", p.os, p.architecture))
        .collect::<Vec<_>>()
        .join(", ");
    SourceError::NoMatchingPlatform {
        reference,
        platform: platform.to_string(),
        available,
    }
}

/// `sha256:` and the hex digest of a small blob (manifest, index, config), as OCI names it.
pub fn digest_of(body: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// A manifest or an index as registries and layouts store it. Only schema version 2 (OCI,
/// and Docker's v2 schema 2) is read: Docker's schema 1 names layers by the digest of their
/// uncompressed content under a signature this runtime cannot check, and is refused by name.
pub fn parse_manifest(body: &[u8]) -> Result<oci_client::manifest::OciManifest, String> {
    #[derive(serde::Deserialize)]
    struct Versioned {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
    }
    let versioned: Versioned =
        serde_json::from_slice(body).map_err(|e| format!("not a manifest: {e}"))?;
    if versioned.schema_version != 2 {
        return Err(format!(
            "schema version {}: only version 2 (OCI and Docker) images can be pulled",
            versioned.schema_version
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("not a manifest: {e}"))
}

/// Every layer of an eStargz image opened for a lazy tree, each read through `ranges` (the
/// source's ranged reads of a blob, by digest). `None`, and the image is pulled whole, unless
/// every layer is eStargz with a TOC this runtime reads; a warning says why not.
pub(crate) fn open_stargz(
    layers: &[LayerDescriptor],
    ranges: impl Fn(&str) -> io::Result<std::sync::Arc<dyn crate::frames::RangeSource>>,
) -> Option<crate::lazy::LazyLayers> {
    let mut lazy = crate::lazy::LazyLayers {
        framed: Vec::with_capacity(layers.len()),
        skeletons: Vec::with_capacity(layers.len()),
        prioritized: Vec::new(),
    };
    if layers.is_empty() {
        return None;
    }
    for (n, layer) in layers.iter().enumerate() {
        let (Some(toc), Some(size), Some(compression)) =
            (&layer.stargz_toc, layer.size, layer.compression)
        else {
            return None;
        };
        let opened = ranges(&layer.digest)
            .map_err(|e| format!("eStargz layer {}: cannot read it: {e}", layer.digest))
            .and_then(|source| {
                crate::stargz::open(source, &layer.digest, size, toc, compression)
                    .map_err(|e| e.to_string())
            });
        match opened {
            Ok(opened) => {
                lazy.framed.push(opened.framed);
                lazy.skeletons.push(opened.skeleton);
                lazy.prioritized.extend(
                    opened
                        .prioritized
                        .into_iter()
                        .map(|offset| crate::trace::FileAt { layer: n, offset }),
                );
            }
            Err(problem) => {
                tracing::warn!(%problem, "not loading the image lazily: pulling it whole");
                return None;
            }
        }
    }
    Some(lazy)
}

/// Checks the layer media types of a manifest, returning descriptors with what their
/// annotations say about reading them: our staged frames and skeleton, an eStargz TOC.
pub fn layer_descriptors(
    layers: &[oci_client::manifest::OciDescriptor],
) -> Result<Vec<LayerDescriptor>, SourceError> {
    layers
        .iter()
        .map(|declared| {
            let (digest, media_type) = (declared.digest.clone(), declared.media_type.clone());
            let compression = Compression::from_media_type(&media_type).ok_or_else(|| {
                SourceError::UnsupportedMediaType {
                    digest: digest.clone(),
                    media_type: media_type.clone(),
                }
            })?;
            let Ok(size) = u64::try_from(declared.size) else {
                return Err(SourceError::BadSize {
                    digest,
                    size: declared.size,
                });
            };
            let note = |name: &str| {
                declared
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(name))
                    .cloned()
            };
            Ok(LayerDescriptor {
                digest,
                size: Some(size),
                media_type,
                compression: Some(compression),
                frames: note(crate::frames::ANNOTATION),
                skeleton: note(crate::skeleton::ANNOTATION),
                stargz_toc: note(crate::stargz::TOC_ANNOTATION),
            })
        })
        .collect()
}
