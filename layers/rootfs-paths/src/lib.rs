//! The pure logic of running a program inside an unpacked image without privileges.
//!
//! Everything here works on byte slices and fixed buffers, never allocates and never
//! touches the filesystem: the shim calls it from `vfork` children, where `malloc` may
//! deadlock, and `bootstrap` calls it to plan the first exec. File access stays with
//! the callers.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod accounts;
pub mod buf;
pub mod creds;
pub mod dotdot;
pub mod elf;
pub mod fetch;
#[cfg(test)]
mod fuzz;
pub mod init_wrapper;
pub mod layout;
pub mod listing;
pub mod proc_cmdline;
pub mod proc_environ;
pub mod proc_exe;
pub mod proc_path;
pub mod proc_status;
pub mod protocol;
pub mod script;
pub mod shm;
pub mod syscall_gate;

pub use buf::{Overflow, PathBuf};
pub use elf::{ElfKind, LoaderKind};
pub use layout::{Layout, Mount};
pub use script::Shebang;
