//! What bootstrap tells the shim, and the exec rules both apply: the `SCAR_FC_*` variables,
//! the depth of `#!` chains, which loader options exist, and what happens to static programs.
//! Bootstrap plans a container's first exec and the shim every later one; both read these
//! from here, so the two can never disagree.

use core::ffi::CStr;

use crate::LoaderKind;

/// One variable of the protocol.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    /// `SCAR_FC_…`.
    pub name: &'static str,
    /// The same, NUL-terminated, for `getenv`.
    pub env: &'static CStr,
    /// `SCAR_FC_…=`, to find or build an `environ` entry.
    pub assignment: &'static [u8],
}

macro_rules! protocol_var {
    ($name:literal) => {
        Var {
            name: $name,
            env: match CStr::from_bytes_with_nul(concat!($name, "\0").as_bytes()) {
                Ok(name) => name,
                Err(_) => panic!("a protocol variable name holds a NUL"),
            },
            assignment: concat!($name, "=").as_bytes(),
        }
    };
}

/// The prefix of every protocol variable: a user never sets these.
pub const PREFIX: &str = "SCAR_FC_";
/// Host path of the rootfs.
pub const ROOT: Var = protocol_var!("SCAR_FC_ROOT");
/// `:`-separated `PATH` (passthrough) or `CONTAINER=HOST` entries.
pub const MOUNTS: Var = protocol_var!("SCAR_FC_MOUNTS");
/// Host library directories for the loader's `--library-path`.
pub const LIBRARY_PATH: Var = protocol_var!("SCAR_FC_LIBRARY_PATH");
/// Host path of the glibc build of the shim.
pub const GLIBC_SHIM: Var = protocol_var!("SCAR_FC_GLIBC_SHIM");
/// Host path of the musl build of the shim.
pub const MUSL_SHIM: Var = protocol_var!("SCAR_FC_MUSL_SHIM");
/// The image's glibc version, `2.36`: which loader options exist.
pub const GLIBC: Var = protocol_var!("SCAR_FC_GLIBC");
/// [`StaticPolicy`], as its word.
pub const STATIC: Var = protocol_var!("SCAR_FC_STATIC");
/// `1`: one stderr line per exec.
pub const DEBUG: Var = protocol_var!("SCAR_FC_DEBUG");
/// Fake root: the host path of the ownership file (see the shim's `fakeroot.rs`).
pub const FAKEROOT: Var = protocol_var!("SCAR_FC_FAKEROOT");
/// Slots of the fake-root ownership table (`(dev, inode) → owner`, 32 bytes each), which
/// bootstrap creates at `FAKEROOT_TABLE_BYTES` and every shim maps: 4 MiB, sparse.
pub const FAKEROOT_SLOTS: usize = 1 << 17;
/// The table's size in bytes.
pub const FAKEROOT_TABLE_BYTES: usize = FAKEROOT_SLOTS * 32;
/// The fetcher's socket, while the rootfs is a lazy tree whose files are still arriving: the
/// shim asks it for a file before opening a placeholder, and for a program before running
/// it (bootstrap's `exec/fetcher.rs` speaks the other end).
pub const FETCH: Var = protocol_var!("SCAR_FC_FETCH");
/// Per exec: the program's container path (what `/proc/self/exe` answers).
pub const EXE: Var = protocol_var!("SCAR_FC_EXE");
/// Per exec, for loaders without `--argv0`: the program's `argv[0]`.
pub const ARGV0: Var = protocol_var!("SCAR_FC_ARGV0");
/// Per exec, under fake root: the credentials the new program starts with, when they are
/// not root's (`creds.rs`).
pub const CREDS: Var = protocol_var!("SCAR_FC_CREDS");
/// Per exec: the process's name (`/proc/self/comm`, what `ps`, `pgrep` and `killall`
/// match), which the kernel takes from the file it executes: the loader's, here. The shim
/// puts back the name a real exec gives ([`comm_of`]) before `main`.
pub const COMM: Var = protocol_var!("SCAR_FC_COMM");
/// Per exec: the descriptor the program was executed from (`fexecve` of a file no path
/// reaches, a `memfd` or a deleted file) when its caller marked it close-on-exec. The image's
/// loader reads the program through `/dev/fd/N`, so the exec keeps it open; the shim closes
/// it before `main`, where the kernel would have closed it at the exec.
pub const EXEC_FD: Var = protocol_var!("SCAR_FC_EXEC_FD");
/// The variables that describe one exec and are never handed on.
pub const PER_EXEC: [Var; 5] = [EXE, ARGV0, CREDS, COMM, EXEC_FD];

/// The name Linux gives a process that executes `path` (as the caller named it, before
/// symlinks and `#!` lines are followed): its last component. The kernel keeps the first
/// 15 bytes, as `PR_SET_NAME` does.
pub fn comm_of(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// The image's `ldconfig` (static in glibc images, so it would run unconfined and rebuild
/// the *host's* `/etc/ld.so.cache`) is never run: programs here start through the image's
/// loader with `--inhibit-cache` and the image's library directories, so the cache it
/// would write is never read. An exec of it runs `/bin/sh -c :` instead, which succeeds
/// as `ldconfig` would, for package tools' triggers.
pub fn is_ldconfig(container_path: &[u8]) -> bool {
    let name = container_path
        .rsplit(|&b| b == b'/')
        .next()
        .unwrap_or(container_path);
    name == b"ldconfig" || name == b"ldconfig.real"
}

/// What an exec of the image's `ldconfig` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ldconfig {
    /// Rebuilding the cache (every other use): `/bin/sh -c :` runs instead.
    Skip,
    /// `-p`/`--print-cache` (what Python's `ctypes.util.find_library`, and so python-magic,
    /// soundfile and their kind, run to find a library): the image's `ldconfig` runs and
    /// prints the image's cache, which the image's builds kept. It is static and opens host
    /// paths, so the cache is named to it as a host path ([`ldconfig_cache_argument`]);
    /// its first line names the file so.
    PrintCache,
    /// `--help`, `--usage`, `-?`, `-V`, `--version`: it runs as given, reading no file.
    Inform,
}

/// The image's cache, which `ldconfig -p` prints.
pub const LD_SO_CACHE: &[u8] = b"/etc/ld.so.cache";

/// Which of [`Ldconfig`]'s runs `args` (after `argv[0]`) ask for.
pub fn ldconfig_run<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> Ldconfig {
    let mut run = Ldconfig::Skip;
    for arg in args {
        match arg {
            b"-p" | b"--print-cache" => return Ldconfig::PrintCache,
            b"--help" | b"--usage" | b"-?" | b"-V" | b"--version" => run = Ldconfig::Inform,
            _ => {}
        }
    }
    run
}

/// For [`Ldconfig::PrintCache`]: where in `args` (after `argv[0]`) the cache file the caller
/// named with `-C FILE` or `-CFILE` is, as `(index, offset of the name in that argument)`;
/// `None` when the caller named none (the image's [`LD_SO_CACHE`] is added then).
pub fn ldconfig_cache_argument<'a>(
    args: impl IntoIterator<Item = &'a [u8]>,
) -> Option<(usize, usize)> {
    let mut args = args.into_iter().enumerate();
    while let Some((i, arg)) = args.next() {
        if arg == b"-C" {
            return args.next().map(|(j, _)| (j, 0));
        }
        if arg.starts_with(b"-C") {
            return Some((i, 2));
        }
    }
    None
}

/// A program that is a dynamic loader itself, by its file name (glibc's `ld-linux*.so.*`,
/// `ld64.so.*`, `ld.so.*`, musl's `ld-musl-*.so.1`): `ldd` and some launchers run
/// `LOADER [OPTIONS] PROGRAM ARGS…`. It is static, so an exec of it runs it with the
/// rootfs's paths and options ([`LoaderOption`]) as every other exec's loader.
pub fn loader_named(container_path: &[u8]) -> Option<LoaderKind> {
    let name = container_path
        .rsplit(|&b| b == b'/')
        .next()
        .unwrap_or(container_path);
    if name.starts_with(b"ld-musl-") && name.ends_with(b".so.1") {
        return Some(LoaderKind::Musl);
    }
    let by_soname = [&b"ld-linux"[..], b"ld64.so.", b"ld.so."]
        .iter()
        .any(|p| name.starts_with(p))
        && name.windows(4).any(|w| w == b".so.");
    // Before 2.34 the file itself is `ld-2.31.so`, which the soname links to.
    let by_version = name
        .strip_prefix(b"ld-")
        .and_then(|n| n.strip_suffix(b".so"))
        .is_some_and(|v| {
            v.first().is_some_and(u8::is_ascii_digit)
                && v.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        });
    (by_soname || by_version).then_some(LoaderKind::Glibc)
}

/// One argument of a loader run as a program, before the program's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoaderOption {
    /// A flag (`--list`, `--verify`, `--inhibit-cache`, …).
    Flag,
    /// An option whose value, the next argument, names container paths, `:`-separated
    /// (`--library-path`, `--preload`, `--audit`).
    Paths,
    /// An option whose value is no path (`--argv0`, `--inhibit-rpath`, `--glibc-hwcaps-*`).
    Value,
    /// Not an option: the program.
    Program,
}

/// What `arg` is in a loader's command line (glibc's and musl's options).
pub fn loader_option(arg: &[u8]) -> LoaderOption {
    match arg {
        b"--library-path" | b"--preload" | b"--audit" => LoaderOption::Paths,
        b"--argv0" | b"--inhibit-rpath" | b"--glibc-hwcaps-prepend" | b"--glibc-hwcaps-mask" => {
            LoaderOption::Value
        }
        _ if arg.starts_with(b"--") => LoaderOption::Flag,
        _ => LoaderOption::Program,
    }
}

/// Nested `#!` interpreters allowed, as Linux's `BINPRM_MAX_RECURSION`.
pub const MAX_SCRIPT_DEPTH: usize = 4;

/// glibc loaders take `--preload` from 2.30; musl's always.
pub fn loader_has_preload(kind: LoaderKind, glibc: (u32, u32)) -> bool {
    kind == LoaderKind::Musl || glibc >= (2, 30)
}

/// glibc loaders take `--argv0` from 2.33; musl's always.
pub fn loader_has_argv0(kind: LoaderKind, glibc: (u32, u32)) -> bool {
    kind == LoaderKind::Musl || glibc >= (2, 33)
}

/// What an exec does with a statically linked program, which no preload can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StaticPolicy {
    /// Run it unconfined, silently.
    Run,
    /// Run it unconfined with a warning on stderr.
    #[default]
    Warn,
    /// Refuse it (the exec fails with EACCES).
    Refuse,
}

impl StaticPolicy {
    /// The word in [`STATIC`] (and `SCAR_STATIC_BINARIES`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Warn => "warn",
            Self::Refuse => "refuse",
        }
    }

    /// The policy a word names; anything else is the default.
    pub fn from_word(word: &[u8]) -> Self {
        match word {
            b"run" => Self::Run,
            b"refuse" => Self::Refuse,
            _ => Self::Warn,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ldconfig_is_recognised_by_name_only() {
        assert!(is_ldconfig(b"/sbin/ldconfig"));
        assert!(is_ldconfig(b"/usr/sbin/ldconfig.real"));
        assert!(is_ldconfig(b"ldconfig"));
        assert!(!is_ldconfig(b"/usr/bin/ldconfig-helper"));
        assert!(!is_ldconfig(b"/sbin/ldconfig/x"));
    }

    use super::*;

    #[test]
    fn ldconfig_prints_its_cache_and_informs_but_never_rebuilds() {
        let run = |args: &[&[u8]]| ldconfig_run(args.iter().copied());
        assert_eq!(run(&[]), Ldconfig::Skip);
        assert_eq!(run(&[b"-v"]), Ldconfig::Skip);
        assert_eq!(run(&[b"/usr/local/lib"]), Ldconfig::Skip);
        assert_eq!(run(&[b"-p"]), Ldconfig::PrintCache);
        assert_eq!(run(&[b"--version", b"--print-cache"]), Ldconfig::PrintCache);
        assert_eq!(run(&[b"--version"]), Ldconfig::Inform);
        let cache = |args: &[&[u8]]| ldconfig_cache_argument(args.iter().copied());
        assert_eq!(cache(&[b"-p"]), None);
        assert_eq!(cache(&[b"-p", b"-C", b"/x/cache"]), Some((2, 0)));
        assert_eq!(cache(&[b"-C/x/cache", b"-p"]), Some((0, 2)));
        assert_eq!(cache(&[b"-p", b"-C"]), None);
    }

    #[test]
    fn loaders_are_known_by_name() {
        for (path, kind) in [
            (&b"/lib64/ld-linux-x86-64.so.2"[..], LoaderKind::Glibc),
            (b"/lib/ld-linux-aarch64.so.1", LoaderKind::Glibc),
            (b"/lib/ld-linux.so.2", LoaderKind::Glibc),
            (b"/lib64/ld64.so.2", LoaderKind::Glibc),
            (b"/usr/lib/x86_64-linux-gnu/ld-2.31.so", LoaderKind::Glibc),
            (b"/lib/ld-musl-x86_64.so.1", LoaderKind::Musl),
        ] {
            assert_eq!(loader_named(path), Some(kind));
        }
        for other in [
            &b"/usr/bin/ld"[..],
            b"/usr/bin/ld.gold",
            b"/usr/lib/ld-linux-helper",
            b"/usr/lib/ld-.so",
            b"/usr/lib/ld-x.so",
        ] {
            assert_eq!(loader_named(other), None);
        }
        assert_eq!(loader_option(b"--list"), LoaderOption::Flag);
        assert_eq!(loader_option(b"--library-path"), LoaderOption::Paths);
        assert_eq!(loader_option(b"--argv0"), LoaderOption::Value);
        assert_eq!(loader_option(b"/bin/ls"), LoaderOption::Program);
    }

    #[test]
    fn a_variable_has_its_three_spellings() {
        assert_eq!(EXE.name, "SCAR_FC_EXE");
        assert_eq!(EXE.env.to_bytes(), b"SCAR_FC_EXE");
        assert_eq!(EXE.assignment, b"SCAR_FC_EXE=");
        for var in [
            ROOT,
            MOUNTS,
            LIBRARY_PATH,
            GLIBC_SHIM,
            MUSL_SHIM,
            GLIBC,
            STATIC,
            DEBUG,
            EXE,
            ARGV0,
            CREDS,
            COMM,
        ] {
            assert!(var.name.starts_with(PREFIX));
        }
    }

    #[test]
    fn a_process_is_named_after_the_last_component_it_executed() {
        assert_eq!(comm_of(b"/usr/bin/python3"), b"python3");
        assert_eq!(comm_of(b"./run.sh"), b"run.sh");
        assert_eq!(comm_of(b"sleep"), b"sleep");
        assert_eq!(comm_of(b"/dev/fd/3"), b"3");
    }

    #[test]
    fn loader_options_by_libc() {
        assert!(!loader_has_preload(LoaderKind::Glibc, (2, 29)));
        assert!(loader_has_preload(LoaderKind::Glibc, (2, 30)));
        assert!(!loader_has_argv0(LoaderKind::Glibc, (2, 32)));
        assert!(loader_has_argv0(LoaderKind::Glibc, (2, 33)));
        assert!(loader_has_argv0(LoaderKind::Musl, (0, 0)));
        for policy in [StaticPolicy::Run, StaticPolicy::Warn, StaticPolicy::Refuse] {
            assert_eq!(StaticPolicy::from_word(policy.as_str().as_bytes()), policy);
        }
        assert_eq!(StaticPolicy::from_word(b"?"), StaticPolicy::Warn);
    }
}
