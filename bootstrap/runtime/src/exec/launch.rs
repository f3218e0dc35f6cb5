//! The first exec of a container: find the program in the container's PATH, follow `#!`
//! lines inside the rootfs, and start it through the image's loader with the shim
//! preloaded. Later execs are the shim's (the same rules, without allocating).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rootfs_paths::dotdot::{self, Kind};
use rootfs_paths::elf::{self, ElfKind, HEAD_LEN};
use rootfs_paths::layout::{clean_into, has_dotdot, strip_dir};
use rootfs_paths::protocol::Ldconfig;
use rootfs_paths::{
    Layout, LoaderKind, Mount, PathBuf as PathBuffer, init_wrapper, protocol, script,
};

use super::loader::LoaderRun;
use super::{ExecError, Sandbox, StaticPolicy};

/// A host command line ready for `Command`.
#[derive(Debug)]
pub struct Launch {
    /// Host path of the loader (or of the program itself, when static).
    pub program: PathBuf,
    /// argv[1..].
    pub args: Vec<OsString>,
    /// Extra variables for the shim.
    pub env: Vec<(String, OsString)>,
    /// The program's container path.
    pub container_program: String,
}

/// Container/host pairs as the shim's layout wants them.
pub fn mounts_of(mounts: &[(String, PathBuf)]) -> Vec<Mount<'_>> {
    let mut out: Vec<Mount<'_>> = mounts
        .iter()
        .map(|(c, h)| Mount {
            container: c.as_bytes(),
            host: h.as_os_str().as_bytes(),
        })
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.container.len()));
    out
}

/// The `SCAR_FC_MOUNTS` value for the same pairs.
pub fn mounts_spec(mounts: &[(String, PathBuf)]) -> OsString {
    let mut spec = Vec::new();
    for (i, (container, host)) in mounts.iter().enumerate() {
        if i > 0 {
            spec.push(b':');
        }
        spec.extend_from_slice(container.as_bytes());
        if Path::new(container) != host {
            spec.push(b'=');
            spec.extend_from_slice(host.as_os_str().as_bytes());
        }
    }
    OsString::from_vec(spec)
}

pub(super) fn host_path(
    layout: &Layout<'_>,
    container: impl AsRef<[u8]>,
) -> Result<PathBuf, ExecError> {
    let container = container.as_ref();
    // `..` as the shim resolves it (as chroot does); where the walk fails (a component
    // missing, a working directory still to be made), the lexical form, which the exec or
    // the working directory's creation then answers for.
    let mut resolved = PathBuffer::new();
    let container = if has_dotdot(container)
        && strip_dir(container, layout.root).is_none()
        && dotdot::resolve(layout, container, &mut resolved, &mut FsLookup).is_ok()
    {
        resolved.as_bytes()
    } else {
        container
    };
    let mut out = PathBuffer::new();
    layout
        .to_host(container, &mut out)
        .map_err(|_| ExecError::PathTooLong(String::from_utf8_lossy(container).into_owned()))?;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(out.as_bytes())))
}

/// The walk of a path's `..`, on the filesystem.
struct FsLookup;

impl dotdot::Lookup for FsLookup {
    fn kind(&mut self, host: &PathBuffer) -> Result<Kind, i32> {
        let meta = std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(host.as_bytes()))
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        Ok(if meta.is_dir() {
            Kind::Directory
        } else if meta.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        })
    }

    fn link(&mut self, host: &PathBuffer, target: &mut [u8]) -> Result<usize, i32> {
        let link = std::fs::read_link(std::ffi::OsStr::from_bytes(host.as_bytes()))
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let bytes = link.as_os_str().as_bytes();
        let length = bytes.len().min(target.len());
        target[..length].copy_from_slice(&bytes[..length]);
        Ok(length)
    }
}

/// `ldconfig -p`'s arguments with the cache it prints named by host path (see
/// [`protocol::Ldconfig::PrintCache`]), and that path.
fn ldconfig_print_cache(
    layout: &Layout<'_>,
    workdir: &str,
    mut args: Vec<OsString>,
) -> Result<(Vec<OsString>, PathBuf), ExecError> {
    let words = args.iter().skip(1).map(|a| a.as_bytes());
    let cache = match protocol::ldconfig_cache_argument(words) {
        Some((index, offset)) => {
            let given = args[index + 1].as_bytes();
            let (option, name) = given.split_at(offset);
            let name = String::from_utf8_lossy(name);
            let cache = host_path(layout, &from_workdir(workdir, &name)?)?;
            let mut named = option.to_vec();
            named.extend_from_slice(cache.as_os_str().as_bytes());
            args[index + 1] = OsString::from_vec(named);
            cache
        }
        None => {
            let cache = host_path(layout, protocol::LD_SO_CACHE)?;
            args.push("-C".into());
            args.push(cache.clone().into_os_string());
            cache
        }
    };
    Ok((args, cache))
}

fn clean(path: &str) -> Result<String, ExecError> {
    let mut out = PathBuffer::new();
    clean_into(path.as_bytes(), &mut out).map_err(|_| ExecError::PathTooLong(path.to_owned()))?;
    Ok(String::from_utf8_lossy(out.as_bytes()).into_owned())
}

/// The container path `given` names from `workdir`: itself when absolute, else joined to
/// it; cleaned either way.
pub(super) fn from_workdir(workdir: &str, given: &str) -> Result<String, ExecError> {
    if given.starts_with('/') {
        clean(given)
    } else {
        clean(&format!("{workdir}/{given}"))
    }
}

fn is_executable_file(host: &Path) -> bool {
    std::fs::metadata(host).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The container path of `name`: as given when it has a `/`, else the first executable
/// match in the container's PATH.
fn resolve(
    layout: &Layout<'_>,
    name: &str,
    workdir: &str,
    path_var: &str,
) -> Result<String, ExecError> {
    if name.contains('/') {
        return from_workdir(workdir, name);
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { workdir } else { dir };
        let candidate = clean(&format!("{dir}/{name}"))?;
        if is_executable_file(&host_path(layout, &candidate)?) {
            return Ok(candidate);
        }
    }
    Err(ExecError::NotFound {
        program: name.to_owned(),
        path: path_var.to_owned(),
    })
}

fn read_head(host: &Path, container: &str) -> Result<Vec<u8>, ExecError> {
    let head = read_any_head(host, container)?;
    if !is_executable_file(host) {
        return Err(ExecError::NotExecutable(container.to_owned()));
    }
    Ok(head)
}

/// The first bytes of the file at `host`, executable or not: a loader run as a program
/// runs what it is given.
pub(super) fn read_any_head(host: &Path, container: &str) -> Result<Vec<u8>, ExecError> {
    use std::io::Read;
    let file = std::fs::File::open(host).map_err(|source| ExecError::Program {
        program: container.to_owned(),
        source,
    })?;
    let mut head = Vec::with_capacity(HEAD_LEN);
    file.take(HEAD_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|source| ExecError::Program {
            program: container.to_owned(),
            source,
        })?;
    Ok(head)
}

impl Sandbox {
    /// Plans the exec of `argv` (container paths) from `workdir` with the container
    /// environment `env`.
    pub fn launch(
        &self,
        layout: &Layout<'_>,
        argv: &[String],
        workdir: &str,
        env: &[(String, String)],
    ) -> Result<Launch, ExecError> {
        let first = argv.first().ok_or(ExecError::NoCommand)?;
        let path_var = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or(super::DEFAULT_PATH, |(_, v)| v.as_str());
        let mut program = resolve(layout, first, workdir, path_var)?;
        let mut comm = OsString::from_vec(protocol::comm_of(program.as_bytes()).to_vec());
        let mut args: Vec<OsString> = argv.iter().map(OsString::from).collect();
        for _ in 0..=protocol::MAX_SCRIPT_DEPTH {
            let host = host_path(layout, &program)?;
            if let Some(fetcher) = &self.fetcher {
                fetcher
                    .prepare_program(&host)
                    .map_err(|fault| ExecError::from(&fault))?;
            }
            let head = read_head(&host, &program)?;
            if let Some(shebang) = script::parse(&head) {
                let interpreter = String::from_utf8_lossy(shebang.interpreter).into_owned();
                let mut next = vec![OsString::from(&interpreter)];
                next.extend(shebang.argument.map(|a| OsString::from_vec(a.to_vec())));
                next.push(OsString::from(&program));
                next.extend(args.drain(..).skip(1));
                args = next;
                program = resolve(layout, &interpreter, workdir, path_var)?;
                continue;
            }
            let kind = elf::classify(&head);
            let wrapped = || {
                init_wrapper::wrapped_command(
                    program.as_bytes(),
                    args.iter().skip(1).map(|a| a.as_bytes()),
                )
            };
            if matches!(kind, ElfKind::Static)
                && let Some(at) = wrapped()
                && let Some(command) = args.get(at + 1).map(|a| a.to_string_lossy().into_owned())
            {
                tracing::info!(
                    wrapper = program,
                    "a static init wrapper: the command it wraps runs in its place (the runtime ends the process group itself)"
                );
                args.drain(..=at);
                program = resolve(layout, &command, workdir, path_var)?;
                comm = OsString::from_vec(protocol::comm_of(command.as_bytes()).to_vec());
                continue;
            }
            return match kind {
                // As execvp does: a file that is neither ELF nor a script is a shell script.
                ElfKind::NotElf => {
                    let mut next = vec![OsString::from("/bin/sh"), OsString::from(&program)];
                    next.extend(args.drain(..).skip(1));
                    args = next;
                    program = "/bin/sh".to_owned();
                    // execvp's fallback is an exec of the shell itself.
                    comm = "sh".into();
                    continue;
                }
                ElfKind::Other => Ok(self.direct(host, args, program)),
                ElfKind::Static if protocol::is_ldconfig(program.as_bytes()) => {
                    let words = args.iter().skip(1).map(|a| a.as_bytes());
                    match protocol::ldconfig_run(words) {
                        Ldconfig::Inform => Ok(self.direct(host, args, program)),
                        Ldconfig::PrintCache => {
                            let (args, cache) = ldconfig_print_cache(layout, workdir, args)?;
                            if let Some(fetcher) = &self.fetcher {
                                fetcher
                                    .prepare_file(&cache)
                                    .map_err(|fault| ExecError::from(&fault))?;
                            }
                            Ok(self.direct(host, args, program))
                        }
                        Ldconfig::Skip => {
                            args = ["ldconfig", "-c", ":"].map(OsString::from).to_vec();
                            program = "/bin/sh".to_owned();
                            continue;
                        }
                    }
                }
                ElfKind::Static if let Some(kind) = protocol::loader_named(program.as_bytes()) => {
                    let planned =
                        self.loader_run(layout, kind, host.clone(), &program, &args, workdir, env)?;
                    Ok(planned.unwrap_or_else(|| self.direct(host, args, program)))
                }
                ElfKind::Static => match self.static_policy {
                    StaticPolicy::Refuse => Err(ExecError::Static(program)),
                    policy => {
                        if policy == StaticPolicy::Warn {
                            tracing::warn!(
                                program,
                                "statically linked: it runs without path translation and sees the host's files"
                            );
                        }
                        Ok(self.direct(host, args, program))
                    }
                },
                ElfKind::Dynamic(range) => {
                    self.through_loader(layout, &head, range, host, args, program, comm, env)
                }
            };
        }
        Err(ExecError::ScriptLoop(first.clone()))
    }

    /// The loader's search path, as the shim builds it for every later exec: the
    /// container's `LD_LIBRARY_PATH`, the program's own search path (`DT_RUNPATH`, else
    /// `DT_RPATH`, with `$ORIGIN` the directory of `exe`, the program's file), then the
    /// image's directories. `--library-path` is searched before a `DT_RUNPATH`, so without
    /// the program's own the image's libraries would win over those it ships beside itself.
    pub(super) fn search_path(
        &self,
        layout: &Layout<'_>,
        env: &[(String, String)],
        head: &[u8],
        file: &Path,
        exe: &std::ffi::OsStr,
    ) -> OsString {
        let mut theirs: Vec<OsString> = Vec::new();
        if let Some((_, given)) = env.iter().rev().find(|(k, _)| k == "LD_LIBRARY_PATH") {
            theirs.extend(
                given
                    .split(':')
                    .filter(|d| d.starts_with('/'))
                    .filter_map(|d| host_path(layout, d).ok())
                    .map(PathBuf::into_os_string),
            );
        }
        let theirs = theirs.join(std::ffi::OsStr::new(":"));
        self.search_path_after(layout, theirs, head, file, exe)
    }

    /// [`Self::search_path`] with the caller's directories given as host paths
    /// (`:`-separated, maybe none): a loader run's `--library-path` takes
    /// `LD_LIBRARY_PATH`'s place.
    pub(super) fn search_path_after(
        &self,
        layout: &Layout<'_>,
        theirs: OsString,
        head: &[u8],
        file: &Path,
        exe: &std::ffi::OsStr,
    ) -> OsString {
        let origin = Path::new(exe)
            .parent()
            .map_or_else(|| "/".to_owned(), |p| p.to_string_lossy().into_owned());
        let mut out = theirs;
        if !out.is_empty() {
            out.push(":");
        }
        if let Some(own) = own_search_path(head, file) {
            for dir in elf::own_search_dirs(&own).map(|dir| match dir {
                elf::OwnDir::FromOrigin(rest) => {
                    format!("{origin}{}", String::from_utf8_lossy(rest))
                }
                elf::OwnDir::Absolute(dir) => String::from_utf8_lossy(dir).into_owned(),
            }) {
                if let Ok(host) = host_path(layout, &dir) {
                    out.push(host);
                    out.push(":");
                }
            }
        }
        out.push(self.profile.library_path());
        out
    }

    fn direct(&self, host: PathBuf, mut args: Vec<OsString>, program: String) -> Launch {
        args.remove(0);
        Launch {
            program: host,
            args,
            env: Vec::new(),
            container_program: program,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn through_loader(
        &self,
        layout: &Layout<'_>,
        head: &[u8],
        interpreter: std::ops::Range<usize>,
        host: PathBuf,
        args: Vec<OsString>,
        program: String,
        comm: OsString,
        env: &[(String, String)],
    ) -> Result<Launch, ExecError> {
        let interpreter = head.get(interpreter).unwrap_or_default();
        let kind = LoaderKind::of(interpreter);
        let interpreter = String::from_utf8_lossy(interpreter).into_owned();
        let loader = host_path(layout, &interpreter)?;
        if !loader.exists() {
            return Err(ExecError::NoLoader {
                program,
                loader: interpreter,
            });
        }
        // /proc/self/exe names the file with every symlink followed; so must SCAR_FC_EXE.
        // The loader is handed the file itself too: it takes `$ORIGIN` from that path.
        let (file, exe) = match host.canonicalize() {
            Ok(real) => {
                let mut out = PathBuffer::new();
                let exe = match layout.to_container_into(real.as_os_str().as_bytes(), &mut out) {
                    Ok(()) => OsString::from_vec(out.as_bytes().to_vec()),
                    Err(_) => OsString::from(&program),
                };
                (real, exe)
            }
            Err(_) => (host, OsString::from(&program)),
        };
        let library_path = self.search_path(layout, env, head, &file, &exe);
        let argv0 = args
            .first()
            .cloned()
            .unwrap_or_else(|| OsString::from(&program));
        self.loader_launch(LoaderRun {
            kind,
            loader,
            library_path,
            preload: None,
            trace: false,
            options: Vec::new(),
            argv0,
            program: file,
            args: args.into_iter().skip(1).collect(),
            exe,
            comm: Some(comm),
            container_program: program,
        })
    }
}

/// The bytes of a program's `DT_RUNPATH` (else `DT_RPATH`) string, read from its file.
fn own_search_path(head: &[u8], file: &Path) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let range = elf::dynamic_range(head)?;
    let opened = std::fs::File::open(file).ok()?;
    let mut buf = vec![0; range.len().min(elf::DYNAMIC_READ)];
    let got = opened.read_at(&mut buf, range.start as u64).ok()?;
    let at = elf::own_search_path_at(head, buf.get(..got)?)?;
    let mut list = vec![0; rootfs_paths::buf::PATH_MAX];
    let got = opened.read_at(&mut list, at as u64).ok()?;
    list.truncate(list.get(..got)?.iter().position(|&b| b == 0)?);
    Some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first command's paths take `..` as chroot does: after a symlink, from its target;
    /// where the walk cannot go on (nothing there yet), lexically.
    #[test]
    fn dotdot_in_a_first_commands_path_is_the_chroots() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib"))?;
        std::fs::create_dir_all(root.join("usr/etc"))?;
        std::os::unix::fs::symlink("usr/lib", root.join("lib"))?;
        let layout = Layout {
            root: root.as_os_str().as_bytes(),
            mounts: &[],
        };
        assert_eq!(host_path(&layout, "/lib/../etc")?, root.join("usr/etc"));
        assert_eq!(host_path(&layout, "/missing/../etc")?, root.join("etc"));
        assert_eq!(host_path(&layout, "/usr/lib")?, root.join("usr/lib"));
        Ok(())
    }
}
