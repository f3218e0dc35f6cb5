//! The function's configuration: every setting comes from the Lambda environment, is parsed
//! once at init, strictly (a mistyped `SCAR_` variable is an init error, not a silent
//! default), through the table in [`crate::settings`], into [`FunctionConfig`].

use std::path::PathBuf;
use std::time::Duration;

use scar_image::{Credentials, Platform, PullOptions, RegistryOptions};

use crate::exec::{LineFormat, StaticPolicy};
use crate::settings::{self, InvalidValue};

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{0} is not set: the function needs it")]
    Missing(&'static str),
    /// A variable's value is not one the setting takes.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    /// A `SCAR_` variable nobody reads: most likely a typo.
    #[error(
        "unknown variable {0}: the SCAR_ settings are listed in docs/configuration.md (a typo?)"
    )]
    Unknown(String),
    /// The init script cannot be read.
    #[error("SCAR_INIT_SCRIPT={path}: {reason}")]
    InitScript {
        /// The path.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The extra payload is not a folder of the package.
    #[error("SCAR_EXTRA_PAYLOAD={path}: {reason}")]
    ExtraPayload {
        /// The path as given.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// The time kept back before Lambda's deadline, to end the command and still answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutThreshold {
    /// `SCAR_TIMEOUT_THRESHOLD` was set: kept as it is.
    Set(Duration),
    /// It was not: its default, but never more than a fifth of an invocation's time, so a
    /// function made with Lambda's default 3 s timeout (the console's, SAM's, Terraform's)
    /// still runs its command.
    Default(Duration),
}

impl TimeoutThreshold {
    fn from_setting(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, InvalidValue> {
        let value = settings::TIMEOUT_THRESHOLD
            .seconds(lookup)?
            .unwrap_or_default();
        Ok(if settings::TIMEOUT_THRESHOLD.is_set(lookup) {
            Self::Set(value)
        } else {
            Self::Default(value)
        })
    }

    /// What is kept back of an invocation that has `time_left`.
    pub fn of(self, time_left: Duration) -> Duration {
        match self {
            Self::Set(threshold) => threshold,
            Self::Default(threshold) => threshold.min(time_left / 5),
        }
    }
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// The image reference.
    pub image: String,
    /// Time kept back before the deadline.
    pub timeout_threshold: TimeoutThreshold,
    /// The init script's contents.
    pub init_script: Option<Vec<u8>>,
    /// The package's extra folder (absolute), seen by commands at the same path.
    pub extra_payload: Option<PathBuf>,
    /// The input bucket, when configured.
    pub input_bucket: Option<String>,
    /// The input folder (`input/`).
    pub input_prefix: String,
    /// The output bucket, when not the event's.
    pub output_bucket: Option<String>,
    /// The output key prefix.
    pub output_prefix: String,
    /// Bytes of output returned.
    pub output_limit: usize,
    /// The stop signal → SIGKILL.
    pub kill_grace: Duration,
    /// `CONT_VAR_*` with the prefix removed.
    pub container_env: Vec<(String, String)>,
    /// How to pull.
    pub pull: PullOptions,
    /// How programs run.
    pub exec: ExecOptions,
    /// How the command's output lines are written to the log (`AWS_LAMBDA_LOG_FORMAT`).
    pub log_format: LineFormat,
    /// Whether they are (`SCAR_LOG_OUTPUT`).
    pub log_output: bool,
    /// How long the init phase waits for the image's pull (`SCAR_INIT_PULL_BUDGET`).
    pub init_pull_budget: Duration,
}

/// Where the shim builds are and what happens to static programs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Where the shim builds are (`None`: the usual places).
    pub shim_dir: Option<PathBuf>,
    /// Static programs.
    pub static_policy: StaticPolicy,
    /// Whether commands run as a fake root.
    pub fakeroot: bool,
}

/// A variable lookup: the process environment, or flags over it.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where Lambda unpacks the function package.
fn task_root(lookup: Lookup<'_>) -> PathBuf {
    lookup("LAMBDA_TASK_ROOT")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/var/task"), PathBuf::from)
}

/// A folder prefix always ends with `/` (unless empty).
fn folder(mut prefix: String) -> String {
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    prefix
}

/// The pull options the settings describe (`progress` is the caller's choice).
pub fn pull_options(lookup: Lookup<'_>, progress: bool) -> Result<PullOptions, ConfigError> {
    let credentials = match (
        settings::REGISTRY_USERNAME.raw(lookup),
        settings::REGISTRY_PASSWORD.raw(lookup),
    ) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError::Missing(settings::REGISTRY_PASSWORD.var)),
        (None, Some(_)) => return Err(ConfigError::Missing(settings::REGISTRY_USERNAME.var)),
    };
    let concurrency = settings::PULL_CONCURRENCY.count(lookup)?.unwrap_or(3);
    Ok(PullOptions {
        cache_dir: settings::CACHE_DIR
            .raw(lookup)
            .map_or_else(|| PathBuf::from("/tmp/scar"), PathBuf::from),
        platform: settings::PLATFORM
            .platform(lookup)?
            .unwrap_or_else(Platform::current),
        registry: RegistryOptions {
            insecure: settings::INSECURE_REGISTRIES.list(lookup),
            credentials,
            concurrency: usize::try_from(concurrency).unwrap_or(1),
            read_timeout: settings::REGISTRY_TIMEOUT
                .seconds(lookup)?
                .unwrap_or(scar_image::DEFAULT_READ_TIMEOUT),
        },
        progress,
        lazy: settings::LAZY_LOAD.switch(lookup)?,
        lazy_trace: settings::LAZY_TRACE.switch(lookup)?,
    })
}

/// The exec options the settings describe.
pub fn exec_options(lookup: Lookup<'_>) -> Result<ExecOptions, ConfigError> {
    let static_policy = match settings::STATIC_BINARIES.choice(lookup)? {
        Some("run") => StaticPolicy::Run,
        Some("refuse") => StaticPolicy::Refuse,
        _ => StaticPolicy::Warn,
    };
    Ok(ExecOptions {
        shim_dir: settings::SHIM_DIR.raw(lookup).map(PathBuf::from),
        static_policy,
        fakeroot: settings::FAKEROOT.switch(lookup)?,
    })
}

impl FunctionConfig {
    /// Parses the configuration from `vars` (the whole environment: name, value; a later
    /// entry wins).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        if let Some((name, _)) = vars
            .iter()
            .find(|(n, _)| settings::is_unknown_scar_variable(n))
        {
            return Err(ConfigError::Unknown(name.clone()));
        }
        let get = |name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let lookup: Lookup<'_> = &get;
        let image = settings::IMAGE
            .raw(lookup)
            .ok_or(ConfigError::Missing(settings::IMAGE.var))?;
        // Only a cheap check here: the full reference grammar is a large regex whose
        // compilation would delay the first poll; it is parsed at the first invocation.
        if image.chars().any(char::is_whitespace) {
            return Err(InvalidValue {
                name: settings::IMAGE.var.to_owned(),
                value: image,
                expected: "an image reference".to_owned(),
            }
            .into());
        }
        let init_script = match settings::INIT_SCRIPT.raw(lookup) {
            // A relative path names a file of the function package (`deployer init -s`).
            Some(path) => Some(std::fs::read(task_root(lookup).join(&path)).map_err(|e| {
                ConfigError::InitScript {
                    path,
                    reason: e.to_string(),
                }
            })?),
            None => None,
        };
        let extra_payload = match settings::EXTRA_PAYLOAD.raw(lookup) {
            Some(path) => {
                let dir = task_root(lookup).join(&path);
                match std::fs::metadata(&dir) {
                    Ok(meta) if meta.is_dir() => Some(dir),
                    Ok(_) => {
                        return Err(ConfigError::ExtraPayload {
                            path,
                            reason: format!("{} is not a folder", dir.display()),
                        });
                    }
                    Err(e) => {
                        return Err(ConfigError::ExtraPayload {
                            path,
                            reason: format!("{}: {e}", dir.display()),
                        });
                    }
                }
            }
            None => None,
        };
        let container_env = vars
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.strip_prefix(settings::CONTAINER_PREFIX)
                        .filter(|n| !n.is_empty())?
                        .to_owned(),
                    v.clone(),
                ))
            })
            .collect();
        let output_limit = settings::OUTPUT_LIMIT.count(lookup)?.unwrap_or_default();
        Ok(Self {
            image,
            timeout_threshold: TimeoutThreshold::from_setting(lookup)?,
            init_pull_budget: settings::INIT_PULL_BUDGET
                .seconds(lookup)?
                .unwrap_or_default(),
            init_script,
            extra_payload,
            input_bucket: settings::INPUT_BUCKET.raw(lookup),
            input_prefix: folder(settings::INPUT_PREFIX.raw(lookup).unwrap_or_default()),
            output_bucket: settings::OUTPUT_BUCKET.raw(lookup),
            output_prefix: folder(settings::OUTPUT_PREFIX.raw(lookup).unwrap_or_default()),
            output_limit: usize::try_from(output_limit).unwrap_or(usize::MAX),
            kill_grace: settings::KILL_GRACE.seconds(lookup)?.unwrap_or_default(),
            container_env,
            pull: pull_options(lookup, false)?,
            exec: exec_options(lookup)?,
            log_output: settings::LOG_OUTPUT.choice(lookup)? != Some("off"),
            log_format: match lookup("AWS_LAMBDA_LOG_FORMAT") {
                Some(format) if format.eq_ignore_ascii_case("json") => LineFormat::Json,
                _ => LineFormat::Text,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_and_container_variables() {
        let config = FunctionConfig::from_vars(vars(&[
            ("SCAR_IMAGE", "grycap/cowsay"),
            ("CONT_VAR_GREETING", "hi"),
            ("SCAR_OUTPUT_PREFIX", "results"),
            ("PATH", "/usr/bin"),
        ]))
        .unwrap();
        assert_eq!(config.image, "grycap/cowsay");
        let threshold = config.timeout_threshold;
        assert_eq!(
            threshold,
            TimeoutThreshold::Default(Duration::from_secs(10))
        );
        assert_eq!(
            threshold.of(Duration::from_secs(900)),
            Duration::from_secs(10)
        );
        assert_eq!(
            threshold.of(Duration::from_secs(3)),
            Duration::from_millis(600),
            "Lambda's default timeout keeps a fifth back"
        );
        assert_eq!(config.input_prefix, "input/");
        assert_eq!(
            config.output_prefix, "results/",
            "a folder always ends with /"
        );
        assert_eq!(
            config.container_env,
            [("GREETING".to_owned(), "hi".to_owned())]
        );
        assert_eq!(config.pull.cache_dir, PathBuf::from("/tmp/scar"));
        assert!(config.log_output, "the output is logged live by default");
        let quiet = FunctionConfig::from_vars(vars(&[
            ("SCAR_IMAGE", "x"),
            ("SCAR_LOG_OUTPUT", "off"),
            ("AWS_LAMBDA_LOG_FORMAT", "json"),
        ]))
        .unwrap();
        assert!(!quiet.log_output);
        assert_eq!(quiet.log_format, LineFormat::Json);
    }

    #[test]
    fn strict_errors_name_the_variable() {
        assert_eq!(
            FunctionConfig::from_vars(vars(&[])).unwrap_err(),
            ConfigError::Missing("SCAR_IMAGE")
        );
        let err = FunctionConfig::from_vars(vars(&[
            ("SCAR_IMAGE", "x"),
            ("SCAR_TIMEOUT_THRESHOLD", "ten"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SCAR_TIMEOUT_THRESHOLD=\"ten\""),
            "{err}"
        );
        let err =
            FunctionConfig::from_vars(vars(&[("SCAR_IMAGE", "x"), ("SCAR_TIMEOUT_TRESHOLD", "5")]))
                .unwrap_err();
        assert_eq!(err, ConfigError::Unknown("SCAR_TIMEOUT_TRESHOLD".into()));
        let err = FunctionConfig::from_vars(vars(&[
            ("SCAR_IMAGE", "x"),
            ("SCAR_REGISTRY_USERNAME", "u"),
        ]))
        .unwrap_err();
        assert_eq!(err, ConfigError::Missing("SCAR_REGISTRY_PASSWORD"));
        let err = FunctionConfig::from_vars(vars(&[
            ("SCAR_IMAGE", "x"),
            ("SCAR_INIT_SCRIPT", "/no/such/script.sh"),
        ]))
        .unwrap_err();
        assert!(matches!(err, ConfigError::InitScript { .. }), "{err}");
    }

    #[test]
    fn the_extra_payload_is_a_folder_of_the_package() {
        let task = tempfile::tempdir().unwrap();
        std::fs::create_dir(task.path().join("extra-payload")).unwrap();
        std::fs::write(task.path().join("file"), "x").unwrap();
        let root = task.path().display().to_string();
        let with = |path: &str| {
            FunctionConfig::from_vars(vars(&[
                ("SCAR_IMAGE", "x"),
                ("LAMBDA_TASK_ROOT", &root),
                ("SCAR_EXTRA_PAYLOAD", path),
            ]))
        };
        assert_eq!(
            with("extra-payload").unwrap().extra_payload,
            Some(task.path().join("extra-payload"))
        );
        for (path, reason) in [("file", "is not a folder"), ("gone", "No such file")] {
            let err = with(path).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("SCAR_EXTRA_PAYLOAD={path}: ")) && err.contains(reason),
                "{err}"
            );
        }
        let none = FunctionConfig::from_vars(vars(&[("SCAR_IMAGE", "x")])).unwrap();
        assert_eq!(none.extra_payload, None);
    }
}
