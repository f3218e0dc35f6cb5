//! Every exec runs the program through the image's own dynamic loader:
//! `ROOT/ld.so --library-path … [--inhibit-cache] --preload SHIM [--argv0 A] HOSTPATH args`.
//!
//! The kernel would read PT_INTERP and `#!` lines as host paths, so both are resolved here,
//! inside the rootfs. Runs in vfork children: no malloc, no locks, only stack buffers, an
//! anonymous mapping and raw syscalls.

use std::ffi::{CStr, c_char, c_int};

use rootfs_paths::buf::PATH_MAX;
use rootfs_paths::elf::{self, ElfKind, HEAD_LEN};
use rootfs_paths::layout::clean_into;
use rootfs_paths::{LoaderKind, PathBuf, script};

use crate::arena::{Arena, Vector, entries};
use crate::state::{State, StaticPolicy};
use crate::translate::{container_dir, is_own_exe};
use crate::{fakeroot, sys};

use rootfs_paths::protocol::{self, Ldconfig, LoaderOption, MAX_SCRIPT_DEPTH};

/// Room for `SCAR_FC_CREDS`'s value: six ids and every group, in decimal with commas.
const CREDS_MAX: usize = (6 + rootfs_paths::creds::MAX_GROUPS) * 11;

/// A ready-to-exec host command; its memory lives in the arena.
#[derive(Debug)]
pub struct Command {
    pub path: *const c_char,
    pub argv: *const *const c_char,
    pub envp: *const *const c_char,
    /// A close-on-exec descriptor the loader reads the program through, which must stay
    /// open across the exec (`protocol::EXEC_FD`).
    pub keep_open: Option<c_int>,
    /// The loader lists objects (`ldd`): its output goes through [`crate::listed`].
    pub listing: bool,
}

/// A program that only an open descriptor reaches (`fexecve` of a `memfd` or of a deleted
/// file), run as `/dev/fd/N`, the name the kernel gives it.
#[derive(Debug, Clone, Copy)]
struct Descriptor {
    fd: c_int,
    close_on_exec: bool,
}

/// Sizes the arena for one exec: pointers for argv/envp plus room for the new strings.
pub fn arena_for(
    st: &State,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> Result<Arena, c_int> {
    // SAFETY: exec arguments are NULL-terminated arrays.
    let argc = unsafe { entries(argv) }.len();
    // SAFETY: as above.
    let env = unsafe { entries(envp) };
    let ld_library_path =
        env_value(env, b"LD_LIBRARY_PATH=").map_or(0, |v| v.len() * 2 + 64 * (st.root.len() + 1));
    let pointers = (argc + env.len() + st.inherited.len() + 32) * (MAX_SCRIPT_DEPTH + 2) * 8;
    Arena::new(pointers + 16 * PATH_MAX + 2 * st.library_path.len() + ld_library_path + 65536)
}

fn env_value<'a>(env: &[*const c_char], prefix: &[u8]) -> Option<&'a [u8]> {
    env.iter()
        // SAFETY: env entries are NUL-terminated strings.
        .map(|&e| unsafe { sys::bytes(e) })
        .find_map(|e| e.strip_prefix(prefix))
}

/// Plans the exec of container path `path` with `argv`/`envp` as given by the caller.
pub fn plan(
    st: &State,
    arena: &mut Arena,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> Result<Command, c_int> {
    plan_from(st, arena, path, argv, envp, None)
}

/// [`plan`], where `path` may be the `/dev/fd/N` of a program only `descriptor` reaches.
fn plan_from(
    st: &State,
    arena: &mut Arena,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    mut descriptor: Option<Descriptor>,
) -> Result<Command, c_int> {
    if path.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: exec arguments are NULL-terminated arrays of NUL-terminated strings.
    let caller_args = unsafe { entries(argv) };
    // SAFETY: as above.
    let env = unsafe { entries(envp) };
    let mut program = path;
    // SAFETY: the caller's path, NUL-terminated.
    let mut comm = protocol::comm_of(unsafe { sys::bytes(path) });
    let mut args = arena.vector(caller_args.len().max(1))?;
    args.extend(caller_args)?;
    if caller_args.is_empty() {
        // A NULL or empty argv: the kernel (since 5.18) runs the program with argv[0] "",
        // where the loader would otherwise be handed the program's path in its place.
        args.push(arena.string(&[b""])?)?;
    }
    let mut head = [0u8; HEAD_LEN];
    for _ in 0..=MAX_SCRIPT_DEPTH {
        let (mut container, mut host) = (PathBuf::new(), PathBuf::new());
        // SAFETY: `program` is a NUL-terminated string (the caller's or the arena's).
        let given = unsafe { sys::bytes(program) };
        locate(st, given, &mut container, &mut host)?;
        if descriptor.is_none() {
            // (A file only a descriptor reaches is no file of the tree.)
            crate::lazy::before_exec(libc::AT_FDCWD, host.as_c_str())?;
        }
        let mut resolved = [0u8; PATH_MAX];
        let (len, resolved_len) = sys::read_head(host.as_c_str(), &mut head, &mut resolved)?;
        sys::executable(host.as_c_str())?;
        let head = &head[..len];
        // /proc/self/exe names the file with every symlink followed; so must SCAR_FC_EXE.
        if resolved_len > 0 && resolved_len < PATH_MAX {
            let _ = st
                .layout()
                .to_container_into(&resolved[..resolved_len], &mut container);
        }
        if let Some(shebang) = script::parse(head) {
            // The kernel names such a script `/dev/fd/N` to its interpreter, which cannot
            // open it once a close-on-exec descriptor is closed: Linux fails the exec.
            if descriptor.is_some_and(|d| d.close_on_exec) {
                return Err(libc::ENOENT);
            }
            descriptor = None;
            // Linux semantics: [interpreter, (its argument), the script as named, argv[1..]].
            let interpreter = arena.string(&[shebang.interpreter])?;
            let mut next = arena.vector(args.as_slice().len() + 2)?;
            next.push(interpreter)?;
            if let Some(argument) = shebang.argument {
                next.push(arena.string(&[argument])?)?;
            }
            next.push(program)?;
            next.extend(args.as_slice().get(1..).unwrap_or_default())?;
            program = interpreter;
            args = next;
            continue;
        }
        let host_path = arena.string(&[host.as_bytes()])?;
        return match elf::classify(head) {
            ElfKind::NotElf => Err(libc::ENOEXEC),
            ElfKind::Other => direct(host_path, &args, envp),
            ElfKind::Static if protocol::is_ldconfig(container.as_bytes()) => {
                let given = args.as_slice().get(1..).unwrap_or_default();
                // SAFETY: argv entries are NUL-terminated strings (the caller's or the arena's).
                let words = given.iter().map(|&arg| unsafe { sys::bytes(arg) });
                match protocol::ldconfig_run(words) {
                    Ldconfig::Inform => return direct(host_path, &args, envp),
                    Ldconfig::PrintCache => {
                        return print_cache(st, arena, host_path, &args, envp);
                    }
                    Ldconfig::Skip => {}
                }
                if st.debug {
                    warn(
                        b"not run: the loader never reads its cache (sh -c : instead)",
                        &container,
                    );
                }
                program = arena.string(&[b"/bin/sh"])?;
                let mut noop = arena.vector(3)?;
                noop.push(arena.string(&[b"ldconfig"])?)?;
                noop.push(arena.string(&[b"-c"])?)?;
                noop.push(arena.string(&[b":"])?)?;
                args = noop;
                continue;
            }
            ElfKind::Static if let Some(at) = wrapped_command(&container, &args) => {
                // An init wrapper (docs: rootfs_paths::init_wrapper): the command it would
                // find in PATH and exec runs in its place.
                let wrapped = args.as_slice().get(at..).unwrap_or_default();
                let Some(&command) = wrapped.first() else {
                    return Err(libc::ENOENT);
                };
                let mut found = PathBuf::new();
                find_in_path(st, command, &mut found)?;
                if st.debug {
                    warn(
                        b"passed over: an init wrapper; its command runs instead",
                        &container,
                    );
                }
                program = arena.string(&[found.as_bytes()])?;
                // SAFETY: an arena string, NUL-terminated, alive as long as the plan.
                comm = protocol::comm_of(unsafe { sys::bytes(program) });
                let mut rest = arena.vector(wrapped.len())?;
                rest.extend(wrapped)?;
                args = rest;
                continue;
            }
            ElfKind::Static if let Some(kind) = protocol::loader_named(container.as_bytes()) => {
                match loader_run(st, arena, kind, host_path, &container, &args, env)? {
                    Some(command) => return Ok(command),
                    None => return direct(host_path, &args, envp),
                }
            }
            ElfKind::Static => {
                match st.static_policy {
                    StaticPolicy::Run => {}
                    StaticPolicy::Warn => warn(
                        b"runs without path translation (it is statically linked)",
                        &container,
                    ),
                    StaticPolicy::Refuse => {
                        warn(
                            b"refused: statically linked, and SCAR_STATIC_BINARIES=refuse",
                            &container,
                        );
                        return Err(libc::EACCES);
                    }
                }
                direct(host_path, &args, envp)
            }
            ElfKind::Dynamic(range) => {
                // The loader is handed the file itself, not a symlink to it: it takes
                // `$ORIGIN` from the path it is given, where a real exec takes it from the
                // file.
                // A file only a descriptor reaches has no other name (its link says
                // `/memfd:… (deleted)`): the loader reads it through `/dev/fd/N`.
                let file = match resolved.get(..resolved_len) {
                    Some(file)
                        if descriptor.is_none() && resolved_len > 0 && resolved_len < PATH_MAX =>
                    {
                        arena.string(&[file])?
                    }
                    _ => host_path,
                };
                let keep_open = descriptor.filter(|d| d.close_on_exec).map(|d| d.fd);
                through_loader(
                    st, arena, head, range, file, &container, &args, env, program, comm, keep_open,
                )
            }
        };
    }
    Err(libc::ELOOP)
}

/// Where an init wrapper's command starts in `args` (argv[0] included), if `container` is
/// one asked to run a command.
fn wrapped_command(container: &PathBuf, args: &Vector) -> Option<usize> {
    let given = args.as_slice().get(1..).unwrap_or_default();
    // SAFETY: argv entries are NUL-terminated strings (the caller's or the arena's).
    let words = given.iter().map(|&arg| unsafe { sys::bytes(arg) });
    rootfs_paths::init_wrapper::wrapped_command(container.as_bytes(), words).map(|at| at + 1)
}

/// The command word `name` as the wrapper's `execvp` finds it: itself when it has a `/`,
/// else the first executable file of that name in the container's PATH.
fn find_in_path(st: &State, name: *const c_char, found: &mut PathBuf) -> Result<(), c_int> {
    let outcome = search(name, |candidate| {
        let (mut container, mut host) = (PathBuf::new(), PathBuf::new());
        // SAFETY: search hands over NUL-terminated candidates.
        let given = unsafe { sys::bytes(candidate) };
        locate(st, given, &mut container, &mut host)?;
        sys::executable(host.as_c_str())?;
        found
            .set(container.as_bytes())
            .map_err(|_| libc::ENAMETOOLONG)
    });
    if outcome == 0 {
        Ok(())
    } else {
        Err(sys::errno())
    }
}

/// `ldconfig -p`: the image's (static) `ldconfig` prints the image's cache, which it is
/// told of by host path (`-C`), since no shim follows a static program's opens.
fn print_cache(
    st: &State,
    arena: &mut Arena,
    host_path: *const c_char,
    args: &Vector,
    envp: *const *const c_char,
) -> Result<Command, c_int> {
    let given = args.as_slice();
    // SAFETY: argv entries are NUL-terminated strings.
    let words = given.iter().skip(1).map(|&arg| unsafe { sys::bytes(arg) });
    let named = protocol::ldconfig_cache_argument(words);
    let mut argv = arena.vector(given.len() + 2)?;
    let mut container = PathBuf::new();
    let mut host = PathBuf::new();
    match named {
        Some((index, offset)) => {
            for (i, &arg) in given.iter().enumerate() {
                if i != index + 1 {
                    argv.push(arg)?;
                    continue;
                }
                // SAFETY: as above.
                let (option, name) = unsafe { sys::bytes(arg) }.split_at(offset);
                locate(st, name, &mut container, &mut host)?;
                argv.push(arena.string(&[option, host.as_bytes()])?)?;
            }
        }
        None => {
            argv.extend(given)?;
            st.layout()
                .to_host(protocol::LD_SO_CACHE, &mut host)
                .map_err(|_| libc::ENAMETOOLONG)?;
            argv.push(c"-C".as_ptr())?;
            argv.push(arena.string(&[host.as_bytes()])?)?;
        }
    }
    // On a lazy tree: the cache whole first, since no shim follows a static program.
    crate::lazy::before_open(libc::AT_FDCWD, host.as_c_str().as_ptr())?;
    direct(host_path, &argv, envp)
}

fn direct(
    path: *const c_char,
    args: &Vector,
    envp: *const *const c_char,
) -> Result<Command, c_int> {
    Ok(Command {
        path,
        argv: args.as_ptr(),
        envp,
        keep_open: None,
        listing: false,
    })
}

fn warn(what: &[u8], container: &PathBuf) {
    sys::write_stderr(&[b"scar: ", container.as_bytes(), b" ", what, b"\n"]);
}

/// The absolute, clean container path of a program named as the caller named it.
/// [`container_path`] of `given` into `container`, and its host path into `host`.
fn locate(
    st: &State,
    given: &[u8],
    container: &mut PathBuf,
    host: &mut PathBuf,
) -> Result<(), c_int> {
    container_path(st, given, container)?;
    st.layout()
        .to_host(container.as_bytes(), host)
        .map_err(|_| libc::ENAMETOOLONG)
}

fn container_path(st: &State, given: &[u8], out: &mut PathBuf) -> Result<(), c_int> {
    if given.is_empty() {
        return Err(libc::ENOENT);
    }
    let mut joined = PathBuf::new();
    if given[0] == b'/' {
        let given = match st.exe {
            Some(exe) if is_own_exe(given) => exe,
            _ => given,
        };
        joined.set(given).map_err(|_| libc::ENAMETOOLONG)?;
    } else {
        container_dir(st, libc::AT_FDCWD, &mut joined)?;
        joined
            .push(b"/")
            .and_then(|()| joined.push(given))
            .map_err(|_| libc::ENAMETOOLONG)?;
    }
    clean_into(joined.as_bytes(), out).map_err(|_| libc::ENAMETOOLONG)
}

/// One exec through the image's loader, whichever way it was asked for.
struct LoaderRun<'a> {
    kind: LoaderKind,
    /// The loader's host path.
    loader: *const c_char,
    /// `--library-path`'s value.
    library_path: *const c_char,
    /// Preloads of the caller's own, after the shim's (`--preload`'s list, translated).
    preload: Option<&'a [u8]>,
    /// Trace mode (`ldd`): the loader runs no code, so the shim is not loaded and not listed.
    trace: bool,
    /// The caller's other loader options, before the program.
    options: &'a [*const c_char],
    /// The program's argv[0], host path and further arguments.
    argv0: *const c_char,
    program: *const c_char,
    args: &'a [*const c_char],
    /// What `/proc/self/exe` answers, and the process's name unless the kernel's is right.
    exe: &'a [u8],
    comm: Option<&'a [u8]>,
    /// [`Command::keep_open`].
    keep_open: Option<c_int>,
}

#[allow(clippy::too_many_arguments)]
fn through_loader(
    st: &State,
    arena: &mut Arena,
    head: &[u8],
    interpreter: std::ops::Range<usize>,
    file: *const c_char,
    container: &PathBuf,
    args: &Vector,
    env: &[*const c_char],
    program: *const c_char,
    comm: &[u8],
    keep_open: Option<c_int>,
) -> Result<Command, c_int> {
    let interpreter = head.get(interpreter).unwrap_or_default();
    let kind = LoaderKind::of(interpreter);
    let mut loader = PathBuf::new();
    st.layout()
        .to_host(interpreter, &mut loader)
        .map_err(|_| libc::ENAMETOOLONG)?;
    let loader = arena.string(&[loader.as_bytes()])?;
    if st.shim(kind).is_none() {
        warn(
            b"runs without path translation (no shim for its C library)",
            container,
        );
    }
    // SAFETY: an arena string, NUL-terminated.
    let own = own_search_path(st, arena, unsafe { CStr::from_ptr(file) }, head, container);
    let run = LoaderRun {
        kind,
        loader,
        library_path: library_path(st, arena, env, own)?,
        preload: None,
        // A program run with it set is listed by its loader, not run.
        trace: env_value(env, b"LD_TRACE_LOADED_OBJECTS=").is_some_and(|v| !v.is_empty()),
        options: &[],
        argv0: args.as_slice().first().copied().unwrap_or(program),
        program: file,
        args: args.as_slice().get(1..).unwrap_or_default(),
        exe: container.as_bytes(),
        comm: Some(comm),
        keep_open,
    };
    if st.debug {
        sys::write_stderr(&[
            b"scar-fc: exec ",
            container.as_bytes(),
            b" via ",
            interpreter,
            b"\n",
        ]);
    }
    command(st, arena, env, &run)
}

/// The loader run as a program (`ldd`, `ld.so PROGRAM`): it is static, so its own opens
/// would be the host's; it runs as every exec's loader does, with the program's path and
/// the caller's path options translated and the caller's other options kept.
fn loader_run(
    st: &State,
    arena: &mut Arena,
    kind: LoaderKind,
    loader: *const c_char,
    container: &PathBuf,
    args: &Vector,
    env: &[*const c_char],
) -> Result<Option<Command>, c_int> {
    let given = args.as_slice();
    // SAFETY: argv entries are NUL-terminated strings.
    let word = |i: usize| given.get(i).map(|&p| unsafe { sys::bytes(p) });
    let mut trace = env_value(env, b"LD_TRACE_LOADED_OBJECTS=").is_some_and(|v| !v.is_empty());
    let mut options = arena.vector(given.len())?;
    let (mut library_dirs, mut preload, mut argv0) = (None, None, None);
    let mut at = 1;
    let program = loop {
        let Some(arg) = word(at) else {
            // No program (`--help`, `--version`, or a mistake): the loader answers itself.
            return Ok(None);
        };
        match protocol::loader_option(arg) {
            LoaderOption::Program => break arg,
            LoaderOption::Flag => {
                trace |= arg == b"--list";
                options.push(given[at])?;
                at += 1;
            }
            option => {
                let Some(value) = word(at + 1) else {
                    return Ok(None);
                };
                match arg {
                    b"--library-path" => library_dirs = Some(value),
                    b"--preload" => {
                        let list = translate_list(st, arena, value, Entries::Objects)?;
                        // SAFETY: an arena string, NUL-terminated, alive until the exec.
                        preload = Some(unsafe { sys::bytes(list) });
                    }
                    b"--argv0" => argv0 = Some(given[at + 1]),
                    _ if option == LoaderOption::Paths => {
                        options.push(given[at])?;
                        options.push(translate_list(st, arena, value, Entries::Objects)?)?;
                    }
                    _ => options.extend(&given[at..at + 2])?,
                }
                at += 2;
            }
        }
    };
    let mut program_container = PathBuf::new();
    let mut host = PathBuf::new();
    locate(st, program, &mut program_container, &mut host)?;
    crate::lazy::before_exec(libc::AT_FDCWD, host.as_c_str())?;
    // The program's own search path, so that `ldd` lists the libraries the run loads. Run
    // this way, the loader takes `$ORIGIN` from the path it is given, symlink or not.
    let mut head = [0u8; HEAD_LEN];
    let own = match sys::read_head(host.as_c_str(), &mut head, &mut []) {
        Ok((len, _)) => own_search_path(
            st,
            arena,
            host.as_c_str(),
            head.get(..len).unwrap_or_default(),
            &program_container,
        ),
        Err(_) => None,
    };
    let library_path = match library_dirs {
        Some(dirs) => search_path(st, arena, Some(dirs), own)?,
        None => library_path(st, arena, env, own)?,
    };
    let run = LoaderRun {
        kind,
        loader,
        library_path,
        preload,
        trace,
        options: options.as_slice(),
        argv0: argv0.unwrap_or(given[at]),
        program: arena.string(&[host.as_bytes()])?,
        args: given.get(at + 1..).unwrap_or_default(),
        exe: container.as_bytes(),
        comm: None,
        keep_open: None,
    };
    command(st, arena, env, &run).map(Some)
}

/// What a list a loader reads holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entries {
    /// Directories, `:`-separated (`LD_LIBRARY_PATH`, `--library-path`); those that are not
    /// absolute are left out.
    Directories,
    /// Objects, `:`- or space-separated (`--preload`, `--audit`); a name without a slash
    /// is kept, for the loader to search.
    Objects,
}

/// The pieces of a `:`-separated list, gathered on the stack for one arena string.
struct ListParts<'a, const N: usize> {
    parts: [&'a [u8]; N],
    count: usize,
}

impl<'a, const N: usize> ListParts<'a, N> {
    fn new() -> Self {
        Self {
            parts: [b""; N],
            count: 0,
        }
    }

    /// Adds one entry made of `pieces`; `false` (and nothing added) when it does not fit.
    fn entry(&mut self, pieces: &[&'a [u8]]) -> bool {
        let separator = usize::from(self.count > 0);
        let Some(room) = self
            .parts
            .get_mut(self.count..self.count + separator + pieces.len())
        else {
            return false;
        };
        if separator == 1 {
            room[0] = b":";
        }
        room[separator..].copy_from_slice(pieces);
        self.count += separator + pieces.len();
        true
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn string(&self, arena: &mut Arena) -> Result<*const c_char, c_int> {
        arena.string(&self.parts[..self.count])
    }
}

/// `list` with each absolute entry translated, `:`-joined, in the arena.
fn translate_list(
    st: &State,
    arena: &mut Arena,
    list: &[u8],
    entries: Entries,
) -> Result<*const c_char, c_int> {
    let mut parts = ListParts::<128>::new();
    let mut storage = PathBuf::new();
    let separator = |b: &u8| *b == b':' || (entries == Entries::Objects && *b == b' ');
    for entry in list.split(separator).filter(|e| !e.is_empty()) {
        let part = if entry.first() == Some(&b'/') {
            st.layout()
                .to_host(entry, &mut storage)
                .map_err(|_| libc::ENAMETOOLONG)?;
            let copy = arena.string(&[storage.as_bytes()])?;
            // SAFETY: the arena string just written, NUL-terminated.
            unsafe { sys::bytes(copy) }
        } else if entries == Entries::Objects {
            entry
        } else {
            continue;
        };
        if !parts.entry(&[part]) {
            break;
        }
    }
    parts.string(arena)
}

/// The loader's argv and the environment for `run`.
fn command(
    st: &State,
    arena: &mut Arena,
    env: &[*const c_char],
    run: &LoaderRun<'_>,
) -> Result<Command, c_int> {
    let shim = st.shim(run.kind).filter(|_| !run.trace);
    let preload_option = st.loader_has_preload(run.kind);
    let argv0_option = st.loader_has_argv0(run.kind);

    let mut argv = arena.vector(run.options.len() + run.args.len() + 12)?;
    argv.push(run.loader)?;
    argv.push(c"--library-path".as_ptr())?;
    argv.push(run.library_path)?;
    if run.kind == LoaderKind::Glibc {
        // Without it the loader reads the host's /etc/ld.so.cache and may pick host libraries.
        argv.push(c"--inhibit-cache".as_ptr())?;
    }
    // Every exec preloads the shim alone: its path is used as it is, copied only to join a
    // loader run's own preloads.
    let preloads = match (shim, run.preload) {
        (Some(shim), None) => Some(shim.as_ptr()),
        (Some(shim), Some(theirs)) => Some(arena.string(&[shim.to_bytes(), b":", theirs])?),
        (None, Some(theirs)) => Some(arena.string(&[theirs])?),
        (None, None) => None,
    };
    if let (Some(list), true) = (preloads, preload_option) {
        argv.push(c"--preload".as_ptr())?;
        argv.push(list)?;
    }
    if argv0_option {
        argv.push(c"--argv0".as_ptr())?;
        argv.push(run.argv0)?;
    }
    argv.extend(run.options)?;
    argv.push(run.program)?;
    argv.extend(run.args)?;

    let mut envp = arena.vector(env.len() + st.inherited.len() + 7)?;
    for &entry in env {
        // SAFETY: env entries are NUL-terminated.
        let bytes = unsafe { sys::bytes(entry) };
        let ours = protocol::PER_EXEC
            .iter()
            .any(|p| bytes.starts_with(p.assignment))
            || st.is_own_preload(bytes);
        if !ours {
            envp.push(entry)?;
        }
    }
    for &var in st.inherited {
        let bytes = var.to_bytes();
        let name = &bytes[..=bytes
            .iter()
            .position(|&b| b == b'=')
            .unwrap_or(bytes.len() - 1)];
        if env_value(env, name).is_none() {
            envp.push(var.as_ptr())?;
        }
    }
    envp.push(arena.string(&[protocol::EXE.assignment, run.exe])?)?;
    if let Some(comm) = run.comm {
        envp.push(arena.string(&[protocol::COMM.assignment, comm])?)?;
    }
    if let Some(fd) = run.keep_open {
        let mut digits = [0u8; 20];
        let fd =
            rootfs_paths::buf::decimal(u64::try_from(fd).map_err(|_| libc::EBADF)?, &mut digits);
        envp.push(arena.string(&[protocol::EXEC_FD.assignment, fd])?)?;
    }
    let mut creds = [0; CREDS_MAX];
    if let Some(value) = fakeroot::creds_to_hand_on(&mut creds) {
        envp.push(arena.string(&[protocol::CREDS.assignment, value])?)?;
    }
    if !argv0_option {
        // SAFETY: argv0 is a NUL-terminated string.
        envp.push(arena.string(&[protocol::ARGV0.assignment, unsafe { sys::bytes(run.argv0) }])?)?;
    }
    if let (Some(list), false) = (preloads, preload_option) {
        // SAFETY: the shim's path or an arena string, NUL-terminated.
        envp.push(arena.string(&[b"LD_PRELOAD=", unsafe { sys::bytes(list) }])?)?;
    }
    Ok(Command {
        path: run.loader,
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        keep_open: run.keep_open,
        listing: run.trace,
    })
}

/// `--library-path` replaces LD_LIBRARY_PATH, so the caller's entries (container paths)
/// go first, translated, then the program's own search path (already host paths), then
/// the image's library directories.
fn library_path(
    st: &State,
    arena: &mut Arena,
    env: &[*const c_char],
    own: Option<*const c_char>,
) -> Result<*const c_char, c_int> {
    search_path(st, arena, env_value(env, b"LD_LIBRARY_PATH="), own)
}

/// The loader's search path: the caller's directories, translated, the program's own,
/// then the image's.
fn search_path(
    st: &State,
    arena: &mut Arena,
    theirs: Option<&[u8]>,
    own: Option<*const c_char>,
) -> Result<*const c_char, c_int> {
    let theirs = match theirs {
        Some(dirs) => translate_list(st, arena, dirs, Entries::Directories)?,
        None => c"".as_ptr(),
    };
    // SAFETY: an arena string or a literal, NUL-terminated.
    let theirs = unsafe { sys::bytes(theirs) };
    // SAFETY: as above.
    let own = unsafe { sys::bytes(own.unwrap_or(c"".as_ptr())) };
    let mut parts = ListParts::<6>::new();
    for list in [theirs, own, st.library_path] {
        if !list.is_empty() {
            parts.entry(&[list]);
        }
    }
    parts.string(arena)
}

/// The program's own search path (`DT_RUNPATH`, else `DT_RPATH`) as host directories,
/// `$ORIGIN` being the directory of its file. The loader searches `--library-path` before
/// a `DT_RUNPATH` (musl before either), so without it the image's libraries would win over
/// those an application ships beside itself; in `--library-path`, after the caller's
/// `LD_LIBRARY_PATH`, they keep their real order. `None` when the program has none, or it
/// cannot be read (the loader then searches it after the image's, as before).
fn own_search_path(
    st: &State,
    arena: &mut Arena,
    file: &CStr,
    head: &[u8],
    container: &PathBuf,
) -> Option<*const c_char> {
    let range = elf::dynamic_range(head)?;
    // One buffer, for the dynamic section and then the string it points to.
    let mut buf = [0u8; elf::DYNAMIC_READ];
    let want = range.len().min(buf.len());
    let got = sys::read_at(file, range.start, buf.get_mut(..want)?).ok()?;
    let at = elf::own_search_path_at(head, buf.get(..got)?)?;
    let got = sys::read_at(file, at, &mut buf).ok()?;
    let list = buf.get(..got)?;
    let list = list.get(..list.iter().position(|&b| b == 0)?)?;
    let path = container.as_bytes();
    let origin = match path.iter().rposition(|&b| b == b'/') {
        Some(0) | None => b"/".as_slice(),
        Some(slash) => path.get(..slash)?,
    };
    let mut parts = ListParts::<48>::new();
    for dir in elf::own_search_dirs(list) {
        let added = match dir {
            elf::OwnDir::FromOrigin(rest) => parts.entry(&[origin, rest]),
            elf::OwnDir::Absolute(dir) => parts.entry(&[dir]),
        };
        if !added {
            break;
        }
    }
    if parts.is_empty() {
        return None;
    }
    let joined = parts.string(arena).ok()?;
    // SAFETY: the arena string just written, NUL-terminated.
    translate_list(
        st,
        arena,
        unsafe { sys::bytes(joined) },
        Entries::Directories,
    )
    .ok()
}

/// exec of a container path; returns only on failure, with errno set.
pub fn exec(
    st: &State,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    exec_from(st, path, argv, envp, None)
}

/// exec of the file open as `fd` (`fexecve`, `execveat` with `AT_EMPTY_PATH`); returns only
/// on failure, with errno set. A file with a name runs by its name; one that only the
/// descriptor reaches (a `memfd`, a deleted file) runs as `/dev/fd/N`, as the kernel runs it.
pub fn exec_descriptor(
    st: &State,
    fd: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    match sys::kernel_stat(fd, c"".as_ptr(), libc::AT_EMPTY_PATH) {
        Ok(file) if file.st_mode & libc::S_IFMT == libc::S_IFREG => {}
        Ok(_) => return sys::fail(libc::EACCES, -1),
        Err(code) => return sys::fail(code, -1),
    }
    let mut path = PathBuf::new();
    let named = container_dir(st, fd, &mut path).is_ok()
        && path.as_bytes().first() == Some(&b'/')
        && !path.as_bytes().ends_with(b" (deleted)");
    if named {
        return exec(st, path.as_ptr().cast(), argv, envp);
    }
    let close_on_exec = match sys::descriptor_flags(fd) {
        Ok(flags) => flags & libc::FD_CLOEXEC != 0,
        Err(code) => return sys::fail(code, -1),
    };
    let mut digits = [0u8; 20];
    let number = rootfs_paths::buf::decimal(u64::try_from(fd).unwrap_or_default(), &mut digits);
    if path
        .set(b"/dev/fd/")
        .and_then(|()| path.push(number))
        .is_err()
    {
        return sys::fail(libc::ENAMETOOLONG, -1);
    }
    let descriptor = Descriptor { fd, close_on_exec };
    exec_from(st, path.as_ptr().cast(), argv, envp, Some(descriptor))
}

fn exec_from(
    st: &State,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    descriptor: Option<Descriptor>,
) -> c_int {
    let mut arena = match arena_for(st, argv, envp) {
        Ok(a) => a,
        Err(code) => return sys::fail(code, -1),
    };
    match plan_from(st, &mut arena, path, argv, envp, descriptor) {
        Ok(cmd) => {
            if let Some(fd) = cmd.keep_open {
                sys::set_descriptor_flags(fd, 0);
            }
            // SAFETY: the plan's path is a NUL-terminated arena copy, alive until `arena`
            // drops below.
            let path = unsafe { CStr::from_ptr(cmd.path) };
            if cmd.listing {
                // Returns only if the loader could not be run; else this process ends.
                crate::listed::exec(st, path, cmd.argv, cmd.envp);
            } else {
                // SAFETY: the plan's arrays are NULL-terminated arena copies, alive as above.
                unsafe { sys::execve(path, cmd.argv, cmd.envp) };
            }
            let code = sys::errno();
            if let Some(fd) = cmd.keep_open {
                sys::set_descriptor_flags(fd, libc::FD_CLOEXEC);
            }
            drop(arena);
            sys::fail(code, -1)
        }
        Err(code) => sys::fail(code, -1),
    }
}

/// execvp's search of the container's PATH, with glibc's rules: ENOENT-like failures try
/// the next directory, EACCES is remembered, ENOEXEC runs the file with /bin/sh.
pub fn exec_search(
    st: &State,
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    search(file, |candidate| {
        let code = match exec(st, candidate, argv, envp) {
            -1 => sys::errno(),
            _ => return Ok(()),
        };
        if code == libc::ENOEXEC {
            let mut arena = match arena_for(st, argv, envp) {
                Ok(a) => a,
                Err(code) => return Err(code),
            };
            let sh_argv = shell_argv(&mut arena, candidate, argv)?;
            exec(st, c"/bin/sh".as_ptr(), sh_argv, envp);
            return Err(sys::errno());
        }
        Err(code)
    })
}

/// `[/bin/sh, file, argv[1..]]`, how execvp runs a file that is neither ELF nor `#!`.
pub fn shell_argv(
    arena: &mut Arena,
    file: *const c_char,
    argv: *const *const c_char,
) -> Result<*const *const c_char, c_int> {
    // SAFETY: a NULL-terminated argv.
    let args = unsafe { entries(argv) };
    let mut out = arena.vector(args.len() + 2)?;
    out.push(c"/bin/sh".as_ptr())?;
    out.push(file)?;
    out.extend(args.get(1..).unwrap_or_default())?;
    Ok(out.as_ptr())
}

/// Tries `attempt` on each PATH candidate for `file` (or on `file` itself when it has a
/// `/`). `attempt` returns Ok when done, or the errno of this candidate.
pub fn search(
    file: *const c_char,
    mut attempt: impl FnMut(*const c_char) -> Result<(), c_int>,
) -> c_int {
    if file.is_null() {
        return sys::fail(libc::EFAULT, -1);
    }
    // SAFETY: non-null and NUL-terminated.
    let name = unsafe { sys::bytes(file) };
    if name.is_empty() {
        return sys::fail(libc::ENOENT, -1);
    }
    if name.contains(&b'/') {
        return match attempt(file) {
            Ok(()) => 0,
            Err(code) => sys::fail(code, -1),
        };
    }
    // SAFETY: getenv is read-only here; PATH is the container's, set from the image's Env.
    let path = unsafe { libc::getenv(c"PATH".as_ptr()) };
    let path = if path.is_null() {
        &b"/bin:/usr/bin"[..]
    } else {
        // SAFETY: a non-null getenv result is a NUL-terminated string.
        unsafe { sys::bytes(path) }
    };
    let mut denied = false;
    for dir in path.split(|&b| b == b':') {
        let mut candidate = PathBuf::new();
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        if candidate
            .set(dir)
            .and_then(|()| candidate.push(b"/"))
            .and_then(|()| candidate.push(name))
            .is_err()
        {
            continue;
        }
        match attempt(candidate.as_ptr().cast()) {
            Ok(()) => return 0,
            Err(libc::EACCES) => denied = true,
            Err(libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT) => {}
            Err(code) => return sys::fail(code, -1),
        }
    }
    sys::fail(if denied { libc::EACCES } else { libc::ENOENT }, -1)
}
