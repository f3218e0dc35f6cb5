//! `bootstrap`: a Lambda custom runtime that runs any OCI image.
//!
//! How it works:
//! 1. [`reference`] parses what the user wrote (`ubuntu`, `oci:DIR:TAG`, `docker-archive:FILE`);
//! 2. [`source`] resolves it to one platform's manifest, config and layers;
//! 3. [`pull`] streams each layer network → sha256 → gunzip/zstd → tar into a staging
//!    directory ([`unpack`]), then [`cache`] renames it into place, keyed by manifest digest.
//!
//! Settings are listed in [`cli`].

#![warn(missing_docs)]

pub mod cache;
pub mod cli;
pub mod exec;
pub mod local;
pub mod logging;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod runtime;
pub mod source;
pub mod unpack;

use std::io::IsTerminal;

use anyhow::Context;

/// Runs one parsed command line; returns the process exit code.
pub async fn run(cli: cli::Cli) -> anyhow::Result<i32> {
    let Some(command) = cli.command else {
        if let Some(event) = cli.emulate {
            anyhow::ensure!(
                cli.timeout.is_finite() && cli.timeout > 0.0,
                "--timeout must be a positive number of seconds"
            );
            let timeout = std::time::Duration::from_secs_f64(cli.timeout);
            return runtime::emulate(runtime::Emulation {
                event,
                image: cli.image,
                timeout,
                env: cli.env,
            })
            .await;
        }
        let api = std::env::var("AWS_LAMBDA_RUNTIME_API").context(
            "AWS_LAMBDA_RUNTIME_API is not set, so this is not a Lambda environment: use --emulate EVENT.json, run or pull",
        )?;
        runtime::serve(&api).await?;
        return Ok(0);
    };
    match command {
        cli::Command::Pull { image, pull } => {
            let reference: reference::ImageReference = image.parse()?;
            let puller = pull::Puller::new(pull.options(std::io::stderr().is_terminal()))?;
            let started = std::time::Instant::now();
            let pulled = puller
                .pull(&reference)
                .await
                .with_context(|| format!("cannot pull {reference}"))?;
            tracing::info!(
                image = %reference,
                digest = %pulled.image.meta.manifest_digest,
                cached = pulled.cached,
                secs = started.elapsed().as_secs_f64(),
                "rootfs ready"
            );
            println!("{}", pulled.image.rootfs.display());
            Ok(0)
        }
        cli::Command::Run {
            image,
            pull,
            exec,
            env,
            workdir,
            mounts,
            timeout,
            command,
        } => {
            local::run(local::LocalRun {
                image,
                pull,
                exec,
                env,
                workdir,
                mounts,
                timeout,
                command,
            })
            .await
        }
    }
}
