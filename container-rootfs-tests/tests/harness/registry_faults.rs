//! A registry that throttles, fails for a while, stalls or never stops talking, through the
//! fault proxy (`scripts/fault_proxy.py`) in front of the test registry, pulled by the real
//! `bootstrap` in a process of its own so that its time and peak memory are its own.
//!
//! What a user must see: throttling and brief outages are waited out (honouring
//! `Retry-After`) and the pull succeeds; a wait the registry asks for that no function can
//! afford, a stalled layer and a manifest that never ends each fail promptly, by name, with
//! memory bounded and nothing left in the cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn bootstrap_pull(cache: &Path, reference: &str, extra: &[&str]) -> Outcome {
    let _ = work();
    let started = Instant::now();
    let out = Command::new(common::lambda::bootstrap_bin())
        .args(["pull", "--cache-dir"])
        .arg(cache)
        .args(extra)
        .arg(reference)
        .env_clear()
        .env("AWS_LAMBDA_LOG_LEVEL", "warn")
        .env("HOME", cache)
        .output()
        .expect("run bootstrap pull");
    Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// The proxy's log lines for repository component `first` (a mode and its nonce).
fn requests_for(first: &str) -> Vec<String> {
    std::fs::read_to_string(work().join("fault-proxy.requests"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{first} ")))
        .map(str::to_owned)
        .collect()
}

fn assert_nothing_cached(cache: &Path, what: &str) {
    assert!(
        entries(cache, "images").is_empty() && entries(cache, "staging").is_empty(),
        "{what}: leftovers in the cache"
    );
}

#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn throttling_and_outages_are_waited_out() {
    // Docker Hub's 429 on the first GET of every path, with Retry-After: 1.
    let cache = tempfile::tempdir().unwrap();
    let repo = common::unique("r429");
    let pulled = bootstrap_pull(
        cache.path(),
        &format!("127.0.0.1:5013/{repo}/test/glibc"),
        &[],
    );
    assert!(pulled.ok, "throttled pull failed: {}", pulled.stderr);
    assert!(Path::new(pulled.stdout.trim()).join("bin").exists());
    assert!(
        pulled.took >= Duration::from_secs(1),
        "Retry-After: 1 was not waited for ({:?})",
        pulled.took
    );
    assert!(pulled.stderr.contains("try again"), "{}", pulled.stderr);
    let gets: Vec<String> = requests_for(&repo)
        .into_iter()
        .filter(|l| l.contains(" GET "))
        .collect();
    let manifests = gets.iter().filter(|l| l.contains("/manifests/")).count();
    assert!(
        manifests >= 2,
        "the throttled manifest was not asked again: {gets:?}"
    );

    // 503 twice on every path (HEAD and GET): waited out with the doubling backoff.
    let cache = tempfile::tempdir().unwrap();
    let repo = common::unique("e503");
    let pulled = bootstrap_pull(
        cache.path(),
        &format!("127.0.0.1:5013/{repo}/test/glibc"),
        &[],
    );
    assert!(pulled.ok, "pull through 503s failed: {}", pulled.stderr);
    let asked = requests_for(&repo).len();
    assert!(
        asked >= 3 * 3,
        "each path is asked three times: {asked} requests"
    );
}

#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn a_wait_no_function_can_afford_fails_at_once_with_the_registrys_words() {
    let cache = tempfile::tempdir().unwrap();
    let pulled = bootstrap_pull(
        cache.path(),
        &format!("127.0.0.1:5013/{}/test/glibc", common::unique("a429")),
        &[],
    );
    assert!(!pulled.ok, "pulled through a permanent 429");
    for words in [
        "429",
        "asks to wait 3600 s",
        "You have reached your pull rate limit",
        "SCAR_REGISTRY_USERNAME",
    ] {
        assert!(
            pulled.stderr.contains(words),
            "{words:?} not in {}",
            pulled.stderr
        );
    }
    assert!(
        pulled.took < Duration::from_secs(15),
        "took {:?}: Retry-After: 3600 must fail at once",
        pulled.took
    );
    assert_nothing_cached(cache.path(), "a429");
}

#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn a_stalled_layer_times_out_by_name() {
    let cache = tempfile::tempdir().unwrap();
    let pulled = bootstrap_pull(
        cache.path(),
        "127.0.0.1:5013/stall/test/glibc",
        &["--registry-timeout", "2"],
    );
    assert!(!pulled.ok, "pulled a stalled layer");
    assert!(
        pulled.stderr.contains("sent nothing for 2 s")
            && pulled.stderr.contains("SCAR_REGISTRY_TIMEOUT"),
        "{}",
        pulled.stderr
    );
    assert!(
        pulled.took < Duration::from_secs(30),
        "a 2 s read timeout took {:?}",
        pulled.took
    );
    assert_nothing_cached(cache.path(), "stall");
}

#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn manifests_that_never_end_are_refused_with_memory_bounded() {
    for mode in ["endless", "huge"] {
        let cache = tempfile::tempdir().unwrap();
        let pulled = bootstrap_pull(
            cache.path(),
            &format!("127.0.0.1:5013/{mode}/test/glibc"),
            &[],
        );
        assert!(!pulled.ok, "{mode}: pulled");
        assert!(
            pulled.stderr.contains("larger than 4194304 bytes"),
            "{mode}: {}",
            pulled.stderr
        );
        assert!(
            pulled.took < Duration::from_secs(30),
            "{mode}: {:?}",
            pulled.took
        );
        assert_nothing_cached(cache.path(), mode);
    }
    let peak = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .unwrap()
        .max_rss();
    assert!(peak < 64 * 1024, "a pull peaked at {} MB", peak / 1024);
}
