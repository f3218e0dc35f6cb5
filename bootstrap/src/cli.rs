//! The command line of `bootstrap`. The flags of `pull` and `run` that configure the pull and
//! the shim come from the settings table (`scar_runtime::settings`): each is written there
//! once with its variable, default, range and meaning, and a flag given here wins over its
//! variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{
    Arg, ArgAction, ArgMatches, Args, Command as ClapCommand, FromArgMatches, Parser, Subcommand,
};
use scar_runtime::settings::{self, Kind, SETTINGS, Scope};

/// Run any OCI image as an AWS Lambda function.
#[derive(Debug, Parser)]
#[command(
    name = "bootstrap",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// What to do; with none, serve Lambda invocations (AWS_LAMBDA_RUNTIME_API must be set).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// Run one invocation of EVENT.json (`-` for stdin) locally through the runtime's handler,
    /// configured from the environment like the function; print the response JSON.
    #[arg(long, value_name = "EVENT.json")]
    pub(crate) emulate: Option<PathBuf>,
    /// With --emulate: the image (instead of SCAR_IMAGE).
    #[arg(long, requires = "emulate")]
    pub(crate) image: Option<String>,
    /// With --emulate: the function timeout in seconds (up to 900, Lambda's maximum).
    #[arg(long, requires = "emulate", default_value = "300", value_parser = parse_timeout)]
    pub(crate) timeout: Duration,
    /// With --emulate: `KEY=VALUE` for the container (repeatable).
    #[arg(long = "env", short = 'e', requires = "emulate", value_parser = parse_key_value)]
    pub(crate) env: Vec<(String, String)>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Pull an image into the rootfs cache and print the rootfs path.
    Pull {
        /// `ubuntu`, `grycap/cowsay:latest`, `127.0.0.1:5000/x:y`, `oci:DIR[:TAG]`, `docker-archive:FILE`, `s3://BUCKET/PREFIX`.
        image: String,
        /// Cache and registry settings.
        #[command(flatten)]
        settings: PullFlags,
    },
    /// Pull an image and run a command in it as the current user, streaming its output;
    /// exits with the command's status.
    Run(RunArgs),
}

/// What `bootstrap run` takes.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The image, as for `pull`.
    pub(crate) image: String,
    /// Cache, registry and shim settings.
    #[command(flatten)]
    pub(crate) settings: RunFlags,
    /// `KEY=VALUE` for the container, after the image's Env (repeatable).
    #[arg(long = "env", short = 'e', value_parser = parse_key_value)]
    pub(crate) env: Vec<(String, String)>,
    /// Working directory inside the container (default: the image's, else `/`).
    #[arg(long, short = 'w')]
    pub(crate) workdir: Option<String>,
    /// `CONTAINER=HOST`: show a host directory inside the container (repeatable).
    #[arg(long = "mount", value_parser = parse_mount)]
    pub(crate) mounts: Vec<(String, PathBuf)>,
    /// Seconds before the command's process group is ended (up to a day).
    #[arg(long, value_parser = parse_run_timeout)]
    pub(crate) timeout: Option<Duration>,
    /// The command and its arguments (default: the image's Entrypoint and Cmd).
    #[arg(last = true)]
    pub(crate) command: Vec<String>,
}

/// Lambda's longest function timeout.
const LAMBDA_MAX_SECONDS: f64 = 900.0;
/// A local run may take longer than any function, but not forever by mistake.
const RUN_MAX_SECONDS: f64 = 86_400.0;

fn positive_seconds(text: &str, max: f64) -> Result<Duration, String> {
    settings::parse_seconds(text, 0.0, max)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("expected seconds above 0 and at most {max}, got {text:?}"))
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    positive_seconds(text, LAMBDA_MAX_SECONDS)
}

fn parse_run_timeout(text: &str) -> Result<Duration, String> {
    positive_seconds(text, RUN_MAX_SECONDS)
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn parse_mount(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((container, host)) if container.starts_with('/') && host.starts_with('/') => Ok((
            container.trim_end_matches('/').to_owned(),
            PathBuf::from(host),
        )),
        _ => Err(format!("expected /CONTAINER/PATH=/HOST/PATH, got {text:?}")),
    }
}

/// Flags of the settings in `scopes`, from the table.
fn setting_args(mut command: ClapCommand, scopes: &[Scope]) -> ClapCommand {
    for setting in SETTINGS.iter().filter(|s| scopes.contains(&s.scope)) {
        let Some(flag) = setting.flag else { continue };
        let mut help = format!("{} [env: {}]", capitalised(setting.meaning), setting.var);
        if let Some(default) = setting.default {
            help.push_str(&format!(" [default: {default}]"));
        }
        let mut arg = Arg::new(setting.var)
            .long(flag)
            .help(help)
            .value_name(match setting.kind {
                Kind::Seconds { .. } => "SECONDS",
                Kind::Count { .. } => "N",
                Kind::Path => "DIR",
                Kind::Platform => "OS/ARCH",
                _ => "VALUE",
            });
        if let Kind::Choice(words) = setting.kind {
            arg = arg.value_parser(clap::builder::PossibleValuesParser::new(
                words.iter().copied(),
            ));
        }
        if setting.kind == Kind::List {
            arg = arg.action(ArgAction::Append).value_delimiter(',');
        }
        if setting.kind == Kind::Switch {
            arg = arg.action(ArgAction::SetTrue);
        }
        if setting.kind == Kind::Secret || setting.var == settings::REGISTRY_USERNAME.var {
            arg = arg.hide(true);
        }
        command = command.arg(arg);
    }
    command
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn given(matches: &ArgMatches, scopes: &[Scope]) -> Vec<(&'static str, String)> {
    SETTINGS
        .iter()
        .filter(|s| s.flag.is_some() && scopes.contains(&s.scope))
        .filter_map(|s| {
            if s.kind == Kind::Switch {
                return matches.get_flag(s.var).then(|| (s.var, "1".to_owned()));
            }
            let values: Vec<String> = matches.get_many::<String>(s.var)?.cloned().collect();
            Some((s.var, values.join(",")))
        })
        .collect()
}

macro_rules! setting_flags {
    ($name:ident, $doc:literal, $($scope:expr),+) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Default)]
        pub(crate) struct $name {
            /// `(variable, value)` for each flag given.
            pub(crate) given: Vec<(&'static str, String)>,
        }

        impl $name {
            /// The value of `var`: the flag when given, else the environment.
            pub(crate) fn lookup(&self, var: &str) -> Option<String> {
                self.given
                    .iter()
                    .find(|(v, _)| *v == var)
                    .map(|(_, value)| value.clone())
                    .or_else(|| std::env::var(var).ok())
            }
        }

        impl FromArgMatches for $name {
            fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
                Ok(Self { given: given(matches, &[$($scope),+]) })
            }
            fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(matches)?;
                Ok(())
            }
        }

        impl Args for $name {
            fn augment_args(command: ClapCommand) -> ClapCommand {
                setting_args(command, &[$($scope),+])
            }
            fn augment_args_for_update(command: ClapCommand) -> ClapCommand {
                Self::augment_args(command)
            }
        }
    };
}

setting_flags!(PullFlags, "The pull settings given as flags.", Scope::Pull);
setting_flags!(
    RunFlags,
    "The pull and shim settings given as flags.",
    Scope::Pull,
    Scope::Exec
);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn emulate_takes_its_flags_and_excludes_subcommands() {
        let cli = Cli::try_parse_from([
            "bootstrap",
            "--emulate",
            "e.json",
            "--image",
            "x",
            "-e",
            "A=1",
            "--timeout",
            "5",
        ])
        .unwrap();
        assert_eq!(cli.emulate.as_deref(), Some(std::path::Path::new("e.json")));
        assert_eq!(cli.env, [("A".to_owned(), "1".to_owned())]);
        assert_eq!(cli.timeout, Duration::from_secs(5));
        assert!(
            Cli::try_parse_from(["bootstrap", "--image", "x"]).is_err(),
            "--image needs --emulate"
        );
        assert!(Cli::try_parse_from(["bootstrap", "--emulate", "e.json", "pull", "x"]).is_err());
        let cli = Cli::try_parse_from(["bootstrap", "run", "img", "--", "ls", "-l"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Run(RunArgs { command, .. })) if command == ["ls", "-l"])
        );
    }

    #[test]
    fn timeouts_are_range_checked_at_parse_time() {
        for bad in ["NaN", "inf", "-1", "0", "86401", "soon"] {
            assert!(
                Cli::try_parse_from(["bootstrap", "run", "img", "--timeout", bad]).is_err(),
                "{bad}"
            );
        }
        for bad in ["NaN", "inf", "-1", "0", "901", "soon"] {
            assert!(
                Cli::try_parse_from(["bootstrap", "--emulate", "e", "--timeout", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn setting_flags_come_from_the_table_and_win_over_the_environment() {
        let cli = Cli::try_parse_from([
            "bootstrap",
            "run",
            "img",
            "--cache-dir",
            "/c",
            "--concurrency",
            "7",
            "--insecure-registry",
            "a,b",
            "--insecure-registry",
            "c",
            "--static-binaries",
            "refuse",
        ])
        .unwrap();
        let Some(Command::Run(RunArgs { settings, .. })) = cli.command else {
            panic!("not run");
        };
        assert_eq!(settings.lookup("SCAR_CACHE_DIR").as_deref(), Some("/c"));
        assert_eq!(
            settings.lookup("SCAR_PULL_CONCURRENCY").as_deref(),
            Some("7")
        );
        assert_eq!(
            settings.lookup("SCAR_INSECURE_REGISTRIES").as_deref(),
            Some("a,b,c")
        );
        assert!(
            Cli::try_parse_from(["bootstrap", "run", "img", "--static-binaries", "maybe"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["bootstrap", "pull", "img", "--shim-dir", "/x"]).is_err(),
            "pull takes no shim flag"
        );
        let help = Cli::command()
            .find_subcommand_mut("pull")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(
            help.contains("--concurrency") && help.contains("[env: SCAR_PULL_CONCURRENCY]"),
            "{help}"
        );
    }
}
