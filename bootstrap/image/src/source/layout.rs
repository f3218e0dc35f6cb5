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

/// Threads reading the small blobs of a layout's layers at once (frame indexes, skeletons).
const READERS: usize = 8;

/// The largest `index.json`, manifest or config read whole: a "manifest" that never ends
/// must not exhaust memory (containerd's limits are of the same order).
pub const MAX_METADATA_BYTES: u64 = 4 * 1024 * 1024;

/// The largest skeleton read whole (compressed): about 48 bytes an entry, so a layer of a
/// million files, where 4 MiB would have refused one of 90,000 (a conda environment or a TeX
/// distribution has more). Its digest is the manifest's, so this only bounds memory.
pub const MAX_SKELETON_BYTES: u64 = 64 * 1024 * 1024;

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

/// Reads a small file whole, refusing one over `max` bytes.
pub(crate) fn read_capped(reader: impl io::Read, name: &str, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(name, max));
    }
    Ok(bytes)
}

/// The error of a file larger than what is read of it.
pub(crate) fn too_large(name: &str, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{name} is larger than {max} bytes: refused"),
    )
}

/// Where a layout's files are: paths are relative to the layout's root.
pub trait LayoutStore: Debug + Send + Sync {
    /// The layout's location, for messages.
    fn location(&self) -> String;
    /// Reads a small file whole, refusing one over `max` bytes.
    fn read_at_most(&self, path: &str, max: u64) -> io::Result<Vec<u8>>;
    /// Reads a small file whole (an index, manifest, config or trace).
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        self.read_at_most(path, MAX_METADATA_BYTES)
    }
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
    fn read_at_most(&self, path: &str, max: u64) -> io::Result<Vec<u8>> {
        let full = self.0.join(path);
        read_capped(open_regular(&full)?, &full.display().to_string(), max)
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
        self.read_blob_at_most(digest, MAX_METADATA_BYTES)
    }

    /// Reads a blob of at most `max` bytes and checks its digest.
    fn read_blob_at_most(&self, digest: &str, max: u64) -> Result<Vec<u8>, SourceError> {
        let path = self.blob_path(digest)?;
        let bytes = self
            .store
            .read_at_most(&path, max)
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
        self.each_at_once(layers, |l| match &l.frames {
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
    }

    /// `open` of each layer, on up to [`READERS`] threads, in the layers' order: a store far
    /// away (S3) answers each small read after a round trip, and a staged image has two per
    /// layer (its frame index, its skeleton) before anything else can start.
    fn each_at_once<T: Send>(
        &self,
        layers: &[super::LayerDescriptor],
        open: impl Fn(&super::LayerDescriptor) -> Result<T, SourceError> + Sync,
    ) -> Result<Vec<T>, SourceError> {
        if layers.len() < 2 {
            return layers.iter().map(open).collect();
        }
        let open = &open;
        std::thread::scope(|scope| {
            let open_chunk = move |chunk: &[super::LayerDescriptor]| {
                chunk.iter().map(open).collect::<Result<Vec<T>, _>>()
            };
            // A chunk whose thread could not be started (the process is out of threads) is
            // read here instead.
            let readers: Vec<_> = layers
                .chunks(layers.len().div_ceil(READERS))
                .map(|chunk| {
                    std::thread::Builder::new()
                        .name("scar-layout".into())
                        .spawn_scoped(scope, move || open_chunk(chunk))
                        .map_err(|_| chunk)
                })
                .collect();
            // Every reader joined before the first error is returned: one left running would
            // be joined by the scope, which panics if it did.
            let parts: Vec<_> = readers
                .into_iter()
                .map(|reader| match reader {
                    Ok(reader) => reader
                        .join()
                        .unwrap_or_else(|_| Err(self.fail("a thread reading the layout panicked"))),
                    Err(chunk) => open_chunk(chunk),
                })
                .collect();
            parts
                .into_iter()
                .try_fold(Vec::with_capacity(layers.len()), |mut opened, part| {
                    opened.extend(part?);
                    Ok(opened)
                })
        })
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
        let skeletons = self.each_at_once(layers, |l| match l.skeleton.as_deref() {
            Some(digest) => self.read_blob_at_most(digest, MAX_SKELETON_BYTES),
            None => Err(self.fail(format!("layer {} has no skeleton", l.digest))),
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{LayerDescriptor, digest_of};

    /// A layout directory holding `blobs` (by digest); returns their digests.
    fn layout_with(dir: &std::path::Path, blobs: &[&[u8]]) -> Vec<String> {
        let store = dir.join("blobs/sha256");
        fs::create_dir_all(&store).expect("blobs");
        blobs
            .iter()
            .map(|bytes| {
                let digest = digest_of(bytes);
                let hex = digest.trim_start_matches("sha256:");
                fs::write(store.join(hex), bytes).expect("blob");
                digest
            })
            .collect()
    }

    /// A staged layer (frames, index and skeleton of a small tar) whose skeleton is replaced
    /// by `skeleton`, as the manifest would name it.
    fn staged_layer(dir: &std::path::Path, name: &str, skeleton: &[u8]) -> LayerDescriptor {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(name.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, name.as_bytes())
            .expect("tar");
        let tar = tar.into_inner().expect("tar");
        let layer_digest = digest_of(&tar);
        let (mut framed, mut own_skeleton) = (Vec::new(), Vec::new());
        let index = frames::encode(&tar[..], &layer_digest, &mut framed, &mut own_skeleton)
            .expect("frames");
        let index_json = serde_json::to_vec(&index).expect("index");
        let digests = layout_with(dir, &[&tar, &framed, &index_json, skeleton]);
        LayerDescriptor {
            digest: digests[0].clone(),
            size: Some(tar.len() as u64),
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            compression: None,
            frames: Some(digests[2].clone()),
            skeleton: Some(digests[3].clone()),
            stargz_toc: None,
        }
    }

    /// A layer of ~100,000 files has a skeleton over 4 MiB: it is read (up to
    /// [`MAX_SKELETON_BYTES`]), not refused as a manifest that never ends would be.
    #[test]
    fn a_skeleton_larger_than_a_manifest_may_be_is_read_up_to_its_own_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big: Vec<u8> = (0..(MAX_METADATA_BYTES + 4096))
            .map(|i| (i % 251) as u8)
            .collect();
        let layer = staged_layer(dir.path(), "hello", &big);
        let source = LayoutSource::new(dir.path().to_path_buf(), None);
        let lazy = source
            .open_lazy(&[layer])
            .expect("a skeleton over 4 MiB is read")
            .expect("the layer is staged");
        assert_eq!(lazy.skeletons, vec![big]);
        // A metadata read of the same blob is still refused at 4 MiB.
        let path = source
            .blob_path(&digest_of(&lazy.skeletons[0]))
            .expect("a blob's path");
        let refused = DirStore(dir.path().to_path_buf()).read(&path);
        assert!(refused.is_err_and(|e| e.to_string().contains("larger than 4194304 bytes")));
    }

    #[test]
    fn a_skeleton_over_its_bound_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let huge = vec![7u8; usize::try_from(MAX_SKELETON_BYTES).expect("usize") + 1];
        let layer = staged_layer(dir.path(), "hello", &huge);
        let source = LayoutSource::new(dir.path().to_path_buf(), None);
        let error = source.open_lazy(&[layer]).expect_err("refused").to_string();
        assert!(
            error.contains(&format!("larger than {MAX_SKELETON_BYTES} bytes")),
            "{error}"
        );
    }

    /// Several layers' indexes and skeletons are read at once, and come back in the layers'
    /// order.
    #[test]
    fn many_layers_open_in_their_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names: Vec<String> = (0..11).map(|n| format!("file-{n}")).collect();
        let layers: Vec<LayerDescriptor> = names
            .iter()
            .map(|name| staged_layer(dir.path(), name, format!("skeleton of {name}").as_bytes()))
            .collect();
        let source = LayoutSource::new(dir.path().to_path_buf(), None);
        let lazy = source.open_lazy(&layers).expect("opened").expect("staged");
        let skeletons: Vec<String> = lazy
            .skeletons
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let expected: Vec<String> = names.iter().map(|n| format!("skeleton of {n}")).collect();
        assert_eq!(skeletons, expected);
        let framed: Vec<&str> = lazy.framed.iter().map(|f| f.index.layer.as_str()).collect();
        let digests: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
        assert_eq!(framed, digests);
        // One layer that cannot be read fails the whole, by name.
        let mut broken = layers.clone();
        broken[7].skeleton = Some(format!("sha256:{}", "0".repeat(64)));
        let error = source.open_lazy(&broken).expect_err("refused").to_string();
        assert!(error.contains("cannot read blob sha256:000"), "{error}");
    }

    /// Out of threads (the command has the function's 1,024), the layers are read on the
    /// pull's own thread, still in their order.
    #[test]
    fn layers_open_in_their_order_when_no_thread_can_start() {
        crate::no_threads::without_threads(
            "source::layout::tests::layers_open_in_their_order_when_no_thread_can_start",
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let layers: Vec<LayerDescriptor> = (0..5)
                    .map(|n| staged_layer(dir.path(), &format!("f{n}"), &[n]))
                    .collect();
                let source = LayoutSource::new(dir.path().to_path_buf(), None);
                let lazy = source.open_lazy(&layers).expect("opened").expect("staged");
                assert_eq!(lazy.skeletons, (0..5).map(|n| vec![n]).collect::<Vec<_>>());
            },
        );
    }
}
