//! The OCI and Docker image formats as this crate reads them: the parts of an image config a
//! run needs, layer media types and their compression. Every other module takes these types
//! from here, so a format detail lives in one place.

use serde::{Deserialize, Serialize};

/// The parts of the image config a run needs (OCI `config` object, Docker spelling).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `KEY=value` pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// The entrypoint argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The default arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// The initial working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The user the image asks for (informational: Lambda runs one fixed uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The signal that asks the command to stop (`SIGINT`, `QUIT`, `2`), as `docker stop`
    /// sends it; SIGTERM when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// `tar+gzip` (possibly several concatenated gzip members).
    Gzip,
    /// `tar+zstd`.
    Zstd,
}

impl Compression {
    /// Maps a layer media type to its compression; `None` for media types that are not layers.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The OCI media type of a layer so compressed.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::None => "application/vnd.oci.image.layer.v1.tar",
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Guesses from the first bytes (docker-archive layers carry no media type).
    pub fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Self::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Self::Zstd,
            _ => Self::None,
        }
    }
}

/// The hex part of a digest in the one form this crate reads (`sha256:` and 64 hex digits);
/// `None` for any other, which also keeps a digest from naming a path outside `blobs/`.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Parses an OCI/Docker image config blob into the parts a run needs.
pub fn parse_config(bytes: &[u8]) -> Result<(ContainerConfig, Vec<String>), serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct ImageConfig {
        #[serde(default)]
        config: Option<ContainerConfig>,
        rootfs: Option<RootFs>,
    }
    let parsed: ImageConfig = serde_json::from_slice(bytes)?;
    Ok((
        parsed.config.unwrap_or_default(),
        parsed.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
    ))
}
