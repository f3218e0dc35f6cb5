//! `init -db BUCKET`: the image copied into S3 as an OCI image layout, so that cold starts
//! read it from S3 (same region, no registry rate limits, no registry credentials in the
//! function) with the same streaming unpacker as a registry pull.
//!
//! Layout under `s3://BUCKET/scar-rs/images/FUNCTION/` (or `scar-rs/shared-images/NAME/`
//! for `deployer stage`, outside every function's prefix): `blobs/sha256/<hex>` for the
//! config, the manifest and every layer as stored (compressed), and `index.json`, written
//! last, so a half-staged prefix is never mistaken for an image.
//!
//! Next to each layer goes the same tar re-encoded as independent zstd frames, and the frames'
//! index (`scar_image::frames`), named by an annotation on the layer's descriptor: the
//! runtime then fetches the frames with parallel ranged GETs and decompresses them on every
//! core. The manifest still lists the original layers, so any OCI tool reads the layout.
//! A third annotation names the layer's skeleton (`scar_image::skeleton`: the tar without
//! the files' contents), from which a cold start can build the tree before fetching files.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use aws_sdk_s3::primitives::ByteStream;
use oci_client::config::{Architecture, Os};
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
    OciDescriptor, OciImageIndex, OciImageManifest, Platform,
};
use scar_image::{ImageReference, frames, skeleton};
use sha2::{Digest as _, Sha256};

use crate::aws::Aws;
use crate::cli::Arch;
use crate::error::DeployError;

/// What to stage, from the flags.
#[derive(Debug, Clone)]
pub struct StagingSource {
    /// The image.
    pub reference: ImageReference,
    /// The deployment bucket.
    pub bucket: String,
    /// The function's architecture, which picks the image from an index.
    pub arch: Arch,
}

/// Where it goes.
#[derive(Debug, Clone)]
pub struct StagingPlan {
    /// The image.
    pub reference: ImageReference,
    /// The bucket.
    pub bucket: String,
    /// The prefix, ending in `/`.
    pub prefix: String,
    /// The platform.
    pub arch: Arch,
}

/// The function's own prefix in the deployment bucket.
fn function_prefix(function: &str) -> String {
    format!("scar-rs/images/{function}/")
}

/// A prefix several functions share (`deployer stage -n NAME`): no function's `rm` touches it.
fn shared_prefix(name: &str) -> String {
    format!("scar-rs/shared-images/{name}/")
}

/// What the function pulls once its image is staged in `bucket` (what [`stage`] returns).
pub fn staged_reference(bucket: &str, function: &str) -> String {
    format!("s3://{bucket}/{}", function_prefix(function))
}

impl StagingSource {
    /// Places the image under the function's own prefix.
    pub fn for_function(self, function: &str) -> StagingPlan {
        StagingPlan {
            reference: self.reference,
            bucket: self.bucket,
            prefix: function_prefix(function),
            arch: self.arch,
        }
    }

    /// Places the image under a shared name.
    pub fn shared(self, name: &str) -> StagingPlan {
        StagingPlan {
            reference: self.reference,
            bucket: self.bucket,
            prefix: shared_prefix(name),
            arch: self.arch,
        }
    }
}

fn fail(plan: &StagingPlan, message: impl Into<String>) -> DeployError {
    DeployError::Staging {
        image: plan.reference.to_string(),
        message: message.into(),
    }
}

/// Copies the image and returns the reference the function pulls (`s3://BUCKET/PREFIX`).
pub async fn stage(aws: &Aws, plan: &StagingPlan) -> Result<String, DeployError> {
    let platform: scar_image::Platform = format!("linux/{}", plan.arch.as_str())
        .parse()
        .map_err(|e| fail(plan, format!("{e:?}")))?;
    let registry = scar_image::RegistryOptions {
        concurrency: 3,
        ..Default::default()
    };
    let (resolved, readers) = scar_image::fetch(&plan.reference, &platform, &registry)
        .await
        .map_err(|e| fail(plan, e.to_string()))?;
    let mut layers = Vec::new();
    for (descriptor, reader) in resolved.layers.iter().zip(readers) {
        let spooled = tokio::task::spawn_blocking(move || spool(reader))
            .await
            .map_err(|e| fail(plan, e.to_string()))?
            .map_err(|e| fail(plan, format!("reading layer {}: {e}", descriptor.digest)))?;
        // A registry names the stored bytes: they must match. An archive names the
        // uncompressed tar, which the unpacker checks at the first cold start instead.
        if !descriptor.media_type.is_empty() && descriptor.digest != spooled.digest {
            return Err(fail(
                plan,
                format!(
                    "layer {} arrived with digest {}: corrupt in transit",
                    descriptor.digest, spooled.digest
                ),
            ));
        }
        upload_file(aws, plan, spooled.file.path(), &spooled.digest).await?;
        let staged = stage_frames(aws, plan, &spooled).await?;
        layers.push(OciDescriptor {
            media_type: spooled.media_type.to_string(),
            digest: spooled.digest.clone(),
            size: i64::try_from(spooled.size).unwrap_or(i64::MAX),
            annotations: Some(BTreeMap::from([
                (frames::ANNOTATION.to_string(), staged.index),
                (skeleton::ANNOTATION.to_string(), staged.skeleton),
            ])),
            ..OciDescriptor::default()
        });
        tracing::info!(digest = %spooled.digest, bytes = spooled.size, "layer staged");
    }
    let config_digest = digest_of(&resolved.config_blob);
    upload_bytes(
        aws,
        plan,
        &blob_key(&config_digest),
        resolved.config_blob.clone(),
    )
    .await?;
    let manifest = serde_json::to_vec(&OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        config: OciDescriptor {
            media_type: IMAGE_CONFIG_MEDIA_TYPE.to_string(),
            digest: config_digest,
            size: i64::try_from(resolved.config_blob.len()).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        },
        layers,
        ..OciImageManifest::default()
    })
    .map_err(|e| fail(plan, e.to_string()))?;
    let manifest_digest = digest_of(&manifest);
    let manifest_size = manifest.len();
    upload_bytes(aws, plan, &blob_key(&manifest_digest), manifest).await?;
    let index = serde_json::to_vec(&OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()),
        manifests: vec![ImageIndexEntry {
            media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
            digest: manifest_digest,
            size: i64::try_from(manifest_size).unwrap_or(i64::MAX),
            platform: Some(Platform {
                architecture: Architecture::from(plan.arch.as_str()),
                os: Os::Linux,
                os_version: None,
                os_features: None,
                variant: None,
                features: None,
            }),
            annotations: Some(BTreeMap::from([(
                "org.opencontainers.image.ref.name".to_string(),
                "latest".to_string(),
            )])),
            artifact_type: None,
        }],
        artifact_type: None,
        annotations: None,
    })
    .map_err(|e| fail(plan, e.to_string()))?;
    upload_bytes(aws, plan, "index.json", index).await?;
    Ok(format!("s3://{}/{}", plan.bucket, plan.prefix))
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn blob_key(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// A layer copied to a local temporary file while hashing it.
struct Spooled {
    file: tempfile::NamedTempFile,
    digest: String,
    size: u64,
    media_type: &'static str,
}

fn spool(mut reader: scar_image::BlobReader) -> std::io::Result<Spooled> {
    let mut file = tempfile::NamedTempFile::new()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    let mut head = Vec::new();
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < 8 {
            head.extend_from_slice(&buf[..n.min(8)]);
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        size += n as u64;
    }
    file.flush()?;
    let media_type = scar_image::Compression::sniff(&head).media_type();
    Ok(Spooled {
        file,
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        size,
        media_type,
    })
}

/// The digests of a layer's frame index and skeleton, as staged.
struct StagedFrames {
    index: String,
    skeleton: String,
}

/// The layer re-encoded as frames, uploaded with its index and its skeleton (the tree
/// without file contents, for lazy loading).
async fn stage_frames(
    aws: &Aws,
    plan: &StagingPlan,
    spooled: &Spooled,
) -> Result<StagedFrames, DeployError> {
    let (source, layer) = (spooled.file.path().to_path_buf(), spooled.digest.clone());
    let (framed, index, skeleton) = tokio::task::spawn_blocking(move || {
        let mut framed = tempfile::NamedTempFile::new()?;
        let mut skeleton = Vec::new();
        let index = frames::encode(
            std::fs::File::open(source)?,
            &layer,
            framed.as_file_mut(),
            &mut skeleton,
        )?;
        Ok::<_, std::io::Error>((framed, index, skeleton))
    })
    .await
    .map_err(|e| fail(plan, e.to_string()))?
    .map_err(|e| fail(plan, format!("re-encoding layer {}: {e}", spooled.digest)))?;
    upload_file(aws, plan, framed.path(), &index.blob).await?;
    let index_bytes = serde_json::to_vec(&index).map_err(|e| fail(plan, e.to_string()))?;
    let index_digest = digest_of(&index_bytes);
    upload_bytes(aws, plan, &blob_key(&index_digest), index_bytes).await?;
    let skeleton_digest = digest_of(&skeleton);
    let skeleton_bytes = skeleton.len();
    upload_bytes(aws, plan, &blob_key(&skeleton_digest), skeleton).await?;
    tracing::info!(layer = %spooled.digest, frames = index.frames.len(), bytes = index.blob_size, skeleton_bytes, "layer re-encoded as frames");
    Ok(StagedFrames {
        index: index_digest,
        skeleton: skeleton_digest,
    })
}

async fn upload_file(
    aws: &Aws,
    plan: &StagingPlan,
    path: &std::path::Path,
    digest: &str,
) -> Result<(), DeployError> {
    let key = format!("{}{}", plan.prefix, blob_key(digest));
    scar_image::s3::put_file(&aws.s3, path, &plan.bucket, &key)
        .await
        .map_err(DeployError::transfer)
}

async fn upload_bytes(
    aws: &Aws,
    plan: &StagingPlan,
    key: &str,
    bytes: Vec<u8>,
) -> Result<(), DeployError> {
    put(aws, plan, key, ByteStream::from(bytes)).await
}

async fn put(
    aws: &Aws,
    plan: &StagingPlan,
    key: &str,
    body: ByteStream,
) -> Result<(), DeployError> {
    aws.s3
        .put_object()
        .bucket(&plan.bucket)
        .key(format!("{}{key}", plan.prefix))
        .body(body)
        .send()
        .await
        .map_err(DeployError::aws("s3:PutObject"))?;
    Ok(())
}
