//! The verified, decompressed byte stream of one layer: bytes → sha256 and size check →
//! gunzip / unzstd / nothing → tar. Nothing here touches the disk.

use std::io::{self, BufReader, Read};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use crate::oci::Compression;

/// What went wrong with the bytes of a blob, as opposed to what they contain.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BlobFault {
    /// The content does not hash to the digest the manifest promised.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// From the manifest.
        expected: String,
        /// Computed over the bytes received.
        actual: String,
    },
    /// The stream ended early.
    #[error("truncated: got {got} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes the manifest promised.
        expected: u64,
    },
    /// More bytes than the manifest promised.
    #[error("larger than the {expected} bytes the manifest declares")]
    Oversized {
        /// Bytes the manifest promised.
        expected: u64,
    },
    /// The transport failed mid-stream (connection dropped, read error).
    #[error("transfer failed: {0}")]
    Transfer(String),
    /// Only `sha256:` digests are produced by any registry we know of.
    #[error("unsupported digest algorithm in {0:?}")]
    UnsupportedDigest(String),
    /// A staged layer's frames or their index were wrong or did not arrive.
    #[error(transparent)]
    Frames(Box<crate::frames::FrameFault>),
    /// Media type says one compression, the bytes say another.
    #[error("declared {declared:?} but the content is {found:?}")]
    CompressionMismatch {
        /// From the media type.
        declared: Compression,
        /// From the magic bytes.
        found: Compression,
    },
}

/// Shared slot where a reader deep inside the decompress/tar stack records the root cause
/// of a failure, so the caller can report it instead of tar's generic "unexpected EOF".
#[derive(Debug, Clone, Default)]
pub struct FaultSlot(
    Arc<Mutex<Option<BlobFault>>>,
    Arc<std::sync::atomic::AtomicBool>,
);

impl FaultSlot {
    /// Records the first fault; later ones are consequences.
    pub fn set(&self, fault: BlobFault) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(fault);
        }
    }

    /// The recorded fault, if any.
    pub fn get(&self) -> Option<BlobFault> {
        self.0.lock().ok().and_then(|slot| slot.clone())
    }

    /// Whether a [`VerifyingReader`] sharing this slot saw the whole blob and it matched.
    pub fn verified(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records that the blob was read whole and checked (by a [`VerifyingReader`], or frame
    /// by frame for a framed layer).
    pub(crate) fn set_verified(&self) {
        self.1.store(true, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn fail(&self, fault: BlobFault) -> io::Error {
        let err = io::Error::new(io::ErrorKind::InvalidData, fault.to_string());
        self.set(fault);
        err
    }
}

/// Hashes and counts every byte read; at end of stream checks size and digest.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    expected_digest: String,
    expected_size: Option<u64>,
    read: u64,
    verified: bool,
    faults: FaultSlot,
    progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl<R> std::fmt::Debug for VerifyingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingReader")
            .field("expected_digest", &self.expected_digest)
            .field("expected_size", &self.expected_size)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which must yield exactly the blob named by `digest` (`sha256:…`).
    pub fn new(
        inner: R,
        digest: &str,
        size: Option<u64>,
        faults: FaultSlot,
    ) -> Result<Self, BlobFault> {
        let hex = crate::oci::sha256_hex(digest)
            .ok_or_else(|| BlobFault::UnsupportedDigest(digest.to_string()))?;
        Ok(Self {
            inner,
            hasher: Sha256::new(),
            expected_digest: hex.to_ascii_lowercase(),
            expected_size: size,
            read: 0,
            verified: false,
            faults,
            progress: None,
        })
    }

    /// Calls `progress(n)` for every `n` bytes read.
    pub fn with_progress(mut self, progress: Arc<dyn Fn(u64) + Send + Sync>) -> Self {
        self.progress = Some(progress);
        self
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => return Err(self.faults.fail(BlobFault::Transfer(e.to_string()))),
        };
        if n == 0 {
            if self.verified {
                return Ok(0);
            }
            if let Some(expected) = self.expected_size.filter(|&s| s != self.read) {
                return Err(self.faults.fail(BlobFault::Truncated {
                    got: self.read,
                    expected,
                }));
            }
            let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
            if actual != self.expected_digest {
                return Err(self.faults.fail(BlobFault::DigestMismatch {
                    expected: format!("sha256:{}", self.expected_digest),
                    actual: format!("sha256:{actual}"),
                }));
            }
            self.verified = true;
            self.faults.set_verified();
            return Ok(0);
        }
        self.read += n as u64;
        if let Some(expected) = self.expected_size.filter(|&s| self.read > s) {
            return Err(self.faults.fail(BlobFault::Oversized { expected }));
        }
        self.hasher.update(&buf[..n]);
        if let Some(progress) = &self.progress {
            progress(n as u64);
        }
        Ok(n)
    }
}

const READ_BUFFER: usize = 256 * 1024;

/// Wraps a verified blob stream in the decompressor `declared` asks for (sniffing when
/// `None` is given). A declared compression that the magic bytes contradict is refused:
/// a registry serving the wrong thing should fail loudly, not be guessed around.
pub fn decompressed<'a, R: Read + Send + 'a>(
    reader: R,
    declared: Option<Compression>,
    faults: &FaultSlot,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    use std::io::BufRead;
    let mut buffered = BufReader::with_capacity(READ_BUFFER, reader);
    let found = Compression::sniff(buffered.fill_buf()?);
    let compression = match declared {
        Some(declared) if declared != found => {
            return Err(faults.fail(BlobFault::CompressionMismatch { declared, found }));
        }
        Some(declared) => declared,
        None => found,
    };
    Ok(match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    fn read_all<R: Read>(mut r: R) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn verifies_digest_and_size() {
        let data = b"layer bytes".to_vec();
        let faults = FaultSlot::default();
        let r = VerifyingReader::new(
            &data[..],
            &digest_of(&data),
            Some(data.len() as u64),
            faults.clone(),
        );
        assert_eq!(
            read_all(r.unwrap_or_else(|e| panic!("{e}"))).ok(),
            Some(data)
        );
        assert_eq!(faults.get(), None);
    }

    #[test]
    fn reports_mismatch_truncation_and_oversize() {
        let data = b"layer bytes";
        type Case<'a> = (&'a [u8], Option<u64>, fn(&BlobFault) -> bool);
        let cases: [Case; 3] = [
            (b"tampered!!!", Some(11), |f| {
                matches!(f, BlobFault::DigestMismatch { .. })
            }),
            (b"layer", Some(11), |f| {
                matches!(
                    f,
                    BlobFault::Truncated {
                        got: 5,
                        expected: 11
                    }
                )
            }),
            (b"layer bytes and more", Some(11), |f| {
                matches!(f, BlobFault::Oversized { expected: 11 })
            }),
        ];
        for (served, size, check) in cases {
            let faults = FaultSlot::default();
            let r = VerifyingReader::new(served, &digest_of(data), size, faults.clone());
            assert!(read_all(r.unwrap_or_else(|e| panic!("{e}"))).is_err());
            let fault = faults.get();
            assert!(fault.as_ref().is_some_and(check), "{fault:?}");
        }
        assert!(VerifyingReader::new(&b""[..], "md5:abc", None, FaultSlot::default()).is_err());
    }

    #[test]
    fn decompresses_by_declared_type_and_refuses_contradictions() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"hello").unwrap_or_else(|e| panic!("{e}"));
        let gz = gz.finish().unwrap_or_else(|e| panic!("{e}"));
        let zst = zstd::encode_all(&b"hello"[..], 1).unwrap_or_else(|e| panic!("{e}"));
        let faults = FaultSlot::default();
        for (bytes, declared) in [
            (&gz, Some(Compression::Gzip)),
            (&zst, Some(Compression::Zstd)),
            (&zst, None),
        ] {
            let r = decompressed(&bytes[..], declared, &faults).and_then(read_all);
            assert_eq!(r.ok().as_deref(), Some(&b"hello"[..]));
        }
        assert!(decompressed(&b"plain tar"[..], Some(Compression::Gzip), &faults).is_err());
        assert!(matches!(
            faults.get(),
            Some(BlobFault::CompressionMismatch { .. })
        ));
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::from_media_type("text/html"), None);
    }
}
