//! The loader's command line for the container's first exec, the way the shim builds it for
//! every later one (`layers/fakechroot/src/exec.rs`, `command`): a dynamic program runs as
//! `LOADER --library-path … [--inhibit-cache] --preload SHIM [--argv0 …] PROGRAM ARGS`, and
//! a first command that is the loader itself (`ld.so [OPTIONS] PROGRAM`, as launchers of
//! glibc programs on musl images write their CMD) runs the same way, with the path options
//! it was given translated into the rootfs and its other options kept. A loader run with no
//! program (`--help`, `--version`) answers itself.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use rootfs_paths::protocol::{self, LoaderOption};
use rootfs_paths::{Layout, LoaderKind};

use super::launch::{Launch, from_workdir, host_path, read_any_head};
use super::{ExecError, Sandbox};

/// One exec through the image's loader, whichever way it was asked for.
pub(super) struct LoaderRun {
    pub(super) kind: LoaderKind,
    /// The loader's host path.
    pub(super) loader: PathBuf,
    /// `--library-path`'s value: host directories.
    pub(super) library_path: OsString,
    /// Preloads of the caller's own, after the shim's (`--preload`'s list, translated).
    pub(super) preload: Option<OsString>,
    /// Trace mode (`--list`, `ldd`): the loader runs no code, so no shim is loaded.
    pub(super) trace: bool,
    /// The caller's other loader options, before the program.
    pub(super) options: Vec<OsString>,
    pub(super) argv0: OsString,
    /// The program's host path, as the loader is handed it.
    pub(super) program: PathBuf,
    /// The program's arguments after argv[0].
    pub(super) args: Vec<OsString>,
    /// What `/proc/self/exe` answers, and the process's name unless the kernel's is right.
    pub(super) exe: OsString,
    pub(super) comm: Option<OsString>,
    /// The program's container path, for messages.
    pub(super) container_program: String,
}

/// What a list a loader reads holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entries {
    /// Directories, `:`-separated; those that are not absolute are left out.
    Directories,
    /// Objects, `:`- or space-separated; a name without a slash is kept for the loader to
    /// search.
    Objects,
}

/// `list` with each absolute entry translated, `:`-joined.
fn translate_list(
    layout: &Layout<'_>,
    list: &OsStr,
    entries: Entries,
) -> Result<OsString, ExecError> {
    let separator = |b: &u8| *b == b':' || (entries == Entries::Objects && *b == b' ');
    let mut out: Vec<OsString> = Vec::new();
    for entry in list.as_bytes().split(separator).filter(|e| !e.is_empty()) {
        if entry.first() == Some(&b'/') {
            out.push(host_path(layout, entry)?.into_os_string());
        } else if entries == Entries::Objects {
            out.push(OsString::from_vec(entry.to_vec()));
        }
    }
    Ok(out.join(OsStr::new(":")))
}

impl Sandbox {
    /// The launch of `run`: the loader with the search path, the shim and the caller's
    /// options, then the program; what the loader cannot take as an option (an older glibc)
    /// goes in the environment.
    pub(super) fn loader_launch(&self, run: LoaderRun) -> Result<Launch, ExecError> {
        let shim = match run.kind {
            LoaderKind::Glibc => self.shims.glibc.as_ref(),
            LoaderKind::Musl => self.shims.musl.as_ref(),
        };
        let shim = match (shim, run.trace) {
            (_, true) => None,
            (Some(shim), false) => Some(shim),
            (None, false) => return Err(ExecError::NoShim(run.kind)),
        };
        let glibc = self.profile.glibc.unwrap_or((0, 0));
        let has_preload = protocol::loader_has_preload(run.kind, glibc);
        let has_argv0 = protocol::loader_has_argv0(run.kind, glibc);
        let mut args: Vec<OsString> = vec!["--library-path".into(), run.library_path];
        if run.kind == LoaderKind::Glibc {
            // Without it the loader reads the host's /etc/ld.so.cache and may pick host
            // libraries.
            args.push("--inhibit-cache".into());
        }
        let preloads = match (shim, run.preload) {
            (Some(shim), None) => Some(shim.as_os_str().to_owned()),
            (Some(shim), Some(theirs)) => Some([shim.as_os_str(), &theirs].join(OsStr::new(":"))),
            (None, theirs) => theirs,
        };
        let mut env = vec![(protocol::EXE.name.to_owned(), run.exe)];
        if let Some(comm) = run.comm {
            env.push((protocol::COMM.name.to_owned(), comm));
        }
        match (preloads, has_preload) {
            (Some(list), true) => args.extend(["--preload".into(), list]),
            (Some(list), false) => env.push(("LD_PRELOAD".to_owned(), list)),
            (None, _) => {}
        }
        if has_argv0 {
            args.extend(["--argv0".into(), run.argv0]);
        } else {
            env.push((protocol::ARGV0.name.to_owned(), run.argv0));
        }
        args.extend(run.options);
        args.push(run.program.into_os_string());
        args.extend(run.args);
        Ok(Launch {
            program: run.loader,
            args,
            env,
            container_program: run.container_program,
        })
    }

    /// The loader run as the first command (`ld.so [OPTIONS] PROGRAM ARGS`, `args[0]` the
    /// loader as given): its options read as the shim reads them, the program found from
    /// `workdir`; `None` when there is no program, and the loader answers itself.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn loader_run(
        &self,
        layout: &Layout<'_>,
        kind: LoaderKind,
        loader: PathBuf,
        loader_container: &str,
        args: &[OsString],
        workdir: &str,
        env: &[(String, String)],
    ) -> Result<Option<Launch>, ExecError> {
        let mut trace = env
            .iter()
            .rev()
            .find(|(k, _)| k == "LD_TRACE_LOADED_OBJECTS")
            .is_some_and(|(_, v)| !v.is_empty());
        let mut options = Vec::new();
        let (mut library_dirs, mut preload, mut argv0) = (None, None, None);
        let mut at = 1;
        let program = loop {
            let Some(arg) = args.get(at) else {
                return Ok(None);
            };
            match protocol::loader_option(arg.as_bytes()) {
                LoaderOption::Program => break arg,
                LoaderOption::Flag => {
                    trace |= arg == "--list";
                    options.push(arg.clone());
                    at += 1;
                }
                option => {
                    let Some(value) = args.get(at + 1) else {
                        return Ok(None);
                    };
                    match arg.as_bytes() {
                        b"--library-path" => library_dirs = Some(value),
                        b"--preload" => {
                            preload = Some(translate_list(layout, value, Entries::Objects)?);
                        }
                        b"--argv0" => argv0 = Some(value.clone()),
                        _ if option == LoaderOption::Paths => {
                            options.push(arg.clone());
                            options.push(translate_list(layout, value, Entries::Objects)?);
                        }
                        _ => options.extend([arg.clone(), value.clone()]),
                    }
                    at += 2;
                }
            }
        };
        let container = from_workdir(workdir, &program.to_string_lossy())?;
        let host = host_path(layout, &container)?;
        if let Some(fetcher) = &self.fetcher {
            fetcher
                .prepare_program(&host)
                .map_err(|fault| ExecError::from(&fault))?;
        }
        // Run this way, the loader takes `$ORIGIN` from the path it is given, symlink or not.
        let head = read_any_head(&host, &container)?;
        let exe = OsStr::new(&container);
        let library_path = match library_dirs {
            Some(dirs) => {
                let theirs = translate_list(layout, dirs, Entries::Directories)?;
                self.search_path_after(layout, theirs, &head, &host, exe)
            }
            None => self.search_path(layout, env, &head, &host, exe),
        };
        let run = LoaderRun {
            kind,
            loader,
            library_path,
            preload,
            trace,
            options,
            argv0: argv0.unwrap_or_else(|| program.clone()),
            program: host,
            args: args.get(at + 1..).unwrap_or_default().to_vec(),
            exe: OsString::from(loader_container),
            comm: None,
            container_program: container,
        };
        self.loader_launch(run).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path is bytes: an entry that is not UTF-8 reaches the loader as it was written,
    /// not with U+FFFD in place of its bytes (which names a directory that does not exist).
    #[test]
    fn list_entries_keep_bytes_that_are_not_utf8() {
        let layout = Layout {
            root: b"/tmp/rootfs",
            mounts: &[],
        };
        let list = OsStr::from_bytes(b"/opt/caf\xe9/lib:relative:/usr/lib");
        let translated = translate_list(&layout, list, Entries::Directories).unwrap();
        assert_eq!(
            translated.as_bytes(),
            b"/tmp/rootfs/opt/caf\xe9/lib:/tmp/rootfs/usr/lib"
        );
        let objects = OsStr::from_bytes(b"/opt/l\xffb.so libm.so.6");
        let translated = translate_list(&layout, objects, Entries::Objects).unwrap();
        assert_eq!(
            translated.as_bytes(),
            b"/tmp/rootfs/opt/l\xffb.so:libm.so.6"
        );
    }
}
