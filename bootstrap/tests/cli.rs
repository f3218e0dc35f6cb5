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

/// An invocation refused with status 2 and `{errorType, errorMessage}` on stdout, the message
/// naming `names`.
fn assert_refused(out: &Output, error_type: &str, names: &str) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not an error document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(doc["errorType"], error_type);
    let message = doc["errorMessage"].as_str().unwrap();
    assert!(message.contains(names), "{message}");
}

#[test]
fn emulate_names_an_event_file_it_cannot_read_or_parse() {
    let missing = bootstrap(&["--emulate", "/nonexistent/event.json"], &[]);
    assert_refused(
        &missing,
        "Scar.InvalidEvent",
        "cannot read /nonexistent/event.json",
    );

    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(&event, "{\"script\": ").unwrap();
    let malformed = bootstrap(&["--emulate", event.to_str().unwrap()], &[]);
    assert_refused(&malformed, "Scar.InvalidEvent", "event.json is not JSON");
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
    assert_refused(&out, "Scar.ConfigError", "SCAR_TIMEOUT_THRESHOLD=\"NaN\"");
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
