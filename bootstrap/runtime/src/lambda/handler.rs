//! One invocation: parse the event, make `/tmp/$REQUEST_ID/{input,output}`, write the raw
//! event there, get the image (pulled once per execution environment), run the command (once,
//! or once per record of a batch) with the time that is left minus the threshold, upload what
//! it wrote, answer within Lambda's limits, and clean up.
//!
//! The image and the process are reached through [`Images`] and [`Runner`], so that unit
//! tests run whole invocations without a registry or a process.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::environment::{RunVariables, names};
use super::error::{InvokeError, io};
use super::event::{BatchSource, DirectInvoke, Event, HttpRequest, Input, Item};
use super::http;
use super::image::{Images, Prepared, PullInfo, PulledImage};
use super::request_dir::{RequestDir, clear_dir};
use super::response::{BatchReport, HttpReply, Reply, Response, RunReport, RunResult};
use super::s3::{Storage, files_below};
use crate::config::FunctionConfig;
use crate::exec::{
    Capture, ExecError, LiveLog, Outcome, RunSpec, Sandbox, command_line, container_env,
    passthrough_mounts,
};

/// Who is asking, until when, and what Lambda says about the caller.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// The Lambda request id.
    pub request_id: String,
    /// Lambda's deadline for this invocation.
    pub deadline: Option<SystemTime>,
    /// The X-Ray trace header (`Lambda-Runtime-Trace-Id`).
    pub trace_id: Option<String>,
    /// The client context of a mobile SDK invoke, as JSON text.
    pub client_context: Option<String>,
    /// The Cognito identity of the caller, as JSON text.
    pub identity: Option<String>,
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

    /// Lambda's init phase: pulls the image before the first event is asked for, waiting at
    /// most `budget`. The pull goes on in the background after that, and the first
    /// invocation waits for it (within its own deadline) rather than starting another; with
    /// provisioned concurrency no invocation waits for a pull. A failure here is only logged:
    /// the first invocation pulls again and reports it, as without this step.
    pub async fn pull_at_init(self: std::sync::Arc<Self>, budget: std::time::Duration)
    where
        I: 'static,
        R: 'static,
    {
        if budget.is_zero() {
            return;
        }
        let started = std::time::Instant::now();
        let handler = std::sync::Arc::clone(&self);
        let pull = tokio::spawn(async move {
            let unbounded = tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
            match handler.images.prepare(unbounded).await {
                Ok((_, info)) => tracing::info!(
                    cached = info.cached,
                    secs = info.pull_seconds,
                    "image ready at init"
                ),
                Err(error) => {
                    tracing::warn!(%error, "the pull at init failed; the first invocation pulls again and reports it")
                }
            }
        });
        if tokio::time::timeout(budget, pull).await.is_err() {
            tracing::info!(
                secs = started.elapsed().as_secs_f64(),
                "init budget spent (SCAR_INIT_PULL_BUDGET): serving events while the pull goes on"
            );
        }
    }

    /// Handles one event and returns the response, cut to Lambda's limit.
    pub async fn handle(
        &self,
        event: Value,
        invocation: &Invocation,
    ) -> Result<Reply, InvokeError> {
        // The command sees the event as Lambda sent it, whatever this runtime makes of it.
        let raw = serde_json::to_vec_pretty(&event)
            .map_err(|e| io("cannot write the event file")(std::io::Error::other(e)))?;
        #[cfg(debug_assertions)]
        let provoke_panic = event.get(PROVOKE_PANIC).is_some();
        let event = Event::parse(event, &self.config.input_prefix)?;
        let (cutoff, threshold) = self.cutoff(invocation)?;
        let dir = RequestDir::create(&self.tmp, &invocation.request_id)?;
        // The panic path is tested by provoking a panic in the middle of an invocation; only
        // debug builds (the suite's) have this door, the layer's release builds do not.
        #[cfg(debug_assertions)]
        if provoke_panic {
            panic!("provoked by the test suite's event ({PROVOKE_PANIC})");
        }
        let event_file = dir.write("event.json", &raw)?;
        let (prepared, pull) = self.images.prepare(cutoff).await?;
        let mut base =
            RunVariables::of_function(&self.config.container_env, |name| std::env::var(name).ok());
        base.set(names::REQUEST_ID, invocation.request_id.clone());
        base.set(names::EVENT_FILE, event_file.display().to_string());
        if let Some(trace) = &invocation.trace_id {
            base.set(names::TRACE_ID, trace.clone());
        }
        for (text, name, file) in [
            (
                &invocation.client_context,
                names::CLIENT_CONTEXT_FILE,
                "client_context.json",
            ),
            (&invocation.identity, names::IDENTITY_FILE, "identity.json"),
        ] {
            if let Some(text) = text {
                let path = dir.write(file, text.as_bytes())?;
                base.set(name, path.display().to_string());
            }
        }
        let run = Run {
            handler: self,
            prepared: &prepared,
            dir: &dir,
            base,
            log: LiveLog::new(&invocation.request_id, self.config.log_format),
            cutoff,
            threshold,
        };
        let reply = match event {
            Event::Direct(direct) => run
                .direct(direct)
                .await
                .map(|r| run.response(invocation, pull, RunResult::Single(r))),
            Event::Other { kind } => run
                .other(&kind)
                .await
                .map(|r| run.response(invocation, pull, RunResult::Single(r))),
            Event::Batch {
                source,
                items,
                skipped,
            } => run
                .batch(source, items, skipped)
                .await
                .map(|r| run.response(invocation, pull, RunResult::Batch(r))),
            Event::Http(request) => run
                .http(request, &invocation.request_id)
                .await
                .map(Reply::Http),
        };
        for dir in prepared.sandbox.per_invocation_dirs() {
            clear_dir(&dir);
        }
        super::release_free_memory();
        reply.map(|mut reply| {
            reply.fit(reply.limit());
            reply
        })
    }

    /// When the command must be ended (the deadline minus the threshold), and the
    /// threshold.
    fn cutoff(
        &self,
        invocation: &Invocation,
    ) -> Result<(tokio::time::Instant, Duration), InvokeError> {
        let remaining = invocation
            .deadline
            .and_then(|d| d.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        let threshold = self.config.timeout_threshold.of(remaining);
        if remaining <= threshold {
            return Err(InvokeError::Deadline(format!(
                "no time left to run: {:.1}s remain and SCAR_TIMEOUT_THRESHOLD keeps {}s back; raise the function's timeout",
                remaining.as_secs_f64(),
                threshold.as_secs_f64()
            )));
        }
        Ok((
            tokio::time::Instant::now() + (remaining - threshold),
            threshold,
        ))
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
    /// The variables every run of this invocation gets.
    base: RunVariables,
    /// The runs' output, live, in the function's log.
    log: LiveLog,
    cutoff: tokio::time::Instant,
    /// What `cutoff` keeps back of the invocation's time.
    threshold: Duration,
}

impl<I: Images, R: Runner> Run<'_, I, R> {
    fn config(&self) -> &FunctionConfig {
        &self.handler.config
    }

    fn response(&self, invocation: &Invocation, pull: PullInfo, result: RunResult) -> Reply {
        Reply::Run(Response {
            request_id: invocation.request_id.clone(),
            image: self.config().image.clone(),
            digest: self.prepared.digest.clone(),
            cached: pull.cached,
            pull_seconds: pull.pull_seconds,
            result,
        })
    }

    /// Runs `argv` with the invocation's variables and `vars` for this run; keeps at most
    /// `budget` bytes of output.
    async fn run(
        &self,
        argv: Vec<String>,
        vars: RunVariables,
        budget: usize,
    ) -> Result<RunReport, InvokeError> {
        let config = self.config();
        let mut vars = vars;
        vars.set(names::INPUT_DIR, self.dir.input().display().to_string());
        vars.set(names::OUTPUT_DIR, self.dir.output().display().to_string());
        vars.set(
            names::OSCAR_OUTPUT_DIR,
            self.dir.output().display().to_string(),
        );
        let mut mounts = passthrough_mounts();
        mounts.push((self.dir.root.display().to_string(), self.dir.root.clone()));
        if let Some(extra) = &config.extra_payload {
            let seen_as = extra.display().to_string();
            vars.set(names::EXTRA_PAYLOAD, seen_as.clone());
            mounts.push((seen_as, extra.clone()));
        }
        let image = &self.prepared.config;
        let spec = RunSpec {
            argv,
            env: container_env(
                image.env.as_deref().unwrap_or_default(),
                &self.prepared.home,
                &vars.into_vec(),
            ),
            workdir: image
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".to_owned()),
            mounts,
            capture: Capture::Combined { limit: budget },
            live_log: config.log_output.then(|| self.log.clone()),
            deadline: Some(self.cutoff),
            stop_signal: self.prepared.stop_signal,
            grace: config.kill_grace.min(self.threshold / 2),
        };
        let outcome = self
            .handler
            .runner
            .run(&self.prepared.sandbox, &spec)
            .await?;
        tracing::info!(
            exit_code = outcome.exit_code,
            signal = outcome.signal,
            timed_out = outcome.timed_out,
            secs = outcome.duration.as_secs_f64(),
            "command ended"
        );
        Ok(RunReport::new(outcome, self.threshold))
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
        if !shebang && !self.prepared.sandbox.has_shell() {
            return Err(ExecError::NoShell.into());
        }
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
        let mut vars = self.base.clone();
        vars.invoker(direct.env);
        let mut report = self.run(argv, vars, self.config().output_limit).await?;
        report.uploaded = self.upload(None).await?;
        Ok(report)
    }

    /// An event of no known shape: the function's command once, with the event file.
    async fn other(&self, kind: &str) -> Result<RunReport, InvokeError> {
        tracing::info!(
            kind,
            "event of no known shape: one run with $SCAR_EVENT_FILE"
        );
        self.direct(DirectInvoke::default()).await
    }

    /// One run per record; the records share the output budget.
    async fn batch(
        &self,
        source: BatchSource,
        items: Vec<Item>,
        skipped: Vec<String>,
    ) -> Result<BatchReport, InvokeError> {
        let argv = self.argv(&DirectInvoke::default())?;
        let mut budget = self.config().output_limit;
        let mut records = Vec::with_capacity(items.len());
        let mut sqs_ids = Vec::with_capacity(items.len());
        for item in items {
            self.dir.reset()?;
            let mut vars = self.base.clone();
            let bucket = match &item.input {
                Input::Object(object) => {
                    let storage = self.handler.storage().await;
                    let file = storage.download(object, &self.dir.input()).await?;
                    vars.input_file(&file);
                    vars.set(names::OSCAR_OBJECT_KEY, object.key.clone());
                    Some(object.bucket.clone())
                }
                Input::Message(body) => {
                    let path = self.dir.input().join("message");
                    std::fs::write(&path, body)
                        .map_err(io(format!("cannot write {}", path.display())))?;
                    vars.input_file(&path);
                    None
                }
            };
            if let Some(time) = &item.event_time {
                vars.set(names::OSCAR_EVENT_TIME, time.clone());
            }
            let mut report = self.run(argv.clone(), vars, budget).await?;
            budget = budget.saturating_sub(report.output.len());
            report.input = Some(item.name);
            report.uploaded = self.upload(bucket.as_deref()).await?;
            records.push(report);
            sqs_ids.push(item.sqs_message_id);
        }
        let sqs = (source == BatchSource::Sqs).then_some(sqs_ids);
        Ok(BatchReport::new(records, skipped, sqs))
    }

    async fn http(&self, request: HttpRequest, request_id: &str) -> Result<HttpReply, InvokeError> {
        let argv = self.argv(&DirectInvoke::default())?;
        let mut vars = self.base.clone();
        vars.http_query(&request.query);
        if let Some(body) = &request.body {
            let path = self.dir.input().join("body");
            std::fs::write(&path, body).map_err(io(format!("cannot write {}", path.display())))?;
            vars.input_file(&path);
        }
        let described = serde_json::to_vec_pretty(&request)
            .map_err(|e| io("cannot describe the request")(std::io::Error::other(e)))?;
        let request_file = self.dir.input().join("request.json");
        std::fs::write(&request_file, described)
            .map_err(io(format!("cannot write {}", request_file.display())))?;
        vars.set(names::HTTP_REQUEST_FILE, request_file.display().to_string());
        let response_dir = self.dir.http_response();
        std::fs::create_dir_all(&response_dir)
            .map_err(io(format!("cannot create {}", response_dir.display())))?;
        vars.set(names::HTTP_RESPONSE_DIR, response_dir.display().to_string());
        let mut report = self.run(argv, vars, self.config().output_limit).await?;
        report.uploaded = self.upload(None).await?;
        Ok(http::response(
            request.format,
            &report,
            request_id,
            &response_dir,
        ))
    }
}

/// The event field that makes a debug build panic mid-invocation.
#[cfg(debug_assertions)]
pub const PROVOKE_PANIC: &str = "__scar_provoke_panic";

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use scar_image::ContainerConfig;
    use serde_json::json;

    use super::*;
    use crate::config::TimeoutThreshold;
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
            // The input file, read while the run has it: "fail" makes the run fail.
            let input = env_of(spec, "SCAR_INPUT_FILE")
                .and_then(|path| std::fs::read_to_string(path).ok())
                .unwrap_or_default();
            let failing = spec.argv.last().map(String::as_str) == Some("fail") || input == "fail";
            let event = env_of(spec, "SCAR_EVENT_FILE")
                .and_then(|path| std::fs::read_to_string(path).ok())
                .unwrap_or_default();
            Ok(Outcome {
                exit_code: Some(if failing { 3 } else { 0 }),
                output: format!("{} <{input}> {}", spec.argv.join(" "), event.len()).into_bytes(),
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
        std::fs::create_dir_all(tmp.join("rootfs/bin")).unwrap();
        std::fs::write(tmp.join("rootfs/bin/sh"), "").unwrap();
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
                fakeroot: false,
                scratch: tmp.join("scratch"),
                fetcher: None,
                locales: None,
            },
            config: ContainerConfig {
                entrypoint: Some(vec!["/entry".into()]),
                cmd: Some(vec!["default".into()]),
                env: Some(vec!["PATH=/bin".into()]),
                ..ContainerConfig::default()
            },
            digest: "sha256:abc".to_owned(),
            stop_signal: nix::sys::signal::Signal::SIGTERM,
            home: "/root".to_owned(),
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
            deadline: Some(SystemTime::now() + Duration::from_secs(60)),
            ..Invocation::default()
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
        assert!(response.result.output().starts_with("/entry x fail <> "));
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

    /// A distroless image has no shell: the error says what to send instead, and nothing ran.
    #[tokio::test]
    async fn a_script_without_a_shebang_for_an_image_without_a_shell_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let handler = handler(tmp.path(), recorder.clone());
        std::fs::remove_file(tmp.path().join("rootfs/bin/sh")).unwrap();
        let encode =
            |text: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text);
        let error = handler
            .handle(json!({"script": encode("echo hi")}), &invocation("req-4"))
            .await
            .unwrap_err();
        assert_eq!(error.error_type(), "Scar.ExecError");
        assert!(error.to_string().contains("no #! line"), "{error}");
        assert!(recorder.0.lock().unwrap().is_empty());
        assert!(
            !tmp.path().join("req-4").exists(),
            "the request directory is removed"
        );
        let reply = handler
            .handle(
                json!({"script": encode("#!/usr/bin/python3\nprint(1)")}),
                &invocation("req-5"),
            )
            .await
            .unwrap();
        assert!(reply.succeeded());
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
            .handle(json!({"Records": 5}), &invocation("r"))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Scar.InvalidEvent");
        let late = || Invocation {
            request_id: "r".into(),
            deadline: Some(SystemTime::now() + Duration::from_secs(5)),
            ..Invocation::default()
        };
        let mut set = handler;
        set.config.timeout_threshold = TimeoutThreshold::Set(Duration::from_secs(10));
        let err = set.handle(json!({}), &late()).await.unwrap_err();
        assert_eq!(err.error_type(), "Scar.Deadline", "{err}");
    }

    #[tokio::test]
    async fn an_unset_threshold_gives_way_to_a_short_timeout() {
        // Lambda's default timeout is 3 s: the default 10 s would leave the command nothing.
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let handler = handler(tmp.path(), recorder.clone());
        let invocation = Invocation {
            request_id: "r".into(),
            deadline: Some(SystemTime::now() + Duration::from_secs(3)),
            ..Invocation::default()
        };
        let started = tokio::time::Instant::now();
        handler.handle(json!({}), &invocation).await.unwrap();
        let specs = recorder.0.lock().unwrap();
        let kept_back = started + Duration::from_secs(3) - specs[0].deadline.unwrap();
        assert!(
            kept_back >= Duration::from_millis(550) && kept_back <= Duration::from_millis(650),
            "a fifth of 3 s kept back, got {kept_back:?}"
        );
        assert!(specs[0].grace <= Duration::from_millis(300));
    }

    fn env_without_query(spec: &RunSpec) -> Vec<(String, String)> {
        spec.env
            .iter()
            .filter(|(k, _)| !k.starts_with("HTTP_QUERY_"))
            .cloned()
            .collect()
    }

    #[tokio::test]
    async fn nothing_an_http_caller_sends_reaches_the_environment_outside_its_namespace() {
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let handler = handler(tmp.path(), recorder.clone());
        let request = |query: Value, headers: Value| {
            json!({"version": "2.0", "rawPath": "/PATH=x", "rawQueryString": "",
                   "queryStringParameters": query, "headers": headers,
                   "requestContext": {"http": {"method": "POST", "path": "/"}},
                   "body": "LD_PRELOAD=/x", "isBase64Encoded": false})
        };
        let hostile = json!({"PATH": "/evil", "LD_PRELOAD": "/tmp/x.so", "BASH_ENV": "/tmp/x",
            "PERL5OPT": "-d", "AWS_ACCESS_KEY_ID": "AKIA", "SCAR_INPUT_FILE": "/etc/shadow",
            "CONT_VAR_X": "1", "REQUEST_ID": "forged", "a=b": "c", "with space": "d",
            "ünï": "e", "_X_AMZN_TRACE_ID": "forged"});
        let headers = json!({"x-forwarded-for": "1.2.3.4", "ld_preload": "/x"});
        handler
            .handle(request(hostile, headers), &invocation("same-id"))
            .await
            .unwrap();
        handler
            .handle(request(json!({}), json!({})), &invocation("same-id"))
            .await
            .unwrap();
        let specs = recorder.0.lock().unwrap();
        let (with, without) = (&specs[0], &specs[1]);
        assert_eq!(env_without_query(with), env_without_query(without));
        let query: Vec<&str> = with
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("HTTP_QUERY_"))
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(query.len(), 12, "{query:?}");
        assert!(query.iter().all(|k| {
            k.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        }));
        assert_eq!(env_of(with, "HTTP_QUERY_PATH").as_deref(), Some("/evil"));
    }

    #[tokio::test]
    async fn sqs_messages_run_one_each_and_failures_are_reported_for_retry() {
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let handler = handler(tmp.path(), recorder.clone());
        let record = |id: &str, body: &str| {
            json!({"messageId": id, "receiptHandle": "h", "body": body, "attributes": {"SentTimestamp": "1545082649183"},
                   "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
                   "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:q", "awsRegion": "us-east-2"})
        };
        let event =
            json!({"Records": [record("m1", "ok"), record("m2", "fail"), record("m3", "ok")]});
        let reply = handler
            .handle(event.clone(), &invocation("sqs"))
            .await
            .unwrap();
        let value = serde_json::to_value(&reply).unwrap();
        assert_eq!(
            value["batchItemFailures"],
            json!([{"itemIdentifier": "m2"}]),
            "{value}"
        );
        assert_eq!(value["records"].as_array().unwrap().len(), 3);
        assert_eq!(value["records"][1]["input"], "m2");
        let specs = recorder.0.lock().unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(
            env_of(&specs[0], "EVENT_TIME").as_deref(),
            Some("1545082649183")
        );
        assert_eq!(
            env_of(&specs[0], "INPUT_FILE_PATH"),
            env_of(&specs[0], "SCAR_INPUT_FILE")
        );
        assert_eq!(
            env_of(&specs[0], "TMP_OUTPUT_DIR"),
            env_of(&specs[0], "SCAR_OUTPUT_DIR")
        );
        // Each run saw the whole event, as Lambda sent it.
        let event_len = serde_json::to_vec_pretty(&event).unwrap().len();
        assert!(
            value["records"][0]["output"]
                .as_str()
                .unwrap()
                .ends_with(&format!(" {event_len}"))
        );
    }

    #[tokio::test]
    async fn any_other_event_runs_once_with_the_event_file_trace_and_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let handler = handler(tmp.path(), recorder.clone());
        let scheduled = json!({"version": "0", "id": "cdc73f9d", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2019-03-01T01:23:45Z",
            "region": "us-east-2", "resources": [], "detail": {}});
        let traced = Invocation {
            trace_id: Some(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
            ),
            identity: Some(r#"{"cognitoIdentityId":"id","cognitoIdentityPoolId":"pool"}"#.into()),
            ..invocation("other")
        };
        let reply = handler.handle(scheduled, &traced).await.unwrap();
        assert!(reply.succeeded());
        let specs = recorder.0.lock().unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(
            specs[0].argv,
            ["/entry", "default"],
            "the image's own command"
        );
        assert_eq!(env_of(&specs[0], "_X_AMZN_TRACE_ID"), traced.trace_id);
        let identity = env_of(&specs[0], "SCAR_IDENTITY_FILE").unwrap();
        assert!(identity.ends_with("/other/identity.json"), "{identity}");
        assert!(env_of(&specs[0], "SCAR_CLIENT_CONTEXT_FILE").is_none());
        assert!(
            env_of(&specs[0], "SCAR_EVENT_FILE")
                .unwrap()
                .ends_with("/other/event.json")
        );
    }
}
