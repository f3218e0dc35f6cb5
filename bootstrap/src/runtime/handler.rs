//! One invocation: parse the event, make `/tmp/$REQUEST_ID/{input,output}`, pull the image
//! once per execution environment, run the command with the time that is left minus the
//! threshold, upload what it wrote, answer, and clean up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::config::FunctionConfig;
use super::event::{DirectInvoke, Event, EventError, HttpRequest, S3Object};
use super::http;
use super::s3::{S3Error, Storage, files_below};
use crate::cache::ContainerConfig;
use crate::exec::{
    Capture, ExecError, Outcome, RootfsProfile, RunSpec, Sandbox, Shims, container_env,
};
use crate::local::{command_line, passthrough_mounts};
use crate::pull::{PullError, Puller};
use crate::reference::ImageReference;

/// Who is asking and until when.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The Lambda request id.
    pub request_id: String,
    /// Lambda's deadline for this invocation.
    pub deadline: SystemTime,
}

/// Why an invocation failed (the command failing is not one: it is reported in the
/// response). Each kind has a stable `errorType`.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// `Scar.InvalidEvent`.
    #[error(transparent)]
    Event(#[from] EventError),
    /// `Scar.ImageError`: the reference is wrong, the image is missing, a layer is corrupt…
    #[error("cannot pull {image}: {source}")]
    Image {
        /// The reference.
        image: String,
        /// Why.
        source: PullError,
    },
    /// `Scar.ImageError`: the reference does not parse.
    #[error("{image}: {source}")]
    Reference {
        /// The reference.
        image: String,
        /// Why.
        source: crate::reference::ReferenceError,
    },
    /// `Scar.NoSpace`: /tmp cannot hold the image.
    #[error("{0}")]
    NoSpace(PullError),
    /// `Scar.Deadline`: no time was left for a stage.
    #[error("{0}")]
    Deadline(String),
    /// `Scar.ExecError`: the command could not be started.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// `Scar.S3Error`: an input could not be downloaded or an output uploaded.
    #[error(transparent)]
    S3(#[from] S3Error),
    /// `Scar.IoError`: the request directory could not be prepared.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl InvokeError {
    /// The `errorType` Lambda reports.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Event(_) => "Scar.InvalidEvent",
            Self::Image { .. } | Self::Reference { .. } => "Scar.ImageError",
            Self::NoSpace(_) => "Scar.NoSpace",
            Self::Deadline(_) => "Scar.Deadline",
            Self::Exec(_) => "Scar.ExecError",
            Self::S3(_) => "Scar.S3Error",
            Self::Io { .. } => "Scar.IoError",
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InvokeError {
    let what = what.into();
    move |source| InvokeError::Io { what, source }
}

/// `/tmp/$REQUEST_ID`, removed when the invocation ends, whatever happened.
struct RequestDir {
    root: PathBuf,
}

impl RequestDir {
    fn create(tmp: &Path, request_id: &str) -> Result<Self, InvokeError> {
        let safe: String = request_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let root = tmp.join(safe);
        let _ = std::fs::remove_dir_all(&root);
        for sub in ["input", "output"] {
            std::fs::create_dir_all(root.join(sub))
                .map_err(io(format!("cannot create {}/{sub}", root.display())))?;
        }
        Ok(Self { root })
    }
    fn input(&self) -> PathBuf {
        self.root.join("input")
    }
    fn output(&self) -> PathBuf {
        self.root.join("output")
    }
    fn reset(&self) -> Result<(), InvokeError> {
        for dir in [self.input(), self.output()] {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .map_err(io(format!("cannot create {}", dir.display())))?;
        }
        Ok(())
    }
}

impl Drop for RequestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The image, pulled and scanned once per execution environment.
#[derive(Debug)]
struct Prepared {
    sandbox: Sandbox,
    config: ContainerConfig,
    digest: String,
}

/// How the image was obtained for this invocation.
#[derive(Debug, Clone, Copy, Serialize)]
struct PullInfo {
    cached: bool,
    pull_seconds: f64,
}

/// One run of the command, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The exit status, or null when a signal ended the command.
    pub exit_code: Option<i32>,
    /// That signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Ended by the timeout threshold.
    pub timed_out: bool,
    /// stdout and stderr, interleaved, with markers for truncation and timeout.
    pub output: String,
    /// Output bytes not returned.
    pub output_truncated_bytes: u64,
    /// Seconds the command ran.
    pub exec_seconds: f64,
    /// `s3://` URIs of the uploaded output files.
    pub uploaded: Vec<String>,
    /// The input object, for S3 events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

impl RunReport {
    fn new(outcome: Outcome, threshold: Duration) -> Self {
        let mut output = String::from_utf8_lossy(&outcome.output).into_owned();
        if outcome.dropped > 0 {
            output.push_str(&format!(
                "\n[scar: output truncated: {} more bytes not shown (SCAR_OUTPUT_LIMIT)]\n",
                outcome.dropped
            ));
        }
        if outcome.timed_out {
            output.push_str(&format!(
                "\n[scar: timed out: the command was ended {}s before the Lambda deadline (SCAR_TIMEOUT_THRESHOLD); output files written so far were uploaded]\n",
                threshold.as_secs_f64()
            ));
        }
        Self {
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            timed_out: outcome.timed_out,
            output,
            output_truncated_bytes: outcome.dropped,
            exec_seconds: outcome.duration.as_secs_f64(),
            uploaded: Vec::new(),
            input: None,
        }
    }

    /// Succeeded: exit status 0 within the time.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// The variables from the function's own environment that the container also gets.
const FORWARDED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
];

/// Serves invocations for one function configuration.
#[derive(Debug)]
pub struct Handler {
    config: FunctionConfig,
    tmp: PathBuf,
    prepared: tokio::sync::Mutex<Option<Arc<Prepared>>>,
    storage: tokio::sync::OnceCell<Storage>,
}

impl Handler {
    /// A handler whose request directories go below `tmp` (`/tmp` on Lambda).
    pub fn new(config: FunctionConfig, tmp: PathBuf) -> Self {
        Self {
            config,
            tmp,
            prepared: tokio::sync::Mutex::new(None),
            storage: tokio::sync::OnceCell::new(),
        }
    }

    /// Handles one event and returns the response document.
    pub async fn handle(
        &self,
        event: Value,
        invocation: &Invocation,
    ) -> Result<Value, InvokeError> {
        let event = Event::parse(event, &self.config.input_prefix)?;
        let cutoff = self.cutoff(invocation)?;
        let dir = RequestDir::create(&self.tmp, &invocation.request_id)?;
        let (prepared, pull) = self.prepare(cutoff).await?;
        let result = match event {
            Event::Direct(direct) => {
                self.direct(&prepared, pull, direct, &dir, invocation, cutoff)
                    .await
            }
            Event::S3 { objects, skipped } => {
                self.s3(&prepared, pull, objects, skipped, &dir, invocation, cutoff)
                    .await
            }
            Event::Http(request) => {
                self.http(&prepared, request, &dir, invocation, cutoff)
                    .await
            }
        };
        clear_dir(&prepared.sandbox.rootfs.join("tmp"));
        release_free_memory();
        result
    }

    /// When the command must be ended: the deadline minus the threshold.
    fn cutoff(&self, invocation: &Invocation) -> Result<tokio::time::Instant, InvokeError> {
        let remaining = invocation
            .deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let threshold = self.config.timeout_threshold;
        if remaining <= threshold {
            return Err(InvokeError::Deadline(format!(
                "no time left to run: {:.1}s remain and SCAR_TIMEOUT_THRESHOLD keeps {}s back; raise the function's timeout",
                remaining.as_secs_f64(),
                threshold.as_secs_f64()
            )));
        }
        Ok(tokio::time::Instant::now() + (remaining - threshold))
    }

    async fn prepare(
        &self,
        cutoff: tokio::time::Instant,
    ) -> Result<(Arc<Prepared>, PullInfo), InvokeError> {
        let mut slot = self.prepared.lock().await;
        if let Some(prepared) = slot.as_ref() {
            return Ok((
                Arc::clone(prepared),
                PullInfo {
                    cached: true,
                    pull_seconds: 0.0,
                },
            ));
        }
        let started = Instant::now();
        let image = self.config.image.clone();
        let image_error = |source: PullError| match source {
            PullError::NoSpace { .. } => InvokeError::NoSpace(source),
            source => InvokeError::Image {
                image: image.clone(),
                source,
            },
        };
        let reference: ImageReference = image.parse().map_err(|source| InvokeError::Reference {
            image: image.clone(),
            source,
        })?;
        let puller = Puller::new(self.config.pull.clone()).map_err(image_error)?;
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
        let rootfs = pulled.image.rootfs.clone();
        let profile = tokio::task::spawn_blocking(move || RootfsProfile::scan(&rootfs))
            .await
            .map_err(|e| io("cannot scan the rootfs")(std::io::Error::other(e.to_string())))?;
        let prepared = Arc::new(Prepared {
            sandbox: Sandbox {
                rootfs: pulled.image.rootfs.clone(),
                profile,
                shims: Shims::locate(self.config.shim_dir.as_deref()),
                static_policy: self.config.static_policy,
            },
            config: pulled.image.meta.config.clone(),
            digest: pulled.image.meta.manifest_digest.clone(),
        });
        tracing::info!(image = %image, digest = %prepared.digest, cached = pulled.cached, secs = started.elapsed().as_secs_f64(), "image ready");
        release_free_memory();
        *slot = Some(Arc::clone(&prepared));
        Ok((
            prepared,
            PullInfo {
                cached: pulled.cached,
                pull_seconds: started.elapsed().as_secs_f64(),
            },
        ))
    }

    async fn storage(&self) -> &Storage {
        self.storage.get_or_init(Storage::connect).await
    }

    /// Runs `argv` with the invocation's variables; `extra` come after the function's.
    async fn run(
        &self,
        prepared: &Prepared,
        argv: Vec<String>,
        extra: Vec<(String, String)>,
        dir: &RequestDir,
        invocation: &Invocation,
        cutoff: tokio::time::Instant,
    ) -> Result<RunReport, InvokeError> {
        let mut overrides = self.config.container_env.clone();
        for name in FORWARDED {
            if let Ok(value) = std::env::var(name) {
                overrides.push(((*name).to_owned(), value));
            }
        }
        if let Ok(token) = std::env::var("AWS_SESSION_TOKEN") {
            overrides.push(("AWS_SECURITY_TOKEN".to_owned(), token));
        }
        overrides.extend(extra);
        overrides.push(("REQUEST_ID".to_owned(), invocation.request_id.clone()));
        overrides.push((
            "SCAR_INPUT_DIR".to_owned(),
            dir.input().display().to_string(),
        ));
        overrides.push((
            "SCAR_OUTPUT_DIR".to_owned(),
            dir.output().display().to_string(),
        ));
        let mut mounts = passthrough_mounts();
        mounts.push((dir.root.display().to_string(), dir.root.clone()));
        let spec = RunSpec {
            argv,
            env: container_env(
                prepared.config.env.as_deref().unwrap_or_default(),
                &overrides,
            ),
            workdir: prepared
                .config
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".to_owned()),
            mounts,
            capture: Capture::Combined {
                limit: self.config.output_limit,
            },
            deadline: Some(cutoff),
            grace: self
                .config
                .kill_grace
                .min(self.config.timeout_threshold / 2),
        };
        let outcome = prepared.sandbox.run(&spec).await?;
        tracing::info!(exit_code = ?outcome.exit_code, signal = ?outcome.signal, timed_out = outcome.timed_out, secs = outcome.duration.as_secs_f64(), "command ended");
        Ok(RunReport::new(outcome, self.config.timeout_threshold))
    }

    /// The command: `script` > `cmd_args` > the init script > the image's own.
    fn argv(
        &self,
        prepared: &Prepared,
        direct: &DirectInvoke,
        dir: &RequestDir,
    ) -> Result<Vec<String>, InvokeError> {
        let script = match (
            direct.script_bytes(),
            &direct.cmd_args,
            &self.config.init_script,
        ) {
            (Some(script), _, _) => Some(("script.sh", script)),
            (None, Some(args), _) => return Ok(command_line(&prepared.config, args)),
            (None, None, Some(init)) => Some(("init_script.sh", init.clone())),
            (None, None, None) => None,
        };
        match script {
            Some((name, body)) => {
                let path = dir.root.join(name);
                // A script with its own `#!` line (python, ruby, perl…) runs with that
                // interpreter from the image; anything else is a shell script, as in SCAR.
                let shebang = body.starts_with(b"#!");
                std::fs::write(&path, body)
                    .and_then(|()| {
                        use std::os::unix::fs::PermissionsExt;
                        let mode = if shebang { 0o755 } else { 0o644 };
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    })
                    .map_err(io(format!("cannot write {}", path.display())))?;
                let path = path.display().to_string();
                Ok(if shebang {
                    vec![path]
                } else {
                    vec!["/bin/sh".to_owned(), path]
                })
            }
            None => Ok(command_line(&prepared.config, &[])),
        }
    }

    async fn upload(
        &self,
        dir: &RequestDir,
        event_bucket: Option<&str>,
    ) -> Result<Vec<String>, InvokeError> {
        let Some(bucket) = self.config.output_bucket.as_deref().or(event_bucket) else {
            return Ok(Vec::new());
        };
        if files_below(&dir.output()).is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .storage()
            .await
            .upload_dir(&dir.output(), bucket, &self.config.output_prefix)
            .await?)
    }

    fn document(
        &self,
        invocation: &Invocation,
        prepared: &Prepared,
        pull: PullInfo,
        body: Value,
    ) -> Value {
        let mut doc = serde_json::json!({
            "request_id": invocation.request_id,
            "image": self.config.image,
            "digest": prepared.digest,
            "cached": pull.cached,
            "pull_seconds": pull.pull_seconds,
        });
        if let (Value::Object(doc), Value::Object(body)) = (&mut doc, body) {
            doc.extend(body);
        }
        doc
    }

    async fn direct(
        &self,
        prepared: &Prepared,
        pull: PullInfo,
        direct: DirectInvoke,
        dir: &RequestDir,
        invocation: &Invocation,
        cutoff: tokio::time::Instant,
    ) -> Result<Value, InvokeError> {
        let argv = self.argv(prepared, &direct, dir)?;
        let mut report = self
            .run(
                prepared,
                argv,
                direct.env.into_iter().collect(),
                dir,
                invocation,
                cutoff,
            )
            .await?;
        report.uploaded = self.upload(dir, None).await?;
        Ok(self.document(
            invocation,
            prepared,
            pull,
            serde_json::to_value(&report).unwrap_or_default(),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn s3(
        &self,
        prepared: &Prepared,
        pull: PullInfo,
        objects: Vec<S3Object>,
        skipped: Vec<String>,
        dir: &RequestDir,
        invocation: &Invocation,
        cutoff: tokio::time::Instant,
    ) -> Result<Value, InvokeError> {
        let argv = self.argv(prepared, &DirectInvoke::default(), dir)?;
        let mut records = Vec::new();
        for object in &objects {
            dir.reset()?;
            let input = self.storage().await.download(object, &dir.input()).await?;
            let extra = vec![("SCAR_INPUT_FILE".to_owned(), input.display().to_string())];
            let mut report = self
                .run(prepared, argv.clone(), extra, dir, invocation, cutoff)
                .await?;
            report.input = Some(format!("s3://{}/{}", object.bucket, object.key));
            report.uploaded = self.upload(dir, Some(&object.bucket)).await?;
            records.push(report);
        }
        let failed = records.iter().find(|r| !r.succeeded());
        let summary = serde_json::json!({
            "exit_code": if records.is_empty() { Some(0) } else { failed.map_or(Some(0), |r| r.exit_code) },
            "timed_out": records.iter().any(|r| r.timed_out),
            "output": records.iter().map(|r| format!("== {} ==\n{}", r.input.as_deref().unwrap_or(""), r.output)).collect::<Vec<_>>().join("\n"),
            "records": records,
            "skipped": skipped,
        });
        Ok(self.document(invocation, prepared, pull, summary))
    }

    async fn http(
        &self,
        prepared: &Prepared,
        request: HttpRequest,
        dir: &RequestDir,
        invocation: &Invocation,
        cutoff: tokio::time::Instant,
    ) -> Result<Value, InvokeError> {
        let argv = self.argv(prepared, &DirectInvoke::default(), dir)?;
        let mut extra = request.query.clone();
        if let Some(body) = &request.body {
            let path = dir.input().join("body");
            std::fs::write(&path, body).map_err(io(format!("cannot write {}", path.display())))?;
            extra.push(("SCAR_INPUT_FILE".to_owned(), path.display().to_string()));
        }
        let mut report = self
            .run(prepared, argv, extra, dir, invocation, cutoff)
            .await?;
        report.uploaded = self.upload(dir, None).await?;
        Ok(http::response(
            request.format,
            &report,
            &invocation.request_id,
        ))
    }
}

/// Empties a directory, keeping it.
fn clear_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// Freed buffers (the pull's, an invocation's) stay with glibc's allocator; handing them
/// back keeps a warm, waiting environment small. It costs microseconds on a small heap.
/// (musl's allocator returns large blocks by itself.)
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}
