//! What the shim's `syscall()` gate does with each system call number.
//!
//! Programs that call the kernel through libc's raw `syscall()` (libuv's `statx`, Rust's
//! std, Go's cgo helpers, liburing) bypass every named wrapper the shim interposes, so the
//! kernel would resolve their paths on the host: silently wrong answers. The shim
//! therefore interposes `syscall()` itself, and this table says, per call, where its
//! path arguments are and which named libc function's translation applies. Every number
//! not listed passes through untouched; a path-taking call the shim cannot translate is
//! listed as [`Gate::Refuse`] and fails with `ENOSYS`, never reaching the host's file.
//!
//! Numbers come from the `syscalls` crate's per-architecture tables, so the shim's
//! `match` and `docs/syscall-gate.md` (checked by a test in scar-runtime's `docs.rs`) are
//! built from the same names for x86_64 and aarch64.

use syscalls::{aarch64, x86_64};

/// Which architectures have a call (the legacy non-`at` calls are x86_64 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arches {
    Both,
    X86_64,
    Aarch64,
}

/// How a final `/proc/self/exe` is treated, as the named libc wrapper treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExeLink {
    /// Opened or followed: it names the program, not the loader that runs it (`open`, `stat`).
    Program,
    /// Left as the kernel's link (`lstat`, the `*at` calls, which may be asked not to follow).
    Kernel,
}

/// One path argument: its index among the six arguments, and the index of the directory
/// descriptor it is relative to (`None`: the current directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathArg {
    pub dirfd: Option<u8>,
    pub path: u8,
    pub exe: ExeLink,
}

/// What the gate does with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Translate the path arguments as the named libc call does, then make the call.
    Paths {
        first: PathArg,
        second: Option<PathArg>,
        effect: Effect,
    },
    /// A stat-type call: paths as for [`Gate::Paths`]; a symlink not followed reports the
    /// length of its container target, as `readlink` returns it.
    Stat {
        path: PathArg,
        /// Where the `AT_SYMLINK_NOFOLLOW` flags are, or `None`: never follows (`lstat`).
        flags: Option<u8>,
        buf: u8,
        layout: StatLayout,
    },
    /// The `chown` family, as the shim's functions of that name (fake root remembers it).
    Chown(ChownCall),
    /// `readlink[at]`: a link's target comes back as a container path.
    Readlink {
        dirfd: Option<u8>,
    },
    /// `symlink[at]`: the target is stored as the shim's `symlinkat` stores it.
    Symlink {
        dirfd: Option<u8>,
    },
    /// The cwd, as a container path; the kernel's return value (length with the NUL).
    Getcwd,
    /// Through the shim's exec path (the image's loader, `#!` planning).
    Execve,
    Execveat,
    /// `ENOSYS`: a path the shim cannot translate (privileged or opaque), or io_uring, whose
    /// file operations no interposer sees; programs fall back to plain calls.
    Refuse,
}

/// What the named wrapper does besides translating, which the gate does too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing more.
    None,
    /// Opens the first path, with its `O_*` flags at this argument (`None`: in a
    /// structure): a lazy tree's placeholder is filled first, and under fake root a
    /// process's `/proc/…/status` is answered with fake ids.
    Opens { flags: Option<u8> },
    /// Reads or changes the first path's bytes (`truncate`) or gives it another name
    /// (`link`): a lazy tree's placeholder is filled first.
    Fills,
    /// Removes the first name: under fake root, an owner remembered for its file is
    /// forgotten when this was the file's last name.
    Removes,
    /// Renames the first over the second: the first is filled first, and the file the
    /// second named is forgotten as by [`Effect::Removes`].
    Renames,
}

/// Which `chown` a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChownCall {
    /// `fchown(fd, uid, gid)`.
    Fd,
    /// `fchownat(dirfd, path, uid, gid, flags)`.
    At,
    /// `chown(path, uid, gid)`.
    Path,
    /// `lchown(path, uid, gid)`.
    LinkPath,
}

/// The structure a stat-type call fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatLayout {
    /// The kernel's `struct stat`, which is libc's on x86_64 and aarch64.
    Stat,
    Statx,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    pub arches: Arches,
    pub gate: Gate,
}

impl Entry {
    /// The call's number on x86_64, if it exists there.
    pub fn x86_64(&self) -> Option<usize> {
        (self.arches != Arches::Aarch64)
            .then(|| {
                self.name
                    .parse::<x86_64::Sysno>()
                    .ok()
                    .map(|n| n.id() as usize)
            })
            .flatten()
    }

    /// The call's number on aarch64, if it exists there.
    pub fn aarch64(&self) -> Option<usize> {
        (self.arches != Arches::X86_64)
            .then(|| {
                self.name
                    .parse::<aarch64::Sysno>()
                    .ok()
                    .map(|n| n.id() as usize)
            })
            .flatten()
    }
}

const fn cwd(path: u8, exe: ExeLink) -> PathArg {
    PathArg {
        dirfd: None,
        path,
        exe,
    }
}

const fn at(dirfd: u8, exe: ExeLink) -> PathArg {
    PathArg {
        dirfd: Some(dirfd),
        path: dirfd + 1,
        exe,
    }
}

const fn one(first: PathArg) -> Gate {
    with(first, Effect::None)
}

const fn with(first: PathArg, effect: Effect) -> Gate {
    Gate::Paths {
        first,
        second: None,
        effect,
    }
}

const fn opens(first: PathArg, flags: Option<u8>) -> Gate {
    with(first, Effect::Opens { flags })
}

const fn two(first: PathArg, second: PathArg, effect: Effect) -> Gate {
    Gate::Paths {
        first,
        second: Some(second),
        effect,
    }
}

use ExeLink::{Kernel, Program};

/// Writes [`TABLE`] and the target's `classify` from one list, so the two never differ.
macro_rules! gate_table {
    (
        both { $($both:ident => $both_gate:expr,)* }
        x86_64 { $($x86:ident => $x86_gate:expr,)* }
        aarch64 { $($arm:ident => $arm_gate:expr,)* }
    ) => {
        /// Every call the gate does not pass through untouched.
        pub const TABLE: &[Entry] = &[
            $(Entry { name: stringify!($both), arches: Arches::Both, gate: $both_gate },)*
            $(Entry { name: stringify!($x86), arches: Arches::X86_64, gate: $x86_gate },)*
            $(Entry { name: stringify!($arm), arches: Arches::Aarch64, gate: $arm_gate },)*
        ];

        /// The gate for call number `nr` on the architecture this is built for; `None`
        /// passes the call through.
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        pub fn classify(nr: usize) -> Option<Gate> {
            #[cfg(target_arch = "x86_64")]
            use x86_64::Sysno;
            #[cfg(target_arch = "aarch64")]
            use aarch64::Sysno;
            match Sysno::new(nr)? {
                $(Sysno::$both => Some($both_gate),)*
                $(#[cfg(target_arch = "x86_64")] Sysno::$x86 => Some($x86_gate),)*
                $(#[cfg(target_arch = "aarch64")] Sysno::$arm => Some($arm_gate),)*
                _ => None,
            }
        }
    };
}

// Opens (`Program`: a final /proc/self/exe opens the program, as the shim's `open` does),
// queries, changes, execs, then the calls refused.
gate_table! {
    both {
        openat => opens(at(0, Program), Some(2)),
        openat2 => opens(at(0, Program), None),
        statx => Gate::Stat { path: at(0, Kernel), flags: Some(2), buf: 4, layout: StatLayout::Statx },
        faccessat => one(at(0, Kernel)),
        faccessat2 => one(at(0, Kernel)),
        statfs => one(cwd(0, Program)),
        readlinkat => Gate::Readlink { dirfd: Some(0) },
        getcwd => Gate::Getcwd,
        chdir => one(cwd(0, Program)),
        chroot => one(cwd(0, Program)),
        inotify_add_watch => one(cwd(1, Program)),
        fanotify_mark => one(PathArg { dirfd: Some(3), path: 4, exe: Kernel }),
        name_to_handle_at => one(at(0, Kernel)),
        open_tree => one(at(0, Kernel)),
        mkdirat => one(at(0, Kernel)),
        mknodat => one(at(0, Kernel)),
        unlinkat => with(at(0, Kernel), Effect::Removes),
        fchmodat => one(at(0, Kernel)),
        fchmodat2 => one(at(0, Kernel)),
        fchownat => Gate::Chown(ChownCall::At),
        fchown => Gate::Chown(ChownCall::Fd),
        utimensat => one(at(0, Kernel)),
        truncate => with(cwd(0, Program), Effect::Fills),
        setxattr => one(cwd(0, Program)),
        lsetxattr => one(cwd(0, Kernel)),
        getxattr => one(cwd(0, Program)),
        lgetxattr => one(cwd(0, Kernel)),
        listxattr => one(cwd(0, Program)),
        llistxattr => one(cwd(0, Kernel)),
        removexattr => one(cwd(0, Program)),
        lremovexattr => one(cwd(0, Kernel)),
        renameat => two(at(0, Kernel), at(2, Kernel), Effect::Renames),
        renameat2 => two(at(0, Kernel), at(2, Kernel), Effect::Renames),
        linkat => two(at(0, Kernel), at(2, Kernel), Effect::Fills),
        symlinkat => Gate::Symlink { dirfd: Some(1) },
        execve => Gate::Execve,
        execveat => Gate::Execveat,
        io_uring_setup => Gate::Refuse,
        mount => Gate::Refuse,
        umount2 => Gate::Refuse,
        move_mount => Gate::Refuse,
        fspick => Gate::Refuse,
        fsconfig => Gate::Refuse,
        mount_setattr => Gate::Refuse,
        pivot_root => Gate::Refuse,
        swapon => Gate::Refuse,
        swapoff => Gate::Refuse,
        acct => Gate::Refuse,
        quotactl => Gate::Refuse,
        setxattrat => Gate::Refuse,
        getxattrat => Gate::Refuse,
        listxattrat => Gate::Refuse,
        removexattrat => Gate::Refuse,
    }
    // The legacy calls that aarch64 never had.
    x86_64 {
        open => opens(cwd(0, Program), Some(1)),
        creat => one(cwd(0, Program)),
        newfstatat => Gate::Stat { path: at(0, Kernel), flags: Some(3), buf: 2, layout: StatLayout::Stat },
        stat => one(cwd(0, Program)),
        lstat => Gate::Stat { path: cwd(0, Kernel), flags: None, buf: 1, layout: StatLayout::Stat },
        access => one(cwd(0, Program)),
        readlink => Gate::Readlink { dirfd: None },
        mkdir => one(cwd(0, Program)),
        mknod => one(cwd(0, Program)),
        unlink => with(cwd(0, Kernel), Effect::Removes),
        rmdir => with(cwd(0, Kernel), Effect::Removes),
        chmod => one(cwd(0, Program)),
        chown => Gate::Chown(ChownCall::Path),
        lchown => Gate::Chown(ChownCall::LinkPath),
        futimesat => one(at(0, Kernel)),
        utime => one(cwd(0, Program)),
        utimes => one(cwd(0, Program)),
        rename => two(cwd(0, Kernel), cwd(1, Kernel), Effect::Renames),
        link => two(cwd(0, Kernel), cwd(1, Kernel), Effect::Fills),
        symlink => Gate::Symlink { dirfd: None },
        uselib => Gate::Refuse,
    }
    aarch64 {
        fstatat => Gate::Stat { path: at(0, Kernel), flags: Some(3), buf: 2, layout: StatLayout::Stat },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_exists_on_the_architectures_it_claims() {
        for entry in TABLE {
            match entry.arches {
                Arches::Both => assert!(
                    entry.x86_64().is_some() && entry.aarch64().is_some(),
                    "{}",
                    entry.name
                ),
                Arches::X86_64 => assert!(
                    entry.x86_64().is_some() && entry.name.parse::<aarch64::Sysno>().is_err(),
                    "{} is x86_64 only",
                    entry.name
                ),
                Arches::Aarch64 => assert!(
                    entry.aarch64().is_some() && entry.name.parse::<x86_64::Sysno>().is_err(),
                    "{} is aarch64 only",
                    entry.name
                ),
            }
        }
    }

    #[test]
    fn classify_matches_the_table_and_passes_the_rest() {
        #[cfg(target_arch = "x86_64")]
        let number = Entry::x86_64;
        #[cfg(target_arch = "aarch64")]
        let number = Entry::aarch64;
        for entry in TABLE {
            if let Some(nr) = number(entry) {
                assert_eq!(classify(nr), Some(entry.gate), "{}", entry.name);
            }
        }
        for passed in [
            "read",
            "write",
            "futex",
            "getrandom",
            "clone",
            "fstat",
            "getdents64",
        ] {
            #[cfg(target_arch = "x86_64")]
            let nr = passed.parse::<x86_64::Sysno>().map(|n| n.id());
            #[cfg(target_arch = "aarch64")]
            let nr = passed.parse::<aarch64::Sysno>().map(|n| n.id());
            assert_eq!(classify(nr.unwrap() as usize), None, "{passed}");
        }
        assert_eq!(classify(100_000), None);
    }

    #[test]
    fn the_numbers_are_the_kernels() {
        // Spot checks against the kernel's unistd headers.
        let find = |name: &str| TABLE.iter().find(|e| e.name == name).unwrap();
        assert_eq!(find("statx").x86_64(), Some(332));
        assert_eq!(find("statx").aarch64(), Some(291));
        assert_eq!(find("openat").aarch64(), Some(56));
        assert_eq!(find("newfstatat").x86_64(), Some(262));
        assert_eq!(find("fstatat").aarch64(), Some(79));
        assert_eq!(find("io_uring_setup").x86_64(), Some(425));
        assert_eq!(find("open").aarch64(), None);
    }
}
