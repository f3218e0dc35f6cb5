//! The platform an image index is resolved to.

use std::fmt;
use std::str::FromStr;

use oci_client::manifest::ImageIndexEntry;

/// `os/architecture[/variant]` in OCI terms (`linux/amd64`, `linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Always `linux` for Lambda.
    pub os: String,
    /// OCI architecture name (`amd64`, `arm64`).
    pub architecture: String,
    /// CPU variant (`v8` for arm64), if any.
    pub variant: Option<String>,
}

/// A platform string that is not `os/arch[/variant]`.
#[derive(Debug, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/architecture[/variant], e.g. linux/arm64/v8")]
pub struct PlatformError(String);

impl Platform {
    /// The platform this binary runs on.
    pub fn current() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            other => (other, None),
        };
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// Picks the index entry for this platform. An entry without a variant matches any
    /// variant (most arm64 indexes omit `v8`), but an exact variant match wins.
    pub fn select<'a>(&self, entries: &'a [ImageIndexEntry]) -> Option<&'a ImageIndexEntry> {
        let candidates = entries.iter().filter(|e| {
            e.platform.as_ref().is_some_and(|p| {
                p.os.to_string() == self.os && p.architecture.to_string() == self.architecture
            })
        });
        let mut fallback = None;
        for entry in candidates {
            let variant = entry.platform.as_ref().and_then(|p| p.variant.as_deref());
            match (variant, self.variant.as_deref()) {
                (Some(v), Some(want)) if v == want => return Some(entry),
                (None, _) => fallback = fallback.or(Some(entry)),
                (Some(_), None) => fallback = fallback.or(Some(entry)),
                (Some(_), Some(_)) => {}
            }
        }
        fallback
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Self {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: Some((*v).into()),
            }),
            _ => Err(PlatformError(s.into())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(json: &str) -> Vec<ImageIndexEntry> {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"))
    }

    const INDEX: &str = r#"[
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:amd","size":1,
       "platform":{"os":"linux","architecture":"amd64"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:v7","size":1,
       "platform":{"os":"linux","architecture":"arm","variant":"v7"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:arm64","size":1,
       "platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:unknown","size":1,
       "platform":{"os":"unknown","architecture":"unknown"}}]"#;

    #[test]
    fn selects_by_os_arch_and_variant() {
        let entries = index(INDEX);
        let pick = |p: &str| {
            p.parse::<Platform>()
                .ok()
                .and_then(|p| p.select(&entries).map(|e| e.digest.clone()))
        };
        assert_eq!(pick("linux/amd64").as_deref(), Some("sha256:amd"));
        assert_eq!(pick("linux/arm64/v8").as_deref(), Some("sha256:arm64"));
        assert_eq!(pick("linux/arm64").as_deref(), Some("sha256:arm64"));
        assert_eq!(pick("linux/arm/v6"), None);
        assert_eq!(pick("linux/s390x"), None);
    }

    #[test]
    fn variantless_entry_serves_a_variant_request() {
        let entries = index(
            r#"[{"mediaType":"m","digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"arm64"}}]"#,
        );
        let p: Platform = "linux/arm64/v8".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.select(&entries).map(|e| e.digest.as_str()),
            Some("sha256:a")
        );
    }

    #[test]
    fn parse_and_display_round_trip() {
        for s in ["linux/amd64", "linux/arm64/v8"] {
            assert_eq!(
                s.parse::<Platform>().map(|p| p.to_string()).ok().as_deref(),
                Some(s)
            );
        }
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v8".parse::<Platform>().is_err());
        assert_eq!(Platform::current().os, "linux");
    }
}
