//! One invocation: parse the event, make `/tmp/$REQUEST_ID/{input,output}`, get the image
//! (pulled once per execution environment), run the command with the time that is left minus
//! the threshold, upload what it wrote, answer, and clean up.
//!
//! The image and the process are reached through [`Images`] and [`Runner`], so that unit
//! tests run whole invocations without a registry or a process.

use std::future::Future;
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::Value;

use super::error::{InvokeError, io};
use super::event::{DirectInvoke, Event, HttpRequest, S3Object};
use super::http;
use super::image::{Images, Prepared, PullInfo, PulledImage};
use super::request_dir::{RequestDir, clear_dir};
use super::response::{BatchReport, Reply, Response, RunReport, RunResult};
use super::s3::{Storage, files_below};
use crate::config::FunctionConfig;
use crate::exec::{
    Capture, ExecError, Outcome, RunSpec, Sandbox, command_line, container_env, passthrough_mounts,
};

/// Who is asking and until when.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The Lambda request id.
    pub request_id: String,
    /// Lambda's deadline for this invocation.
    pub deadline: SystemTime,
}

/// How the handler starts a command: the sandbox in production, a stand-in in tests.
pub trait Runner: Send + Sync {
    /// Runs `spec` inside `sandbox` until it ends or its deadline.
    fn run(
        &self,
        sandbox: &Sandbox,
        spec: &RunSpec,
    ) -> impl Future<Output = Result<Outcome, ExecError>> + Send;
}

/// Runs commands for real, through the shim.
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxRunner;

impl Runner for SandboxRunner {
    async fn run(&self, sandbox: &Sandbox, spec: &RunSpec) -> Result<Outcome, ExecError> {
        sandbox.run(spec).await
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
pub struct Handler<I = PulledImage, R = SandboxRunner> {
    config: FunctionConfig,
    tmp: PathBuf,
    images: I,
    runner: R,
    storage: tokio::sync::OnceCell<Storage>,
}

impl Handler {
    /// A handler that pulls the configured image; request directories go below `tmp`
    /// (`/tmp` on Lambda).
    pub fn new(config: FunctionConfig, tmp: PathBuf) -> Self {
        let images = PulledImage::new(
            config.image.clone(),
            config.pull.clone(),
            config.exec.clone(),
        );
        Self::with_parts(config, tmp, images, SandboxRunner)
    }
}

impl<I: Images, R: Runner> Handler<I, R> {
    /// A handler with its own image source and runner.
    pub fn with_parts(config: FunctionConfig, tmp: PathBuf, images: I, runner: R) -> Self {
        Self {
            config,
            tmp,
            images,
            runner,
            storage: tokio::sync::OnceCell::new(),
        }
    }

    /// Handles one event and returns the response.
    pub async fn handle(
        &self,
        event: Value,
        invocation: &Invocation,
    ) -> Result<Reply, InvokeError> {
        let event = Event::parse(event, &self.config.input_prefix)?;
        let cutoff = self.cutoff(invocation)?;
        let dir = RequestDir::create(&self.tmp, &invocation.request_id)?;
        let (prepared, pull) = self.images.prepare(cutoff).await?;
        let run = Run {
            handler: self,
            prepared: &prepared,
            dir: &dir,
            invocation,
            cutoff,
        };
        let reply = match event {
            Event::Direct(direct) => run
                .direct(direct)
                .await
                .map(|r| run.response(pull, RunResult::Single(r))),
            Event::S3 { objects, skipped } => run
                .s3(objects, skipped)
                .await
                .map(|r| run.response(pull, RunResult::Batch(r))),
            Event::Http(request) => run.http(request).await.map(Reply::Http),
        };
        clear_dir(&prepared.sandbox.rootfs.join("tmp"));
        super::release_free_memory();
        reply
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

    async fn storage(&self) -> &Storage {
        self.storage.get_or_init(Storage::connect).await
    }
}

/// One invocation's state while it runs.
struct Run<'a, I, R> {
    handler: &'a Handler<I, R>,
    prepared: &'a Prepared,
    dir: &'a RequestDir,
    invocation: &'a Invocation,
    cutoff: tokio::time::Instant,
}

impl<I: Images, R: Runner> Run<'_, I, R> {
    fn config(&self) -> &FunctionConfig {
        &self.handler.config
    }

    fn response(&self, pull: PullInfo, result: RunResult) -> Reply {
        Reply::Run(Response {
            request_id: self.invocation.request_id.clone(),
            image: self.config().image.clone(),
            digest: self.prepared.digest.clone(),
            cached: pull.cached,
            pull_seconds: pull.pull_seconds,
            result,
        })
    }

    /// Runs `argv` with the invocation's variables; `extra` come after the function's.
    async fn run(
        &self,
        argv: Vec<String>,
        extra: Vec<(String, String)>,
    ) -> Result<RunReport, InvokeError> {
        let config = self.config();
        let mut overrides = config.container_env.clone();
        for name in FORWARDED {
            if let Ok(value) = std::env::var(name) {
                overrides.push(((*name).to_owned(), value));
            }
        }
        if let Ok(token) = std::env::var("AWS_SESSION_TOKEN") {
            overrides.push(("AWS_SECURITY_TOKEN".to_owned(), token));
        }
        overrides.extend(extra);
        overrides.push(("REQUEST_ID".to_owned(), self.invocation.request_id.clone()));
        overrides.push((
            "SCAR_INPUT_DIR".to_owned(),
            self.dir.input().display().to_string(),
        ));
        overrides.push((
            "SCAR_OUTPUT_DIR".to_owned(),
            self.dir.output().display().to_string(),
        ));
        let mut mounts = passthrough_mounts();
        mounts.push((self.dir.root.display().to_string(), self.dir.root.clone()));
        let image = &self.prepared.config;
        let spec = RunSpec {
            argv,
            env: container_env(image.env.as_deref().unwrap_or_default(), &overrides),
            workdir: image
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".to_owned()),
            mounts,
            capture: Capture::Combined {
                limit: config.output_limit,
            },
            deadline: Some(self.cutoff),
            grace: config.kill_grace.min(config.timeout_threshold / 2),
        };
        let outcome = self
            .handler
            .runner
            .run(&self.prepared.sandbox, &spec)
            .await?;
        tracing::info!(exit_code = ?outcome.exit_code, signal = ?outcome.signal, timed_out = outcome.timed_out, secs = outcome.duration.as_secs_f64(), "command ended");
        Ok(RunReport::new(outcome, config.timeout_threshold))
    }

    /// The command: `script` > `cmd_args` > the init script > the image's own.
    fn argv(&self, direct: &DirectInvoke) -> Result<Vec<String>, InvokeError> {
        let image = &self.prepared.config;
        let script = match (
            direct.script_bytes(),
            &direct.cmd_args,
            &self.config().init_script,
        ) {
            (Some(script), _, _) => Some(("script.sh", script)),
            (None, Some(args), _) => return Ok(command_line(image, args)),
            (None, None, Some(init)) => Some(("init_script.sh", init.clone())),
            (None, None, None) => None,
        };
        let Some((name, body)) = script else {
            return Ok(command_line(image, &[]));
        };
        let path = self.dir.root.join(name);
        // A script with its own `#!` line (python, ruby, perl…) runs with that interpreter
        // from the image; anything else is a shell script, as in SCAR.
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

    async fn upload(&self, event_bucket: Option<&str>) -> Result<Vec<String>, InvokeError> {
        let config = self.config();
        let Some(bucket) = config.output_bucket.as_deref().or(event_bucket) else {
            return Ok(Vec::new());
        };
        if files_below(&self.dir.output()).is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .handler
            .storage()
            .await
            .upload_dir(&self.dir.output(), bucket, &config.output_prefix)
            .await?)
    }

    async fn direct(&self, direct: DirectInvoke) -> Result<RunReport, InvokeError> {
        let argv = self.argv(&direct)?;
        let mut report = self.run(argv, direct.env.into_iter().collect()).await?;
        report.uploaded = self.upload(None).await?;
        Ok(report)
    }

    async fn s3(
        &self,
        objects: Vec<S3Object>,
        skipped: Vec<String>,
    ) -> Result<BatchReport, InvokeError> {
        let argv = self.argv(&DirectInvoke::default())?;
        let mut records = Vec::new();
        for object in &objects {
            self.dir.reset()?;
            let storage = self.handler.storage().await;
            let input = storage.download(object, &self.dir.input()).await?;
            let extra = vec![("SCAR_INPUT_FILE".to_owned(), input.display().to_string())];
            let mut report = self.run(argv.clone(), extra).await?;
            report.input = Some(format!("s3://{}/{}", object.bucket, object.key));
            report.uploaded = self.upload(Some(&object.bucket)).await?;
            records.push(report);
        }
        Ok(BatchReport::new(records, skipped))
    }

    async fn http(&self, request: HttpRequest) -> Result<super::response::HttpReply, InvokeError> {
        let argv = self.argv(&DirectInvoke::default())?;
        let mut extra = request.query.clone();
        if let Some(body) = &request.body {
            let path = self.dir.input().join("body");
            std::fs::write(&path, body).map_err(io(format!("cannot write {}", path.display())))?;
            extra.push(("SCAR_INPUT_FILE".to_owned(), path.display().to_string()));
        }
        let mut report = self.run(argv, extra).await?;
        report.uploaded = self.upload(None).await?;
        Ok(http::response(
            request.format,
            &report,
            &self.invocation.request_id,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use scar_image::ContainerConfig;
    use serde_json::json;

    use super::*;
    use crate::exec::{RootfsProfile, Shims, StaticPolicy};
    use crate::lambda::{HttpReply, InvokeError};

    /// A rootfs that is simply there: no registry.
    struct Ready(Arc<Prepared>);

    impl Images for Ready {
        async fn prepare(
            &self,
            _cutoff: tokio::time::Instant,
        ) -> Result<(Arc<Prepared>, PullInfo), InvokeError> {
            let info = PullInfo {
                cached: true,
                pull_seconds: 0.0,
            };
            Ok((Arc::clone(&self.0), info))
        }
    }

    /// Records each spec and answers with its argv as output: no process.
    #[derive(Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<RunSpec>>>);

    impl Runner for Recorder {
        async fn run(&self, _sandbox: &Sandbox, spec: &RunSpec) -> Result<Outcome, ExecError> {
            if let Ok(mut specs) = self.0.lock() {
                specs.push(spec.clone());
            }
            let code = if spec.argv.last().map(String::as_str) == Some("fail") {
                3
            } else {
                0
            };
            Ok(Outcome {
                exit_code: Some(code),
                output: spec.argv.join(" ").into_bytes(),
                duration: Duration::from_millis(5),
                ..Outcome::default()
            })
        }
    }

    fn handler(tmp: &std::path::Path, recorder: Recorder) -> Handler<Ready, Recorder> {
        let config = FunctionConfig::from_vars([
            ("SCAR_IMAGE".to_owned(), "example/image".to_owned()),
            ("CONT_VAR_GREETING".to_owned(), "hi".to_owned()),
        ])
        .unwrap();
        let prepared = Prepared {
            sandbox: Sandbox {
                rootfs: tmp.join("rootfs"),
                profile: RootfsProfile {
                    library_dirs: vec![],
                    glibc: None,
                    data_env: vec![],
                },
                shims: Shims::default(),
                static_policy: StaticPolicy::Warn,
                scratch: tmp.join("scratch"),
            },
            config: ContainerConfig {
                entrypoint: Some(vec!["/entry".into()]),
                cmd: Some(vec!["default".into()]),
                env: Some(vec!["PATH=/bin".into()]),
                ..ContainerConfig::default()
            },
            digest: "sha256:abc".to_owned(),
        };
        Handler::with_parts(
            config,
            tmp.to_path_buf(),
            Ready(Arc::new(prepared)),
            recorder,
        )
    }

    fn invocation(id: &str) -> Invocation {
        Invocation {
            request_id: id.to_owned(),
            deadline: SystemTime::now() + Duration::from_secs(60),
        }
    }

    fn env_of(spec: &RunSpec, name: &str) -> Option<String> {
        spec.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    #[tokio::test]
    async fn a_direct_invocation_runs_cmd_args_and_answers_typed() {
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let handler = handler(tmp.path(), recorder.clone());
        let reply = handler
            .handle(
                json!({"cmd_args": ["x", "fail"], "env": {"A": "1"}}),
                &invocation("req-1"),
            )
            .await
            .unwrap();
        let Reply::Run(response) = &reply else {
            panic!("not a run reply: {reply:?}");
        };
        assert_eq!(response.request_id, "req-1");
        assert_eq!(response.digest, "sha256:abc");
        assert_eq!(response.result.exit_code(), Some(3));
        assert_eq!(response.result.output(), "/entry x fail");
        assert!(!reply.succeeded());
        let specs = recorder.0.lock().unwrap();
        let spec = &specs[0];
        assert_eq!(env_of(spec, "A").as_deref(), Some("1"));
        assert_eq!(env_of(spec, "GREETING").as_deref(), Some("hi"));
        assert_eq!(env_of(spec, "REQUEST_ID").as_deref(), Some("req-1"));
        assert_eq!(env_of(spec, "PATH").as_deref(), Some("/bin"));
        assert!(
            !tmp.path().join("req-1").exists(),
            "the request directory is removed"
        );
    }

    #[tokio::test]
    async fn a_script_is_written_to_the_request_directory_and_run_with_sh() {
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let handler = handler(tmp.path(), recorder.clone());
        let script = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "echo hi");
        let reply = handler
            .handle(json!({"script": script}), &invocation("req-2"))
            .await
            .unwrap();
        assert!(reply.succeeded());
        let specs = recorder.0.lock().unwrap();
        let script_path = tmp.path().join("req-2/script.sh").display().to_string();
        assert_eq!(specs[0].argv, ["/bin/sh", script_path.as_str()]);
    }

    #[tokio::test]
    async fn an_http_request_answers_a_proxy_response() {
        let tmp = tempfile::tempdir().unwrap();
        let handler = handler(tmp.path(), Recorder::default());
        let event = json!({
            "version": "2.0", "rawPath": "/", "rawQueryString": "",
            "requestContext": {"http": {"method": "GET", "path": "/"}},
            "isBase64Encoded": false
        });
        let reply = handler.handle(event, &invocation("req-3")).await.unwrap();
        let Reply::Http(HttpReply::V2(response)) = &reply else {
            panic!("not an HTTP 2.0 reply: {reply:?}");
        };
        assert_eq!(response.status_code, 200);
    }

    #[tokio::test]
    async fn bad_events_and_no_time_left_are_typed_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let handler = handler(tmp.path(), Recorder::default());
        let err = handler
            .handle(json!([1]), &invocation("r"))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Scar.InvalidEvent");
        let late = Invocation {
            request_id: "r".into(),
            deadline: SystemTime::now() + Duration::from_secs(5),
        };
        let err = handler.handle(json!({}), &late).await.unwrap_err();
        assert_eq!(err.error_type(), "Scar.Deadline", "{err}");
    }
}
