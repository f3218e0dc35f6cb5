//! The defaults file: what SCAR kept in `~/.scar/scar.cfg`, as commented TOML.
//!
//! It lives at `$SCAR_DEPLOYER_CONFIG`, else `$XDG_CONFIG_HOME/scar/deployer.toml`, else
//! `~/.config/scar/deployer.toml`, and is written with comments on first use. Unknown keys
//! are errors: a misspelt `memroy` must not silently deploy with the default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::Arch;

/// The file as first written.
pub const TEMPLATE: &str = r#"# scar-rs deployer defaults. Command-line flags override every value here.
# AWS credentials come from the standard chain (environment, ~/.aws, SSO, instance role);
# AWS_ENDPOINT_URL is honoured.

[aws]
# ARN of the IAM role functions run as (required by `init`), for example
# "arn:aws:iam::123456789012:role/scar-lambda". --role overrides it.
role = ""
# Region; empty means the AWS chain's (AWS_REGION, ~/.aws/config). --region overrides it.
region = ""

[lambda]
# Memory in MB, 128 to 10240 (CPU grows with it). -m overrides it.
memory = 512
# Timeout in seconds, 1 to 900. -t overrides it.
time = 300
# Seconds kept back before the timeout to stop the command and upload its output. -tt.
timeout_threshold = 10
# Description of new functions. -d overrides it.
description = "Runs a container image with scar-rs"
# x86_64 or arm64. --arch overrides it.
architecture = "x86_64"
# Size of /tmp in MB, 512 to 10240: the image is unpacked there. --ephemeral-storage.
ephemeral_storage = 2048

[cloudwatch]
# Days CloudWatch keeps a function's logs.
log_retention_days = 30
"#;

/// A defaults file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// No file location can be derived.
    #[error("cannot place the defaults file: set SCAR_DEPLOYER_CONFIG or HOME")]
    NoLocation,
    /// Reading or creating it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// It does not parse, or holds an unknown key or a bad value.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key's position.
        message: String,
    },
}

/// `[aws]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSection {
    /// Role ARN; empty for none.
    pub role: String,
    /// Region; empty for the AWS chain's.
    pub region: String,
}

/// `[lambda]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaSection {
    /// MB.
    pub memory: i32,
    /// Seconds.
    pub time: i32,
    /// Seconds.
    pub timeout_threshold: u32,
    /// Function description.
    pub description: String,
    /// Architecture.
    pub architecture: Arch,
    /// MB of /tmp.
    pub ephemeral_storage: i32,
}

impl Default for LambdaSection {
    fn default() -> Self {
        Self {
            memory: 512,
            time: 300,
            timeout_threshold: 10,
            description: "Runs a container image with scar-rs".into(),
            architecture: Arch::X86_64,
            ephemeral_storage: 2048,
        }
    }
}

/// `[cloudwatch]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CloudwatchSection {
    /// Days.
    pub log_retention_days: i32,
}

impl Default for CloudwatchSection {
    fn default() -> Self {
        Self {
            log_retention_days: 30,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[aws]`
    pub aws: AwsSection,
    /// `[lambda]`
    pub lambda: LambdaSection,
    /// `[cloudwatch]`
    pub cloudwatch: CloudwatchSection,
}

/// CloudWatch accepts only these retention periods.
const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

impl Settings {
    /// The file's location from the environment.
    pub fn default_path() -> Result<PathBuf, SettingsError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(path) = var("SCAR_DEPLOYER_CONFIG") {
            return Ok(PathBuf::from(path));
        }
        let config_home = var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")))
            .ok_or(SettingsError::NoLocation)?;
        Ok(config_home.join("scar").join("deployer.toml"))
    }

    /// Reads the file, writing the commented template first when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SettingsError> {
        let io = |source| SettingsError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            // Written aside and renamed, so that a concurrent first run never reads half a file.
            let partial = path.with_extension("toml.partial");
            std::fs::write(&partial, TEMPLATE).map_err(io)?;
            std::fs::rename(&partial, path).map_err(io)?;
            tracing::info!(path = %path.display(), "wrote the defaults file");
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text).map_err(|message| SettingsError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses and checks the values.
    pub fn parse(text: &str) -> Result<Self, String> {
        let settings: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        if !RETENTION_DAYS.contains(&settings.cloudwatch.log_retention_days) {
            return Err(format!(
                "cloudwatch.log_retention_days = {}: CloudWatch accepts {RETENTION_DAYS:?}",
                settings.cloudwatch.log_retention_days
            ));
        }
        Ok(settings)
    }

    /// The role, when one is set.
    pub fn role(&self) -> Option<&str> {
        Some(self.aws.role.as_str()).filter(|r| !r.is_empty())
    }

    /// The region, when one is set.
    pub fn region(&self) -> Option<&str> {
        Some(self.aws.region.as_str()).filter(|r| !r.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_to_the_defaults() {
        assert_eq!(Settings::parse(TEMPLATE).unwrap(), Settings::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Settings::parse("[lambda]\nmemroy = 1024\n").unwrap_err();
        assert!(err.contains("memroy"), "{err}");
        let err = Settings::parse("[lambda]\narchitecture = \"sparc\"\n").unwrap_err();
        assert!(err.contains("sparc"), "{err}");
        let err = Settings::parse("[cloudwatch]\nlog_retention_days = 2\n").unwrap_err();
        assert!(err.contains("log_retention_days = 2"), "{err}");
    }

    #[test]
    fn first_use_writes_the_commented_template() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scar/deployer.toml");
        let settings = Settings::load_or_create(&path).unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), TEMPLATE);
        std::fs::write(&path, "[aws]\nrole = \"arn:aws:iam::1:role/r\"\n").unwrap();
        let settings = Settings::load_or_create(&path).unwrap();
        assert_eq!(settings.role(), Some("arn:aws:iam::1:role/r"));
        assert_eq!(settings.lambda.memory, 512);
    }
}
