//! Lazy loading end to end: the polyglot image staged with skeletons, run by `bootstrap run`
//! with `SCAR_LAZY_LOAD=1` as Lambda's uid on a cold cache each time. Each command starts on
//! the skeleton tree, its files arrive through the shim's requests while it runs, and what it
//! prints is what the same command prints under chroot in umoci's unpack of the image.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use scar_test_kit as common;

use common::framed::framed_layout;
use common::lambda::{bootstrap_bin, chroot_run, shim_dir};
use common::work;

/// The polyglot image as `deployer stage` stages it, made once per test binary.
fn staged_polyglot() -> &'static Path {
    static LAYOUT: OnceLock<tempfile::TempDir> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let layout = framed_layout(&work().join("oci-polyglot"), "bookworm");
            // Readable by uid 993, which runs bootstrap.
            Command::new("chmod")
                .args(["-R", "a+rX"])
                .arg(layout.path())
                .status()
                .unwrap();
            layout
        })
        .path()
}

/// `bootstrap run` of `argv` on a fresh cache (a cold start), lazily or not.
fn run(cache: &Path, lazy: bool, argv: &[&str]) -> Output {
    let image = format!("oci:{}:bookworm", staged_polyglot().display());
    Command::new("setpriv")
        .args(["--reuid", "993", "--regid", "993", "--clear-groups", "--"])
        .arg(bootstrap_bin())
        .arg("run")
        .arg(&image)
        .arg("--")
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SCAR_CACHE_DIR", cache)
        .env("SCAR_SHIM_DIR", shim_dir())
        .env("SCAR_LAZY_LOAD", if lazy { "1" } else { "0" })
        .env("RUST_LOG", "warn")
        .current_dir("/tmp")
        .output()
        .unwrap()
}

fn cache_for_993() -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    Command::new("chown")
        .args(["993:993"])
        .arg(cache.path())
        .status()
        .unwrap();
    cache
}

/// The one image directory of a cache, and whether its tree was still filling.
fn still_filling(cache: &Path) -> bool {
    std::fs::read_dir(cache.join("images"))
        .unwrap()
        .any(|e| e.unwrap().path().join("incomplete").exists())
}

#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn programs_on_a_lazy_tree_print_what_they_print_under_chroot() {
    let chroot = work().join("chroot/polyglot/rootfs");
    let commands: &[&[&str]] = &[
        &[
            "python3",
            "-c",
            "import numpy; print(numpy.arange(12).reshape(3, 4).sum(axis=0))",
        ],
        &["sh", "-c", "java -version 2>&1 | head -1"],
        &[
            "node",
            "-e",
            "const z = require('zlib'); console.log(z.gzipSync('lazy').length > 0, require('os').platform())",
        ],
        &[
            "perl",
            "-MDigest::MD5=md5_hex",
            "-e",
            "open my $f, '<', '/usr/bin/perl' or die; local $/; print md5_hex(<$f>), qq{\\n}",
        ],
        &[
            "ruby",
            "-e",
            "require 'json'; puts JSON.generate({a: [1, 2]})",
        ],
        &[
            "sh",
            "-c",
            "sha256sum /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 /usr/bin/node | cut -c1-16",
        ],
        &[
            "sh",
            "-c",
            "find /usr/share/doc -name copyright | sort | head -n 200 | xargs cat | md5sum",
        ],
    ];
    let mut lazily_started = 0;
    for argv in commands {
        let expected = chroot_run(&chroot, argv);
        assert!(
            expected.status.success(),
            "{argv:?} under chroot: {expected:?}"
        );
        let cache = cache_for_993();
        let ours = run(cache.path(), true, argv);
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&expected.stdout),
            "{argv:?}: stdout differs (stderr: {})",
            String::from_utf8_lossy(&ours.stderr)
        );
        assert_eq!(
            ours.status.code(),
            Some(0),
            "{argv:?}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        if still_filling(cache.path()) {
            lazily_started += 1;
        }
    }
    // The tree is about a gigabyte: the background fill outlasts these commands, so they
    // ran on a tree still arriving (the fetcher answered them), not on a whole one.
    assert!(
        lazily_started * 2 > commands.len(),
        "only {lazily_started} of {} commands ended before the tree was whole",
        commands.len()
    );
}
