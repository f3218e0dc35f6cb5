//! Running commands the way Lambda does (uid 993, writable /tmp only) through
//! `bootstrap run`, and the same commands under a real `chroot`, the ground truth.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::work;

/// Lambda's `sbx_user1051`, created by setup.sh.
pub const LAMBDA_UID: u32 = 993;

pub fn workspace() -> PathBuf {
    crate::root()
}

/// The debug `bootstrap` that `make test` builds.
pub fn bootstrap_bin() -> PathBuf {
    crate::debug_bin("bootstrap")
}

/// The two shim builds that `make shim` puts in target/shim.
pub fn shim_dir() -> PathBuf {
    let dir = std::env::var_os("CRT_SHIM_DIR")
        .map_or_else(|| workspace().join("target/shim"), PathBuf::from);
    for name in ["scar-fakechroot-glibc.so", "scar-fakechroot-musl.so"] {
        assert!(
            dir.join(name).exists(),
            "{}/{name} missing: run `make shim` (make test does)",
            dir.display()
        );
    }
    dir
}

/// A bootstrap and the shims it uses.
#[derive(Debug, Clone)]
pub struct Tools {
    pub bootstrap: PathBuf,
    pub shim_dir: PathBuf,
}

/// This machine's debug build.
pub fn native_tools() -> Tools {
    Tools {
        bootstrap: bootstrap_bin(),
        shim_dir: shim_dir(),
    }
}

/// The arm64 layer's static bootstrap and shims (`make layer`), run under qemu-user through
/// binfmt_misc (setup.sh registers it).
pub fn arm64_tools() -> Tools {
    let dir = workspace().join("target/layer/arm64");
    assert!(
        dir.join("bootstrap").exists(),
        "{}/bootstrap missing: run `make layer`",
        dir.display()
    );
    Tools {
        bootstrap: dir.join("bootstrap"),
        shim_dir: dir.join("lib"),
    }
}

/// A cache owned by the Lambda uid, shared by the tests (pulls are locked per image).
pub fn lambda_cache() -> PathBuf {
    let dir = work().join("cache-993");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(LAMBDA_UID), Some(LAMBDA_UID)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A cache of its own, owned by the Lambda uid: a cold start for each run given it.
pub fn fresh_lambda_cache() -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(cache.path(), Some(LAMBDA_UID), Some(LAMBDA_UID)).unwrap();
    cache
}

/// The variables both sides of a comparison start from.
pub const BASE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("LANG", "C.UTF-8"),
];

/// `bootstrap run IMAGE [args] -- argv` as uid 993 with a clean environment.
pub fn lambda_run(image: &str, run_args: &[&str], argv: &[&str]) -> Output {
    lambda_run_with(&native_tools(), image, run_args, argv)
}

/// [`lambda_run`] with another bootstrap and shims.
pub fn lambda_run_with(tools: &Tools, image: &str, run_args: &[&str], argv: &[&str]) -> Output {
    lambda_run_setting(tools, image, run_args, &[], argv)
}

/// [`lambda_run_with`] with bootstrap's own variables `settings` (`SCAR_LAZY_LOAD`…): they
/// configure the runtime, not the container, which `--env` in `run_args` sets.
pub fn lambda_run_setting(
    tools: &Tools,
    image: &str,
    run_args: &[&str],
    settings: &[(&str, &str)],
    argv: &[&str],
) -> Output {
    lambda_command(tools, image, run_args, settings, argv)
        .output()
        .unwrap()
}

/// The command [`lambda_run_setting`] runs.
pub fn lambda_command(
    tools: &Tools,
    image: &str,
    run_args: &[&str],
    settings: &[(&str, &str)],
    argv: &[&str],
) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--reuid", "993", "--regid", "993", "--clear-groups", "--"]);
    add_bootstrap_run(&mut command, tools, image, run_args, settings, argv);
    command
}

/// [`lambda_command`] as user `uid`, who may have `nproc` processes and threads in all, as a
/// function has 1,024: `RLIMIT_NPROC` counts every process of a user, so a user of the
/// test's own keeps other tests' processes out of the count. `run_args` name a cache that
/// `uid` may write.
pub fn lambda_command_with_nproc(
    uid: u32,
    nproc: u32,
    tools: &Tools,
    image: &str,
    run_args: &[&str],
    settings: &[(&str, &str)],
    argv: &[&str],
) -> Command {
    let uid = uid.to_string();
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nproc={nproc}:{nproc}"))
        .args(["--", "setpriv", "--reuid", &uid, "--regid", &uid])
        .args(["--clear-groups", "--"]);
    add_bootstrap_run(&mut command, tools, image, run_args, settings, argv);
    command
}

/// `bootstrap run` and the rest of [`lambda_command`]'s arguments and environment, after
/// what sets the user.
fn add_bootstrap_run(
    command: &mut Command,
    tools: &Tools,
    image: &str,
    run_args: &[&str],
    settings: &[(&str, &str)],
    argv: &[&str],
) {
    command.arg(&tools.bootstrap).arg("run");
    // A test with its own cache (one that changes the image) names it in `run_args`.
    if !run_args.contains(&"--cache-dir") {
        command.arg("--cache-dir").arg(lambda_cache());
    }
    command
        .arg("--shim-dir")
        .arg(&tools.shim_dir)
        .args(
            BASE_ENV
                .iter()
                .flat_map(|(k, v)| ["--env".to_owned(), format!("{k}={v}")]),
        )
        .args(run_args)
        .arg(image)
        .arg("--")
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("AWS_LAMBDA_LOG_LEVEL", "error")
        .envs(settings.iter().copied())
        .current_dir("/tmp");
}

/// `command` (one with a cleared environment) where /dev/shm is an empty directory nobody
/// can write, as on Lambda, which has none: in a private mount namespace, as root.
pub fn without_host_dev_shm(command: &Command) -> Command {
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg(r#"mount -t tmpfs -o ro,mode=755 none /dev/shm || exit 125; exec "$@""#)
        .arg("no-dev-shm")
        .arg(command.get_program())
        .args(command.get_args())
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| value.map(|v| (key, v))),
        );
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// The same argv under `chroot --userspec=993:993 ROOT`, as root starts it, with /proc,
/// /dev and /sys bound inside in a private mount namespace, as a container runtime does.
pub fn chroot_run(root: &Path, argv: &[&str]) -> Output {
    chroot_run_binding(root, &[], argv)
}

/// [`chroot_run`] with host directories bound over existing directories of the root
/// (`(container, host)`), as `bootstrap run --mount` shows them.
pub fn chroot_run_binding(root: &Path, binds: &[(&str, &Path)], argv: &[&str]) -> Output {
    chroot_run_as(root, "993:993", binds, argv)
}

/// [`chroot_run_binding`] as `user` (`uid:gid`; `0:0` is real root, fake root's truth).
pub fn chroot_run_as(root: &Path, user: &str, binds: &[(&str, &Path)], argv: &[&str]) -> Output {
    for dir in ["proc", "dev", "sys"] {
        assert!(
            root.join(dir).is_dir(),
            "{}: no mount point {dir} (setup.sh makes them)",
            root.display()
        );
    }
    let mut script = String::from(
        r#"R=$1; shift; for d in proc dev sys; do mount --rbind /$d "$R/$d" || exit 125; done; "#,
    );
    for (container, host) in binds {
        assert!(
            root.join(container.trim_start_matches('/')).is_dir(),
            "{container}: no mount point"
        );
        script.push_str(&format!(
            "mount --bind '{}' \"$R{container}\" || exit 125; ",
            host.display()
        ));
    }
    script.push_str(&format!(r#"exec chroot --userspec={user} "$R" "$@""#));
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg(script)
        .arg("chroot-run")
        .arg(root)
        .args(argv)
        .env_clear()
        .envs(BASE_ENV.iter().copied())
        .current_dir("/")
        .output()
        .unwrap()
}

/// The pulled rootfs of an image in the Lambda cache (pulling it as uid 993 if needed).
pub fn lambda_rootfs(image: &str) -> PathBuf {
    lambda_rootfs_with(&native_tools(), image)
}

/// [`lambda_rootfs`] with another bootstrap.
pub fn lambda_rootfs_with(tools: &Tools, image: &str) -> PathBuf {
    let out = Command::new("setpriv")
        .args(["--reuid", "993", "--regid", "993", "--clear-groups", "--"])
        .arg(&tools.bootstrap)
        .args(["pull", "--cache-dir"])
        .arg(lambda_cache())
        .arg(image)
        .env_clear()
        .env("AWS_LAMBDA_LOG_LEVEL", "error")
        .current_dir("/tmp")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pull {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Two runs of one command, each with its status, stdout and stderr, for an assertion's
/// message (the ground truth first).
pub fn side_by_side(
    truth_label: &str,
    truth: &std::process::Output,
    ours_label: &str,
    ours: &std::process::Output,
) -> String {
    format!(
        "{truth_label} ({:?}):\n{}{}\n{ours_label} ({:?}):\n{}{}",
        truth.status.code(),
        text(&truth.stdout),
        text(&truth.stderr),
        ours.status.code(),
        text(&ours.stdout),
        text(&ours.stderr)
    )
}
