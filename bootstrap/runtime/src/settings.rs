//! Every setting of `bootstrap`, written once: its variable, its flag (when a command takes
//! one), its default, its range and its meaning. The command lines of `pull` and `run` are
//! built from this table, [`crate::FunctionConfig`] and the pull and exec options are parsed
//! through it, the deployer checks `SCAR_` names against it, and `docs/configuration.md`
//! carries [`markdown_table`] (a test fails when they disagree).
//!
//! Parsing is strict: a value out of range, not a number, NaN or infinite is an error that
//! names the variable (or flag) and says what was expected; nothing unchecked reaches the code.

use std::fmt::Write as _;
use std::time::Duration;

/// What values a setting takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Any text.
    Text,
    /// A host path.
    Path,
    /// Text never shown (passwords, tokens).
    Secret,
    /// A comma-separated list.
    List,
    /// Seconds, a finite number from `min` to `max`.
    Seconds {
        /// The smallest value accepted.
        min: f64,
        /// The largest value accepted.
        max: f64,
    },
    /// A whole number from `min` to `max`.
    Count {
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// `os/arch[/variant]`.
    Platform,
    /// On or off: `1` or `0` (a flag without a value on the command line).
    Switch,
}

/// Which commands read a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The Lambda function (serve and `--emulate`) only.
    Function,
    /// Every command that pulls (pull, run, the function).
    Pull,
    /// Every command that runs a program (run, the function).
    Exec,
}

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    /// The environment variable.
    pub var: &'static str,
    /// The long flag of `bootstrap pull`/`run`, for settings those commands take.
    pub flag: Option<&'static str>,
    /// The default, as a variable's value would be written; `None`: unset unless given.
    pub default: Option<&'static str>,
    /// What values it takes.
    pub kind: Kind,
    /// Which commands read it.
    pub scope: Scope,
    /// What it means, in one sentence.
    pub meaning: &'static str,
}

/// `SCAR_IMAGE`.
pub const IMAGE: Setting = Setting {
    var: "SCAR_IMAGE",
    flag: None,
    default: None,
    kind: Kind::Text,
    scope: Scope::Function,
    meaning: "the image reference, as for `bootstrap pull` (required)",
};
/// `SCAR_TIMEOUT_THRESHOLD`.
pub const TIMEOUT_THRESHOLD: Setting = Setting {
    var: "SCAR_TIMEOUT_THRESHOLD",
    flag: None,
    default: Some("10"),
    kind: Kind::Seconds {
        min: 0.0,
        max: 900.0,
    },
    scope: Scope::Function,
    meaning: "seconds kept back before Lambda's deadline: the command is ended then, and its output is still returned and uploaded; when unset, never more than a fifth of an invocation's time (0.6 s of Lambda's default 3 s timeout)",
};
/// `SCAR_INIT_PULL_BUDGET`.
pub const INIT_PULL_BUDGET: Setting = Setting {
    var: "SCAR_INIT_PULL_BUDGET",
    flag: None,
    default: Some("9"),
    kind: Kind::Seconds {
        min: 0.0,
        max: 900.0,
    },
    scope: Scope::Function,
    meaning: "seconds of Lambda's init phase spent pulling the image before the first event is asked for (the pull goes on after it; 0: pull at the first invocation)",
};
/// `SCAR_INIT_SCRIPT`.
pub const INIT_SCRIPT: Setting = Setting {
    var: "SCAR_INIT_SCRIPT",
    flag: None,
    default: None,
    kind: Kind::Path,
    scope: Scope::Function,
    meaning: "a script run when the event brings neither `script` nor `cmd_args`; a relative path is in the function package (`$LAMBDA_TASK_ROOT`)",
};
/// `SCAR_EXTRA_PAYLOAD`.
pub const EXTRA_PAYLOAD: Setting = Setting {
    var: "SCAR_EXTRA_PAYLOAD",
    flag: None,
    default: None,
    kind: Kind::Path,
    scope: Scope::Function,
    meaning: "a folder of the function package (`deployer init -ep`) that every command sees at the same path, named by `EXTRA_PAYLOAD`; a relative path is in `$LAMBDA_TASK_ROOT`",
};
/// `SCAR_INPUT_BUCKET`.
pub const INPUT_BUCKET: Setting = Setting {
    var: "SCAR_INPUT_BUCKET",
    flag: None,
    default: None,
    kind: Kind::Text,
    scope: Scope::Function,
    meaning: "the bucket whose uploads trigger the function (informational: events name their bucket)",
};
/// `SCAR_INPUT_PREFIX`.
pub const INPUT_PREFIX: Setting = Setting {
    var: "SCAR_INPUT_PREFIX",
    flag: None,
    default: Some("input/"),
    kind: Kind::Text,
    scope: Scope::Function,
    meaning: "the folder of input objects; its placeholder key is ignored",
};
/// `SCAR_OUTPUT_BUCKET`.
pub const OUTPUT_BUCKET: Setting = Setting {
    var: "SCAR_OUTPUT_BUCKET",
    flag: None,
    default: None,
    kind: Kind::Text,
    scope: Scope::Function,
    meaning: "where files left in `$SCAR_OUTPUT_DIR` are uploaded (default: the event's bucket)",
};
/// `SCAR_OUTPUT_PREFIX`.
pub const OUTPUT_PREFIX: Setting = Setting {
    var: "SCAR_OUTPUT_PREFIX",
    flag: None,
    default: Some("output/"),
    kind: Kind::Text,
    scope: Scope::Function,
    meaning: "the key prefix of uploaded output files",
};
/// `SCAR_OUTPUT_LIMIT`.
pub const OUTPUT_LIMIT: Setting = Setting {
    var: "SCAR_OUTPUT_LIMIT",
    flag: None,
    default: Some("4194304"),
    kind: Kind::Count {
        min: 0,
        max: 5 * 1024 * 1024,
    },
    scope: Scope::Function,
    meaning: "bytes of stdout+stderr returned in the response (Lambda's limit is 6 MB)",
};
/// `SCAR_KILL_GRACE`.
pub const KILL_GRACE: Setting = Setting {
    var: "SCAR_KILL_GRACE",
    flag: None,
    default: Some("2"),
    kind: Kind::Seconds {
        min: 0.0,
        max: 900.0,
    },
    scope: Scope::Function,
    meaning: "seconds between the stop signal (SIGTERM unless the image's STOPSIGNAL names another) and SIGKILL when the deadline comes",
};
/// `SCAR_LOG_OUTPUT`.
pub const LOG_OUTPUT: Setting = Setting {
    var: "SCAR_LOG_OUTPUT",
    flag: None,
    default: Some("live"),
    kind: Kind::Choice(&["live", "off"]),
    scope: Scope::Function,
    meaning: "the command's output lines in the function's log as they are printed (`live`), or only in the response (`off`)",
};
/// `SCAR_CACHE_DIR`.
pub const CACHE_DIR: Setting = Setting {
    var: "SCAR_CACHE_DIR",
    flag: Some("cache-dir"),
    default: Some("/tmp/scar"),
    kind: Kind::Path,
    scope: Scope::Pull,
    meaning: "the root of the rootfs cache",
};
/// `SCAR_LAZY_LOAD`.
pub const LAZY_LOAD: Setting = Setting {
    var: "SCAR_LAZY_LOAD",
    flag: Some("lazy-load"),
    default: Some("0"),
    kind: Kind::Switch,
    scope: Scope::Pull,
    meaning: "for an image staged with skeletons (`deployer stage`, `init -db`) or an eStargz or zstd:chunked image (from a registry, S3 or a layout): build the tree first and fetch each file when a program first opens it (experimental: see docs/limits.md)",
};
/// `SCAR_LAZY_TRACE`.
pub const LAZY_TRACE: Setting = Setting {
    var: "SCAR_LAZY_TRACE",
    flag: Some("lazy-trace"),
    default: Some("1"),
    kind: Kind::Switch,
    scope: Scope::Pull,
    meaning: "with SCAR_LAZY_LOAD: fetch first the files earlier cold starts asked for, in their order, and store the files this one's commands asked for beside the staged image (`scar/trace-DIGEST`; the function's role needs s3:PutObject there, or the trace is only read)",
};
/// `SCAR_PLATFORM`.
pub const PLATFORM: Setting = Setting {
    var: "SCAR_PLATFORM",
    flag: Some("platform"),
    default: None,
    kind: Kind::Platform,
    scope: Scope::Pull,
    meaning: "the platform multi-platform images resolve to (default: this machine's)",
};
/// `SCAR_INSECURE_REGISTRIES`.
pub const INSECURE_REGISTRIES: Setting = Setting {
    var: "SCAR_INSECURE_REGISTRIES",
    flag: Some("insecure-registry"),
    default: None,
    kind: Kind::List,
    scope: Scope::Pull,
    meaning: "registries reached over plain HTTP besides loopback ones",
};
/// `SCAR_PULL_CONCURRENCY`.
pub const PULL_CONCURRENCY: Setting = Setting {
    var: "SCAR_PULL_CONCURRENCY",
    flag: Some("concurrency"),
    default: Some("3"),
    kind: Kind::Count { min: 1, max: 32 },
    scope: Scope::Pull,
    meaning: "layers downloading at once",
};
/// `SCAR_REGISTRY_TIMEOUT`.
pub const REGISTRY_TIMEOUT: Setting = Setting {
    var: "SCAR_REGISTRY_TIMEOUT",
    flag: Some("registry-timeout"),
    default: Some("30"),
    kind: Kind::Seconds {
        min: 1.0,
        max: 900.0,
    },
    scope: Scope::Pull,
    meaning: "seconds a registry may stay silent, before answering or in the middle of a layer, before the pull fails by name (throttling and 5xx answers are retried up to 5 times, honouring `Retry-After` up to 30 s)",
};
/// `SCAR_REGISTRY_USERNAME`.
pub const REGISTRY_USERNAME: Setting = Setting {
    var: "SCAR_REGISTRY_USERNAME",
    flag: Some("registry-username"),
    default: None,
    kind: Kind::Text,
    scope: Scope::Pull,
    meaning: "registry user name, with `SCAR_REGISTRY_PASSWORD` (default: `~/.docker/config.json`)",
};
/// `SCAR_REGISTRY_PASSWORD`.
pub const REGISTRY_PASSWORD: Setting = Setting {
    var: "SCAR_REGISTRY_PASSWORD",
    flag: Some("registry-password"),
    default: None,
    kind: Kind::Secret,
    scope: Scope::Pull,
    meaning: "registry password or token, with `SCAR_REGISTRY_USERNAME`",
};
/// `SCAR_SHIM_DIR`.
pub const SHIM_DIR: Setting = Setting {
    var: "SCAR_SHIM_DIR",
    flag: Some("shim-dir"),
    default: None,
    kind: Kind::Path,
    scope: Scope::Exec,
    meaning: "the directory of the shim builds (default: beside the executable, its `lib/`, `/opt/lib`)",
};
/// `SCAR_STATIC_BINARIES`.
pub const STATIC_BINARIES: Setting = Setting {
    var: "SCAR_STATIC_BINARIES",
    flag: Some("static-binaries"),
    default: Some("warn"),
    kind: Kind::Choice(&["run", "warn", "refuse"]),
    scope: Scope::Exec,
    meaning: "statically linked programs cannot be confined: run them, warn, or refuse them",
};

/// `SCAR_FAKEROOT`.
pub const FAKEROOT: Setting = Setting {
    var: "SCAR_FAKEROOT",
    flag: Some("fakeroot"),
    default: Some("0"),
    kind: Kind::Switch,
    scope: Scope::Exec,
    meaning: "the command sees itself as root: uid 0, ownership changes remembered, so package managers can install (docs/fakeroot.md)",
};

/// The whole table, in the order the documentation lists it.
pub const SETTINGS: &[&Setting] = &[
    &IMAGE,
    &TIMEOUT_THRESHOLD,
    &INIT_SCRIPT,
    &INIT_PULL_BUDGET,
    &EXTRA_PAYLOAD,
    &INPUT_BUCKET,
    &INPUT_PREFIX,
    &OUTPUT_BUCKET,
    &OUTPUT_PREFIX,
    &OUTPUT_LIMIT,
    &KILL_GRACE,
    &LOG_OUTPUT,
    &CACHE_DIR,
    &PLATFORM,
    &INSECURE_REGISTRIES,
    &PULL_CONCURRENCY,
    &REGISTRY_TIMEOUT,
    &REGISTRY_USERNAME,
    &REGISTRY_PASSWORD,
    &SHIM_DIR,
    &LAZY_LOAD,
    &LAZY_TRACE,
    &STATIC_BINARIES,
    &FAKEROOT,
];

/// The prefix of the function's variables that the runtime hands to the container, without
/// it (SCAR's convention: `CONT_VAR_GREETING=hi` is `GREETING=hi` for the command).
pub const CONTAINER_PREFIX: &str = "CONT_VAR_";

/// The prefix of the shim's own variables, which bootstrap sets and nobody configures.
pub const SHIM_PREFIX: &str = rootfs_paths::protocol::PREFIX;

/// Whether the runtime reads `name` (so a deployer can refuse a typo before deploying).
pub fn is_known_variable(name: &str) -> bool {
    SETTINGS.iter().any(|s| s.var == name)
}

/// A `SCAR_` variable that no setting names: most likely a typo.
pub fn is_unknown_scar_variable(name: &str) -> bool {
    name.starts_with("SCAR_") && !name.starts_with(SHIM_PREFIX) && !is_known_variable(name)
}

/// A value that a setting does not take.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}={value:?}: expected {expected}")]
pub struct InvalidValue {
    /// The variable (or flag) as the user wrote it.
    pub name: String,
    /// The value given.
    pub value: String,
    /// What the setting takes.
    pub expected: String,
}

impl Kind {
    /// What values this kind takes, in words.
    pub fn expected(&self) -> String {
        match self {
            Self::Text | Self::Secret => "text".to_owned(),
            Self::Path => "a path".to_owned(),
            Self::List => "a comma-separated list".to_owned(),
            Self::Seconds { min, max } => format!("seconds from {min} to {max}"),
            Self::Count { min, max } => format!("a whole number from {min} to {max}"),
            Self::Choice(words) => format!("one of {}", words.join(", ")),
            Self::Platform => "os/arch[/variant]".to_owned(),
            Self::Switch => "1 or 0".to_owned(),
        }
    }
}

/// Parses seconds: finite, not negative, at most `max`.
pub fn parse_seconds(text: &str, min: f64, max: f64) -> Option<Duration> {
    let seconds: f64 = text.trim().parse().ok()?;
    (seconds.is_finite() && (min..=max).contains(&seconds))
        .then(|| Duration::from_secs_f64(seconds))
}

impl Setting {
    fn invalid(&self, value: &str) -> InvalidValue {
        InvalidValue {
            name: self.var.to_owned(),
            value: value.to_owned(),
            expected: self.kind.expected(),
        }
    }

    /// Whether `lookup` gives a value (an empty one counts as unset).
    pub fn is_set(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        lookup(self.var).is_some_and(|v| !v.is_empty())
    }

    /// The value `lookup` gives (an empty value counts as unset), else the default.
    pub fn raw(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        lookup(self.var)
            .filter(|v| !v.is_empty())
            .or_else(|| self.default.map(str::to_owned))
    }

    /// A seconds setting.
    pub fn seconds(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Duration>, InvalidValue> {
        let Kind::Seconds { min, max } = self.kind else {
            return Err(self.invalid("(not a seconds setting)"));
        };
        self.raw(lookup)
            .map(|v| parse_seconds(&v, min, max).ok_or_else(|| self.invalid(&v)))
            .transpose()
    }

    /// A count setting.
    pub fn count(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<u64>, InvalidValue> {
        let Kind::Count { min, max } = self.kind else {
            return Err(self.invalid("(not a count setting)"));
        };
        self.raw(lookup)
            .map(|v| match v.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(self.invalid(&v)),
            })
            .transpose()
    }

    /// A choice setting: the word as the table spells it.
    pub fn choice(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<&'static str>, InvalidValue> {
        let Kind::Choice(words) = self.kind else {
            return Err(self.invalid("(not a choice setting)"));
        };
        self.raw(lookup)
            .map(|v| {
                words
                    .iter()
                    .copied()
                    .find(|w| *w == v)
                    .ok_or_else(|| self.invalid(&v))
            })
            .transpose()
    }

    /// A list setting, trimmed, without empty items.
    pub fn list(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        self.raw(lookup)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A switch: `1` on, `0` off.
    pub fn switch(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<bool, InvalidValue> {
        match self.raw(lookup).as_deref() {
            None | Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(self.invalid(other)),
        }
    }

    /// A platform setting.
    pub fn platform(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<scar_image::Platform>, InvalidValue> {
        self.raw(lookup)
            .map(|v| v.parse().map_err(|_| self.invalid(&v)))
            .transpose()
    }
}

/// The table as Markdown, as `docs/configuration.md` carries it.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| variable | flag | default | values | meaning |\n|---|---|---|---|---|\n");
    for s in SETTINGS {
        let flag = s.flag.map_or_else(String::new, |f| format!("`--{f}`"));
        let default = match (s.default, s.var) {
            (Some(d), _) => format!("`{d}`"),
            (None, "SCAR_IMAGE") => "required".to_owned(),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            s.var,
            flag,
            default,
            s.kind.expected(),
            s.meaning
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn every_default_is_in_range() {
        for s in SETTINGS {
            let result = match s.kind {
                Kind::Seconds { .. } => s.seconds(&none).map(|_| ()),
                Kind::Count { .. } => s.count(&none).map(|_| ()),
                Kind::Choice(_) => s.choice(&none).map(|_| ()),
                Kind::Platform => s.platform(&none).map(|_| ()),
                Kind::Switch => s.switch(&none).map(|_| ()),
                Kind::Text | Kind::Path | Kind::Secret | Kind::List => Ok(()),
            };
            assert!(result.is_ok(), "{}: {result:?}", s.var);
        }
    }

    #[test]
    fn names_and_flags_are_unique_and_scar_prefixed() {
        for (i, a) in SETTINGS.iter().enumerate() {
            assert!(a.var.starts_with("SCAR_") && !a.var.starts_with(SHIM_PREFIX));
            for b in &SETTINGS[i + 1..] {
                assert_ne!(a.var, b.var);
                assert!(a.flag.is_none() || a.flag != b.flag, "{}", a.var);
            }
        }
    }

    #[test]
    fn seconds_refuse_nan_negative_infinite_and_absurd_values() {
        for bad in ["NaN", "nan", "inf", "-1", "901", "1e400", "ten", ""] {
            assert_eq!(parse_seconds(bad, 0.0, 900.0), None, "{bad}");
        }
        assert_eq!(
            parse_seconds(" 2.5 ", 0.0, 900.0),
            Some(Duration::from_millis(2500))
        );
        let lookup = |_: &str| Some("NaN".to_owned());
        let err = TIMEOUT_THRESHOLD.seconds(&lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SCAR_TIMEOUT_THRESHOLD=\"NaN\": expected seconds from 0 to 900"
        );
    }
}
