//! The runtime loop against an in-process Runtime API: init errors, every event kind, the
//! timeout threshold with partial output and uploads, missing images, a full /tmp, and a
//! peer that hangs up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;
use scar_test_kit::images;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::lambda::{bootstrap_bin, shim_dir};
use common::runtime_api::{FakeRuntimeApi, Reply};
use common::work;
use serde_json::{Value, json};

const IMAGE: &str = images::DEBIAN;
const S3_ENDPOINT: &str = "http://127.0.0.1:4566";

struct Runtime {
    child: Child,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(api: &FakeRuntimeApi, vars: &[(&str, &str)]) -> Runtime {
    let cache = work().join("cache-runtime");
    let child = Command::new(bootstrap_bin())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", &api.endpoint)
        .env("AWS_LAMBDA_LOG_LEVEL", "warn")
        .env("SCAR_SHIM_DIR", shim_dir())
        .env("SCAR_CACHE_DIR", cache)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_SESSION_TOKEN", "session-token-for-the-container")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", S3_ENDPOINT)
        .env("AWS_LAMBDA_FUNCTION_NAME", "scar-test")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Runtime { child }
}

fn script(text: &str) -> Value {
    json!({ "script": base64::engine::general_purpose::STANDARD.encode(text) })
}

fn response(reply: Reply) -> Value {
    match reply {
        Reply::Response(v) => v,
        Reply::Error { error_type, body } => panic!("invocation failed: {error_type}: {body}"),
    }
}

fn error(reply: Reply) -> (String, String) {
    match reply {
        Reply::Error { error_type, body } => (
            error_type,
            body["errorMessage"].as_str().unwrap_or_default().to_owned(),
        ),
        Reply::Response(v) => panic!("expected an error, got {v}"),
    }
}

fn init_script(body: &str) -> PathBuf {
    let path = work().join(format!("init-{}.sh", std::process::id()));
    std::fs::write(&path, body).unwrap();
    path
}

fn wait_exit(runtime: &mut Runtime, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = runtime.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < within,
            "the runtime did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs the harness (make test)"]
fn a_bad_configuration_is_posted_to_init_error() {
    for (vars, expected) in [
        (&[][..], "SCAR_IMAGE is not set"),
        (
            &[("SCAR_IMAGE", IMAGE), ("SCAR_TIMEOUT_TRESHOLD", "5")][..],
            "unknown variable SCAR_TIMEOUT_TRESHOLD",
        ),
        (
            &[("SCAR_IMAGE", IMAGE), ("SCAR_TIMEOUT_THRESHOLD", "soon")][..],
            "SCAR_TIMEOUT_THRESHOLD=\"soon\"",
        ),
    ] {
        let api = FakeRuntimeApi::start();
        let mut runtime = start(&api, vars);
        let posted = api
            .init_error(Duration::from_secs(20))
            .expect("no init error posted");
        assert_eq!(posted["errorType"], "Scar.ConfigError");
        assert!(
            posted["errorMessage"].as_str().unwrap().contains(expected),
            "{posted}"
        );
        assert!(!wait_exit(&mut runtime, Duration::from_secs(10)).success());
    }
}

#[test]
#[ignore = "needs the harness (make test)"]
fn direct_invokes_http_events_and_malformed_events() {
    let init = init_script(
        "if [ -n \"$SCAR_INPUT_FILE\" ]; then cat \"$SCAR_INPUT_FILE\"; echo; fi; echo \"name=$name from init\"\n",
    );
    let api = FakeRuntimeApi::start();
    let _runtime = start(
        &api,
        &[
            ("SCAR_IMAGE", IMAGE),
            ("CONT_VAR_GREETING", "there"),
            ("SCAR_INIT_SCRIPT", init.to_str().unwrap()),
        ],
    );
    let minute = Duration::from_secs(60);

    let (id, first) = api.invoke_with_id(
        script("echo hi $GREETING; echo $REQUEST_ID; echo $AWS_SESSION_TOKEN; pwd"),
        minute,
    );
    let first = response(first);
    assert_eq!(first["exit_code"], 0, "{first}");
    assert_eq!(
        first["output"],
        format!("hi there\n{id}\nsession-token-for-the-container\n/\n")
    );
    assert_eq!(first["request_id"], id.as_str());
    assert!(
        !std::path::Path::new("/tmp").join(&id).exists(),
        "request dir left behind"
    );

    let args = response(api.invoke(json!({"cmd_args": ["/usr/games/cowsay", "moo"]}), minute));
    assert!(
        args["output"].as_str().unwrap().contains("< moo >"),
        "{args}"
    );
    assert_eq!(
        args["cached"], true,
        "the second invocation reuses the image"
    );

    let default = response(api.invoke(json!({}), minute));
    assert_eq!(default["output"], "name= from init\n");

    let failing = response(api.invoke(script("echo to stderr >&2; exit 5"), minute));
    assert_eq!(
        (
            failing["exit_code"].as_i64(),
            failing["timed_out"].as_bool()
        ),
        (Some(5), Some(false))
    );
    assert_eq!(failing["output"], "to stderr\n");

    let v1 = json!({"resource": "/launch", "path": "/launch", "httpMethod": "POST", "headers": {"content-type": "text/plain"},
        "queryStringParameters": {"name": "rest"}, "requestContext": {"httpMethod": "POST", "stage": "prod"},
        "body": base64::engine::general_purpose::STANDARD.encode("posted body"), "isBase64Encoded": true});
    let reply = response(api.invoke(v1, minute));
    assert_eq!(reply["statusCode"], 200, "{reply}");
    assert_eq!(reply["body"], "posted body\nname=rest from init\n");
    assert_eq!(reply["headers"]["x-scar-exit-code"], "0");

    for (label, domain) in [
        ("http api", "abc.execute-api.us-east-1.amazonaws.com"),
        ("function url", "abc.lambda-url.us-east-1.on.aws"),
    ] {
        let v2 = json!({"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "name=v2",
            "queryStringParameters": {"name": "v2"}, "headers": {"content-type": "text/plain"},
            "requestContext": {"domainName": domain, "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"}},
            "body": format!("{label} body"), "isBase64Encoded": false});
        let reply = response(api.invoke(v2, minute));
        assert_eq!(reply["statusCode"], 200, "{label}: {reply}");
        assert_eq!(reply["body"], format!("{label} body\nname=v2 from init\n"));
    }

    for (event, expected) in [
        (
            json!({"cmd_args": "ls -l"}),
            "malformed direct invoke event",
        ),
        (json!({"script": "%%%"}), "base64"),
        (
            json!({"Records": [{"eventSource": "aws:sqs", "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]}),
            "aws:sqs",
        ),
        (json!("a string"), "JSON object"),
    ] {
        let (error_type, message) = error(api.invoke(event, minute));
        assert_eq!(error_type, "Scar.InvalidEvent");
        assert!(message.contains(expected), "{message}");
    }
    // The runtime is still serving after the bad events.
    let after = response(api.invoke(script("echo still here"), minute));
    assert_eq!(after["output"], "still here\n");
    let _ = std::fs::remove_file(init);
}

fn lambda_processes(pattern: &str) -> String {
    let out = Command::new("pgrep")
        .args(["-a", "-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs the harness (make test)"]
fn the_threshold_ends_the_command_keeps_partial_output_and_uploads_files() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = rt.block_on(common::s3_client(S3_ENDPOINT));
    let bucket = format!("scar-threshold-{}", std::process::id());
    rt.block_on(s3.create_bucket().bucket(&bucket).send())
        .unwrap();
    let api = FakeRuntimeApi::start();
    let _runtime = start(
        &api,
        &[
            ("SCAR_IMAGE", IMAGE),
            ("SCAR_TIMEOUT_THRESHOLD", "2"),
            ("SCAR_OUTPUT_BUCKET", &bucket),
        ],
    );
    // Warm the image first, so the 6 s below are the command's.
    response(api.invoke(script("true"), Duration::from_secs(120)));

    let started = Instant::now();
    let reply = response(api.invoke(
        script("echo start; echo partial > $SCAR_OUTPUT_DIR/partial.txt; sleep 311 & sleep 312"),
        Duration::from_secs(6),
    ));
    let took = started.elapsed();
    assert_eq!(reply["timed_out"], true, "{reply}");
    assert_eq!(reply["exit_code"], Value::Null);
    let output = reply["output"].as_str().unwrap();
    assert!(
        output.starts_with("start\n") && output.contains("[scar: timed out"),
        "{output}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "answered after {took:?}: the threshold keeps 2 s back"
    );
    assert_eq!(
        reply["uploaded"],
        json!([format!("s3://{bucket}/output/partial.txt")])
    );
    let object = rt
        .block_on(
            s3.get_object()
                .bucket(&bucket)
                .key("output/partial.txt")
                .send(),
        )
        .unwrap();
    let body = rt.block_on(object.body.collect()).unwrap().into_bytes();
    assert_eq!(&body[..], b"partial\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lambda_processes("sleep 31[12]"),
        "",
        "the command's processes outlived it"
    );

    let (error_type, message) = error(api.invoke(script("true"), Duration::from_millis(1500)));
    assert_eq!(error_type, "Scar.Deadline");
    assert!(message.contains("SCAR_TIMEOUT_THRESHOLD"), "{message}");
}

#[test]
#[ignore = "needs the harness (make test)"]
fn a_missing_image_is_a_typed_error_and_the_runtime_keeps_serving() {
    let api = FakeRuntimeApi::start();
    let _runtime = start(
        &api,
        &[("SCAR_IMAGE", "127.0.0.1:5000/library/no-such-image")],
    );
    for _ in 0..2 {
        let (error_type, message) = error(api.invoke(json!({}), Duration::from_secs(60)));
        assert_eq!(error_type, "Scar.ImageError");
        assert!(message.contains("no-such-image"), "{message}");
    }
}

#[test]
#[ignore = "needs the harness and root (make test)"]
fn a_full_tmp_is_named_before_a_byte_is_written() {
    let mount = work().join("small-tmpfs");
    std::fs::create_dir_all(&mount).unwrap();
    let _ = Command::new("umount").arg(&mount).status();
    assert!(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap()
            .success()
    );
    let api = FakeRuntimeApi::start();
    let cache = mount.join("cache");
    let runtime = start(
        &api,
        &[
            ("SCAR_IMAGE", IMAGE),
            ("SCAR_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    let (error_type, message) = error(api.invoke(json!({}), Duration::from_secs(60)));
    drop(runtime);
    let leftovers = std::fs::read_dir(cache.join("images"))
        .map(|d| d.count())
        .unwrap_or(0);
    let _ = Command::new("umount").arg(&mount).status();
    assert_eq!(error_type, "Scar.NoSpace");
    assert!(
        message.contains("EphemeralStorage") && message.contains("MB"),
        "{message}"
    );
    assert_eq!(leftovers, 0, "a rootfs was left behind");
}

#[test]
#[ignore = "needs the harness (make test)"]
fn a_peer_that_hangs_up_ends_the_runtime() {
    let api = FakeRuntimeApi::start();
    let mut runtime = start(&api, &[("SCAR_IMAGE", IMAGE)]);
    response(api.invoke(script("true"), Duration::from_secs(120)));
    api.hang_up();
    let status = wait_exit(&mut runtime, Duration::from_secs(20));
    assert!(!status.success(), "exited with {status}");
}
