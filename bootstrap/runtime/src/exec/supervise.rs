//! Starting the planned command in its own process group and ending that group: when the
//! program exits (nothing it left behind survives it) or at the deadline (the image's stop
//! signal, SIGTERM unless it names another, a grace period, SIGKILL).

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rootfs_paths::{Layout, protocol};

use super::launch::{host_path, mounts_of, mounts_spec};
use super::live_log::LiveLog;
use super::{ExecError, FAKEROOT_FILE, RunSpec, Sandbox};

/// Where a command's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// This process's own streams (`bootstrap run`).
    Inherit,
    /// One pipe for both, so they interleave as on a terminal; the first `limit` bytes
    /// are kept, the rest counted and dropped.
    Combined {
        /// Bytes kept.
        limit: usize,
    },
}

/// How a command ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The exit status, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Ended by the deadline.
    pub timed_out: bool,
    /// Captured output (empty with [`Capture::Inherit`]).
    pub output: Vec<u8>,
    /// Bytes produced beyond the capture limit.
    pub dropped: u64,
    /// Wall time from spawn to exit.
    pub duration: Duration,
}

impl Outcome {
    /// A shell-style status: the exit code, or 128 + signal.
    pub fn status(&self) -> i32 {
        self.exit_code.or(self.signal.map(|s| 128 + s)).unwrap_or(1)
    }
}

/// How long to wait for output still held open by processes outside the group.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Room left after a full capture for the markers the report appends (truncation, timeout).
const MARKER_ROOM: usize = 512;

struct Captured {
    kept: Vec<u8>,
    dropped: u64,
}

fn read_capped(
    mut reader: std::io::PipeReader,
    limit: usize,
    into: Arc<Mutex<Captured>>,
    log: Option<LiveLog>,
) {
    let mut chunk = [0u8; 65536];
    let mut lines = log.as_ref().map(LiveLog::lines);
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(lines) = lines.as_mut() {
                    lines.push(&chunk[..n]);
                }
                let Ok(mut captured) = into.lock() else { break };
                if captured.kept.capacity() == 0 {
                    // The whole capture at once, plus room for the report's markers: growing
                    // by doubling would copy it (and touch twice its pages) on the way.
                    captured
                        .kept
                        .reserve_exact(limit.saturating_add(MARKER_ROOM));
                }
                let room = limit.saturating_sub(captured.kept.len()).min(n);
                captured.kept.extend_from_slice(&chunk[..room]);
                captured.dropped += (n - room) as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if let Some(lines) = lines {
        lines.finish();
    }
}

impl Sandbox {
    /// The fake-root ownership table beside the rootfs, made at its full (sparse) size the
    /// first time: the shim maps it and never grows it.
    fn fakeroot_table(&self) -> Result<PathBuf, ExecError> {
        let path = self.rootfs.with_file_name(FAKEROOT_FILE);
        let fail = |source| ExecError::Fakeroot {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(fail)?;
        let size = protocol::FAKEROOT_TABLE_BYTES as u64;
        if file.metadata().map_err(fail)?.len() != size {
            file.set_len(size).map_err(fail)?;
        }
        Ok(path)
    }

    /// [`Sandbox::shared_memory_dir`], made world-writable and sticky as a real /dev/shm
    /// is; `None` (the host's /dev/shm stays in view) if it cannot be made.
    fn prepare_shared_memory_dir(&self) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.shared_memory_dir();
        let made = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)));
        match made {
            Ok(()) => Some(dir),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "no /dev/shm of the image's own");
                None
            }
        }
    }

    /// Runs `spec` to completion or to its deadline.
    pub async fn run(&self, spec: &RunSpec) -> Result<Outcome, ExecError> {
        // Under fake root the command runs as root, whom every image lists, and package
        // scripts must change the image's own account files.
        let mut all_mounts = if self.fakeroot {
            Vec::new()
        } else {
            super::identity::identity_mounts(&self.rootfs, &self.scratch)
        };
        if let Some(shm) = self.prepare_shared_memory_dir() {
            all_mounts.push((rootfs_paths::shm::SHM_DIR.to_owned(), shm));
        }
        all_mounts.extend(spec.mounts.iter().cloned());
        let spec = &RunSpec {
            mounts: all_mounts,
            ..spec.clone()
        };
        let mounts = mounts_of(&spec.mounts);
        let root = self.rootfs.as_os_str();
        let layout = Layout {
            root: std::os::unix::ffi::OsStrExt::as_bytes(root),
            mounts: &mounts,
        };
        // As a container runtime does: a directory mounted over the image has a mount point
        // in it, so `ls /` shows /proc and /dev even in images that ship without them.
        for (container, host) in &spec.mounts {
            if host.is_dir() {
                let _ =
                    std::fs::create_dir_all(self.rootfs.join(container.trim_start_matches('/')));
            }
        }
        if let Some(fetcher) = &self.fetcher {
            // A fault before this run was another command's.
            let _ = fetcher.take_fault();
        }
        if let Some(locales) = &self.locales
            && let Err(e) = locales.export_for(&spec.env)
        {
            tracing::warn!(error = %e, "the locales the environment names are left out");
        }
        let workdir = host_path(&layout, &spec.workdir)?;
        // As Docker does: a working directory that no layer made (the config's WorkingDir
        // or `--workdir`) is made. The translated path resolved the image's symlinks, so
        // what is made is under the rootfs or a mount.
        if !workdir.is_dir() && std::fs::create_dir_all(&workdir).is_err() {
            return Err(ExecError::Workdir(spec.workdir.clone()));
        }
        let plan = || self.launch(&layout, &spec.argv, &spec.workdir, &spec.env);
        // On a lazy tree, planning fetches the program, which blocks on the runtime's S3
        // client: off the async worker (the runtime is multi-threaded wherever a tree is lazy).
        let launch = match self.fetcher {
            Some(_) => tokio::task::block_in_place(plan)?,
            None => plan()?,
        };
        tracing::debug!(program = %launch.container_program, loader = %launch.program.display(), "exec");

        let mut command = std::process::Command::new(&launch.program);
        command
            .args(&launch.args)
            .env_clear()
            .current_dir(&workdir)
            .process_group(0);
        for (key, value) in &self.profile.data_env {
            if !spec.env.iter().any(|(k, _)| k == key) {
                command.env(key, value);
            }
        }
        command.envs(spec.env.iter().map(|(k, v)| (k, v)));
        command
            .env(protocol::ROOT.name, &self.rootfs)
            .env(protocol::MOUNTS.name, mounts_spec(&spec.mounts))
            .env(protocol::LIBRARY_PATH.name, self.profile.library_path())
            .env(protocol::STATIC.name, self.static_policy.as_str());
        if let Some((major, minor)) = self.profile.glibc {
            command.env(protocol::GLIBC.name, format!("{major}.{minor}"));
        }
        if self.fakeroot {
            command.env(protocol::FAKEROOT.name, self.fakeroot_table()?);
        }
        if let Some(socket) = self.fetcher.as_ref().and_then(|f| f.socket()) {
            command.env(protocol::FETCH.name, socket);
        }
        if let Some(shim) = &self.shims.glibc {
            command.env(protocol::GLIBC_SHIM.name, shim);
        }
        if let Some(shim) = &self.shims.musl {
            command.env(protocol::MUSL_SHIM.name, shim);
        }
        command.envs(launch.env.iter().map(|(k, v)| (k, v)));

        let captured = Arc::new(Mutex::new(Captured {
            kept: Vec::new(),
            dropped: 0,
        }));
        let mut reader_thread = None;
        let spawn_error = |source| ExecError::Spawn {
            program: launch.container_program.clone(),
            source,
        };
        if let Capture::Combined { limit } = spec.capture {
            let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
            command
                .stdin(Stdio::null())
                .stdout(writer.try_clone().map_err(spawn_error)?)
                .stderr(writer);
            let into = Arc::clone(&captured);
            let log = spec.live_log.clone();
            reader_thread = Some(
                std::thread::Builder::new()
                    .name("scar-output".into())
                    .spawn(move || read_capped(reader, limit, into, log))
                    .map_err(spawn_error)?,
            );
        }
        let started = Instant::now();
        let mut child = tokio::process::Command::from(command)
            .spawn()
            .map_err(spawn_error)?;
        // The Command (and with it our copies of the pipe's write end) is gone: EOF comes
        // when the last process holding the pipe exits.
        let group = child.id().map(|id| Pid::from_raw(id as i32));

        let mut timed_out = false;
        let status = match spec.deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline, wait_forwarding_signals(&mut child, group))
                    .await
                {
                    Ok(status) => status,
                    Err(_) => {
                        timed_out = true;
                        if let Some(group) = group {
                            let _ = killpg(group, spec.stop_signal);
                        }
                        match tokio::time::timeout(spec.grace, child.wait()).await {
                            Ok(status) => status,
                            Err(_) => {
                                if let Some(group) = group {
                                    let _ = killpg(group, Signal::SIGKILL);
                                }
                                child.wait().await
                            }
                        }
                    }
                }
            }
            None => wait_forwarding_signals(&mut child, group).await,
        }
        .map_err(spawn_error)?;
        let duration = started.elapsed();
        if let Some(group) = group {
            // Like a container's init exiting: whatever the command left running ends too.
            let _ = killpg(group, Signal::SIGKILL);
        }
        if let Some(thread) = reader_thread {
            let waited = Instant::now();
            while !thread.is_finished() && waited.elapsed() < DRAIN_WAIT {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if spec.live_log.is_some() {
            // The response waits for the log: a user reading CloudWatch sees every line
            // before the invocation's END.
            let _ = tokio::task::spawn_blocking(|| LiveLog::flush(DRAIN_WAIT)).await;
        }
        let (output, dropped) = match captured.lock() {
            Ok(mut c) => (std::mem::take(&mut c.kept), c.dropped),
            Err(_) => (Vec::new(), 0),
        };
        if let Some(fetcher) = self.fetcher.as_ref().filter(|f| f.has_unsaved_trace()) {
            // Before the response: a sandbox may be frozen right after it, and never thawed.
            let fetcher = Arc::clone(fetcher);
            let _ = tokio::task::spawn_blocking(move || fetcher.save_trace()).await;
        }
        // A program whose file failed to arrive saw an I/O error the image would not give:
        // its result is not the image's, and the report says which file.
        if let Some(fault) = self.fetcher.as_ref().and_then(|f| f.take_fault()) {
            return Err(fault);
        }
        Ok(Outcome {
            exit_code: status.code(),
            signal: status.signal(),
            timed_out,
            output,
            dropped,
            duration,
        })
    }
}

/// Waits for the child; SIGINT and SIGTERM sent to us go to its whole group, which a
/// terminal's Ctrl-C or Lambda's shutdown would otherwise miss (it has its own group).
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
    group: Option<Pid>,
) -> std::io::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return child.wait().await;
    };
    loop {
        let forwarded = tokio::select! {
            status = child.wait() => return status,
            _ = interrupt.recv() => Signal::SIGINT,
            _ = terminate.recv() => Signal::SIGTERM,
        };
        if let Some(group) = group {
            let _ = killpg(group, forwarded);
        }
    }
}
