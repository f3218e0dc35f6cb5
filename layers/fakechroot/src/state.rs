//! What the shim knows, read once from `SCAR_FC_*` variables that bootstrap (or the exec
//! path of a parent process) sets.
//!
//! Read at load time, when allocating is safe, and never written again: the exec path
//! only reads it, which a vfork child may do.

use std::ffi::CStr;
use std::sync::OnceLock;

use rootfs_paths::layout::{Mount, parse_mounts};
use rootfs_paths::{Layout, LoaderKind, protocol};

pub use rootfs_paths::protocol::StaticPolicy;

#[derive(Debug)]
pub struct State {
    pub root: &'static [u8],
    pub mounts: &'static [Mount<'static>],
    /// Host directories for `--library-path`, `:`-separated.
    pub library_path: &'static [u8],
    pub glibc_shim: Option<&'static CStr>,
    pub musl_shim: Option<&'static CStr>,
    /// The image's glibc `(major, minor)`: which loader options exist.
    pub glibc: (u32, u32),
    /// This process's program, as a container path.
    pub exe: Option<&'static [u8]>,
    pub static_policy: StaticPolicy,
    pub debug: bool,
    /// Fake root: the host path of the ownership file (`fakeroot.rs`).
    pub fakeroot: Option<&'static CStr>,
    /// Every `SCAR_FC_*=…` entry that an exec must hand on, even through a scrubbed env.
    pub inherited: &'static [&'static CStr],
    /// The fetcher's socket while the rootfs is a lazy tree still filling (`lazy.rs`).
    pub fetch: Option<&'static [u8]>,
}

impl State {
    /// Whether an `LD_PRELOAD=…` entry is the one the exec path sets for a loader without
    /// `--preload` (glibc < 2.30): the shim's, handed on by every exec.
    pub fn is_own_preload(&self, entry: &[u8]) -> bool {
        entry.starts_with(b"LD_PRELOAD=")
            && [self.glibc_shim, self.musl_shim]
                .iter()
                .flatten()
                .any(|shim| entry.ends_with(shim.to_bytes()))
    }
}

static STATE: OnceLock<Option<State>> = OnceLock::new();

/// The shim's state, or `None` when no rootfs is set: then every call passes through.
pub fn get() -> Option<&'static State> {
    STATE.get_or_init(load).as_ref()
}

fn var(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv returns a pointer into the environment block or NULL; the block of a
    // fresh process lives as long as the process unless the program rewrites it, and the
    // values are copied below where it matters.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: non-null getenv results are NUL-terminated.
    let bytes = unsafe { CStr::from_ptr(value) }.to_bytes();
    Some(Box::leak(bytes.to_vec().into_boxed_slice()))
}

fn leak_cstr(bytes: &[u8]) -> Option<&'static CStr> {
    let mut owned = bytes.to_vec();
    owned.push(0);
    CStr::from_bytes_with_nul(Box::leak(owned.into_boxed_slice())).ok()
}

fn load() -> Option<State> {
    let root = var(protocol::ROOT.env)?;
    let mut mounts: Vec<Mount<'static>> = var(protocol::MOUNTS.env)
        .map(|s| parse_mounts(s).collect())
        .unwrap_or_default();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.container.len()));
    let glibc = var(protocol::GLIBC.env)
        .and_then(|v| {
            let text = std::str::from_utf8(v).ok()?;
            let (major, minor) = text.split_once('.')?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
        .unwrap_or((0, 0));
    let static_policy =
        var(protocol::STATIC.env).map_or(StaticPolicy::Warn, StaticPolicy::from_word);
    Some(State {
        root,
        mounts: Box::leak(mounts.into_boxed_slice()),
        library_path: var(protocol::LIBRARY_PATH.env).unwrap_or_default(),
        glibc_shim: var(protocol::GLIBC_SHIM.env).and_then(leak_cstr),
        musl_shim: var(protocol::MUSL_SHIM.env).and_then(leak_cstr),
        glibc,
        exe: var(protocol::EXE.env),
        static_policy,
        debug: var(protocol::DEBUG.env).is_some_and(|v| !v.is_empty() && v != b"0"),
        fakeroot: var(protocol::FAKEROOT.env)
            .filter(|v| !v.is_empty())
            .and_then(leak_cstr),
        inherited: Box::leak(inherited_vars().into_boxed_slice()),
        fetch: var(protocol::FETCH.env).filter(|v| !v.is_empty()),
    })
}

fn inherited_vars() -> Vec<&'static CStr> {
    let mut out = Vec::new();
    // SAFETY: the process's NULL-terminated array of NUL-terminated strings, read at load
    // time before the program can change it.
    let entries = unsafe { crate::arena::entries(crate::sys::environment()) };
    for &entry in entries {
        // SAFETY: each entry is NUL-terminated.
        let bytes = unsafe { CStr::from_ptr(entry) }.to_bytes();
        if bytes.starts_with(protocol::PREFIX.as_bytes())
            && !protocol::PER_EXEC
                .iter()
                .any(|p| bytes.starts_with(p.assignment))
            && let Some(kept) = leak_cstr(bytes)
        {
            out.push(kept);
        }
    }
    out
}

impl State {
    pub fn layout(&self) -> Layout<'static> {
        Layout {
            root: self.root,
            mounts: self.mounts,
        }
    }

    pub fn shim(&self, kind: LoaderKind) -> Option<&'static CStr> {
        match kind {
            LoaderKind::Glibc => self.glibc_shim,
            LoaderKind::Musl => self.musl_shim,
        }
    }

    pub fn loader_has_preload(&self, kind: LoaderKind) -> bool {
        protocol::loader_has_preload(kind, self.glibc)
    }

    pub fn loader_has_argv0(&self, kind: LoaderKind) -> bool {
        protocol::loader_has_argv0(kind, self.glibc)
    }
}
