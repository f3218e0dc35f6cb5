//! Other implementations' tar test fixtures (`../shared/testdata/hostile-tars`), each packed as
//! a layer and pulled by the real `bootstrap pull`: it is extracted as GNU tar extracts it, or
//! refused with a named error; either way nothing outside the cache changes, nothing panics,
//! nothing hangs, and no pull's memory reaches 64 MB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Node, tree};

fn corpus() -> PathBuf {
    let dir = common::root().join("../shared/testdata/hostile-tars");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

fn archives(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            archives(&path, out);
        } else if !matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("LICENSE" | "COPYING" | "ORIGIN.md") | None
        ) && !path.to_string_lossy().ends_with("LICENSE-MIT")
        {
            out.push(path);
        }
    }
}

/// The archive as a plain tar, and the layer blob with its media type.
fn unwrap(path: &Path) -> (Vec<u8>, Vec<u8>, &'static str) {
    let raw = fs::read(path).unwrap();
    match raw.as_slice() {
        [0x1f, 0x8b, ..] => {
            let mut plain = Vec::new();
            let _ = flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut plain);
            (plain, raw, "application/vnd.oci.image.layer.v1.tar+gzip")
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            let plain = zstd::stream::decode_all(raw.as_slice()).unwrap_or_default();
            (plain, raw, "application/vnd.oci.image.layer.v1.tar+zstd")
        }
        [b'B', b'Z', b'h', ..] => {
            let out = Command::new("bzip2").arg("-dc").arg(path).output().unwrap();
            (
                out.stdout.clone(),
                out.stdout,
                "application/vnd.oci.image.layer.v1.tar",
            )
        }
        _ => (raw.clone(), raw, "application/vnd.oci.image.layer.v1.tar"),
    }
}

/// Paths, kinds, sizes and times below `dir`, to prove nothing there changed.
fn snapshot(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        out.push(format!(
            "{} {} {} {}",
            path.display(),
            meta.mode(),
            meta.len(),
            meta.mtime()
        ));
    }
    out.sort();
    out
}

/// What an extraction produced, comparable across extractors: regular files by content,
/// directories, symlinks by the image's target; devices and fifos are left out (the unpacker
/// skips them by design).
fn comparable(tree: BTreeMap<String, Node>) -> BTreeMap<String, String> {
    tree.into_iter()
        .filter_map(|(path, node)| match node {
            Node::File { sha256 } => Some((path, format!("file {sha256}"))),
            Node::Dir => Some((path, "dir".into())),
            Node::Symlink { target } => Some((path, format!("symlink {target}"))),
            Node::Special => None,
        })
        .collect()
}

#[test]
#[ignore = "needs GNU tar and bzip2 (make test)"]
fn third_party_archives_extract_as_gnu_tar_or_are_refused_by_name() {
    let mut all = Vec::new();
    archives(&corpus(), &mut all);
    all.sort();
    assert!(all.len() > 100, "{} archives", all.len());
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for archive in &all {
        let name = archive
            .strip_prefix(corpus())
            .unwrap()
            .display()
            .to_string();
        let (plain, blob, media_type) = unwrap(archive);
        let sandbox = tempfile::tempdir().unwrap();
        let outside = sandbox.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("canary"), b"canary").unwrap();
        let before = snapshot(&outside);
        let image = sandbox.path().join("image");
        common::write_oci_layout(
            &image,
            &[common::LayoutLayer {
                blob: &blob,
                media_type,
                declared_size: None,
            }],
        );
        let cache = sandbox.path().join("c");
        let reference = format!("oci:{}", image.display());
        // The real binary, in a process of its own: its peak memory is measured below.
        let bootstrap = common::lambda::bootstrap_bin();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let out = Command::new(bootstrap)
                .args(["pull", "--cache-dir"])
                .arg(&cache)
                .arg(&reference)
                .env_clear()
                .env("AWS_LAMBDA_LOG_LEVEL", "error")
                .output();
            let _ = tx.send(match out {
                Ok(out) if out.status.success() => Ok(PathBuf::from(
                    String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                )),
                Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
                Err(e) => Err(format!("cannot run bootstrap: {e}")),
            });
        });
        let ours = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("{name}: the pull hangs"));
        assert_eq!(
            snapshot(&outside),
            before,
            "{name}: changed something outside"
        );

        let gnu_dir = sandbox.path().join("gnu");
        fs::create_dir(&gnu_dir).unwrap();
        let tar_file = sandbox.path().join("plain.tar");
        fs::File::create(&tar_file)
            .unwrap()
            .write_all(&plain)
            .unwrap();
        let gnu = Command::new("tar")
            .args([
                "-x",
                "--no-same-owner",
                "--no-same-permissions",
                "--warning=none",
                "-f",
            ])
            .arg(&tar_file)
            .arg("-C")
            .arg(&gnu_dir)
            .output()
            .unwrap();
        match &ours {
            Ok(rootfs) => {
                let theirs = comparable(tree(&gnu_dir, None));
                let mine = comparable(tree(rootfs, Some(rootfs)));
                if !gnu.status.success() {
                    wrong.push(format!(
                        "{name}: extracted, but GNU tar fails on it ({})",
                        String::from_utf8_lossy(&gnu.stderr)
                            .lines()
                            .next()
                            .unwrap_or("")
                    ));
                } else if mine != theirs {
                    let only_mine: Vec<_> = mine
                        .iter()
                        .filter(|(k, v)| theirs.get(*k) != Some(v))
                        .take(3)
                        .collect();
                    let only_theirs: Vec<_> = theirs
                        .iter()
                        .filter(|(k, v)| mine.get(*k) != Some(v))
                        .take(3)
                        .collect();
                    wrong.push(format!(
                        "{name}: differs from GNU tar: ours {only_mine:?}, GNU tar {only_theirs:?}"
                    ));
                }
                report.push(format!("{name}: extracted as GNU tar does"));
            }
            Err(message) => {
                assert!(!message.contains("Nonexhaustive"), "{name}: {message}");
                report.push(format!("{name}: refused: {message}"));
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        wrong.is_empty(),
        "{} archives silently wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // The largest child this test waited for: a `bootstrap pull` (GNU tar's are smaller).
    let peak = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .unwrap()
        .max_rss();
    println!("peak RSS of the pulls: {} MB", peak / 1024);
    assert!(
        peak < 64 * 1024,
        "a pull peaked at {} MB (at most 64)",
        peak / 1024
    );
}
