//! Applying layers to a rootfs as an unprivileged user, safely.
//!
//! Rules (docs/architecture.md, "Rootfs conventions"):
//! * whiteouts `.wh.NAME` and opaque markers `.wh..wh..opq` hide lower-layer content;
//! * regular files, directories, symlinks and hard links are created; device nodes and fifos
//!   are skipped and counted (an unprivileged user cannot make devices, and the container
//!   sees the host's `/dev` anyway);
//! * modes and mtimes are kept, except that setuid/setgid bits are dropped, files stay
//!   readable by their owner and directories stay `rwx` for their owner (so the rootfs can
//!   always be read, extended and deleted by the uid that unpacked it); ownership is not
//!   kept, since only root could;
//! * no entry may write outside the rootfs: absolute names, `..`, entries below a symlink,
//!   hard links to outside paths and a directory replacing a symlink of the same layer are
//!   refused with [`UnpackError::Unsafe`];
//! * absolute symlink targets are stored prefixed with the rootfs path
//!   ([`path::confined_link_target`]).

mod apply;
pub mod blob;
#[cfg(test)]
mod confinement;
mod finisher;
mod guard;
pub mod path;
mod path_set;
mod sparse;

use std::io;
use std::path::PathBuf;

pub use apply::{LayerApplier, LayerStats, LazyFiles};

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A hostile or broken entry: it would write outside the rootfs.
    #[error("refused layer entry {path:?}: {reason}")]
    Unsafe {
        /// The entry name as found in the tar.
        path: String,
        /// Which rule it broke.
        reason: String,
    },
    /// `/tmp` filled up.
    #[error(
        "no space left on device while writing {path}: the unpacked image does not fit in /tmp \
         (raise the function's ephemeral storage, up to 10240 MB)"
    )]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// Any other filesystem error.
    #[error("cannot write {path}: {error}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The tar stream itself is corrupt or its source failed.
    #[error("corrupt layer stream: {0}")]
    Stream(io::Error),
}

impl UnpackError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: io::Error) -> Self {
        let path = path.into();
        if error.raw_os_error() == Some(nix::libc::ENOSPC) {
            Self::NoSpace { path }
        } else {
            Self::Io { path, error }
        }
    }
}
