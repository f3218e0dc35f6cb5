//! The binary's edge, as Lambda and a user's shell see it: exit codes and the messages that
//! name the bad input, for inputs refused before any image is touched. (It also makes
//! `cargo test` build the `bootstrap` binary with the test build's features, which the
//! harness then runs, instead of a second debug build of the dependency graph.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn bootstrap(args: &[&str], env: &[(&str, &str)]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .args(args)
        .env_clear()
        .env("SCAR_CACHE_DIR", cache.path())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn error_document(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not an error document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn emulate_names_an_event_file_it_cannot_read_or_parse() {
    let missing = bootstrap(&["--emulate", "/nonexistent/event.json"], &[]);
    assert_eq!(missing.status.code(), Some(2));
    let doc = error_document(&missing);
    assert_eq!(doc["errorType"], "Scar.InvalidEvent");
    let message = doc["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("cannot read /nonexistent/event.json"),
        "{message}"
    );

    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(&event, "{\"script\": ").unwrap();
    let malformed = bootstrap(&["--emulate", event.to_str().unwrap()], &[]);
    assert_eq!(malformed.status.code(), Some(2));
    let doc = error_document(&malformed);
    assert_eq!(doc["errorType"], "Scar.InvalidEvent");
    let message = doc["errorMessage"].as_str().unwrap();
    assert!(message.contains("event.json is not JSON"), "{message}");
}

#[test]
fn emulate_names_a_bad_setting_as_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(&event, "{}").unwrap();
    let out = bootstrap(
        &["--emulate", event.to_str().unwrap()],
        &[
            ("SCAR_IMAGE", "127.0.0.1:9/none"),
            ("SCAR_TIMEOUT_THRESHOLD", "NaN"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let doc = error_document(&out);
    assert_eq!(doc["errorType"], "Scar.ConfigError");
    let message = doc["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("SCAR_TIMEOUT_THRESHOLD=\"NaN\""),
        "{message}"
    );
}

#[test]
fn a_bad_flag_or_log_variable_is_refused_by_name_with_status_2() {
    let out = bootstrap(&["run", "--timeout", "NaN", "img", "--", "true"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--timeout"), "{stderr}");

    let out = bootstrap(&["pull", "img"], &[("AWS_LAMBDA_LOG_LEVEL", "LOUD")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AWS_LAMBDA_LOG_LEVEL=\"LOUD\""), "{stderr}");
}
