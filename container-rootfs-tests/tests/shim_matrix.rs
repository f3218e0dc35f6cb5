//! The shim matrix: each command runs through `bootstrap run` as
//! Lambda's uid 993, and under a real `chroot` as the same uid, the ground truth; outputs
//! must match byte for byte where they are deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;
use scar_test_kit::images;

use std::path::PathBuf;

use common::lambda::{
    Tools, arm64_tools, chroot_run, lambda_rootfs_with, lambda_run_with, native_tools, text,
};
use common::work;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Image {
    Bookworm,
    Bullseye,
    Small,
    Musl,
    /// Debian bookworm arm64, run by the arm64 layer's bootstrap and shim under qemu-user.
    DebianArm64,
    /// The small image made from Debian arm64 programs, likewise.
    SmallArm64,
}

use Image::*;

impl Image {
    fn reference(self) -> &'static str {
        match self {
            Bookworm => images::DEBIAN,
            Bullseye => images::BULLSEYE,
            Small => images::GLIBC,
            Musl => images::MUSL,
            DebianArm64 => images::DEBIAN_ARM64,
            SmallArm64 => images::GLIBC_ARM64,
        }
    }

    fn tools(self) -> Tools {
        match self {
            DebianArm64 | SmallArm64 => arm64_tools(),
            _ => native_tools(),
        }
    }

    /// The same image unpacked by umoci as root (original symlinks), for `chroot`.
    fn chroot_root(self) -> PathBuf {
        let name = match self {
            Bookworm => "debian",
            Bullseye => "bullseye",
            Small => "glibc",
            Musl => "musl",
            DebianArm64 => "debian-arm64",
            SmallArm64 => "glibc-arm64",
        };
        work().join("chroot").join(name).join("rootfs")
    }
}

const ALL: &[Image] = &[Bookworm, Bullseye, Small, Musl, DebianArm64, SmallArm64];
const DEBIAN: &[Image] = &[Bookworm, Bullseye, DebianArm64];
const GLIBC: &[Image] = &[Bookworm, Bullseye, Small, DebianArm64, SmallArm64];
/// Not under qemu: binfmt_misc without the P flag hands qemu the program's path, not the
/// argv[0] it was executed with, so `chroot`, the ground truth, loses `exec -a`'s name there.
const GLIBC_NATIVE: &[Image] = &[Bookworm, Bullseye, Small];

#[derive(Debug, Clone, Copy)]
enum Check {
    /// stdout, stderr and status all equal.
    Same,
    /// stdout and status equal (stderr may name things differently).
    SameStdout,
}

struct Case {
    name: &'static str,
    script: &'static str,
    on: &'static [Image],
    check: Check,
}

const fn case(
    name: &'static str,
    on: &'static [Image],
    check: Check,
    script: &'static str,
) -> Case {
    Case {
        name,
        script,
        on,
        check,
    }
}

const CASES: &[Case] = &[
    case(
        "pipes and builtins",
        ALL,
        Check::Same,
        r#"cat /etc/os-release | grep -c ID | tr -d "\n"; echo; echo $((6*7))"#,
    ),
    case(
        "cwd and pwd",
        ALL,
        Check::Same,
        "cd /usr/bin && pwd && /bin/pwd && realpath ../../etc && cd .. && pwd",
    ),
    case(
        "/proc/self/exe",
        ALL,
        Check::Same,
        "readlink -f /proc/self/exe; readlink /proc/self/exe; ls -l /proc/self/exe | sed 's/.* -> //'",
    ),
    case(
        "alternatives chain",
        DEBIAN,
        Check::Same,
        "readlink -f /usr/bin/awk; /usr/bin/awk 'BEGIN{print 1}'",
    ),
    case(
        "absolute symlink in the image",
        &[Small],
        Check::Same,
        "/usr/bin/abs-dash -c 'echo via link'; readlink /usr/bin/abs-dash",
    ),
    case(
        "absolute symlink made at run time",
        ALL,
        Check::Same,
        r#"ln -s "$(command -v env)" /tmp/crt-e && /tmp/crt-e true && echo ok; readlink /tmp/crt-e; rm /tmp/crt-e"#,
    ),
    case(
        "relative symlink made at run time",
        ALL,
        Check::Same,
        "ln -s ../../bin/ls /tmp/crt-l && /tmp/crt-l / ; rm /tmp/crt-l",
    ),
    case(
        "shebang with an argument",
        ALL,
        Check::Same,
        r#"printf '#!/bin/sh -e\necho $0 "$@"\n' > /tmp/crt-s; chmod +x /tmp/crt-s; /tmp/crt-s a b; rm /tmp/crt-s"#,
    ),
    case(
        "env python shebang",
        DEBIAN,
        Check::Same,
        r#"printf '#!/usr/bin/env python3\nimport sys\nprint(sys.argv)\n' > /tmp/crt-p; chmod +x /tmp/crt-p; /tmp/crt-p x; rm /tmp/crt-p"#,
    ),
    case(
        "script without a shebang",
        ALL,
        Check::Same,
        r#"printf 'echo noshebang $0\n' > /tmp/crt-n; chmod +x /tmp/crt-n; sh -c /tmp/crt-n; rm /tmp/crt-n"#,
    ),
    case(
        "env, xargs",
        ALL,
        Check::Same,
        "env ls / ; echo a b | xargs -n1 echo",
    ),
    case(
        "find -exec",
        ALL,
        Check::Same,
        r"find /etc -name os-release -exec cat {} \;",
    ),
    case(
        "perl system and exec",
        DEBIAN,
        Check::Same,
        r#"perl -e 'system("ls /"); exec("echo", "from perl exec")'"#,
    ),
    case(
        "python subprocess and posix_spawnp",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import subprocess,os; subprocess.run(["ls","/"]); p=os.posix_spawnp("true",["true"],os.environ); print(os.waitpid(p,0)[1])'"#,
    ),
    case(
        "python execv /proc/self/exe",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import os; os.execv("/proc/self/exe", ["python3","-c","print(1)"])'"#,
    ),
    case(
        "system and popen",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import os,ctypes; print(os.system("echo via system; exit 3")); c=ctypes.CDLL(None); c.popen.restype=ctypes.c_void_p; f=ctypes.c_void_p(c.popen(b"cat > /tmp/crt-po; exit 2", b"w")); c.fputs(b"via popen\\n", f); print(c.pclose(f)); print(open("/tmp/crt-po").read(), end="")'; rm /tmp/crt-po"#,
    ),
    case(
        "exec -a",
        GLIBC_NATIVE,
        Check::Same,
        r#"bash -c 'exec -a foo /bin/sh -c "echo \$0"'"#,
    ),
    // SameStdout: the image's files belong to the Lambda uid here, to root under chroot,
    // so busybox's `cp -a` warns about ownership only there.
    case(
        "file operations in /tmp",
        ALL,
        Check::SameStdout,
        r#"touch /tmp/crt-a && mkdir -p /tmp/crt-d/e && cp -a /etc/os-release /etc/passwd /tmp/crt-d/ && sed -i s/a/b/ /tmp/crt-d/passwd && mv /tmp/crt-d /tmp/crt-f && ls /tmp/crt-f && rm -r /tmp/crt-f /tmp/crt-a && d=$(mktemp -d) && rmdir "$d" && echo fileops ok"#,
    ),
    case(
        "tar",
        ALL,
        Check::Same,
        "tar -C / -cf /tmp/crt-t.tar etc/passwd && tar -tf /tmp/crt-t.tar && rm /tmp/crt-t.tar",
    ),
    case(
        "df",
        GLIBC,
        Check::SameStdout,
        "df /tmp >/dev/null && echo df ok",
    ),
    case(
        "find walker",
        ALL,
        Check::Same,
        "find /usr -xdev | wc -l; find / -maxdepth 1 | sort",
    ),
    case(
        "du walker",
        ALL,
        Check::Same,
        "du -s /usr >/dev/null && echo du ok",
    ),
    case("ls -laR", ALL, Check::Same, "ls -laR /etc | wc -l"),
    case(
        "python glob",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import glob;print(len(glob.glob("/usr/lib/**",recursive=True)))'"#,
    ),
    case(
        "python modules",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import sys,os,json,ssl,sqlite3,ctypes,email,asyncio; print(sys.executable, os.getcwd(), sys.prefix)'"#,
    ),
    case(
        "python venv",
        DEBIAN,
        Check::Same,
        "python3 -m venv --without-pip /tmp/crt-v && /tmp/crt-v/bin/python -c 'import sys; print(sys.prefix, sys.executable)'; rm -rf /tmp/crt-v",
    ),
    case(
        "perl modules",
        DEBIAN,
        Check::Same,
        r#"cd /etc && perl -MPOSIX -MFile::Find -e 'print getcwd(),"\n"; find(sub { print "$File::Find::name\n" if /^os-release$/ }, "/etc")'"#,
    ),
    case(
        "locale and time",
        DEBIAN,
        Check::Same,
        "locale -a; date -u -d @0; TZ=UTC0 date -d @86400 +%F",
    ),
    case("time", &[Small, Musl], Check::Same, "date -u -d @0 +%F"),
    case(
        "imagemagick",
        &[Bookworm],
        Check::Same,
        "convert -size 64x64 xc:red /tmp/crt-r.png && identify -format '%w %h %m\\n' /tmp/crt-r.png; rm /tmp/crt-r.png",
    ),
    case("cowsay", &[Bookworm], Check::Same, "/usr/games/cowsay moo"),
    case(
        "dotdot stays inside",
        ALL,
        Check::Same,
        "cat /../../../etc/os-release | grep ^ID=; cd /../../.. && pwd && ls | head -3",
    ),
    case(
        "missing program",
        ALL,
        Check::SameStdout,
        "nosuchprog; echo status $?",
    ),
    case(
        "exit status",
        ALL,
        Check::Same,
        "echo out; echo err >&2; exit 7",
    ),
];

fn matrix(image: Image) {
    let tools = image.tools();
    lambda_rootfs_with(&tools, image.reference());
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in CASES.iter().filter(|c| c.on.contains(&image)) {
        ran += 1;
        let argv = ["/bin/sh", "-c", case.script];
        let ours = lambda_run_with(&tools, image.reference(), &[], &argv);
        let truth = chroot_run(&image.chroot_root(), &argv);
        let same_stdout = ours.stdout == truth.stdout && ours.status.code() == truth.status.code();
        let same = match case.check {
            Check::Same => same_stdout && ours.stderr == truth.stderr,
            Check::SameStdout => same_stdout,
        };
        if !same || truth.status.code().is_none() {
            failures.push(format!(
                "--- {:?} {}: {}\n  chroot ({:?}):\n{}{}\n  shim ({:?}):\n{}{}",
                image,
                case.name,
                case.script,
                truth.status.code(),
                text(&truth.stdout),
                text(&truth.stderr),
                ours.status.code(),
                text(&ours.stdout),
                text(&ours.stderr),
            ));
        }
    }
    assert!(ran > 10, "too few cases for {image:?}");
    assert!(
        failures.is_empty(),
        "{} of {ran} cases differ from chroot:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn matrix_bookworm_glibc_2_36() {
    matrix(Bookworm);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn matrix_bullseye_glibc_2_31() {
    matrix(Bullseye);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn matrix_small_host_image() {
    matrix(Small);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn matrix_musl() {
    matrix(Musl);
}

#[test]
#[ignore = "needs the harness, root, qemu-user and the arm64 layer (make test)"]
fn matrix_debian_arm64_under_qemu() {
    matrix(DebianArm64);
}

#[test]
#[ignore = "needs the harness, root, qemu-user and the arm64 layer (make test)"]
fn matrix_small_arm64_under_qemu() {
    matrix(SmallArm64);
}
