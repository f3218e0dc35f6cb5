//! C probes (`probes/*.c`) that make the calls language runtimes make, run under the shim
//! and under a real chroot as Lambda's uid; the outputs must be equal byte for byte.
//!
//! * `syscall_gate`: every path-taking call through raw `syscall()`, as libuv, Rust's std and
//!   liburing make them. Without the gate the kernel resolves those paths on the host (the
//!   image-only file is missing, a host-only file appears).
//! * `popen_streams`: several popen streams open at once, both directions, `e` or not, and
//!   system() in between. A child holding another stream's write end hangs its pclose: the
//!   runs have a timeout.
//! * `named_shm`: POSIX named semaphores and shared memory (`sem_open`, `shm_open`), made,
//!   shared with a child and removed, and the names libc refuses.
//! * `unix_dgram`: Unix datagram sockets named by path, through every call that names a peer
//!   or reports a sender, batches larger than the shim's own and a sender's address asked into
//!   a buffer too small for it.
//!
//! The shim's side runs where the host has no usable /dev/shm, as on Lambda; chroot's sees
//! this machine's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use scar_test_kit::images;
use scar_test_kit::lambda::{
    Tools, arm64_tools, chroot_run_binding, lambda_command, lambda_rootfs_with, lambda_run_with,
    native_tools, side_by_side, text, without_host_dev_shm,
};
use scar_test_kit::probe::Probe;
use scar_test_kit::work;

struct Run<'a> {
    tools: Tools,
    image: &'a str,
    /// The directory of `work()/chroot` holding the same image for chroot.
    chroot: &'a str,
    /// Where the probe's directory is seen: an existing, traversable directory of the image.
    at: &'a str,
}

impl Run<'_> {
    /// Runs `probe ARGS` on both sides (under `timeout`) and returns chroot's stdout after
    /// checking the shim's is the same.
    fn same_as_chroot(&self, probe: &Probe, name: &str, args: &[&str]) -> String {
        lambda_rootfs_with(&self.tools, self.image);
        let program = format!("{}/{name}", self.at);
        let mut argv = vec!["timeout", "60", program.as_str()];
        argv.extend(args);
        let mount = format!("{}={}", self.at, probe.dir().display());
        let ours = without_host_dev_shm(&lambda_command(
            &self.tools,
            self.image,
            &["--mount", &mount],
            &[],
            &argv,
        ))
        .output()
        .unwrap();
        let root: PathBuf = work().join("chroot").join(self.chroot).join("rootfs");
        let truth = chroot_run_binding(&root, &[(self.at, probe.dir())], &argv);
        let report = side_by_side("chroot", &truth, "shim", &ours);
        assert_eq!(truth.status.code(), Some(0), "{report}");
        assert_eq!(ours.stdout, truth.stdout, "{report}");
        assert_eq!(ours.status.code(), truth.status.code(), "{report}");
        text(&truth.stdout)
    }
}

fn bookworm() -> Run<'static> {
    Run {
        tools: native_tools(),
        image: images::DEBIAN,
        chroot: "debian",
        at: "/mnt",
    }
}

fn gate_same_as_chroot(run: &Run<'_>, target: &str) {
    let probe = Probe::build("syscall_gate", target);
    let dir = format!("{}/s", run.at);
    let out = run.same_as_chroot(&probe, "syscall_gate", &[&dir]);
    assert!(
        out.contains("statx: size") && out.ends_with("execve through syscall()\n"),
        "the probe did not run through: {out}"
    );
}

#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn raw_syscalls_see_the_image_as_chroot_does_x86_64() {
    gate_same_as_chroot(&bookworm(), "x86_64-linux-gnu.2.31");
}

#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn raw_syscalls_see_the_image_as_chroot_does_on_glibc_2_31() {
    let run = Run {
        image: images::BULLSEYE,
        chroot: "bullseye",
        ..bookworm()
    };
    gate_same_as_chroot(&run, "x86_64-linux-gnu.2.31");
}

#[test]
#[ignore = "needs the harness, root, qemu-user, zig and the arm64 layer (make test)"]
fn raw_syscalls_see_the_image_as_chroot_does_aarch64() {
    let run = Run {
        tools: arm64_tools(),
        image: images::DEBIAN_ARM64,
        chroot: "debian-arm64",
        at: "/mnt",
    };
    gate_same_as_chroot(&run, "aarch64-linux-gnu.2.31");
}

/// io_uring's file operations are invisible to any interposer: its setup fails with ENOSYS
/// inside the container, so libuv and liburing users fall back to plain calls.
#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn io_uring_setup_is_refused_inside_the_container() {
    let probe = Probe::build("syscall_gate", "x86_64-linux-gnu.2.31");
    let mount = format!("/mnt={}", probe.dir().display());
    let out = lambda_run_with(
        &native_tools(),
        images::DEBIAN,
        &["--mount", &mount],
        &["/mnt/syscall_gate", "/mnt/s", "io_uring"],
    );
    assert_eq!(
        text(&out.stdout),
        "io_uring_setup: -1 ENOSYS (38)\n",
        "{}",
        text(&out.stderr)
    );
}

fn popen_same_as_chroot(run: &Run<'_>, target: &str) {
    let probe = Probe::build("popen_streams", target);
    let dir = format!("{}/s", run.at);
    let out = run.same_as_chroot(&probe, "popen_streams", &[&dir]);
    assert!(
        out.contains("pclose r2: 0\n")
            && out.ends_with("the earlier stream's pipe, seen by a later child: 0\n"),
        "{out}"
    );
}

#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn concurrent_popen_streams_behave_as_under_chroot_glibc() {
    popen_same_as_chroot(&bookworm(), "x86_64-linux-gnu.2.31");
}

#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn concurrent_popen_streams_behave_as_under_chroot_musl() {
    let run = Run {
        image: images::MUSL,
        chroot: "musl",
        at: "/tmp",
        ..bookworm()
    };
    popen_same_as_chroot(&run, "x86_64-linux-musl");
}

fn named_shm_same_as_chroot(run: &Run<'_>, target: &str) {
    let probe = Probe::build("named_shm", target);
    let out = run.same_as_chroot(&probe, "named_shm", &[]);
    assert!(
        out.contains("after the child and two waits: 1\n")
            && out.contains("shared: written by the child\n")
            && out.ends_with("shm_open of no name: Invalid argument\n"),
        "{out}"
    );
}

#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn named_semaphores_and_shared_memory_work_without_a_host_dev_shm_glibc() {
    named_shm_same_as_chroot(&bookworm(), "x86_64-linux-gnu.2.31");
}

/// glibc before 2.34: the calls live in libpthread and librt, names are checked otherwise.
#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn named_semaphores_and_shared_memory_work_without_a_host_dev_shm_glibc_2_31() {
    let run = Run {
        image: images::BULLSEYE,
        chroot: "bullseye",
        ..bookworm()
    };
    named_shm_same_as_chroot(&run, "x86_64-linux-gnu.2.31");
}

/// musl lays its semaphores out otherwise and files them without glibc's `sem.` prefix.
#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn named_semaphores_and_shared_memory_work_without_a_host_dev_shm_musl() {
    let run = Run {
        image: images::MUSL,
        chroot: "musl",
        at: "/tmp",
        ..bookworm()
    };
    named_shm_same_as_chroot(&run, "x86_64-linux-musl");
}

/// `sem_open`'s optional arguments arrive in registers on aarch64 too.
#[test]
#[ignore = "needs the harness, root, qemu-user, zig and the arm64 layer (make test)"]
fn named_semaphores_and_shared_memory_work_without_a_host_dev_shm_aarch64() {
    let run = Run {
        tools: arm64_tools(),
        image: images::DEBIAN_ARM64,
        chroot: "debian-arm64",
        at: "/mnt",
    };
    named_shm_same_as_chroot(&run, "aarch64-linux-gnu.2.31");
}

/// `dir`: where the sockets are made, the image's own /tmp unless the probe is mounted there.
fn unix_dgram_same_as_chroot(run: &Run<'_>, target: &str, dir: &str) {
    let probe = Probe::build("unix_dgram", target);
    let out = run.same_as_chroot(&probe, "unix_dgram", &[dir]);
    let client = format!("{dir}/probe-dgram-cli.sock (len {})", dir.len() + 24);
    assert!(
        out.contains(&format!("recvmsg: sendmsg from {client}\n"))
            && out.contains("beyond untouched 1")
            && out.contains(&format!("batch 19 from {client}\n"))
            && out.contains(&format!(
                "one recvmmsg: 20, the last batch 19 from {dir}/probe-dgram-cli.sock\n\
                 one sendmmsg: 20, the last 8 bytes\n"
            ))
            && out.ends_with(&format!(
                "getpeername: {dir}/probe-dgram-srv.sock\n\
                 recvfrom connected: connected from {client}\ndone\n"
            )),
        "{out}"
    );
}

#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn unix_datagram_addresses_are_container_paths_both_ways_glibc() {
    unix_dgram_same_as_chroot(&bookworm(), "x86_64-linux-gnu.2.31", "/tmp");
}

#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn unix_datagram_addresses_are_container_paths_both_ways_musl() {
    let run = Run {
        image: images::MUSL,
        chroot: "musl",
        at: "/tmp",
        ..bookworm()
    };
    unix_dgram_same_as_chroot(&run, "x86_64-linux-musl", "/tmp/s");
}

#[test]
#[ignore = "needs the harness, root, qemu-user, zig and the arm64 layer (make test)"]
fn unix_datagram_addresses_are_container_paths_both_ways_aarch64() {
    let run = Run {
        tools: arm64_tools(),
        image: images::DEBIAN_ARM64,
        chroot: "debian-arm64",
        at: "/mnt",
    };
    unix_dgram_same_as_chroot(&run, "aarch64-linux-gnu.2.31", "/tmp");
}
