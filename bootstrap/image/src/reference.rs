//! Image references as users write them, and the three transports they select.
//!
//! | form | transport |
//! |---|---|
//! | `ubuntu`, `grycap/cowsay:latest`, `ghcr.io/o/i@sha256:…`, `127.0.0.1:5000/x:y` | registry (Docker Hub by default, tag `latest`) |
//! | `oci:DIR[:TAG]` | an OCI image layout on disk |
//! | `docker-archive:FILE` | a `docker save` tarball, gzipped or not |
//! | `s3://BUCKET/PREFIX` | an OCI image layout under an S3 prefix (`deployer init -db`) |

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use oci_client::Reference;

/// Why a reference could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The registry form did not parse.
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid {
        /// What the user wrote.
        input: String,
        /// The parser's explanation.
        reason: String,
    },
    /// `oci:` or `docker-archive:` with nothing after it.
    #[error("image reference {0:?} names no path")]
    MissingPath(String),
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageReference {
    /// A repository in an OCI distribution registry.
    Registry(Reference),
    /// An OCI image layout directory, optionally narrowed to one tag.
    OciLayout {
        /// The layout directory (holds `index.json`).
        dir: PathBuf,
        /// `org.opencontainers.image.ref.name` to select; the only image when `None`.
        tag: Option<String>,
    },
    /// A `docker save` tarball.
    DockerArchive {
        /// The tarball, gzipped or not.
        file: PathBuf,
    },
    /// An OCI image layout stored under an S3 prefix.
    S3Layout {
        /// The bucket.
        bucket: String,
        /// The key prefix, empty or ending in `/`.
        prefix: String,
    },
}

impl ImageReference {
    /// Whether the image is on this machine only (a layout directory or an archive file), so
    /// that a function elsewhere cannot pull it until it is staged.
    pub fn is_local(&self) -> bool {
        matches!(self, Self::OciLayout { .. } | Self::DockerArchive { .. })
    }
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = input.strip_prefix("oci:") {
            // A tag never contains '/', so the last ':' after the last '/' splits DIR from TAG.
            let (dir, tag) = match rest.rfind(':') {
                Some(i) if !rest[i + 1..].contains('/') && i > 0 => {
                    (&rest[..i], Some(rest[i + 1..].to_string()))
                }
                _ => (rest, None),
            };
            if dir.is_empty() {
                return Err(ReferenceError::MissingPath(input.to_string()));
            }
            // `oci:DIR:` would name DIR with its ':' dropped, and print back as another dir.
            if tag.as_deref() == Some("") {
                return Err(ReferenceError::Invalid {
                    input: input.to_string(),
                    reason: "empty tag after ':'".to_string(),
                });
            }
            return Ok(Self::OciLayout {
                dir: PathBuf::from(dir),
                tag,
            });
        }
        if let Some(file) = input.strip_prefix("docker-archive:") {
            if file.is_empty() {
                return Err(ReferenceError::MissingPath(input.to_string()));
            }
            return Ok(Self::DockerArchive {
                file: PathBuf::from(file),
            });
        }
        if let Some(rest) = input.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ReferenceError::MissingPath(input.to_string()));
            }
            let prefix = prefix.trim_end_matches('/');
            return Ok(Self::S3Layout {
                bucket: bucket.to_string(),
                prefix: if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                },
            });
        }
        let input = input.strip_prefix("docker://").unwrap_or(input);
        let invalid = |e: oci_client::ParseError| ReferenceError::Invalid {
            input: input.to_string(),
            reason: e.to_string(),
        };
        let reference = Reference::from_str(input).map_err(invalid)?;
        // The parser lets a few names through whose full form it refuses (`A/docker.io`:
        // an upper-case repository once the default registry is in front): refused here,
        // so that every reference accepted prints back as one that pulls.
        Reference::from_str(&reference.whole()).map_err(invalid)?;
        Ok(Self::Registry(reference))
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(r) => write!(f, "{}", r.whole()),
            Self::OciLayout { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            Self::OciLayout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            Self::DockerArchive { file } => write!(f, "docker-archive:{}", file.display()),
            Self::S3Layout { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(s: &str) -> Reference {
        match s.parse::<ImageReference>() {
            Ok(ImageReference::Registry(r)) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn docker_hub_defaults() {
        let r = registry("ubuntu");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/ubuntu");
        assert_eq!(r.tag(), Some("latest"));
        let r = registry("grycap/cowsay:latest");
        assert_eq!(r.repository(), "grycap/cowsay");
    }

    #[test]
    fn explicit_registries_ports_and_digests() {
        let r = registry("127.0.0.1:5000/x:y");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "x", Some("y"))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = registry(&format!("ghcr.io/o/i@{d}"));
        assert_eq!(r.registry(), "ghcr.io");
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(registry("docker://alpine:3").repository(), "library/alpine");
    }

    #[test]
    fn oci_layouts_with_and_without_tag() {
        assert_eq!(
            "oci:/tmp/l:v1".parse::<ImageReference>().ok(),
            Some(ImageReference::OciLayout {
                dir: "/tmp/l".into(),
                tag: Some("v1".into())
            })
        );
        assert_eq!(
            "oci:rel/dir".parse::<ImageReference>().ok(),
            Some(ImageReference::OciLayout {
                dir: "rel/dir".into(),
                tag: None
            })
        );
        assert!(matches!(
            "oci:".parse::<ImageReference>(),
            Err(ReferenceError::MissingPath(_))
        ));
    }

    #[test]
    fn s3_layouts() {
        for (text, bucket, prefix) in [
            (
                "s3://deploy/scar-rs/images/f/",
                "deploy",
                "scar-rs/images/f/",
            ),
            ("s3://deploy/x", "deploy", "x/"),
            ("s3://deploy", "deploy", ""),
        ] {
            let parsed = text.parse::<ImageReference>().ok();
            assert_eq!(
                parsed,
                Some(ImageReference::S3Layout {
                    bucket: bucket.into(),
                    prefix: prefix.into()
                }),
                "{text}"
            );
        }
        assert_eq!(
            "s3://b/p".parse::<ImageReference>().unwrap().to_string(),
            "s3://b/p/"
        );
        assert!("s3:///x".parse::<ImageReference>().is_err());
    }

    #[test]
    fn docker_archives_and_garbage() {
        assert_eq!(
            "docker-archive:/x/img.tar.gz"
                .parse::<ImageReference>()
                .ok(),
            Some(ImageReference::DockerArchive {
                file: "/x/img.tar.gz".into()
            })
        );
        for garbage in ["UPPER/Case", "A/docker.io", "Repo/x.y:tag"] {
            assert!(
                matches!(
                    garbage.parse::<ImageReference>(),
                    Err(ReferenceError::Invalid { .. })
                ),
                "{garbage} accepted"
            );
        }
    }
}
