//! The runtime: what the function is configured to do, how a command runs inside a rootfs,
//! and how a Lambda event becomes a run and a response.
//!
//! - [`settings`]: every `SCAR_` setting, written once (name, flag, default, range, meaning);
//!   the binaries' command lines, [`FunctionConfig`] and the documentation come from it;
//! - [`exec`]: a command inside a rootfs, through the fakechroot shim, in its own process
//!   group, with captured output and a deadline;
//! - [`lambda`]: events, the handler, the typed response, the invocation loop.
//!
//! It sits on the image engine (`scar-image`) and the path rules (`rootfs-paths`), and never
//! on a command line: clap types stay in the binaries.

#![warn(missing_docs)]

mod config;
mod docs;
pub mod exec;
pub mod lambda;
pub mod logging;
pub mod settings;

pub use config::{ConfigError, ExecOptions, FunctionConfig, Lookup, exec_options, pull_options};
