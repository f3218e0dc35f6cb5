use std::process::ExitCode;

use clap::Parser;
use deployer::cli::{Cli, normalize_scar_flags};

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
    match deployer::execute(cli).await {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::new(e));
            ExitCode::FAILURE
        }
    }
}
