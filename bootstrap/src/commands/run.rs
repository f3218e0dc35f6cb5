//! `bootstrap run`: SCAR's "test the image locally", without Docker or udocker.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use scar_image::{ImageReference, Puller};
use scar_runtime::exec::{
    Capture, RunSpec, Sandbox, command_line, container_env, passthrough_mounts, stop_signal,
};

use crate::cli::RunArgs;

/// Pulls, runs, and returns the command's status (128 + signal when killed).
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let reference: ImageReference = args.image.parse()?;
    let lookup = |var: &str| args.settings.lookup(var);
    let options = scar_runtime::pull_options(&lookup, std::io::stderr().is_terminal())?;
    let exec = scar_runtime::exec_options(&lookup)?;
    let options_cache_dir = options.cache_dir.clone();
    let puller = Puller::new(options)?;
    let pulled = puller
        .pull(&reference)
        .await
        .with_context(|| format!("cannot pull {reference}"))?;
    let config = &pulled.image.meta.config;
    // Scanning a lazy tree fetches files, which blocks on the runtime's S3 client.
    let sandbox =
        tokio::task::block_in_place(|| Sandbox::for_pulled(&pulled, &exec, &options_cache_dir))
            .context("cannot prepare the rootfs")?;
    // The container's /tmp is the image's own, as under chroot: a host directory mapped
    // there would resolve relative symlinks (`../../bin/ls`) against the host tree.
    let mut mounts = passthrough_mounts();
    mounts.extend(args.mounts);
    let spec = RunSpec {
        argv: command_line(config, &args.command),
        env: container_env(
            config.env.as_deref().unwrap_or_default(),
            &sandbox.home(config),
            &args.env,
        ),
        workdir: args
            .workdir
            .or_else(|| config.working_dir.clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".to_owned()),
        mounts,
        capture: Capture::Inherit,
        live_log: None,
        deadline: args.timeout.map(|t| tokio::time::Instant::now() + t),
        stop_signal: stop_signal(config),
        grace: Duration::from_secs(2),
    };
    let outcome = sandbox
        .run(&spec)
        .await
        .with_context(|| format!("cannot run {:?} in {reference}", spec.argv))?;
    if outcome.timed_out {
        tracing::warn!(
            secs = args.timeout.map(|t| t.as_secs_f64()),
            "timed out: the command's process group was ended"
        );
    }
    Ok(outcome.status())
}
