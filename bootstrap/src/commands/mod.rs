//! One file per command: `serve` (the Lambda loop), `pull`, `run`, `emulate`.

mod emulate;
mod pull;
mod run;
mod serve;

use crate::cli::{Cli, Command};

/// Runs one parsed command line; returns the process exit code.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Some(Command::Pull { image, settings }) => pull::pull(&image, &settings).await,
        Some(Command::Run(args)) => run::run(args).await,
        None => match cli.emulate {
            Some(event) => emulate::emulate(&event, cli.image, cli.timeout, cli.env).await,
            None => serve::serve().await,
        },
    }
}
