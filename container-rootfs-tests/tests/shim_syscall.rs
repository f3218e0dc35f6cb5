//! The `syscall()` gate: a C probe (`probes/syscall_gate.c`) makes every path-taking call
//! through raw `syscall()`, as libuv, Rust's std and liburing do, under the shim and under
//! a real chroot as Lambda's uid; the outputs must be equal byte for byte. Without the gate
//! the kernel resolves those paths on the host (the probe's image-only file is then
//! missing, and a host-only file appears).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use scar_test_kit::images;
use scar_test_kit::lambda::{
    Tools, arm64_tools, chroot_run_binding, lambda_rootfs_with, lambda_run_with, native_tools,
    text, workspace,
};
use scar_test_kit::work;

/// A directory the probe is bound at, with a scratch directory uid 993 can write.
struct ProbeDir {
    dir: tempfile::TempDir,
}

impl ProbeDir {
    /// The probe built with zig (the cross toolchain `make tools` installs) for `target`.
    fn build(target: &str) -> ProbeDir {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(work().join("probes")).unwrap();
        let dir = tempfile::tempdir_in(work().join("probes")).unwrap();
        let source = workspace().join("container-rootfs-tests/probes/syscall_gate.c");
        let out = Command::new("python3")
            .args(["-m", "ziglang", "cc", "-target", target, "-O2", "-o"])
            .arg(dir.path().join("syscall_gate"))
            .arg(&source)
            .output()
            .unwrap();
        assert!(out.status.success(), "zig cc: {}", text(&out.stderr));
        std::fs::create_dir(dir.path().join("s")).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path().join("s"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        ProbeDir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn chroot_root(name: &str) -> PathBuf {
    work().join("chroot").join(name).join("rootfs")
}

fn same_as_chroot(tools: &Tools, image: &str, chroot: &str, target: &str) {
    let probe = ProbeDir::build(target);
    lambda_rootfs_with(tools, image);
    let argv = ["/mnt/syscall_gate", "/mnt/s"];
    let mount = format!("/mnt={}", probe.path().display());
    let ours = lambda_run_with(tools, image, &["--mount", &mount], &argv);
    let truth = chroot_run_binding(&chroot_root(chroot), &[("/mnt", probe.path())], &argv);
    assert_eq!(
        truth.status.code(),
        Some(0),
        "chroot: {}",
        text(&truth.stderr)
    );
    let report = format!(
        "chroot:\n{}{}\nshim:\n{}{}",
        text(&truth.stdout),
        text(&truth.stderr),
        text(&ours.stdout),
        text(&ours.stderr)
    );
    assert!(
        text(&truth.stdout).contains("execve through syscall()")
            && text(&truth.stdout).contains("statx: size"),
        "the probe did not run through: {report}"
    );
    assert_eq!(ours.stdout, truth.stdout, "{report}");
    assert_eq!(ours.status.code(), truth.status.code(), "{report}");
}

#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn raw_syscalls_see_the_image_as_chroot_does_x86_64() {
    same_as_chroot(
        &native_tools(),
        images::DEBIAN,
        "debian",
        "x86_64-linux-gnu.2.31",
    );
}

#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn raw_syscalls_see_the_image_as_chroot_does_on_glibc_2_31() {
    same_as_chroot(
        &native_tools(),
        images::BULLSEYE,
        "bullseye",
        "x86_64-linux-gnu.2.31",
    );
}

#[test]
#[ignore = "needs the harness, root, qemu-user, zig and the arm64 layer (make test)"]
fn raw_syscalls_see_the_image_as_chroot_does_aarch64() {
    same_as_chroot(
        &arm64_tools(),
        images::DEBIAN_ARM64,
        "debian-arm64",
        "aarch64-linux-gnu.2.31",
    );
}

/// io_uring's file operations are invisible to any interposer: its setup fails with ENOSYS
/// inside the container, so libuv and liburing users fall back to plain calls.
#[test]
#[ignore = "needs the harness, root, zig and the shim (make test)"]
fn io_uring_setup_is_refused_inside_the_container() {
    let probe = ProbeDir::build("x86_64-linux-gnu.2.31");
    let mount = format!("/mnt={}", probe.path().display());
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
