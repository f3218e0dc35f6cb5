//! The deployer: SCAR's command line (`init`, `run`, `invoke`, `ls`, `log`, `rm`) on the AWS
//! SDK, plus `layer` to publish the runtime. The runtime does the work; this binary only
//! publishes it and wires functions, triggers and endpoints to it.
//!
//! `cli` parses, `commands` holds one file per command, and the modules below them do the
//! AWS work (`init`, `run`, `list`, `logs`, `remove`, `layer`, `staging`, `resources`).

mod aws;
mod cli;
mod commands;
mod definitions;
mod endpoint;
mod error;
mod init;
mod layer;
mod list;
mod logs;
mod package;
mod remove;
mod resources;
mod run;
mod settings;
mod staging;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, normalize_scar_flags};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_scar_flags(std::env::args_os()));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCAR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match commands::execute(cli).await {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::new(e));
            ExitCode::FAILURE
        }
    }
}
