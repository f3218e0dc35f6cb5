//! Running a command inside a rootfs: the environment, the working directory, the shim,
//! its own process group, captured output and a deadline that ends the whole group.

mod elf_needs;
mod fetcher;
mod identity;
mod launch;
mod live_log;
mod loader;
mod locales;
mod profile;
mod supervise;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rootfs_paths::LoaderKind;
use scar_image::ContainerConfig;

pub use fetcher::Fetcher;
pub use launch::{Launch, mounts_of, mounts_spec};
pub use live_log::{LineFormat, LiveLog};
pub use locales::LocaleExport;
pub use profile::RootfsProfile;
pub use supervise::{Capture, Outcome};

/// PATH when neither the image nor the caller sets one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host paths that every container sees unchanged.
pub const PASSTHROUGH: &[&str] = &["/proc", "/dev", "/sys", "/etc/resolv.conf", "/etc/hosts"];

/// The fake-root ownership table, beside the rootfs (the shim maps it; see its
/// `fakeroot.rs`), of `protocol::FAKEROOT_TABLE_BYTES`.
pub const FAKEROOT_FILE: &str = "fakeroot-owners";

/// File names of the two shim builds.
pub const GLIBC_SHIM: &str = "scar-fakechroot-glibc.so";
/// See [`GLIBC_SHIM`].
pub const MUSL_SHIM: &str = "scar-fakechroot-musl.so";

/// Why a command could not run (its own failure is an [`Outcome`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Nothing to run: no command given and the image has no Entrypoint or Cmd.
    #[error("no command: none was given and the image has no Entrypoint or Cmd")]
    NoCommand,
    /// The program is not in the container's PATH.
    #[error("{program}: not found in the container's PATH ({path})")]
    NotFound {
        /// As given.
        program: String,
        /// The PATH searched.
        path: String,
    },
    /// The program cannot be read.
    #[error("{program}: {source}")]
    Program {
        /// Container path.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The program has no execute permission.
    #[error("{0}: permission denied (not executable)")]
    NotExecutable(String),
    /// `#!` lines nest too deep.
    #[error("{0}: too many levels of #! interpreters")]
    ScriptLoop(String),
    /// A file of a lazy tree did not arrive (the fault names it).
    #[error(
        "a file of the image could not be fetched, so the command did not see the image whole: {0}"
    )]
    Fetch(String),
    /// `/tmp` filled up while a file of a lazy tree was written (the fault names it).
    #[error("{0}")]
    FetchNoSpace(String),
    /// A script without `#!` for an image without the shell that would run it.
    #[error(
        "the script has no #! line, so it would run with /bin/sh, which the image does not have: begin it with #! and an interpreter the image has (#!/usr/bin/python3), or send cmd_args"
    )]
    NoShell,
    /// A statically linked program and `SCAR_STATIC_BINARIES=refuse`.
    #[error(
        "{0}: statically linked, so it cannot be confined to the image; refused because SCAR_STATIC_BINARIES=refuse"
    )]
    Static(String),
    /// PT_INTERP names a loader the image lacks.
    #[error("{program}: its loader {loader} is not in the image")]
    NoLoader {
        /// Container path of the program.
        program: String,
        /// Its PT_INTERP.
        loader: String,
    },
    /// The shim build for that C library was not found.
    #[error(
        "no {0:?} build of the fakechroot shim: set SCAR_SHIM_DIR to the directory holding {GLIBC_SHIM} and {MUSL_SHIM}"
    )]
    NoShim(LoaderKind),
    /// The fake-root ownership table could not be made.
    #[error("cannot prepare fake root ({path}): {source}")]
    Fakeroot {
        /// Host path of the table.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The working directory is not a directory in the container, and cannot be made.
    #[error("working directory {0}: not a directory in the image, and cannot be made one")]
    Workdir(String),
    /// A path longer than PATH_MAX.
    #[error("path too long: {0}")]
    PathTooLong(String),
    /// The process could not be started or watched.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// Container path.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<&scar_image::lazy::LazyFault> for ExecError {
    fn from(fault: &scar_image::lazy::LazyFault) -> Self {
        if fault.is_no_space() {
            Self::FetchNoSpace(fault.to_string())
        } else {
            Self::Fetch(fault.to_string())
        }
    }
}

/// What happens to statically linked programs (`SCAR_STATIC_BINARIES`): the rule the shim
/// applies too.
pub use rootfs_paths::protocol::StaticPolicy;

/// Where the shim builds are.
#[derive(Debug, Clone, Default)]
pub struct Shims {
    /// The glibc build.
    pub glibc: Option<PathBuf>,
    /// The musl build.
    pub musl: Option<PathBuf>,
}

impl Shims {
    /// Looks in `dir` if given, else beside the running executable, in its `lib/`, and in
    /// `/opt/lib` (where a Lambda layer puts libraries).
    pub fn locate(dir: Option<&Path>) -> Self {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf));
        let candidates: Vec<PathBuf> = match dir {
            Some(d) => vec![d.to_path_buf()],
            None => exe_dir
                .iter()
                .flat_map(|d| [d.clone(), d.join("lib"), d.join("../shim")])
                .chain([PathBuf::from("/opt/lib")])
                .collect(),
        };
        let find = |name: &str| {
            candidates
                .iter()
                .map(|d| d.join(name))
                .find(|p| p.is_file())
                .and_then(|p| p.canonicalize().ok())
        };
        Self {
            glibc: find(GLIBC_SHIM),
            musl: find(MUSL_SHIM),
        }
    }
}

/// A rootfs and what is needed to run programs from it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Host path of the rootfs.
    pub rootfs: PathBuf,
    /// Its scanned facts.
    pub profile: RootfsProfile,
    /// The shim builds.
    pub shims: Shims,
    /// What to do with static programs.
    pub static_policy: StaticPolicy,
    /// Whether programs see themselves as root (`SCAR_FAKEROOT`): the ownership they set
    /// is kept beside the rootfs, as part of the image's state, in [`FAKEROOT_FILE`].
    pub fakeroot: bool,
    /// Where exec may write its own files (the passwd/group entries of the running user):
    /// never the cached image's directory, which other environments may share.
    pub scratch: PathBuf,
    /// The fetcher, while the rootfs is a lazy tree still filling.
    pub fetcher: Option<std::sync::Arc<Fetcher>>,
    /// The image's locale archive, written out as `LOCPATH` directories in `scratch`.
    pub locales: Option<std::sync::Arc<LocaleExport>>,
}

impl Sandbox {
    /// The container's /dev/shm: the image's own directory, as its /tmp is. Lambda has no
    /// /dev/shm, and named semaphores and shared memory (Python's `multiprocessing`) need
    /// one; the shim's `shm_open` and `sem_open` make their files here through the mount.
    pub fn shared_memory_dir(&self) -> PathBuf {
        self.rootfs
            .join(rootfs_paths::shm::SHM_DIR.trim_start_matches('/'))
    }

    /// Whether the image has `/bin/sh`, which runs scripts without `#!` (a distroless image
    /// has none). Symlinks in the tree resolve inside it, as the unpacker stores them.
    pub fn has_shell(&self) -> bool {
        self.rootfs.join("bin/sh").exists()
    }

    /// `HOME` for the image's commands when its Env sets none: the home of the image's
    /// `User` in its /etc/passwd, as a container runtime sets it (`identity.rs`).
    pub fn home(&self, config: &ContainerConfig) -> String {
        identity::home_of(&self.rootfs, config.user.as_deref())
    }

    /// What each invocation starts without: what the last one left in /tmp and /dev/shm.
    pub fn per_invocation_dirs(&self) -> [PathBuf; 2] {
        [self.rootfs.join("tmp"), self.shared_memory_dir()]
    }
}

/// The file at `path` when it holds at most `max` bytes, `Ok(None)` when it holds more:
/// files an image or a command wrote are read this way, so that a 4 GiB sparse file costs
/// `max` bytes of memory, not its size.
pub(crate) fn read_capped(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    read_capped_from(std::fs::File::open(path)?, max)
}

/// [`read_capped`] of a file already open.
pub(crate) fn read_capped_from(
    file: impl std::io::Read,
    max: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// A name for the image whose tree is `rootfs`, for the files exec writes about it in
/// `scratch`: the rootfs path names the image.
fn image_key(rootfs: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    rootfs.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The fetcher's socket, in the image's cache directory (short enough for `sun_path` under
/// any cache directory of a sane length).
const FETCH_SOCKET: &str = "fetch.sock";

impl Sandbox {
    /// The sandbox of a pulled image, run as `exec` says, writing its own files under
    /// `cache_dir`: the rootfs scanned (a lazy tree's files filled as the scan reads them)
    /// and, for a lazy tree, its fetcher started. Blocks.
    pub fn for_pulled(
        pulled: &scar_image::Pulled,
        exec: &crate::config::ExecOptions,
        cache_dir: &Path,
    ) -> std::io::Result<Self> {
        let rootfs = &pulled.image.rootfs;
        if let Some(tree) = &pulled.lazy {
            let mut first = RootfsProfile::files_read_first(rootfs);
            first.push(rootfs.join(locales::ARCHIVE));
            // Best effort, as below: a file that fails to arrive is asked for again there.
            let _ = tree.fill_paths(&first);
        }
        let mut profile = match &pulled.lazy {
            Some(tree) => RootfsProfile::scan_with(rootfs, &|file| {
                // A file that fails to arrive reads as missing here; the command's own
                // reads of it fail by name.
                let _ = tree.fill_path(file);
            }),
            None => RootfsProfile::scan(rootfs),
        };
        let shims = Shims::locate(exec.shim_dir.as_deref());
        let fetcher = match &pulled.lazy {
            Some(tree) => {
                let preloads: Vec<&Path> = [&shims.glibc, &shims.musl]
                    .into_iter()
                    .flatten()
                    .map(PathBuf::as_path)
                    .collect();
                Some(Fetcher::start(
                    std::sync::Arc::clone(tree),
                    profile.library_dirs.clone(),
                    pulled.image.dir.join(FETCH_SOCKET),
                    &preloads,
                )?)
            }
            None => None,
        };
        let scratch = cache_dir.join("scratch");
        if let Some(tree) = &pulled.lazy {
            // Already there unless the fetch above failed.
            let _ = tree.fill_path(&rootfs.join(locales::ARCHIVE));
        }
        let locales = export_locales(rootfs, &scratch, &mut profile);
        Ok(Self {
            rootfs: rootfs.clone(),
            profile,
            shims,
            static_policy: exec.static_policy,
            fakeroot: exec.fakeroot,
            scratch,
            fetcher,
            locales,
        })
    }
}

/// The image's locale archive, if it has one, opened and (when small) written out at once,
/// with `LOCPATH` naming its directory first. A damaged archive is named in the log and
/// left out: the image's locales then fail as they would with no archive.
fn export_locales(
    rootfs: &Path,
    scratch: &Path,
    profile: &mut RootfsProfile,
) -> Option<std::sync::Arc<LocaleExport>> {
    let archive = rootfs.join(locales::ARCHIVE);
    if !archive.is_file() {
        return None;
    }
    let into = scratch.join("locales").join(image_key(rootfs));
    let export = LocaleExport::open(&archive, into)
        .and_then(|export| export.export_for(&[]).map(|()| export));
    match export {
        Ok(export) => {
            let mut locpath = export.dir().as_os_str().to_owned();
            match profile
                .data_env
                .iter_mut()
                .find(|(key, _)| *key == "LOCPATH")
            {
                Some((_, dirs)) => {
                    locpath.push(":");
                    locpath.push(&*dirs);
                    *dirs = PathBuf::from(locpath);
                }
                None => profile.data_env.push(("LOCPATH", PathBuf::from(locpath))),
            }
            Some(std::sync::Arc::new(export))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the image's locale archive is left out");
            None
        }
    }
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// argv, container paths.
    pub argv: Vec<String>,
    /// The container environment, in order; later entries win.
    pub env: Vec<(String, String)>,
    /// Container path of the working directory.
    pub workdir: String,
    /// `(container path, host path)` pairs over the rootfs; equal sides pass through.
    pub mounts: Vec<(String, PathBuf)>,
    /// Where stdout and stderr go.
    pub capture: Capture,
    /// With [`Capture::Combined`]: the output's lines, live, in the runtime's log too.
    pub live_log: Option<LiveLog>,
    /// When the whole process group is ended.
    pub deadline: Option<tokio::time::Instant>,
    /// What the whole group is sent at the deadline, before SIGKILL.
    pub stop_signal: nix::sys::signal::Signal,
    /// Between the stop signal and SIGKILL at the deadline.
    pub grace: Duration,
}

/// The image's `StopSignal` (a name with or without `SIG`, in any case, or a number), as
/// `docker stop` reads it; SIGTERM when it is unset or names no signal (said in the log).
pub fn stop_signal(config: &ContainerConfig) -> nix::sys::signal::Signal {
    use nix::sys::signal::Signal;
    let Some(given) = config.stop_signal.as_deref().map(str::trim) else {
        return Signal::SIGTERM;
    };
    let upper = given.to_ascii_uppercase();
    let parsed = match upper.parse::<i32>() {
        Ok(number) => Signal::try_from(number).ok(),
        Err(_) if upper.starts_with("SIG") => upper.parse().ok(),
        Err(_) => format!("SIG{upper}").parse().ok(),
    };
    parsed.unwrap_or_else(|| {
        tracing::warn!(
            stop_signal = given,
            "the image's StopSignal names no signal: SIGTERM is sent"
        );
        Signal::SIGTERM
    })
}

/// The image's Entrypoint followed by its Cmd, unless a command was given (it replaces Cmd
/// only, as `docker run IMAGE CMD` does).
pub fn command_line(config: &ContainerConfig, given: &[String]) -> Vec<String> {
    let mut argv = config.entrypoint.clone().unwrap_or_default();
    if given.is_empty() {
        argv.extend(config.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(given.iter().cloned());
    }
    argv
}

/// Host paths that exist here and are seen unchanged in every container.
pub fn passthrough_mounts() -> Vec<(String, PathBuf)> {
    PASSTHROUGH
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| ((*p).to_owned(), PathBuf::from(p)))
        .collect()
}

/// The container environment: the image's `KEY=value` list, `PATH`, `HOME` (`home`) and
/// libuv's switch where it sets none, then `overrides`.
pub fn container_env(
    image_env: &[String],
    home: &str,
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |key: &str, value: &str, env: &mut Vec<(String, String)>| {
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.to_owned()));
    };
    for entry in image_env {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        set(key, value, &mut env);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        set("PATH", DEFAULT_PATH, &mut env);
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        set("HOME", home, &mut env);
    }
    // libuv's own switch: its io_uring file operations would pass the shim by (the shim
    // also refuses io_uring_setup; see docs/syscall-gate.md). The image or caller may set it.
    if !env.iter().any(|(k, _)| k == "UV_USE_IO_URING") {
        set("UV_USE_IO_URING", "0", &mut env);
    }
    for (key, value) in overrides {
        set(key, value, &mut env);
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_capped_reads_up_to_its_bound_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_capped(&file, 5).unwrap(), Some(b"12345".to_vec()));
        assert_eq!(read_capped(&file, 4).unwrap(), None);
        std::fs::File::create(&file)
            .unwrap()
            .set_len(4 << 30)
            .unwrap();
        assert_eq!(
            read_capped(&file, 1 << 20).unwrap(),
            None,
            "a sparse 4 GiB file"
        );
        assert!(read_capped(&dir.path().join("missing"), 1).is_err());
    }

    #[test]
    fn the_stop_signal_is_read_as_docker_reads_it() {
        use nix::sys::signal::Signal;
        let with = |given: Option<&str>| {
            stop_signal(&ContainerConfig {
                stop_signal: given.map(str::to_owned),
                ..ContainerConfig::default()
            })
        };
        assert_eq!(with(None), Signal::SIGTERM);
        for given in ["SIGINT", "INT", "sigint", "int", "2", " SIGINT "] {
            assert_eq!(with(Some(given)), Signal::SIGINT, "{given}");
        }
        assert_eq!(with(Some("SIGQUIT")), Signal::SIGQUIT);
        assert_eq!(with(Some("9")), Signal::SIGKILL);
        for nonsense in ["", "SIGNOPE", "NOPE", "99", "-1", "SIGRTMIN+3"] {
            assert_eq!(with(Some(nonsense)), Signal::SIGTERM, "{nonsense}");
        }
    }

    #[test]
    fn container_env_layers_image_defaults_and_overrides() {
        let env = container_env(
            &["PATH=/bin".into(), "LANG=C.UTF-8".into(), "EMPTY=".into()],
            "/home/app",
            &[("LANG".into(), "C".into()), ("X".into(), "1".into())],
        );
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("UV_USE_IO_URING"), Some("0"));
        assert_eq!(get("LANG"), Some("C"), "the caller wins");
        assert_eq!(get("HOME"), Some("/home/app"), "the image user's home");
        let own = container_env(&["HOME=/srv".into()], "/home/app", &[]);
        assert!(
            own.contains(&("HOME".into(), "/srv".into())),
            "the image's own wins"
        );
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(env.iter().filter(|(k, _)| k == "LANG").count(), 1);
        assert_eq!(env.last().map(|(k, _)| k.as_str()), Some("X"));
    }

    #[test]
    fn a_given_command_replaces_cmd_but_keeps_the_entrypoint() {
        let config = ContainerConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into()]),
            ..ContainerConfig::default()
        };
        assert_eq!(command_line(&config, &[]), ["/entry", "default"]);
        assert_eq!(command_line(&config, &["x".into()]), ["/entry", "x"]);
        assert!(command_line(&ContainerConfig::default(), &[]).is_empty());
    }

    #[test]
    fn mounts_spec_marks_maps_only() {
        let spec = mounts_spec(&[
            ("/proc".into(), "/proc".into()),
            ("/tmp".into(), "/tmp/run-1".into()),
        ]);
        assert_eq!(spec, "/proc:/tmp=/tmp/run-1");
    }
}
