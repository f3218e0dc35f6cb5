//! The image, pulled and scanned once per execution environment and shared by every
//! invocation after that. An invocation that finds the pull under way waits for it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use scar_image::{ContainerConfig, ImageReference, PullError, PullOptions, Puller, UnpackError};

use super::error::{InvokeError, io};
use crate::config::ExecOptions;
use crate::exec::Sandbox;

/// A rootfs ready to run programs from.
#[derive(Debug)]
pub struct Prepared {
    /// The rootfs and how to run its programs.
    pub sandbox: Sandbox,
    /// The image's Env, Entrypoint, Cmd, WorkingDir.
    pub config: ContainerConfig,
    /// The manifest digest.
    pub digest: String,
    /// What the deadline sends first, read from the config once (a name that is no signal
    /// is said once, not at every invocation).
    pub stop_signal: nix::sys::signal::Signal,
    /// `HOME` when the image's Env sets none.
    pub home: String,
}

/// How the image was obtained for this invocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PullInfo {
    /// Nothing had to be pulled.
    pub cached: bool,
    /// Seconds this invocation spent pulling.
    pub pull_seconds: f64,
}

/// Where the handler gets its rootfs: the pull in production, a prepared tree in tests.
pub trait Images: Send + Sync {
    /// The image's rootfs, pulled before `cutoff` unless it is ready.
    fn prepare(
        &self,
        cutoff: tokio::time::Instant,
    ) -> impl Future<Output = Result<(Arc<Prepared>, PullInfo), InvokeError>> + Send;
}

/// The function's image, pulled on first use into the cache.
#[derive(Debug)]
pub struct PulledImage {
    image: String,
    pull: PullOptions,
    exec: ExecOptions,
    slot: tokio::sync::Mutex<Option<Arc<Prepared>>>,
}

impl PulledImage {
    /// `image`, pulled with `pull`, run with `exec`.
    pub fn new(image: String, pull: PullOptions, exec: ExecOptions) -> Self {
        Self {
            image,
            pull,
            exec,
            slot: tokio::sync::Mutex::new(None),
        }
    }
}

impl Images for PulledImage {
    async fn prepare(
        &self,
        cutoff: tokio::time::Instant,
    ) -> Result<(Arc<Prepared>, PullInfo), InvokeError> {
        // A pull under way (the init phase's, or another invocation's) is waited for, within
        // this invocation's own time.
        let Ok(mut slot) = tokio::time::timeout_at(cutoff, self.slot.lock()).await else {
            return Err(InvokeError::Deadline(format!(
                "the pull of {} under way did not finish before the deadline minus SCAR_TIMEOUT_THRESHOLD; it goes on for the next invocation",
                self.image
            )));
        };
        if let Some(prepared) = slot.as_ref() {
            let info = PullInfo {
                cached: true,
                pull_seconds: 0.0,
            };
            return Ok((Arc::clone(prepared), info));
        }
        let started = Instant::now();
        let image = self.image.clone();
        // /tmp too small is the function's configuration, not the image: the same type whether
        // the estimate saw it before the pull or the disk filled during the unpack.
        let image_error = |source: PullError| match source {
            PullError::NoSpace { .. }
            | PullError::Unpack {
                error: UnpackError::NoSpace { .. },
                ..
            } => InvokeError::NoSpace(source),
            PullError::Lazy(ref fault) if fault.is_no_space() => InvokeError::NoSpace(source),
            source => InvokeError::Image {
                image: image.clone(),
                source,
            },
        };
        let reference: ImageReference = image.parse().map_err(|source| InvokeError::Reference {
            image: image.clone(),
            source,
        })?;
        let puller = Puller::new(self.pull.clone()).map_err(image_error)?;
        // Dropping the pull at the cutoff leaves only a staging directory, which the next
        // pull recognises as abandoned and rebuilds: the cache stays consistent.
        let pulled = match tokio::time::timeout_at(cutoff, puller.pull(&reference)).await {
            Ok(pulled) => pulled.map_err(image_error)?,
            Err(_) => {
                return Err(InvokeError::Deadline(format!(
                    "the pull of {image} did not finish before the deadline minus SCAR_TIMEOUT_THRESHOLD ({:.1}s spent); it resumes on the next invocation",
                    started.elapsed().as_secs_f64()
                )));
            }
        };
        let (exec, cache_dir) = (self.exec.clone(), self.pull.cache_dir.clone());
        let image_dir = pulled.image.dir.clone();
        let sandbox = tokio::task::spawn_blocking(move || {
            Sandbox::for_pulled(&pulled, &exec, &cache_dir).map(|s| (s, pulled))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(io(format!(
            "cannot prepare the rootfs in {}",
            image_dir.display()
        )))?;
        let (sandbox, pulled) = sandbox;
        let config = &pulled.image.meta.config;
        let prepared = Arc::new(Prepared {
            stop_signal: crate::exec::stop_signal(config),
            home: sandbox.home(config),
            sandbox,
            config: config.clone(),
            digest: pulled.image.meta.manifest_digest.clone(),
        });
        tracing::info!(image = %image, digest = %prepared.digest, cached = pulled.cached, secs = started.elapsed().as_secs_f64(), "image ready");
        super::release_free_memory();
        *slot = Some(Arc::clone(&prepared));
        let info = PullInfo {
            cached: pulled.cached,
            pull_seconds: started.elapsed().as_secs_f64(),
        };
        Ok((prepared, info))
    }
}
