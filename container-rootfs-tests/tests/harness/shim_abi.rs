//! The shim's binary interface: it must load into old and new glibc images and into musl
//! images, and export every entry point it interposes (the list below).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;

use std::process::Command;

use common::lambda::shim_dir;

fn readelf(args: &[&str], file: &str) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(shim_dir().join(file))
        .output()
        .unwrap();
    assert!(out.status.success(), "readelf {args:?} {file}");
    String::from_utf8(out.stdout).unwrap()
}

fn glibc_versions(symbols: &str) -> Vec<(u32, u32)> {
    let mut versions: Vec<(u32, u32)> = symbols
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect();
    versions.sort_unstable();
    versions.dedup();
    versions
}

#[test]
#[ignore = "needs the shim builds (make shim)"]
fn glibc_build_needs_no_symbol_version_newer_than_2_17() {
    let symbols = readelf(&["--dyn-syms", "-W"], "scar-fakechroot-glibc.so");
    let versions = glibc_versions(&symbols);
    assert!(
        !versions.is_empty(),
        "no GLIBC_ versions found: is this the glibc build?"
    );
    let newest = versions.last().copied().unwrap();
    assert!(
        newest <= (2, 17),
        "the shim needs GLIBC_{}.{}; images older than that would refuse it",
        newest.0,
        newest.1
    );
}

#[test]
#[ignore = "needs the shim builds (make shim)"]
fn musl_build_needs_only_musl_libc() {
    let dynamic = readelf(&["-d", "-W"], "scar-fakechroot-musl.so");
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert_eq!(needed.len(), 1, "{needed:?}");
    assert!(needed[0].contains("[libc.so]"), "{needed:?}");
    assert!(glibc_versions(&readelf(&["--dyn-syms", "-W"], "scar-fakechroot-musl.so")).is_empty());
}

#[test]
#[ignore = "needs the shim builds (make shim)"]
fn both_builds_export_the_interposition_set() {
    let required = [
        "open",
        "open64",
        "__open_2",
        "openat",
        "__openat_2",
        "creat",
        "fopen",
        "freopen",
        "stat",
        "lstat",
        "fstatat",
        "__xstat",
        "__lxstat",
        "__fxstatat",
        "statx",
        "access",
        "faccessat",
        "readlink",
        "readlinkat",
        "__readlink_chk",
        "realpath",
        "__realpath_chk",
        "getcwd",
        "__getcwd_chk",
        "chdir",
        "opendir",
        "scandir",
        "glob",
        "nftw",
        "mkstemp",
        "mkostemp",
        "mkdtemp",
        "execve",
        "execv",
        "execvp",
        "execvpe",
        "execl",
        "execle",
        "execlp",
        "execveat",
        "syscall",
        "fexecve",
        "posix_spawn",
        "posix_spawnp",
        "system",
        "popen",
        "pclose",
        "dlopen",
        "dladdr",
        "bind",
        "connect",
        "getsockname",
        "getxattr",
        "setxattr",
        "symlink",
        "rename",
        "renameat2",
        "linkat",
        "unlinkat",
        "utimensat",
        "getpwuid",
        "getgrgid",
    ];
    for build in ["scar-fakechroot-glibc.so", "scar-fakechroot-musl.so"] {
        let symbols = readelf(&["--dyn-syms", "-W"], build);
        let exported: std::collections::HashSet<&str> = symbols
            .lines()
            .filter(|l| l.contains(" FUNC ") && l.contains(" GLOBAL ") && !l.contains(" UND "))
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        let missing: Vec<_> = required.iter().filter(|s| !exported.contains(*s)).collect();
        assert!(missing.is_empty(), "{build} does not export {missing:?}");
    }
}
