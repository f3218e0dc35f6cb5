//! SCAR's examples as tested programs: each `examples/NAME/event.json` runs through
//! `bootstrap --emulate` (the runtime's own handler) as Lambda's uid 993, on an image built
//! offline by setup.sh, with S3 on moto; each test checks what the example produced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;
use scar_test_kit::images;

use std::path::Path;
use std::process::Command;

use common::lambda::{LAMBDA_UID, bootstrap_bin, lambda_cache, shim_dir, workspace};
use serde_json::Value;

const COWSAY: &str = images::DEBIAN;
const MEDIA: &str = images::MEDIA;
const MOTO: &str = "http://127.0.0.1:5001";

/// Runs one example's event; `init_script` is the example's script, placed as
/// `deployer init -s` places it (relative to the function package).
fn emulate(example: &str, image: &str, init_script: Option<&str>, extra: &[&str]) -> Value {
    let event = workspace()
        .join("examples")
        .join(example)
        .join("event.json");
    emulate_event(example, &event, image, init_script, extra)
}

/// [`emulate`] with another event file.
fn emulate_event(
    example: &str,
    event: &std::path::Path,
    image: &str,
    init_script: Option<&str>,
    extra: &[&str],
) -> Value {
    let dir = workspace().join("examples").join(example);
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", "993", "--regid", "993", "--clear-groups", "--"])
        .arg(bootstrap_bin())
        .arg("--emulate")
        .arg(event)
        .args(["--image", image, "--timeout", "120"])
        .args(extra)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("AWS_LAMBDA_LOG_LEVEL", "error")
        .env("SCAR_CACHE_DIR", lambda_cache())
        .env("SCAR_SHIM_DIR", shim_dir())
        .env("SCAR_TIMEOUT_THRESHOLD", "5")
        .env("LAMBDA_TASK_ROOT", &dir)
        .env("AWS_ENDPOINT_URL", MOTO)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .current_dir("/tmp");
    if let Some(script) = init_script {
        command.env("SCAR_INIT_SCRIPT", script);
    }
    let out = command.output().unwrap();
    let response: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{example}: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{example}: {response:#}");
    response
}

fn output(response: &Value) -> &str {
    response["output"].as_str().unwrap()
}

/// A fresh bucket holding `objects` (the examples' events name fixed buckets).
async fn bucket_with(client: &aws_sdk_s3::Client, bucket: &str, objects: &[(&str, Vec<u8>)]) {
    let _ = client.create_bucket().bucket(bucket).send().await;
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    for object in listed.contents() {
        client
            .delete_object()
            .bucket(bucket)
            .key(object.key().unwrap())
            .send()
            .await
            .unwrap();
    }
    for (key, body) in objects {
        client
            .put_object()
            .bucket(bucket)
            .key(*key)
            .body(body.clone().into())
            .send()
            .await
            .unwrap();
    }
}

async fn object(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let got = client.get_object().bucket(bucket).key(key).send().await;
    let got = got.unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {e:?}"));
    got.body.collect().await.unwrap().into_bytes().to_vec()
}

#[test]
#[ignore = "needs the harness (make test)"]
fn cowsay_with_arguments() {
    let response = emulate("cowsay", COWSAY, None, &[]);
    assert_eq!(response["exit_code"], 0);
    let text = output(&response);
    assert!(text.contains("< Hello from AWS Lambda >"), "{text}");
    assert!(text.contains("|o_o |"), "tux: {text}");
}

#[tokio::test]
#[ignore = "needs the harness and moto (make test)"]
async fn imagemagick_on_an_s3_upload() {
    let client = common::s3_client(MOTO).await;
    let bucket = "scar-example-imagemagick";
    bucket_with(
        &client,
        bucket,
        &[("input/sunset photo.ppm", gradient_ppm())],
    )
    .await;
    let response = emulate("imagemagick", COWSAY, Some("script.sh"), &[]);
    let record = &response["records"][0];
    assert_eq!(output(record), "sunset photo.png 32x16 Gray\n");
    assert_eq!(
        record["uploaded"],
        serde_json::json!([format!("s3://{bucket}/output/sunset photo.png")])
    );
    let png = object(&client, bucket, "output/sunset photo.png").await;
    assert_eq!(
        png_shape(&png),
        (32, 16, 0),
        "half size, grayscale (colour type 0)"
    );
}

/// A 64x32 colour gradient as a binary PPM, the simplest format ImageMagick reads.
fn gradient_ppm() -> Vec<u8> {
    let mut ppm = b"P6\n64 32\n255\n".to_vec();
    for y in 0..32u8 {
        for x in 0..64u8 {
            ppm.extend_from_slice(&[x * 4, y * 8, 255 - x * 2]);
        }
    }
    ppm
}

/// Width, height and colour type of a PNG.
fn png_shape(png: &[u8]) -> (u32, u32, u8) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (width, height, png[25])
}

#[test]
#[ignore = "needs the harness (make test)"]
fn imagemagick_answers_an_http_post_with_a_binary_png() {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(gradient_ppm());
    let event = serde_json::json!({"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"content-type": "image/x-portable-pixmap"},
        "requestContext": {"http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "curl"}},
        "body": encoded, "isBase64Encoded": true});
    let file = common::work().join(format!("imagemagick-http-{}.json", std::process::id()));
    std::fs::write(&file, event.to_string()).unwrap();
    let response = emulate_event("imagemagick", &file, COWSAY, Some("script.sh"), &[]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(response["statusCode"], 200, "{response:#}");
    assert_eq!(response["isBase64Encoded"], true);
    assert_eq!(response["headers"]["content-type"], "image/png");
    let png = base64::engine::general_purpose::STANDARD
        .decode(response["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(png_shape(&png), (32, 16, 0), "half size, grayscale");
}

#[tokio::test]
#[ignore = "needs the harness and moto (make test)"]
async fn ffmpeg_on_an_s3_upload() {
    // A 2-second test pattern made with the image's own ffmpeg.
    let made = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(made.path(), Some(LAMBDA_UID), Some(LAMBDA_UID)).unwrap();
    let out = common::lambda::lambda_run(
        MEDIA,
        &["--mount", &format!("/out={}", made.path().display())],
        &[
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=2:size=64x48:rate=10",
            "-pix_fmt",
            "yuv420p",
            "/out/clip.mp4",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let video = std::fs::read(made.path().join("clip.mp4")).unwrap();
    assert_eq!(&video[4..8], b"ftyp", "an MP4 file");

    let client = common::s3_client(MOTO).await;
    let bucket = "scar-example-ffmpeg";
    bucket_with(&client, bucket, &[("input/clip.mp4", video)]).await;
    let response = emulate("ffmpeg", MEDIA, Some("script.sh"), &[]);
    let record = &response["records"][0];
    assert!(output(record).starts_with("clip.gif: "), "{response:#}");
    assert_eq!(
        record["uploaded"],
        serde_json::json!([format!("s3://{bucket}/output/clip.gif")])
    );
    let gif = object(&client, bucket, "output/clip.gif").await;
    assert_eq!(&gif[..6], b"GIF89a");
    let (width, height) = (
        u16::from_le_bytes([gif[6], gif[7]]),
        u16::from_le_bytes([gif[8], gif[9]]),
    );
    assert_eq!((width, height), (32, 24), "scaled to 32 wide, aspect kept");
    // One graphic control extension per frame: 2 s at 5 frames a second.
    let frames = gif.windows(3).filter(|w| w == b"\x21\xf9\x04").count();
    assert_eq!(frames, 10, "frames in the GIF");
}

#[tokio::test]
#[ignore = "needs the harness and moto (make test)"]
async fn aws_cli_lists_a_bucket_with_the_functions_credentials() {
    let client = common::s3_client(MOTO).await;
    let bucket = "scar-example-aws-cli";
    bucket_with(
        &client,
        bucket,
        &[
            ("data/a.csv", b"1,2".to_vec()),
            ("data/b.csv", b"3,4,5".to_vec()),
        ],
    )
    .await;
    let response = emulate("aws-cli", MEDIA, Some("script.sh"), &[]);
    assert_eq!(output(&response), "3 data/a.csv\n5 data/b.csv\n");
}

#[test]
#[ignore = "needs the harness (make test)"]
fn http_post_returns_the_processed_body() {
    let response = emulate("http", COWSAY, Some("script.sh"), &[]);
    assert_eq!(response["statusCode"], 200, "{response:#}");
    assert_eq!(response["headers"]["x-scar-exit-code"], "0");
    let body = response["body"].as_str().unwrap();
    assert!(body.contains("< POSTed over HTTP >"), "{body}");
    assert!(
        body.contains("|o_o |"),
        "?animal=tux picks the penguin: {body}"
    );
}

#[test]
#[ignore = "needs the harness (make test)"]
fn python_script_with_variables() {
    let response = emulate("python", COWSAY, None, &["-e", "GREETING=Hello"]);
    let text = output(&response);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Hello, Ada!");
    assert!(
        lines[1].starts_with("python 3.11.") && lines[1].ends_with(std::env::consts::ARCH),
        "{text}"
    );
    assert_eq!(lines[2], "n=8 mean=5.00 stdev=2.14");
}

#[test]
fn every_example_has_a_readme_an_event_and_a_test() {
    let tests = include_str!("examples.rs");
    let dir = workspace().join("examples");
    let mut examples = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !path.is_dir() || name == "events" {
            continue;
        }
        examples += 1;
        for file in ["README.md", "event.json"] {
            assert!(Path::new(&path).join(file).is_file(), "{name}/{file}");
        }
        let event: Value =
            serde_json::from_str(&std::fs::read_to_string(path.join("event.json")).unwrap())
                .unwrap();
        assert!(event.is_object(), "{name}/event.json");
        assert!(
            tests.contains(&format!("emulate(\"{name}\"")),
            "no test runs examples/{name}"
        );
        let readme = std::fs::read_to_string(path.join("README.md")).unwrap();
        assert!(readme.contains("deployer init"), "{name}/README.md");
    }
    assert_eq!(examples, 6);
}
