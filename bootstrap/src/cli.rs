//! Command-line interface of the `bootstrap` binary.
//!
//! | flag | env | default | meaning |
//! |---|---|---|---|
//! | `--cache-dir DIR` | `SCAR_CACHE_DIR` | `/tmp/scar` | root of the rootfs cache |
//! | `--platform P` | `SCAR_PLATFORM` | this machine's | `os/arch[/variant]` for indexes |
//! | `--insecure-registry H` | `SCAR_INSECURE_REGISTRIES` (comma-separated) | none | plain-HTTP registries besides loopback |
//! | `--concurrency N` | `SCAR_PULL_CONCURRENCY` | 3 | layers downloading at once |
//! | | `SCAR_REGISTRY_USERNAME`, `SCAR_REGISTRY_PASSWORD` | `~/.docker/config.json` | registry credentials |
//! | `--shim-dir DIR` | `SCAR_SHIM_DIR` | beside the executable, its `lib/`, `/opt/lib` | where the shim builds are |
//! | `--static-binaries P` | `SCAR_STATIC_BINARIES` | `warn` | `run`, `warn` or `refuse` statically linked programs |

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exec::StaticPolicy;
use crate::platform::Platform;
use crate::pull::PullOptions;
use crate::source::auth::Credentials;
use crate::source::registry::RegistryOptions;

/// Run any OCI image as an AWS Lambda function.
#[derive(Debug, Parser)]
#[command(
    name = "bootstrap",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; with none, serve Lambda invocations (AWS_LAMBDA_RUNTIME_API must be set).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Run one invocation of EVENT.json (`-` for stdin) locally through the runtime's handler,
    /// configured from the environment like the function; print the response JSON.
    #[arg(long, value_name = "EVENT.json")]
    pub emulate: Option<PathBuf>,
    /// With --emulate: the image (instead of SCAR_IMAGE).
    #[arg(long, requires = "emulate")]
    pub image: Option<String>,
    /// With --emulate: the function timeout in seconds.
    #[arg(long, requires = "emulate", default_value_t = 300.0)]
    pub timeout: f64,
    /// With --emulate: `KEY=VALUE` for the container (repeatable).
    #[arg(long = "env", short = 'e', requires = "emulate", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull an image into the rootfs cache and print the rootfs path.
    Pull {
        /// `ubuntu`, `grycap/cowsay:latest`, `127.0.0.1:5000/x:y`, `oci:DIR[:TAG]`, `docker-archive:FILE`.
        image: String,
        /// Cache and registry settings.
        #[command(flatten)]
        pull: PullArgs,
    },
    /// Pull an image and run a command in it as the current user, streaming its output;
    /// exits with the command's status.
    Run {
        /// The image, as for `pull`.
        image: String,
        /// Cache and registry settings.
        #[command(flatten)]
        pull: PullArgs,
        /// Shim settings.
        #[command(flatten)]
        exec: ExecArgs,
        /// `KEY=VALUE` for the container, after the image's Env (repeatable).
        #[arg(long = "env", short = 'e', value_parser = parse_key_value)]
        env: Vec<(String, String)>,
        /// Working directory inside the container (default: the image's, else `/`).
        #[arg(long, short = 'w')]
        workdir: Option<String>,
        /// `CONTAINER=HOST`: show a host directory inside the container (repeatable).
        #[arg(long = "mount", value_parser = parse_mount)]
        mounts: Vec<(String, PathBuf)>,
        /// Seconds before the command's process group is ended.
        #[arg(long)]
        timeout: Option<f64>,
        /// The command and its arguments (default: the image's Entrypoint and Cmd).
        #[arg(last = true)]
        command: Vec<String>,
    },
}

/// How programs run inside a rootfs.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Directory holding `scar-fakechroot-glibc.so` and `scar-fakechroot-musl.so`.
    #[arg(long, env = "SCAR_SHIM_DIR")]
    pub shim_dir: Option<PathBuf>,
    /// Statically linked programs cannot be confined: run them, warn, or refuse.
    #[arg(long, env = "SCAR_STATIC_BINARIES", value_enum, default_value_t)]
    pub static_binaries: StaticPolicy,
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

/// Settings shared by every command that pulls.
#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    /// Root of the rootfs cache.
    #[arg(long, env = "SCAR_CACHE_DIR", default_value = "/tmp/scar")]
    pub cache_dir: PathBuf,
    /// Platform to resolve multi-platform images to (`linux/arm64/v8`).
    #[arg(long, env = "SCAR_PLATFORM")]
    pub platform: Option<Platform>,
    /// Registry reached over plain HTTP (loopback registries always are).
    #[arg(
        long = "insecure-registry",
        env = "SCAR_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    /// Layers downloading at once.
    #[arg(long, env = "SCAR_PULL_CONCURRENCY", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
    /// Registry user name (with `SCAR_REGISTRY_PASSWORD`).
    #[arg(long, env = "SCAR_REGISTRY_USERNAME", hide = true)]
    pub registry_username: Option<String>,
    /// Registry password or token.
    #[arg(
        long,
        env = "SCAR_REGISTRY_PASSWORD",
        hide = true,
        hide_env_values = true
    )]
    pub registry_password: Option<String>,
}

impl PullArgs {
    /// The pull options these flags describe.
    pub fn options(&self, progress: bool) -> PullOptions {
        let credentials = match (&self.registry_username, &self.registry_password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        PullOptions {
            cache_dir: self.cache_dir.clone(),
            platform: self.platform.clone().unwrap_or_else(Platform::current),
            registry: RegistryOptions {
                insecure: self.insecure.clone(),
                credentials,
                concurrency: usize::from(self.concurrency),
            },
            progress,
        }
    }
}

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
        assert!(
            Cli::try_parse_from(["bootstrap", "--image", "x"]).is_err(),
            "--image needs --emulate"
        );
        assert!(Cli::try_parse_from(["bootstrap", "--emulate", "e.json", "pull", "x"]).is_err());
        let cli = Cli::try_parse_from(["bootstrap", "run", "img", "--", "ls", "-l"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Run { command, .. }) if command == ["ls", "-l"])
        );
    }
}
