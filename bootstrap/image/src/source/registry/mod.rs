//! Images from an OCI distribution registry.
//!
//! oci-client answers the authentication challenge; [`http`] makes the reads bounded and
//! retried; this module resolves the manifest to the platform, checks media types and
//! sizes, and streams blobs into bounded channels so that several layers download while
//! the first one is being applied.

mod http;
mod retry;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::sync::{Semaphore, mpsc};

use self::http::{MANIFEST_TYPES, Session, matches_digest};
use super::auth::Credentials;
use super::{
    BlobReader, ChannelReader, LayerDescriptor, ResolvedImage, SourceError, digest_of,
    layer_descriptors, no_matching_platform,
};
use crate::oci::parse_config;
use crate::platform::Platform;

/// How long a registry may stay silent, before answering or mid-body, by default.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to talk to registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Credentials for the image's registry; else `~/.docker/config.json`; else anonymous.
    pub credentials: Option<Credentials>,
    /// Layers downloading at once.
    pub concurrency: usize,
    /// How long a registry may stay silent (before answering, or in the middle of a body)
    /// before the read fails.
    pub read_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            credentials: None,
            concurrency: 3,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

/// A registry image.
#[derive(Clone)]
pub struct RegistrySource {
    session: Arc<Session>,
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn registry_error(reference: &Reference, err: OciDistributionError) -> SourceError {
    let registry = reference.registry().to_string();
    let (status, message) = match &err {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => (
            Some(401),
            format!(
                "access to {} denied: {err} (check the registry credentials)",
                reference.repository()
            ),
        ),
        OciDistributionError::ImageManifestNotFoundError(_) => {
            (Some(404), format!("{} not found: {err}", reference.whole()))
        }
        OciDistributionError::ServerError { code, .. } => (Some(*code), err.to_string()),
        OciDistributionError::RegistryError { envelope, .. } => {
            let not_found = envelope.errors.iter().any(|e| {
                use oci_client::errors::OciErrorCode::*;
                matches!(
                    e.code,
                    ManifestUnknown | NameUnknown | BlobUnknown | NotFound
                )
            });
            let denied = envelope.errors.iter().any(|e| {
                use oci_client::errors::OciErrorCode::*;
                matches!(e.code, Unauthorized | Denied)
            });
            let status = if not_found {
                Some(404)
            } else if denied {
                Some(401)
            } else {
                None
            };
            let what = if not_found {
                format!("{} not found: ", reference.whole())
            } else {
                String::new()
            };
            (status, format!("{what}{err}"))
        }
        OciDistributionError::RequestError(e) => (
            e.status().map(|s| s.as_u16()),
            format!("request failed: {e}"),
        ),
        _ => (None, err.to_string()),
    };
    SourceError::Registry {
        registry,
        message,
        status,
    }
}

impl std::fmt::Debug for RegistrySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySource")
            .field("reference", &self.session.reference().whole())
            .finish_non_exhaustive()
    }
}

impl RegistrySource {
    /// Prepares a client for `reference`. Credentials: the configured ones, else a Docker
    /// config's, else, for an ECR registry, a token ECR gives the process's AWS identity
    /// (the one request this may send), else none.
    pub async fn connect(
        reference: Reference,
        options: &RegistryOptions,
    ) -> Result<Self, SourceError> {
        let registry = reference.resolve_registry().to_string();
        let mut credentials = options.credentials.clone().or_else(|| {
            super::auth::docker_config_text()
                .and_then(|t| super::auth::from_docker_config(&t, reference.registry()))
        });
        if credentials.is_none()
            && let Some(ecr) = super::ecr::ecr_registry(&registry)
        {
            // Boxed: the SDK's future is deep, and every caller's future would carry it inline.
            credentials = Some(Box::pin(super::ecr::credentials(&registry, &ecr)).await?);
        }
        Self::new(reference, options, credentials)
    }

    /// A client for `reference` with `credentials`; nothing is sent yet.
    fn new(
        reference: Reference,
        options: &RegistryOptions,
        credentials: Option<Credentials>,
    ) -> Result<Self, SourceError> {
        let registry = reference.resolve_registry().to_string();
        let plain_http = is_loopback(&registry) || options.insecure.contains(&registry);
        // oci-client only answers the authentication challenge: it must reach the registry
        // the same way the reads do.
        crate::net::install_tls_provider();
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(options.read_timeout),
            ..Default::default()
        };
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        let session = Session::new(
            reference,
            auth,
            Client::new(config),
            plain_http,
            CONNECT_TIMEOUT,
            options.read_timeout,
        )?;
        Ok(Self {
            session: Arc::new(session),
        })
    }

    pub(crate) fn reference(&self) -> &Reference {
        self.session.reference()
    }

    fn fail(&self, message: String) -> SourceError {
        SourceError::Registry {
            registry: self.reference().registry().into(),
            message,
            status: None,
        }
    }

    /// The digest the reference points at now, by one `HEAD` (not counted as a pull by
    /// Docker Hub). For a digest reference no request is needed.
    pub async fn head_digest(&self) -> Result<String, SourceError> {
        if let Some(digest) = self.reference().digest() {
            return Ok(digest.to_string());
        }
        let url = self.session.manifest_url(None);
        let answer = self
            .session
            .send(
                reqwest::Method::HEAD,
                &url,
                Some(MANIFEST_TYPES),
                "the manifest",
            )
            .await?;
        if let Some(digest) = answer
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
        {
            return Ok(digest.to_owned());
        }
        // The header is optional: the digest of the body is the answer then.
        let (body, _) = self.manifest(None).await?;
        Ok(digest_of(&body))
    }

    /// Reads the manifest of the reference (or `digest`), at most
    /// [`super::layout::MAX_METADATA_BYTES`], checked against the digest that names it.
    async fn manifest(&self, digest: Option<&str>) -> Result<(Vec<u8>, OciManifest), SourceError> {
        let what = match digest {
            Some(digest) => format!("the manifest {digest}"),
            None => "the manifest".to_owned(),
        };
        let url = self.session.manifest_url(digest);
        let answer = self
            .session
            .send(reqwest::Method::GET, &url, Some(MANIFEST_TYPES), &what)
            .await?;
        let body = self.session.read_capped(answer, &what).await?;
        if let Some(expected) = digest.or(self.reference().digest())
            && !matches_digest(&body, expected)
        {
            return Err(self.fail(format!(
                "{what}: the registry sent {} bytes whose digest is {}, not {expected}",
                body.len(),
                digest_of(&body)
            )));
        }
        let manifest =
            super::parse_manifest(&body).map_err(|e| self.fail(format!("{what}: {e}")))?;
        Ok((body, manifest))
    }

    /// Fetches the manifest (resolving an index to `platform`) and the config.
    pub async fn resolve(
        &self,
        platform: &Platform,
    ) -> Result<(ResolvedImage, String), SourceError> {
        let (top_body, top) = self.manifest(None).await?;
        let top_digest = digest_of(&top_body);
        let (manifest, digest) = match top {
            OciManifest::Image(m) => (m, top_digest.clone()),
            OciManifest::ImageIndex(index) => {
                let entry = platform.select(&index.manifests).ok_or_else(|| {
                    no_matching_platform(self.reference().whole(), platform, &index.manifests)
                })?;
                match self.manifest(Some(&entry.digest)).await? {
                    (_, OciManifest::Image(m)) => (m, entry.digest.clone()),
                    (_, OciManifest::ImageIndex(_)) => {
                        return Err(
                            self.fail(format!("index entry {} is itself an index", entry.digest))
                        );
                    }
                }
            }
        };
        let resolved = self.resolve_image(manifest, digest).await?;
        Ok((resolved, top_digest))
    }

    /// The layers and config of a platform's manifest.
    async fn resolve_image(
        &self,
        manifest: OciImageManifest,
        digest: String,
    ) -> Result<ResolvedImage, SourceError> {
        let layers = layer_descriptors(&manifest.layers)?;
        let config = &manifest.config;
        let what = format!("the image config {}", config.digest);
        if u64::try_from(config.size).unwrap_or(u64::MAX) > super::layout::MAX_METADATA_BYTES {
            return Err(self.fail(format!(
                "{what} declares {} bytes: not a config (at most {} are read)",
                config.size,
                super::layout::MAX_METADATA_BYTES
            )));
        }
        let answer = self.session.open_blob(&config.digest, &what).await?;
        let config_bytes = self.session.read_capped(answer, &what).await?;
        if !matches_digest(&config_bytes, &config.digest) {
            return Err(self.fail(format!(
                "{what}: the registry sent bytes whose digest is {}",
                digest_of(&config_bytes)
            )));
        }
        let (parsed, _) = parse_config(&config_bytes)
            .map_err(|e| self.fail(format!("invalid image config {}: {e}", config.digest)))?;
        Ok(ResolvedImage {
            manifest_digest: digest,
            config_digest: config.digest.clone(),
            config: parsed,
            config_blob: config_bytes,
            layers,
        })
    }

    /// Opens every layer for a lazy tree when the image is eStargz ([`crate::stargz`]):
    /// its TOC is read now, its chunks by ranged GETs as files are asked for. `None` for
    /// other images (they are pulled whole), and outside a tokio runtime, whose thread the
    /// ranged reads borrow (the pull calls this on one of its blocking threads).
    pub fn open_lazy(&self, layers: &[LayerDescriptor]) -> Option<crate::lazy::LazyLayers> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        super::open_stargz(layers, |digest| {
            Ok(Arc::new(BlobRanges {
                source: self.clone(),
                digest: digest.to_string(),
                runtime: runtime.clone(),
            }))
        })
    }

    /// Starts downloading `layers`, at most `concurrency` at a time and in order, each into
    /// a bounded channel. Dropping a reader cancels its download.
    pub fn open_layers(&self, layers: &[LayerDescriptor], concurrency: usize) -> Vec<BlobReader> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut readers: Vec<BlobReader> = Vec::with_capacity(layers.len());
        let mut jobs = Vec::with_capacity(layers.len());
        for layer in layers {
            let (tx, rx) = mpsc::channel(super::CHANNEL_CHUNKS);
            readers.push(Box::new(ChannelReader::new(rx)));
            jobs.push((layer.clone(), tx));
        }
        let this = self.clone();
        tokio::spawn(async move {
            for (layer, tx) in jobs {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let this = this.clone();
                tokio::spawn(async move {
                    this.download(&layer, &tx).await;
                    drop(permit);
                });
            }
        });
        readers
    }

    /// Streams one layer into `tx`. A failure before the first byte is retried by the
    /// session; one in the middle ends the layer (the unpacker has consumed the bytes
    /// before it) with words that say why.
    async fn download(&self, layer: &LayerDescriptor, tx: &mpsc::Sender<io::Result<Bytes>>) {
        let started = std::time::Instant::now();
        let what = format!("layer {}", layer.digest);
        let mut answer = match self.session.open_blob(&layer.digest, &what).await {
            Ok(answer) => answer,
            Err(e) => {
                let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                return;
            }
        };
        loop {
            let chunk = match answer.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    let kind = if e.is_timeout() {
                        io::ErrorKind::TimedOut
                    } else {
                        io::ErrorKind::Other
                    };
                    let _ = tx
                        .send(Err(io::Error::new(kind, self.session.transfer_error(&e))))
                        .await;
                    return;
                }
            };
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        tracing::debug!(digest = %layer.digest, secs = started.elapsed().as_secs_f64(), "layer downloaded");
    }
}

/// One blob of the registry read by ranged GETs, each on the calling (blocking) thread.
struct BlobRanges {
    source: RegistrySource,
    digest: String,
    runtime: tokio::runtime::Handle,
}

impl crate::frames::RangeSource for BlobRanges {
    fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let what = format!("layer {}", self.digest);
        self.runtime
            .block_on(
                self.source
                    .session
                    .read_blob_range(&self.digest, offset, len, &what),
            )
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_detected() {
        for r in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["docker.io", "index.docker.io", "10.0.0.1:5000", "ghcr.io"] {
            assert!(!is_loopback(r), "{r}");
        }
    }
}
