//! Lazy loading end to end: the polyglot image staged with skeletons, run by `bootstrap run`
//! with `SCAR_LAZY_LOAD=1` as Lambda's uid on a cold cache each time. Each command starts on
//! the skeleton tree, its files arrive through the shim's requests while it runs, and what it
//! prints is what the same command prints under chroot in umoci's unpack of the image.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use scar_test_kit as common;

use common::framed::{corrupt_largest_blob, framed_layout_for_lambda};
use common::lambda::{
    bootstrap_bin, chroot_run, fresh_lambda_cache, lambda_command, lambda_command_with_nproc,
    lambda_run_setting, native_tools, shim_dir,
};
use common::work;

/// The harness's image in `layout` (tag `bookworm`) as `deployer stage` stages it.
fn staged(layout: &str) -> tempfile::TempDir {
    framed_layout_for_lambda(&work().join(layout), "bookworm")
}

/// The polyglot image staged, made once per test process.
fn staged_polyglot() -> &'static Path {
    static LAYOUT: OnceLock<tempfile::TempDir> = OnceLock::new();
    LAYOUT.get_or_init(|| staged("oci-polyglot")).path()
}

/// `bootstrap run` of `argv` on the staged `layout` with `cache`, lazily or not.
fn run_image(layout: &Path, cache: &Path, lazy: bool, argv: &[&str]) -> Output {
    let image = format!("oci:{}:bookworm", layout.display());
    run_reference(&image, cache, lazy, argv, &[])
}

/// `bootstrap run` of `argv` on `image` with `cache`, lazily or not, with more of
/// bootstrap's own settings, as the shim matrix runs it.
fn run_reference(
    image: &str,
    cache: &Path,
    lazy: bool,
    argv: &[&str],
    settings: &[(&str, &str)],
) -> Output {
    let mut all = vec![("SCAR_LAZY_LOAD", if lazy { "1" } else { "0" })];
    all.extend_from_slice(settings);
    let cache = cache.to_str().unwrap();
    lambda_run_setting(&native_tools(), image, &["--cache-dir", cache], &all, argv)
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
    // Three cold starts, each a few programs on a tree of placeholders. The first runs a
    // static-pie program (ldconfig, which the shim cannot follow: its cache must be whole
    // first) and reads a file through the raw `syscall()` gate (its `openat` must fill the
    // placeholder too). The third counts files' blocks (`find -printf %b`, `ls -s`, `stat`)
    // before reading: a placeholder has none yet, and reports those its bytes will take,
    // without the mark in its access time (`du`'s totals would add directories' blocks,
    // which depend on the order their entries were made in). Then GNU tar reads two trees
    // whose files arrive as it reads them: the directories must not seem to change under it
    // (it would say so and exit 1).
    let scripts = [
        r#"set -e
ldconfig -p | sed 1d | md5sum
python3 -c 'import ctypes, hashlib, os
fd = ctypes.CDLL(None).syscall(257, -100, b"/usr/bin/node", 0)
print(hashlib.md5(b"".join(iter(lambda: os.read(fd, 1 << 20), b""))).hexdigest())'
python3 -c 'import numpy; print(numpy.arange(12).reshape(3, 4).sum(axis=0))'
java -version 2>&1 | head -1"#,
        r#"set -e
node -e "const z = require('zlib'); console.log(z.gzipSync('lazy').length > 0, require('os').platform())"
perl -MDigest::MD5=md5_hex -e 'open my $f, "<", "/usr/bin/perl" or die; local $/; print md5_hex(<$f>), qq{\n}'
ruby -e "require 'json'; puts JSON.generate({a: [1, 2]})""#,
        r#"set -e
find /usr/lib/python3.11 /usr/lib/python3/dist-packages -type f -printf '%b\n' | awk '{ n += $1 } END { print n }'
du -s --apparent-size /usr/lib/python3.11
ls -s /usr/bin/perl
python3 -c 'import os; s = os.stat("/usr/bin/ruby3.1"); print(s.st_blocks, s.st_atime_ns % 10**9 != 999999937)'
tar -cf /tmp/crt-lazy.tar /usr/lib/python3/dist-packages /usr/lib/python3.11 2>/dev/null && echo tar ok
rm -f /tmp/crt-lazy.tar
sha256sum /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /usr/bin/node | cut -c1-16
find /usr/lib/python3.11 -name '*.py' | sort | head -n 200 | xargs cat | md5sum"#,
    ];
    let commands: Vec<[&str; 3]> = scripts.iter().map(|s| ["sh", "-c", s]).collect();
    let mut lazily_started = 0;
    let image = format!("oci:{}:bookworm", staged_polyglot().display());
    for argv in &commands {
        let cache = fresh_lambda_cache();
        run_lazily_as_under_chroot(&chroot, &image, cache.path(), argv, &[]);
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

/// A directory renamed before its files arrive takes its placeholders along (a shell's `mv`,
/// pip's stash of a package it replaces); read at their new names, they hold the image's
/// bytes, not a placeholder's zeros.
#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn files_of_a_directory_renamed_before_they_arrive_hold_the_images_bytes() {
    let files = ["decoder.py", "encoder.py", "__init__.py"];
    let image_dir = work().join("chroot/polyglot/rootfs/usr/lib/python3.11/json");
    let expected: String = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(image_dir.join(f)).unwrap();
            format!(
                "{}\n",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
            )
        })
        .collect();
    let cache = fresh_lambda_cache();
    let script = format!(
        "mv /usr/lib/python3.11/json /tmp/json-moved && cd /tmp/json-moved && sha256sum {} | cut -d' ' -f1",
        files.join(" ")
    );
    let ours = run_image(
        staged_polyglot(),
        cache.path(),
        true,
        &["sh", "-c", &script],
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        expected,
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert!(
        still_filling(cache.path()),
        "the tree was whole before the rename"
    );
}

/// Under fake root, owners are remembered by inode, and a placeholder gets a new inode when
/// it is filled: a file chowned before it arrived keeps its new owner once read.
#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn a_file_chowned_under_fake_root_before_it_arrives_keeps_its_owner() {
    let cache = fresh_lambda_cache();
    let script = "chown -R nobody:nogroup /usr/lib/python3.11/json \
        && cat /usr/lib/python3.11/json/*.py > /dev/null \
        && find /usr/lib/python3.11/json -type f ! -user nobody | wc -l \
        && stat -c %U:%G /usr/lib/python3.11/json/decoder.py";
    let image = format!("oci:{}:bookworm", staged_polyglot().display());
    let ours = run_reference(
        &image,
        cache.path(),
        true,
        &["sh", "-c", script],
        &[("SCAR_FAKEROOT", "1")],
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        "0\nnobody:nogroup\n",
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
}

/// Runs `argv` under chroot in `chroot` (it must succeed) and lazily on `image` with `cache`
/// and bootstrap's `settings`: the same output and a zero status. Returns our run.
fn run_lazily_as_under_chroot(
    chroot: &Path,
    image: &str,
    cache: &Path,
    argv: &[&str],
    settings: &[(&str, &str)],
) -> Output {
    let expected = chroot_run(chroot, argv);
    assert!(
        expected.status.success(),
        "{argv:?} under chroot: {expected:?}"
    );
    let ours = run_reference(image, cache, true, argv, settings);
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
    ours
}

/// Reads every regular file under /var/lib/dpkg/info and /usr/share/doc, last name first
/// (dpkg's files end the image's layer, so the background fill reaches them last), and prints
/// their number and one digest of their paths and bytes; with `grab`, first starts threads
/// until no more can start (each waiting, and gone with the process if a read fails), and
/// lets them go at the end.
const READ_FILES_HOLDING_EVERY_THREAD: &str = r#"
import hashlib, os, sys, threading
held, stop = [], threading.Event()
if sys.argv[1:] == ["grab"]:
    try:
        while True:
            thread = threading.Thread(target=stop.wait, daemon=True)
            thread.start()
            held.append(thread)
    except RuntimeError:
        pass
digest, files = hashlib.sha256(), 0
for top in ["/var/lib/dpkg/info", "/usr/share/doc"]:
    for root, dirs, names in os.walk(top):
        dirs.sort(reverse=True)
        for name in sorted(names, reverse=True):
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as file:
                    digest.update(path.encode() + b"\0" + file.read())
                files += 1
stop.set()
for thread in held:
    thread.join()
print(files, digest.hexdigest())
print("threads held:", len(held), file=sys.stderr)
"#;

/// A command that takes every thread its user may have (a function may have 1,024, and the
/// tree still fills meanwhile) gets its files all the same: bootstrap answers the shim's
/// requests on the fetcher's own thread, one at a time, and says so once.
#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn a_command_holding_every_thread_still_gets_its_files() {
    // A user of this test's own: RLIMIT_NPROC counts all of a user's processes.
    const UID: u32 = 994;
    let chroot = work().join("chroot/polyglot/rootfs");
    let expected = chroot_run(&chroot, &["python3", "-c", READ_FILES_HOLDING_EVERY_THREAD]);
    assert!(expected.status.success(), "under chroot: {expected:?}");
    let cache = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(cache.path(), Some(UID), Some(UID)).unwrap();
    let image = format!("oci:{}:bookworm", staged_polyglot().display());
    let ours = lambda_command_with_nproc(
        UID,
        256,
        &native_tools(),
        &image,
        &["--cache-dir", cache.path().to_str().unwrap()],
        &[("SCAR_LAZY_LOAD", "1"), ("AWS_LAMBDA_LOG_LEVEL", "warn")],
        &["python3", "-c", READ_FILES_HOLDING_EVERY_THREAD, "grab"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&ours.stderr);
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&expected.stdout),
        "{stderr}"
    );
    assert_eq!(ours.status.code(), Some(0), "{stderr}");
    let held: usize = stderr
        .lines()
        .find_map(|line| line.strip_prefix("threads held: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!((1..256).contains(&held), "{held} threads: {stderr}");
    assert!(
        stderr.contains("answering them one at a time"),
        "the shim's requests all found a thread: {stderr}"
    );
}

/// `bootstrap --emulate` of one event on `image`, lazily, as Lambda's uid.
fn emulate(cache: &Path, image: &str, event: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("event.json");
    std::fs::write(&file, event).unwrap();
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path())
        .status()
        .unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid", "993", "--regid", "993", "--clear-groups", "--"])
        .arg(bootstrap_bin())
        .arg("--emulate")
        .arg(&file)
        .args(["--image", image, "--timeout", "300"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("AWS_LAMBDA_LOG_LEVEL", "error")
        .env("SCAR_CACHE_DIR", cache)
        .env("SCAR_SHIM_DIR", shim_dir())
        .env("SCAR_LAZY_LOAD", "1")
        .env("LAMBDA_TASK_ROOT", dir.path())
        .current_dir("/tmp")
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A frame that arrives corrupt (after its retries): the program reading a file in it gets
/// EIO, and the invocation is reported as `Scar.ImageError` naming that file and the frame.
#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn a_file_whose_frame_is_corrupt_fails_the_invocation_by_name() {
    let copy = staged("oci-debian");
    corrupt_largest_blob(copy.path());
    let cache = fresh_lambda_cache();
    let image = format!("oci:{}:bookworm", copy.path().display());
    // Reads every file of /usr: one of them lies in the corrupt frame.
    let event =
        r#"{"cmd_args": ["sh", "-c", "find /usr -type f -exec cat {} + > /dev/null; echo done"]}"#;
    let response = emulate(cache.path(), &image, event);
    assert_eq!(response["errorType"], "Scar.ImageError", "{response:#}");
    let message = response["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("cannot fetch /") && message.contains("digest mismatch"),
        "{message}"
    );
}

/// A /tmp too small for the image's files (260 MB for the Debian image's 301 MB) but not
/// for its skeleton (placeholders take no block): the tree is built and the command starts,
/// then the files it reads do not fit. The invocation is reported as `Scar.NoSpace` naming
/// the file and what to raise, as an eager pull that fills /tmp is, and no half-written file
/// is left beside the tree.
#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn a_file_that_does_not_fit_in_tmp_fails_the_invocation_as_no_space() {
    let small = DebianOnSmallTmp::new(260);
    let (image, cache) = (small.image.as_str(), small.cache.as_path());
    // Reads every file of /usr: more than the 260 MB.
    let event =
        r#"{"cmd_args": ["sh", "-c", "find /usr -type f -exec cat {} + > /dev/null; echo done"]}"#;
    let response = emulate(cache, image, event);
    let skeleton_built = cache.join("images").is_dir();
    let left_aside: Vec<_> = walkdir_files(cache)
        .into_iter()
        .filter(|path| path.components().any(|c| c.as_os_str() == "aside"))
        .collect();
    assert!(skeleton_built, "the skeleton did not fit: {response:#}");
    assert_eq!(response["errorType"], "Scar.NoSpace", "{response:#}");
    let message = response["errorMessage"].as_str().unwrap();
    for words in [
        "no space left on device while writing /usr/",
        "ephemeral storage",
    ] {
        assert!(message.contains(words), "{words:?} not in {message}");
    }
    assert!(left_aside.is_empty(), "half-written files: {left_aside:?}");
}

/// An image larger than /tmp (the Debian image, 301 MB unpacked, whose eager pull asks for
/// 228 MB, on a 150 MB tmpfs): lazily, it runs a command that reads part of it. The
/// background fill stops where the next files would leave less than the room kept for the
/// commands (64 MB here), so a command that writes 20 MB to /tmp once the fill has settled
/// does so; the files it reads still arrive.
#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn an_image_larger_than_tmp_runs_lazily_and_leaves_the_commands_their_room() {
    let small = DebianOnSmallTmp::new(150);
    let (image, cache) = (small.image.as_str(), small.cache.as_path());
    let (argv, expected) = two_big_files();
    // Waits (a minute at most) until /tmp's free space has not moved for two seconds: the
    // background fill has stopped.
    let script = format!(
        "{}; free=0; same=0; n=0; \
         while [ $same -lt 2 ] && [ $n -lt 60 ]; do sleep 1; n=$((n+1)); \
         now=$(df -k --output=avail /tmp | tail -1 | tr -d ' '); \
         if [ \"$now\" = \"$free\" ]; then same=$((same+1)); else same=0; fi; free=$now; done; \
         echo free_kb=$free; head -c 20000000 /dev/zero > /tmp/out && echo wrote $(wc -c < /tmp/out)",
        argv[2]
    );
    let event = serde_json::json!({ "cmd_args": ["sh", "-c", script] }).to_string();
    let response = emulate(cache, image, &event);
    assert_eq!(response["exit_code"], 0, "{response:#}");
    let output = response["output"]
        .as_str()
        .unwrap_or_else(|| panic!("{response:#}"));
    assert!(
        output.starts_with(String::from_utf8_lossy(&expected.stdout).as_ref()),
        "{output}"
    );
    assert!(output.contains("wrote 20000000"), "{output}");
    let free_kb: u64 = output
        .lines()
        .find_map(|line| line.strip_prefix("free_kb="))
        .and_then(|kb| kb.parse().ok())
        .unwrap_or_else(|| panic!("{output}"));
    // 64 MB kept, less what the filling threads had under way when they stopped.
    assert!(free_kb > 40_000, "{output}");
}

/// Two processes sharing a cache, the first on a tree that stays partial (the image does not
/// fit beside the room kept for the commands): the second waits for the first to end rather
/// than build the tree again under the first's running command, whose files would then be
/// another tree's placeholders.
#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn a_tree_that_stays_partial_is_not_rebuilt_under_its_running_command() {
    let small = DebianOnSmallTmp::new(150);
    let (image, cache) = (small.image.as_str(), small.cache.as_path());
    let cache = cache.to_str().unwrap();
    let (argv, expected) = two_big_files();
    let lazy = [("SCAR_LAZY_LOAD", "1")];
    // The same files read again after the other process has started.
    let twice = format!("{}; sleep 8; {}", argv[2], argv[2]);
    let first = lambda_command(
        &native_tools(),
        image,
        &["--cache-dir", cache],
        &lazy,
        &["sh", "-c", &twice],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let first = std::thread::spawn(move || {
        let output = first.wait_with_output().unwrap();
        (output, std::time::Instant::now())
    });
    // Its background fill stops at the room kept well within this (a tmpfs fills fast).
    std::thread::sleep(std::time::Duration::from_secs(4));
    let second = lambda_run_setting(&native_tools(), image, &["--cache-dir", cache], &lazy, argv);
    let second_ended = std::time::Instant::now();
    let (first, first_ended) = first.join().unwrap();
    let once = String::from_utf8_lossy(&expected.stdout).into_owned();
    assert!(first.status.success(), "{first:?}");
    assert_eq!(String::from_utf8_lossy(&first.stdout), once.repeat(2));
    assert!(second.status.success(), "{second:?}");
    assert_eq!(String::from_utf8_lossy(&second.stdout), once);
    assert!(
        second_ended >= first_ended,
        "the second process did not wait for the first"
    );
}

/// The staged Debian image, and a cache on a small /tmp: a tmpfs of `mb` MB for Lambda's
/// uid, unmounted when dropped.
struct DebianOnSmallTmp {
    image: String,
    cache: std::path::PathBuf,
    _mount: Tmpfs,
    _copy: tempfile::TempDir,
}

impl DebianOnSmallTmp {
    fn new(mb: u32) -> Self {
        let copy = staged("oci-debian");
        let mount = Tmpfs::mounted(mb);
        Self {
            image: format!("oci:{}:bookworm", copy.path().display()),
            cache: mount.dir.path().join("cache"),
            _mount: mount,
            _copy: copy,
        }
    }
}

/// A tmpfs of `mb` MB for Lambda's uid, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mounted(mb: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = format!("size={mb}m,uid=993,gid=993,mode=0755");
        assert!(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success()
        );
        Self { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Every regular file below `dir`.
fn walkdir_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// A command reading two big files of the Debian image, and what it prints under chroot.
fn two_big_files() -> (&'static [&'static str], Output) {
    let argv: &[&str] = &[
        "sh",
        "-c",
        "sha256sum /usr/bin/perl /usr/games/cowsay | cut -c1-20",
    ];
    let expected = chroot_run(&work().join("chroot/debian/rootfs"), argv);
    assert!(expected.status.success(), "{expected:?}");
    (argv, expected)
}

/// A runtime killed while its tree was still arriving leaves it marked incomplete: the next
/// environment does not trust it, builds it again, and gets the image's files.
#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn a_tree_left_half_filled_is_built_again_by_the_next_runtime() {
    let layout = staged("oci-debian");
    let (argv, expected) = two_big_files();
    let cache = fresh_lambda_cache();
    // `bootstrap run` ends with the command: its filler thread dies with it, mid-tree.
    let first = run_image(layout.path(), cache.path(), true, &["true"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        still_filling(cache.path()),
        "the first run's tree was whole already"
    );
    for lazy in [true, false] {
        let again = run_image(layout.path(), cache.path(), lazy, argv);
        assert_eq!(
            String::from_utf8_lossy(&again.stdout),
            String::from_utf8_lossy(&expected.stdout),
            "lazy={lazy}: {}",
            String::from_utf8_lossy(&again.stderr)
        );
    }
    // The eager run built a whole tree, which the cache now trusts.
    assert!(!still_filling(cache.path()));
}

/// The access trace stored in a staged layout for its `bookworm` image, if any.
fn stored_trace(layout: &Path) -> Option<Vec<u8>> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "bookworm")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let location = scar_image::trace::location(&digest).unwrap();
    std::fs::read(layout.join(location)).ok()
}

/// The count a lazy build logs of the trace it was given (`traced=N`).
fn traced(stderr: &[u8]) -> usize {
    let log = String::from_utf8_lossy(stderr);
    let line = log
        .lines()
        .find(|l| l.contains("lazy tree built from the skeletons"))
        .unwrap_or_else(|| panic!("no build line in {log}"));
    let (_, after) = line.split_once("traced=").unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

/// The first cold start stores the files its command asked for beside the staged image; the
/// next reads that trace (and prefetches it) and keeps its entries first in what it stores.
/// A damaged trace is read up to the damage and replaced; where the trace cannot be stored,
/// the run is the same and says so once.
#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn a_cold_start_stores_its_access_trace_and_the_next_starts_from_it() {
    let layout = staged("oci-debian");
    let traces = layout.path().join("scar");
    std::fs::create_dir(&traces).unwrap();
    Command::new("chown")
        .args(["993:993"])
        .arg(&traces)
        .status()
        .unwrap();
    let chroot = work().join("chroot/debian/rootfs");
    let (argv, expected) = two_big_files();
    let image = format!("oci:{}:bookworm", layout.path().display());
    let cold = |argv: &[&str]| {
        let cache = fresh_lambda_cache();
        let out = run_reference(
            &image,
            cache.path(),
            true,
            argv,
            &[("AWS_LAMBDA_LOG_LEVEL", "info")],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    let first = cold(argv);
    assert_eq!(first.stdout, expected.stdout);
    assert_eq!(traced(&first.stderr), 0);
    let learnt = stored_trace(layout.path()).expect("no trace stored");
    let entries = scar_image::trace::parse(&learnt);
    // sh, sha256sum, cut, perl, cowsay and the libraries they load.
    assert!(entries.len() >= 5, "{entries:?}");

    let second = cold(argv);
    assert_eq!(second.stdout, expected.stdout);
    assert_eq!(traced(&second.stderr), entries.len());
    // A file filled as a fetched file's neighbour is not asked for, so which files a run
    // asks for depends on timing: a trace only grows, the first run's entries first.
    let grown = scar_image::trace::parse(&stored_trace(layout.path()).unwrap());
    assert_eq!(grown[..entries.len()], entries[..], "{grown:?}");

    let damaged = format!(
        "{}\n0 999999999999\nnot an entry\n0 512\n",
        scar_image::trace::HEADER
    );
    let location = std::fs::read_dir(&traces)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&location, &damaged).unwrap();
    let third = cold(argv);
    assert_eq!(third.stdout, expected.stdout);
    assert_eq!(traced(&third.stderr), 1, "read up to the damage");
    let replaced = scar_image::trace::parse(&stored_trace(layout.path()).unwrap());
    let bogus = scar_image::trace::FileAt {
        layer: 0,
        offset: 999_999_999_999,
    };
    assert_eq!(replaced[0], bogus, "{replaced:?}");
    assert!(replaced.len() >= 5, "{replaced:?}");

    Command::new("chown")
        .args(["0:0"])
        .arg(&traces)
        .arg(&location)
        .status()
        .unwrap();
    // Many files across the image: a few alone could all have come with the stored trace's
    // frames (its prefetch fills them whole) before the command asks, and then this run would
    // learn nothing to store.
    let other: &[&str] = &[
        "sh",
        "-c",
        "find /usr/share/perl /usr/lib/x86_64-linux-gnu -type f -size +2k | sort | head -n 300 \
         | xargs md5sum | md5sum | cut -c1-8",
    ];
    let refused = cold(other);
    assert_eq!(refused.stdout, chroot_run(&chroot, other).stdout);
    let log = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(
        log.matches("cannot store the access trace").count(),
        1,
        "{log}"
    );
}

/// The path Lambda takes: the staged image read from S3 (the stand-in, ministack) with ranged
/// GETs through the runtime's client, from the fetcher's and the filler's threads while the
/// command runs; the run ends with the command's own status.
#[tokio::test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
async fn a_lazy_tree_read_from_s3_runs_as_under_chroot() {
    let layout = staged("oci-debian");
    let stand = common::stand::Stand::new(common::stand::MINISTACK, "us-east-1").await;
    let bucket = common::stand::unique("lazy");
    stand
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let mut stack = vec![layout.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let key = format!(
                "image/{}",
                path.strip_prefix(layout.path()).unwrap().display()
            );
            let body = aws_sdk_s3::primitives::ByteStream::from_path(&path)
                .await
                .unwrap();
            stand
                .s3
                .put_object()
                .bucket(&bucket)
                .key(key)
                .body(body)
                .send()
                .await
                .unwrap();
        }
    }
    let argv: &[&str] = &[
        "sh",
        "-c",
        "sha256sum /usr/bin/perl | cut -c1-20; /usr/games/cowsay moo; exit 3",
    ];
    let expected = chroot_run(&work().join("chroot/debian/rootfs"), argv);
    let cache = fresh_lambda_cache();
    let aws = [
        ("AWS_ENDPOINT_URL", common::stand::MINISTACK),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let ours = run_reference(
        &format!("s3://{bucket}/image/"),
        cache.path(),
        true,
        argv,
        &aws,
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&expected.stdout),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(
        (ours.status.code(), expected.status.code()),
        (Some(3), Some(3))
    );
    // The files it asked for, stored beside the image for the next cold start.
    let listed = stand
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("image/scar/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let trace = stand.object(&bucket, keys[0]).await;
    assert!(scar_image::trace::parse(&trace).len() >= 3, "{trace:?}");
}

/// An eStargz image straight from the registry, as Lambda's uid: the tree is built from the
/// layers' TOCs, the files the image's author prioritized (perl and cowsay, before the
/// prefetch landmark) are prefetched as a learnt trace would be, the rest arrive through the
/// shim's requests as ranged reads of the registry, and what the commands print is what they
/// print under chroot.
#[test]
#[ignore = "needs scripts/setup.sh: run `make test`"]
fn an_estargz_image_from_the_registry_runs_lazily_as_under_chroot() {
    let chroot = work().join("chroot/debian/rootfs");
    let commands: &[&[&str]] = &[
        &[
            "sh",
            "-c",
            "sha256sum /usr/bin/perl /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 | cut -c1-20",
        ],
        &["/usr/games/cowsay", "lazily"],
        &[
            "python3",
            "-c",
            "import json, sqlite3; print(json.dumps(sqlite3.sqlite_version_info))",
        ],
        &["sh", "-c", "convert -version | head -1 | cut -d' ' -f1-3"],
    ];
    for argv in commands {
        let cache = fresh_lambda_cache();
        let ours = run_lazily_as_under_chroot(
            &chroot,
            common::images::DEBIAN_ESTARGZ,
            cache.path(),
            argv,
            &[("AWS_LAMBDA_LOG_LEVEL", "info")],
        );
        assert_eq!(traced(&ours.stderr), 2, "the two prioritized files");
    }
}
