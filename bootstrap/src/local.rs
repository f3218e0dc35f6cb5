//! `bootstrap run`: SCAR's "test the image locally", without Docker or udocker.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;

use crate::cache::ContainerConfig;
use crate::cli::{ExecArgs, PullArgs};
use crate::exec::{Capture, PASSTHROUGH, RootfsProfile, RunSpec, Sandbox, Shims, container_env};
use crate::pull::Puller;
use crate::reference::ImageReference;

/// Everything `bootstrap run` was given.
#[derive(Debug)]
pub struct LocalRun {
    /// The image reference.
    pub image: String,
    /// Pull settings.
    pub pull: PullArgs,
    /// Shim settings.
    pub exec: ExecArgs,
    /// Extra container variables.
    pub env: Vec<(String, String)>,
    /// Working directory override.
    pub workdir: Option<String>,
    /// Extra mounts.
    pub mounts: Vec<(String, PathBuf)>,
    /// Seconds before the group is ended.
    pub timeout: Option<f64>,
    /// The command, or empty for the image's.
    pub command: Vec<String>,
}

/// The image's Entrypoint followed by its Cmd, unless a command was given (it replaces Cmd
/// only, as `docker run IMAGE CMD` does).
pub fn command_line(config: &ContainerConfig, given: &[String]) -> Vec<String> {
    let mut argv = config.entrypoint.clone().unwrap_or_default();
    if given.is_empty() {
        argv.extend(config.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(given.iter().cloned());
    }
    argv
}

/// Host paths that exist here and are seen unchanged in every container.
pub fn passthrough_mounts() -> Vec<(String, PathBuf)> {
    PASSTHROUGH
        .iter()
        .filter(|p| std::path::Path::new(p).exists())
        .map(|p| ((*p).to_owned(), PathBuf::from(p)))
        .collect()
}

/// Pulls, runs, and returns the command's status (128 + signal when killed).
pub async fn run(args: LocalRun) -> anyhow::Result<i32> {
    let reference: ImageReference = args.image.parse()?;
    let puller = Puller::new(args.pull.options(std::io::stderr().is_terminal()))?;
    let pulled = puller
        .pull(&reference)
        .await
        .with_context(|| format!("cannot pull {reference}"))?;
    let config = &pulled.image.meta.config;
    let sandbox = Sandbox {
        profile: RootfsProfile::scan(&pulled.image.rootfs),
        rootfs: pulled.image.rootfs.clone(),
        shims: Shims::locate(args.exec.shim_dir.as_deref()),
        static_policy: args.exec.static_binaries,
    };
    // The container's /tmp is the image's own, as under chroot: a host directory mapped
    // there would resolve relative symlinks (`../../bin/ls`) against the host tree.
    let mut mounts = passthrough_mounts();
    mounts.extend(args.mounts);
    let spec = RunSpec {
        argv: command_line(config, &args.command),
        env: container_env(config.env.as_deref().unwrap_or_default(), &args.env),
        workdir: args
            .workdir
            .or_else(|| config.working_dir.clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".to_owned()),
        mounts,
        capture: Capture::Inherit,
        deadline: args
            .timeout
            .map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(s)),
        grace: std::time::Duration::from_secs(2),
    };
    let outcome = sandbox
        .run(&spec)
        .await
        .with_context(|| format!("cannot run {:?} in {reference}", spec.argv))?;
    if outcome.timed_out {
        tracing::warn!(
            secs = args.timeout,
            "timed out: the command's process group was ended"
        );
    }
    Ok(outcome.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_command_replaces_cmd_but_keeps_the_entrypoint() {
        let config = ContainerConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into()]),
            ..ContainerConfig::default()
        };
        assert_eq!(command_line(&config, &[]), ["/entry", "default"]);
        assert_eq!(command_line(&config, &["x".into()]), ["/entry", "x"]);
        assert!(command_line(&ContainerConfig::default(), &[]).is_empty());
    }
}
