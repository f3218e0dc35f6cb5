//! Tests of what the engine does when the process may start no new thread, as a function
//! that has used its 1,024 does: each runs again in a child process of the test binary whose
//! user is out of threads, since the limit applies to a whole user and is ignored for root.

use std::process::Command;

use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid, setresgid, setresuid};

/// Set in the child that runs the test's body.
const INSIDE: &str = "SCAR_TEST_NO_THREADS";
/// `nobody`: root's threads are not counted against `RLIMIT_NPROC`.
const NOBODY: u32 = 65534;

/// Runs `body` in a child process of this test binary in which no thread can start, and
/// fails unless `body` returned there. `test` is the test's name as libtest lists it
/// (`module::tests::name`); `body` must need nothing `nobody` cannot read or write.
pub(crate) fn without_threads(test: &str, body: impl FnOnce()) {
    if std::env::var_os(INSIDE).is_some() {
        if Uid::effective().is_root() {
            let (gid, uid) = (Gid::from_raw(NOBODY), Uid::from_raw(NOBODY));
            setresgid(gid, gid, gid).unwrap_or_else(|e| panic!("setresgid: {e}"));
            setresuid(uid, uid, uid).unwrap_or_else(|e| panic!("setresuid: {e}"));
        }
        setrlimit(Resource::RLIMIT_NPROC, 0, 0).unwrap_or_else(|e| panic!("setrlimit: {e}"));
        assert!(
            std::thread::Builder::new().spawn(|| ()).is_err(),
            "a thread still starts: the test would prove nothing"
        );
        body();
        return;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    assert!(said.contains("1 passed"), "the child ran no test: {said}");
}
