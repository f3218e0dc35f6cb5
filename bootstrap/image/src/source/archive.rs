//! Images from a `docker save` tarball (`docker-archive:FILE`), gzipped or not.
//!
//! One pass indexes the archive (entry offsets, `manifest.json`, the config); each layer is
//! then read from its offset: a seek for a plain tar, a decompress-and-skip for a gzipped one.
//! Nothing is extracted to disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::{BlobReader, LayerDescriptor, ResolvedImage, SourceError};
use crate::oci::{Compression, parse_config};

/// JSON entries up to this size are kept in memory during indexing (manifest, configs).
const SMALL_ENTRY: u64 = 4 * 1024 * 1024;
/// All the JSON entries kept, at most: an image's manifests and configs are a few KiB
/// each, and an archive of thousands of 4 MiB entries would otherwise fill memory.
const SMALL_ENTRIES_TOTAL: u64 = 64 * 1024 * 1024;

/// Whether an entry that starts with `head` is JSON (a manifest, a config, an index) rather
/// than a layer, whose tar or gzip bytes never start with `{` or `[`.
fn looks_like_json(head: &[u8]) -> bool {
    matches!(
        head.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    layers: Vec<String>,
}

/// A `docker save` archive.
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    file: PathBuf,
}

#[derive(Debug, Default)]
struct Index {
    gzipped: bool,
    /// Entry name → (offset of its content in the uncompressed tar, size).
    entries: HashMap<String, (u64, u64)>,
    small: HashMap<String, Vec<u8>>,
}

fn clean(name: &str) -> &str {
    name.trim_start_matches("./")
}

impl ArchiveSource {
    /// The archive file.
    pub fn new(file: PathBuf) -> Self {
        Self { file }
    }

    fn fail(&self, message: impl Into<String>) -> SourceError {
        SourceError::Local {
            path: self.file.display().to_string(),
            message: message.into(),
        }
    }

    fn open_tar_stream(&self) -> Result<(Box<dyn Read + Send>, bool), SourceError> {
        let mut file =
            File::open(&self.file).map_err(|e| self.fail(format!("cannot open: {e}")))?;
        let mut magic = [0u8; 2];
        let n = file
            .read(&mut magic)
            .map_err(|e| self.fail(format!("cannot read: {e}")))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| self.fail(format!("cannot seek: {e}")))?;
        let gzipped = Compression::sniff(&magic[..n]) == Compression::Gzip;
        let reader = BufReader::with_capacity(256 * 1024, file);
        Ok(if gzipped {
            (Box::new(flate2::bufread::MultiGzDecoder::new(reader)), true)
        } else {
            (Box::new(reader), false)
        })
    }

    fn index(&self) -> Result<Index, SourceError> {
        let (stream, gzipped) = self.open_tar_stream()?;
        let mut index = Index {
            gzipped,
            ..Default::default()
        };
        let mut archive = tar::Archive::new(stream);
        let bad = |e: io::Error| self.fail(format!("not a docker-archive tarball: {e}"));
        let mut kept = 0_u64;
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = clean(&entry.path().map_err(bad)?.to_string_lossy()).to_string();
            let size = entry.size();
            index
                .entries
                .insert(name.clone(), (entry.raw_file_position(), size));
            if size <= SMALL_ENTRY {
                let mut bytes = Vec::new();
                (&mut entry).take(64).read_to_end(&mut bytes).map_err(bad)?;
                if !looks_like_json(&bytes) {
                    continue;
                }
                kept += size;
                if kept > SMALL_ENTRIES_TOTAL {
                    return Err(self.fail(format!(
                        "its JSON entries add up to more than {SMALL_ENTRIES_TOTAL} bytes: not an image archive"
                    )));
                }
                entry.read_to_end(&mut bytes).map_err(bad)?;
                index.small.insert(name, bytes);
            }
        }
        Ok(index)
    }

    /// Indexes the archive and resolves its (first) image. Returns the layer offsets too.
    pub fn resolve(&self) -> Result<(ResolvedImage, ArchiveLayers), SourceError> {
        let index = self.index()?;
        let manifest_bytes = index
            .small
            .get("manifest.json")
            .ok_or_else(|| self.fail("no manifest.json: not a docker save archive"))?;
        let manifests: Vec<ArchiveManifest> = serde_json::from_slice(manifest_bytes)
            .map_err(|e| self.fail(format!("invalid manifest.json: {e}")))?;
        let manifest = manifests
            .into_iter()
            .next()
            .ok_or_else(|| self.fail("manifest.json lists no image"))?;
        let config_bytes = index.small.get(clean(&manifest.config)).ok_or_else(|| {
            self.fail(format!(
                "config {} missing from the archive",
                manifest.config
            ))
        })?;
        let config_digest = super::digest_of(config_bytes);
        let (config, diff_ids) =
            parse_config(config_bytes).map_err(|e| self.fail(format!("invalid config: {e}")))?;
        let mut layers = Vec::new();
        let mut offsets = Vec::new();
        for (i, name) in manifest.layers.iter().enumerate() {
            let name = clean(name);
            let &(offset, size) = index
                .entries
                .get(name)
                .ok_or_else(|| self.fail(format!("layer {name} missing from the archive")))?;
            // OCI-style archives name blobs by digest; classic ones are verified by diff_id.
            let digest = match name.strip_prefix("blobs/sha256/") {
                Some(hex) => format!("sha256:{hex}"),
                None => diff_ids
                    .get(i)
                    .cloned()
                    .ok_or_else(|| self.fail(format!("config has no diff_id for layer {i}")))?,
            };
            layers.push(LayerDescriptor {
                digest,
                size: Some(size),
                media_type: String::new(),
                compression: None,
                frames: None,
                skeleton: None,
                stargz_toc: None,
            });
            offsets.push((offset, size));
        }
        let resolved = ResolvedImage {
            manifest_digest: config_digest.clone(),
            config_digest,
            config,
            config_blob: config_bytes.clone(),
            layers,
        };
        Ok((
            resolved,
            ArchiveLayers {
                source: self.clone(),
                gzipped: index.gzipped,
                offsets,
            },
        ))
    }
}

/// Where each layer sits inside the archive.
#[derive(Debug)]
pub struct ArchiveLayers {
    source: ArchiveSource,
    gzipped: bool,
    offsets: Vec<(u64, u64)>,
}

impl ArchiveLayers {
    /// Opens each layer; readers are independent file handles. In a gzipped archive a layer's
    /// reader decompresses up to its offset on first read, so only the layer being applied
    /// costs anything.
    pub fn open(&self) -> Result<Vec<BlobReader>, SourceError> {
        self.offsets
            .iter()
            .map(|&(offset, size)| {
                if self.gzipped {
                    return Ok(Box::new(GzippedLayer {
                        source: self.source.clone(),
                        offset,
                        size,
                        inner: None,
                    }) as BlobReader);
                }
                let mut file = File::open(&self.source.file)
                    .map_err(|e| self.source.fail(format!("cannot open: {e}")))?;
                file.seek(SeekFrom::Start(offset))
                    .map_err(|e| self.source.fail(format!("cannot seek: {e}")))?;
                Ok(Box::new(BufReader::new(file).take(size)) as BlobReader)
            })
            .collect()
    }
}

struct GzippedLayer {
    source: ArchiveSource,
    offset: u64,
    size: u64,
    inner: Option<io::Take<Box<dyn Read + Send>>>,
}

impl Read for GzippedLayer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inner.is_none() {
            let (mut stream, _) = self
                .source
                .open_tar_stream()
                .map_err(|e| io::Error::other(e.to_string()))?;
            io::copy(&mut (&mut stream).take(self.offset), &mut io::sink())?;
            self.inner = Some(stream.take(self.size));
        }
        match &mut self.inner {
            Some(inner) => inner.read(buf),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `docker save` tarball of `entries` (name, bytes) at `path`.
    fn archive(path: &std::path::Path, entries: &[(&str, Vec<u8>)]) {
        let mut builder = tar::Builder::new(File::create(path).unwrap());
        for (name, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, bytes.as_slice())
                .unwrap();
        }
        builder.finish().unwrap();
    }

    #[test]
    fn small_layers_are_not_kept_and_many_json_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Twenty layers of 3 MiB: 60 MiB that the index used to keep in memory.
        let layer: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let mut entries: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("{i}/layer.tar"), layer.clone()))
            .collect();
        let layers: Vec<String> = entries.iter().map(|(name, _)| name.clone()).collect();
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#.to_vec();
        entries.push(("config.json".into(), config));
        let manifest = serde_json::to_vec(&serde_json::json!([
            {"Config": "config.json", "Layers": layers}
        ]))
        .unwrap();
        entries.push(("manifest.json".into(), manifest));
        let file = dir.path().join("image.tar");
        let refs: Vec<(&str, Vec<u8>)> = entries
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect();
        archive(&file, &refs);
        let index = ArchiveSource::new(file).index().unwrap();
        assert_eq!(index.entries.len(), 22);
        let mut kept: Vec<&str> = index.small.keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["config.json", "manifest.json"]);

        let json = format!("[{}]", " ".repeat((4 << 20) - 2)).into_bytes();
        let many: Vec<(String, Vec<u8>)> = (0..17)
            .map(|i| (format!("{i}.json"), json.clone()))
            .collect();
        let refs: Vec<(&str, Vec<u8>)> =
            many.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        let hostile = dir.path().join("hostile.tar");
        archive(&hostile, &refs);
        let err = ArchiveSource::new(hostile).index().unwrap_err().to_string();
        assert!(err.contains("JSON entries add up to more than"), "{err}");
    }
}
