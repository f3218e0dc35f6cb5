//! The shim's known limits (docs/limits.md, docs/fakeroot.md), each pinned to its current
//! behaviour: when one is fixed, or a regression changes it, a test here fails and the
//! documentation must change with it. Where a real chroot behaves differently, the test
//! says what chroot does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit::images;
use scar_test_kit::lambda::{LAMBDA_UID, lambda_run, text};

fn sh(script: &str, extra: &[&str]) -> (String, String) {
    let out = lambda_run(images::DEBIAN, extra, &["/bin/sh", "-c", script]);
    (text(&out.stdout), text(&out.stderr))
}

/// A relative symlink made at run time whose target climbs above `/` is stored resolved.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn a_climbing_relative_symlink_is_stored_resolved() {
    let (out, err) = sh(
        "ln -sf ../../../../bin/ls /tmp/lim-up && readlink /tmp/lim-up; rm /tmp/lim-up",
        &[],
    );
    assert_eq!(out, "/bin/ls\n", "chroot keeps ../../../../bin/ls: {err}");
}

/// `/proc/self/maps` names the host paths of the image's files.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn proc_self_maps_shows_host_paths() {
    let (out, err) = sh("grep -c /rootfs/ /proc/self/maps", &[]);
    let count: u32 = out.trim().parse().unwrap_or(0);
    assert!(count > 0, "maps: {out} {err}");
}

/// glibc opens locale, charset and zone data itself, below the shim, so the variables that
/// point it into the image hold host paths, and `env` lists them with the one that keeps
/// Node's libuv off io_uring. Under chroot none of the four is set.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn the_environment_names_the_images_locale_charset_and_zone_data_by_host_path() {
    let (out, err) = sh(
        r#"env | grep -E '^(LOCPATH|GCONV_PATH|TZDIR|UV_USE_IO_URING)=' | sed 's|=/.*/rootfs/|=ROOTFS/|' | sort"#,
        &[],
    );
    assert_eq!(
        out,
        "GCONV_PATH=ROOTFS/lib/x86_64-linux-gnu/gconv\n\
         LOCPATH=ROOTFS/usr/lib/locale\n\
         TZDIR=ROOTFS/usr/share/zoneinfo\n\
         UV_USE_IO_URING=0\n",
        "{err}"
    );
}

/// `ldconfig -p` names the image's cache by host path, where chroot prints
/// ``cache `/etc/ld.so.cache'``; a loader run's cmdline starts at the program, where the
/// kernel's keeps the caller's options. (`ldd`'s lines name container paths, as chroot's:
/// the shim matrix compares them.)
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn ldconfig_names_its_cache_by_host_path_and_a_loader_runs_cmdline_starts_at_the_program() {
    let (out, err) = sh(
        r#"ldd /bin/ls | grep -c '/rootfs/'; ldconfig -p | head -1 | grep -c '/rootfs/etc/ld.so.cache'; /lib64/ld-linux-x86-64.so.2 --inhibit-rpath '' /bin/sh -c 'tr "\0" " " < /proc/$$/cmdline'"#,
        &[],
    );
    assert_eq!(
        out,
        r#"0
1
/bin/sh -c tr "\0" " " < /proc/$$/cmdline "#,
        "{err}"
    );
}

/// A container's first command that is the loader in trace mode is run by bootstrap, not
/// through the shim's exec, and its listing keeps host paths (a later `ldd` does not).
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn a_first_command_that_lists_with_the_loader_prints_host_paths() {
    let out = lambda_run(
        images::DEBIAN,
        &[],
        &["/lib64/ld-linux-x86-64.so.2", "--list", "/bin/true"],
    );
    let listed = text(&out.stdout);
    assert!(
        listed.contains("libc.so.6 => /") && listed.contains("/rootfs/lib"),
        "chroot prints libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6: {listed}{}",
        text(&out.stderr)
    );
}

/// setuid bits are dropped at unpack and `chroot()` fails: nothing gains privileges.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn no_setuid_bits_and_no_chroot() {
    let (out, err) = sh(
        "stat -c %a /usr/bin/passwd; python3 -c 'import os\ntry:\n os.chroot(\"/tmp\")\nexcept OSError as e: print(e.errno)'",
        &[],
    );
    assert_eq!(
        out, "755\n1\n",
        "Debian ships passwd 4755; chroot needs privileges: {err}"
    );
}

/// An AF_UNIX path that fits under chroot can be too long for `sun_path` once the rootfs is
/// in front (LibreOffice's `/tmp/OSL_PIPE_…` in an image cached at a usual depth): it is
/// bound and connected through its directory (`/proc/self/fd/N/NAME`), and works as under
/// chroot; `getsockname` then names that alias, where chroot names the path. A file name
/// (the last component) past 91 bytes still fails with ENAMETOOLONG: the alias's
/// `/proc/self/fd/N/` takes 16 of `sun_path`'s 108.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn a_unix_socket_path_too_long_with_the_rootfs_in_front_works_through_its_directory() {
    let name = format!("/tmp/sockets/{}", "s".repeat(88));
    let script = format!(
        "mkdir -p /tmp/sockets; python3 -c 'import os, socket, stat\n\
         name = \"{name}\"\n\
         server = socket.socket(socket.AF_UNIX); server.bind(name); server.listen(1)\n\
         client = socket.socket(socket.AF_UNIX); client.connect(name)\n\
         accepted, _ = server.accept(); client.sendall(b\"hello\"); print(accepted.recv(5).decode())\n\
         print(stat.S_ISSOCK(os.stat(name).st_mode), server.getsockname() == name)\n\
         os.unlink(name)'"
    );
    let truth = scar_test_kit::lambda::chroot_run(
        &scar_test_kit::work().join("chroot/debian/rootfs"),
        &["/bin/sh", "-c", &script],
    );
    assert_eq!(
        text(&truth.stdout),
        "hello\nTrue True\n",
        "{}",
        text(&truth.stderr)
    );
    let (out, err) = sh(&script, &[]);
    assert_eq!(
        out,
        "hello\nTrue False\n",
        "a {}-byte path: {err}",
        name.len()
    );
    let long_name = format!("/tmp/{}", "s".repeat(95));
    let (out, err) = sh(
        &format!(
            "python3 -c 'import socket\ntry:\n socket.socket(socket.AF_UNIX).bind(\"{long_name}\")\nexcept OSError as e: print(e.errno)'"
        ),
        &[],
    );
    assert_eq!(out, "36\n", "a 95-byte file name binds under chroot: {err}");
}

/// The rootfs belongs to the Lambda user: a command may write where the image's own users
/// could not (under chroot as uid 993, `touch /var/x` fails: /var is root's), and `stat`
/// names the Lambda user as the owner of the image's files.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn the_rootfs_belongs_to_the_lambda_user() {
    // Not under /etc or /usr, which the shim matrix lists and compares with chroot.
    let probe = format!("/var/lim-owned-{}", std::process::id());
    let (out, err) = sh(
        &format!("touch {probe} && echo written && rm {probe}; stat -c %u /etc/passwd /var"),
        &[],
    );
    assert_eq!(
        out,
        format!("written\n{LAMBDA_UID}\n{LAMBDA_UID}\n"),
        "{err}"
    );
}

/// The rootfs is shared by every run of the image: a file one run leaves, the next sees.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn runs_share_the_rootfs() {
    // Not under /etc or /usr, which the shim matrix lists and compares with chroot.
    let marker = format!("/var/tmp/lim-shared-{}", std::process::id());
    let (_, err) = sh(&format!("echo kept > {marker}"), &[]);
    let (out, _) = sh(&format!("cat {marker}; rm {marker}"), &[]);
    assert_eq!(out, "kept\n", "{err}");
}

/// Fake root: `/proc/self/status` shows the fake ids, but opened relative to a descriptor of
/// `/proc/self` it is the kernel's file, with the Lambda user's.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn fake_root_limits() {
    let (out, err) = sh(
        "awk '/^Uid:/{print $2}' /proc/self/status; \
         python3 -c 'import os; d = os.open(\"/proc/self\", os.O_RDONLY); f = os.open(\"status\", os.O_RDONLY, dir_fd=d); \
         print([l.split()[1] for l in os.read(f, 8192).decode().splitlines() if l.startswith(\"Uid:\")][0])'",
        &["--fakeroot"],
    );
    assert_eq!(out, format!("0\n{LAMBDA_UID}\n"), "{err}");
}

/// glibc reads `/etc/services` from inside libc, out of the shim's reach. The Debian test
/// image has no `/etc/services` (no netbase), so under chroot `getent services http` finds
/// nothing; here it finds the host's entry, when the host has one. (The account databases,
/// shadow ones included, read the image's files: fakeroot.rs.)
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn services_are_read_from_the_host() {
    let host_has_http = std::fs::read_to_string("/etc/services").is_ok_and(|services| {
        services
            .lines()
            .any(|line| line.split_whitespace().next() == Some("http"))
    });
    let (out, err) = sh("getent services http | cut -d/ -f1 | tr -s ' \t' ' '", &[]);
    assert_eq!(out, if host_has_http { "http 80\n" } else { "" }, "{err}");
}
