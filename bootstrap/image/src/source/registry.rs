//! Images from an OCI distribution registry, through `oci-client`.
//!
//! `oci-client` does the protocol (bearer-token challenge, basic auth, Accept headers);
//! this module picks the platform, checks media types and streams blobs into bounded
//! channels so that several layers download while the first one is being applied.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::sync::{Semaphore, mpsc};

use super::auth::Credentials;
use super::{
    BlobReader, ChannelReader, LayerDescriptor, ResolvedImage, SourceError, layer_descriptors,
    no_matching_platform,
};
use crate::oci::parse_config;
use crate::platform::Platform;

/// How to talk to registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Credentials for the image's registry; else `~/.docker/config.json`; else anonymous.
    pub credentials: Option<Credentials>,
    /// Layers downloading at once.
    pub concurrency: usize,
}

/// A registry image.
#[derive(Clone)]
pub struct RegistrySource {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
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
            .field("reference", &self.reference.whole())
            .finish_non_exhaustive()
    }
}

impl RegistrySource {
    /// Prepares a client for `reference`; nothing is sent yet.
    pub fn new(reference: Reference, options: &RegistryOptions) -> Self {
        let registry = reference.resolve_registry().to_string();
        let mut plain_http: Vec<String> = options.insecure.clone();
        if is_loopback(&registry) {
            plain_http.push(registry.clone());
        }
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain_http),
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let credentials = options.credentials.clone().or_else(|| {
            super::auth::docker_config_text()
                .and_then(|t| super::auth::from_docker_config(&t, reference.registry()))
        });
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        Self {
            client: Client::new(config),
            reference,
            auth,
        }
    }

    /// The digest the reference points at now, by one `HEAD` (not counted as a pull by
    /// Docker Hub). For a digest reference no request is needed.
    pub async fn head_digest(&self) -> Result<String, SourceError> {
        if let Some(digest) = self.reference.digest() {
            return Ok(digest.to_string());
        }
        self.client
            .fetch_manifest_digest(&self.reference, &self.auth)
            .await
            .map_err(|e| registry_error(&self.reference, e))
    }

    /// Fetches the manifest (resolving an index to `platform`) and the config.
    pub async fn resolve(
        &self,
        platform: &Platform,
    ) -> Result<(ResolvedImage, String), SourceError> {
        let err = |e| registry_error(&self.reference, e);
        let (manifest, top_digest) = self
            .client
            .pull_manifest(&self.reference, &self.auth)
            .await
            .map_err(err)?;
        let (manifest, digest) = match manifest {
            OciManifest::Image(m) => (m, top_digest.clone()),
            OciManifest::ImageIndex(index) => {
                let entry = platform.select(&index.manifests).ok_or_else(|| {
                    no_matching_platform(self.reference.whole(), platform, &index.manifests)
                })?;
                let by_digest = self.reference.clone_with_digest(entry.digest.clone());
                match self
                    .client
                    .pull_manifest(&by_digest, &self.auth)
                    .await
                    .map_err(err)?
                {
                    (OciManifest::Image(m), d) => (m, d),
                    (OciManifest::ImageIndex(_), _) => {
                        return Err(SourceError::Registry {
                            registry: self.reference.registry().into(),
                            message: format!("index entry {} is itself an index", entry.digest),
                            status: None,
                        });
                    }
                }
            }
        };
        let layers = layer_descriptors(
            manifest
                .layers
                .iter()
                .map(|l| (l.digest.clone(), l.size, l.media_type.clone())),
        )?;
        let declared = u64::try_from(manifest.config.size).unwrap_or(u64::MAX);
        if declared > super::layout::MAX_METADATA_BYTES {
            return Err(SourceError::Registry {
                registry: self.reference.registry().into(),
                message: format!(
                    "the image config {} declares {} bytes: not a config (at most {} are read)",
                    manifest.config.digest,
                    manifest.config.size,
                    super::layout::MAX_METADATA_BYTES
                ),
                status: None,
            });
        }
        let mut config_bytes = Vec::new();
        self.client
            .pull_blob(&self.reference, &manifest.config, &mut config_bytes)
            .await
            .map_err(err)?;
        let (config, _) = parse_config(&config_bytes).map_err(|e| SourceError::Registry {
            registry: self.reference.registry().into(),
            message: format!("invalid image config {}: {e}", manifest.config.digest),
            status: None,
        })?;
        let resolved = ResolvedImage {
            manifest_digest: digest,
            config_digest: manifest.config.digest.clone(),
            config,
            config_blob: config_bytes,
            layers,
        };
        Ok((resolved, top_digest))
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

    async fn download(&self, layer: &LayerDescriptor, tx: &mpsc::Sender<io::Result<Bytes>>) {
        let descriptor = OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer
                .size
                .and_then(|s| i64::try_from(s).ok())
                .unwrap_or_default(),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let mut stream = match self
            .client
            .pull_blob_stream(&self.reference, &descriptor)
            .await
        {
            Ok(s) => s.stream,
            Err(e) => {
                let _ = tx
                    .send(Err(io::Error::other(
                        registry_error(&self.reference, e).to_string(),
                    )))
                    .await;
                return;
            }
        };
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                // oci-client checks the digest too and fails after the last byte; the
                // unpacker's own check then names the mismatch precisely.
                Err(_) if layer.size == Some(received) => break,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            received += chunk.len() as u64;
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        tracing::debug!(digest = %layer.digest, secs = started.elapsed().as_secs_f64(), "layer downloaded");
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
