//! The image engine: from what a user wrote to a cached, complete rootfs.
//!
//! 1. [`ImageReference`] parses the reference (`ubuntu`, `oci:DIR:TAG`, `docker-archive:FILE`,
//!    `s3://BUCKET/PREFIX`);
//! 2. a source (registry, OCI layout on disk or in S3, `docker save` archive) resolves it to one
//!    [`Platform`]'s manifest, config and layers;
//! 3. [`Puller`] streams each layer network → sha256 → gunzip/zstd → tar into a staging
//!    directory, then the cache renames it into place, keyed by manifest digest.
//!    A staged layer re-encoded as independent frames ([`frames`]) is read with parallel ranged
//!    reads and decompressed on every core instead.
//!
//! This crate knows nothing of Lambda, of the shim or of a command line: the runtime and the
//! binaries sit above it and the flow only points down.

#![warn(missing_docs)]

mod cache;
pub mod frames;
#[cfg(test)]
mod fuzz;
pub mod lazy;
mod net;
#[cfg(test)]
mod no_threads;
mod oci;
mod pipeline;
mod platform;
mod pull;
mod reference;
pub mod s3;
pub mod skeleton;
mod source;
pub mod stargz;
pub mod trace;
mod unpack;

pub use cache::{CacheError, CachedImage, ImageMeta, LayerRecord, RootfsCache};
pub use net::{aws_config_loader, http_client_builder, install_tls_provider};
pub use oci::{Compression, ContainerConfig};
pub use platform::{Platform, PlatformError};
pub use pull::{PullError, PullOptions, Pulled, Puller, fetch};
pub use reference::{ImageReference, ReferenceError};
pub use s3::client as s3_client;
pub use source::auth::Credentials;
pub use source::ecr::{EcrRegistry, ecr_registry};
pub use source::registry::{DEFAULT_READ_TIMEOUT, RegistryOptions};
pub use source::{BlobReader, LayerDescriptor, ResolvedImage, SourceError};
pub use unpack::blob::BlobFault;
pub use unpack::{LayerStats, LazyFiles, UnpackError};
