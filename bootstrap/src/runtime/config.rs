//! The function's configuration: every setting comes from the Lambda environment, is parsed
//! once at init, strictly (a mistyped `SCAR_` variable is an init error, not a silent
//! default), into [`FunctionConfig`].
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SCAR_IMAGE` | required | the image reference, as for `bootstrap pull` |
//! | `SCAR_TIMEOUT_THRESHOLD` | `10` | seconds kept back before Lambda's deadline: the command is ended then, and output is still returned and uploaded |
//! | `SCAR_INIT_SCRIPT` | none | a shell script run when the event brings neither `script` nor `cmd_args`; a relative path is in the function package (`$LAMBDA_TASK_ROOT`) |
//! | `SCAR_INPUT_BUCKET` | none | the bucket whose uploads trigger the function (informational; events name their bucket) |
//! | `SCAR_INPUT_PREFIX` | `input/` | the folder of input objects; its placeholder key is ignored |
//! | `SCAR_OUTPUT_BUCKET` | the event's bucket | where files left in `$SCAR_OUTPUT_DIR` are uploaded |
//! | `SCAR_OUTPUT_PREFIX` | `output/` | the key prefix for those files |
//! | `SCAR_OUTPUT_LIMIT` | `4194304` | bytes of stdout+stderr returned (Lambda's response limit is 6 MB) |
//! | `SCAR_KILL_GRACE` | `2` | seconds between SIGTERM and SIGKILL when the deadline comes |
//! | `CONT_VAR_<NAME>` | | `<NAME>` is set in the container (SCAR's convention) |
//! | `SCAR_CACHE_DIR`, `SCAR_PLATFORM`, `SCAR_INSECURE_REGISTRIES`, `SCAR_PULL_CONCURRENCY`, `SCAR_REGISTRY_USERNAME`, `SCAR_REGISTRY_PASSWORD` | | as for `bootstrap pull` |
//! | `SCAR_SHIM_DIR`, `SCAR_STATIC_BINARIES` | | as for `bootstrap run` |
//! | `AWS_LAMBDA_LOG_LEVEL`, `AWS_LAMBDA_LOG_FORMAT` | `info`, `Text` | logging |

use std::path::PathBuf;
use std::time::Duration;

use crate::exec::StaticPolicy;
use crate::platform::Platform;
use crate::pull::PullOptions;
use crate::source::auth::Credentials;
use crate::source::registry::RegistryOptions;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{0} is not set: the function needs it")]
    Missing(&'static str),
    /// A variable's value does not parse.
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A `SCAR_` variable nobody reads: most likely a typo.
    #[error("unknown variable {0}: the SCAR_ settings are listed in the README (a typo?)")]
    Unknown(String),
    /// The init script cannot be read.
    #[error("SCAR_INIT_SCRIPT={path}: {reason}")]
    InitScript {
        /// The path.
        path: String,
        /// The OS error.
        reason: String,
    },
}

/// Every `SCAR_` variable the runtime reads (the shim's `SCAR_FC_` ones are its own).
const KNOWN: &[&str] = &[
    "SCAR_IMAGE",
    "SCAR_TIMEOUT_THRESHOLD",
    "SCAR_INIT_SCRIPT",
    "SCAR_INPUT_BUCKET",
    "SCAR_INPUT_PREFIX",
    "SCAR_OUTPUT_BUCKET",
    "SCAR_OUTPUT_PREFIX",
    "SCAR_OUTPUT_LIMIT",
    "SCAR_KILL_GRACE",
    "SCAR_CACHE_DIR",
    "SCAR_PLATFORM",
    "SCAR_INSECURE_REGISTRIES",
    "SCAR_PULL_CONCURRENCY",
    "SCAR_REGISTRY_USERNAME",
    "SCAR_REGISTRY_PASSWORD",
    "SCAR_SHIM_DIR",
    "SCAR_STATIC_BINARIES",
];

/// Whether the runtime reads `name` (so a deployer can refuse a typo before deploying).
pub fn is_known_variable(name: &str) -> bool {
    KNOWN.contains(&name)
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// The image reference.
    pub image: String,
    /// Time kept back before the deadline.
    pub timeout_threshold: Duration,
    /// The init script's contents.
    pub init_script: Option<Vec<u8>>,
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
    /// SIGTERM → SIGKILL.
    pub kill_grace: Duration,
    /// `CONT_VAR_*` with the prefix removed.
    pub container_env: Vec<(String, String)>,
    /// How to pull.
    pub pull: PullOptions,
    /// Where the shim builds are.
    pub shim_dir: Option<PathBuf>,
    /// Static programs.
    pub static_policy: StaticPolicy,
}

/// Where Lambda unpacks the function package.
fn task_root(vars: &[(String, String)]) -> PathBuf {
    vars.iter()
        .rev()
        .find(|(k, v)| k == "LAMBDA_TASK_ROOT" && !v.is_empty())
        .map_or_else(|| PathBuf::from("/var/task"), |(_, v)| PathBuf::from(v))
}

fn seconds(
    name: &'static str,
    value: Option<String>,
    default: f64,
) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(Duration::from_secs_f64(default));
    };
    match value.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=900.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(ConfigError::Invalid {
            name,
            value,
            reason: "expected seconds between 0 and 900",
        }),
    }
}

impl FunctionConfig {
    /// Parses the configuration from `vars` (the whole environment: name, value).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        for (name, _) in &vars {
            if name.starts_with("SCAR_")
                && !name.starts_with("SCAR_FC_")
                && !KNOWN.contains(&name.as_str())
            {
                return Err(ConfigError::Unknown(name.clone()));
            }
        }
        let get = |name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let image = get("SCAR_IMAGE").ok_or(ConfigError::Missing("SCAR_IMAGE"))?;
        // Only a cheap check here: the full reference grammar is a large regex whose
        // compilation would delay the first poll; it is parsed at the first invocation.
        if image.chars().any(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                name: "SCAR_IMAGE",
                value: image,
                reason: "not an image reference",
            });
        }
        let init_script = match get("SCAR_INIT_SCRIPT") {
            // A relative path names a file of the function package (`deployer init -s`).
            Some(path) => Some(std::fs::read(task_root(&vars).join(&path)).map_err(|e| {
                ConfigError::InitScript {
                    path,
                    reason: e.to_string(),
                }
            })?),
            None => None,
        };
        let output_limit = match get("SCAR_OUTPUT_LIMIT") {
            Some(value) => match value.parse::<usize>() {
                Ok(n) if n <= 5 * 1024 * 1024 => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "SCAR_OUTPUT_LIMIT",
                        value,
                        reason: "expected bytes, at most 5242880",
                    });
                }
            },
            None => 4 * 1024 * 1024,
        };
        let platform = match get("SCAR_PLATFORM") {
            Some(value) => value
                .parse::<Platform>()
                .map_err(|_| ConfigError::Invalid {
                    name: "SCAR_PLATFORM",
                    value,
                    reason: "expected os/arch[/variant]",
                })?,
            None => Platform::current(),
        };
        let concurrency = match get("SCAR_PULL_CONCURRENCY") {
            Some(value) => match value.parse::<usize>() {
                Ok(n @ 1..=32) => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "SCAR_PULL_CONCURRENCY",
                        value,
                        reason: "expected 1 to 32",
                    });
                }
            },
            None => 3,
        };
        let static_policy = match get("SCAR_STATIC_BINARIES").as_deref() {
            None | Some("warn") => StaticPolicy::Warn,
            Some("run") => StaticPolicy::Run,
            Some("refuse") => StaticPolicy::Refuse,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "SCAR_STATIC_BINARIES",
                    value: other.to_owned(),
                    reason: "expected run, warn or refuse",
                });
            }
        };
        let credentials = match (get("SCAR_REGISTRY_USERNAME"), get("SCAR_REGISTRY_PASSWORD")) {
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::Missing("SCAR_REGISTRY_PASSWORD")),
            (None, Some(_)) => return Err(ConfigError::Missing("SCAR_REGISTRY_USERNAME")),
        };
        let container_env = vars
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.strip_prefix("CONT_VAR_")
                        .filter(|n| !n.is_empty())?
                        .to_owned(),
                    v.clone(),
                ))
            })
            .collect();
        let prefix = |name: &str, default: &str| {
            let mut p = get(name).unwrap_or_else(|| default.to_owned());
            if !p.is_empty() && !p.ends_with('/') {
                p.push('/');
            }
            p
        };
        Ok(Self {
            image,
            timeout_threshold: seconds(
                "SCAR_TIMEOUT_THRESHOLD",
                get("SCAR_TIMEOUT_THRESHOLD"),
                10.0,
            )?,
            init_script,
            input_bucket: get("SCAR_INPUT_BUCKET"),
            input_prefix: prefix("SCAR_INPUT_PREFIX", "input/"),
            output_bucket: get("SCAR_OUTPUT_BUCKET"),
            output_prefix: prefix("SCAR_OUTPUT_PREFIX", "output/"),
            output_limit,
            kill_grace: seconds("SCAR_KILL_GRACE", get("SCAR_KILL_GRACE"), 2.0)?,
            container_env,
            pull: PullOptions {
                cache_dir: get("SCAR_CACHE_DIR")
                    .map_or_else(|| PathBuf::from("/tmp/scar"), PathBuf::from),
                platform,
                registry: RegistryOptions {
                    insecure: get("SCAR_INSECURE_REGISTRIES")
                        .map(|v| {
                            v.split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                    credentials,
                    concurrency,
                },
                progress: false,
            },
            shim_dir: get("SCAR_SHIM_DIR").map(PathBuf::from),
            static_policy,
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
        assert_eq!(config.timeout_threshold, Duration::from_secs(10));
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
}
