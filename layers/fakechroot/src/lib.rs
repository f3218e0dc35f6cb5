//! `scar-fakechroot`: an LD_PRELOAD library that makes an unpacked image look like `/`.
//!
//! Loaded by the image's own dynamic loader into every process of the container
//! (`ld.so --preload`), it translates path arguments into the rootfs, maps paths that
//! come back out of the kernel to container paths, and runs every exec through the
//! image's loader again. The rules live in `rootfs-paths`; this crate is the thin
//! `extern "C"` layer over them. With `SCAR_FC_ROOT` unset it only passes calls through.
//!
//! Variables (set by bootstrap and handed on by every exec):
//!
//! | variable | meaning |
//! |---|---|
//! | `SCAR_FC_ROOT` | host path of the rootfs |
//! | `SCAR_FC_MOUNTS` | `:`-separated `PATH` (passthrough) or `CONTAINER=HOST` entries |
//! | `SCAR_FC_LIBRARY_PATH` | host library directories for `--library-path` |
//! | `SCAR_FC_GLIBC_SHIM`, `SCAR_FC_MUSL_SHIM` | host paths of the two builds of this library |
//! | `SCAR_FC_GLIBC` | the image's glibc version (`2.36`): which loader options exist |
//! | `SCAR_FC_STATIC` | `warn` (default), `run` or `refuse` for statically linked programs |
//! | `SCAR_FC_DEBUG` | `1`: one stderr line per exec |
//! | `SCAR_FC_FETCH` | the fetcher's socket, while the rootfs is a lazy tree still filling |
//! | `SCAR_FC_EXE`, `SCAR_FC_ARGV0` | per exec: the program's container path and `argv[0]` |
//! | `SCAR_FC_COMM` | per exec: the process's name, as a real exec of the program gives it |
//! | `SCAR_FC_CREDS` | per exec, under fake root: the ids the program starts with, when not root's |
//! | `SCAR_FC_EXEC_FD` | per exec: a close-on-exec descriptor the program was run from, to close |

// Every unsafe operation carries its own reason: the shim runs inside every program of the
// container, where a wrong pointer is the user's crash, not ours.
#![deny(
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc,
    clippy::multiple_unsafe_ops_per_block
)]

mod accounts;
mod arena;
mod dirs;
mod exec;
mod fakeroot;
mod fs;
mod gate;
mod ident;
mod ident_list;
mod lazy;
mod listed;
mod names;
mod proc_files;
mod shadow;
mod shm;
mod sockets;
mod spawn;
mod stat;
mod state;
mod sys;
mod translate;
mod variadic;

#[cfg(target_env = "gnu")]
use std::ffi::{c_char, c_int};

#[cfg(target_env = "gnu")]
unsafe extern "C" {
    static mut program_invocation_name: *mut c_char;
    static mut program_invocation_short_name: *mut c_char;
}

/// Runs when the loader maps the shim, before the program's `main`.
///
/// glibc loaders before 2.33 have no `--argv0`, so the program starts with the host path
/// of itself in `argv[0]`: the exec path passes the real one in `SCAR_FC_ARGV0` and it is put
/// back here, where glibc hands initialisers the very argv that `main` receives.
#[cfg(target_env = "gnu")]
extern "C" fn init(argc: c_int, argv: *mut *mut c_char, _envp: *mut *mut c_char) {
    if state::get().is_none() {
        return;
    }
    fakeroot::adopt_inherited();
    take_program_name();
    close_exec_descriptor();
    bind_libc_messages();
    // SAFETY: getenv returns a pointer into the environment block, whose strings outlive
    // main even once their entries leave `environ` below.
    let argv0 = unsafe { libc::getenv(rootfs_paths::protocol::ARGV0.env.as_ptr()) };
    hide_own_variables();
    if argc < 1 || argv.is_null() || argv0.is_null() {
        return;
    }
    // SAFETY: argv has argc ≥ 1 entries.
    unsafe { *argv = argv0 };
    // SAFETY: glibc's program name; initialisers run before any other thread exists.
    unsafe { program_invocation_name = argv0 };
    // SAFETY: a getenv result is NUL-terminated.
    let name = unsafe { sys::bytes(argv0) };
    let base = name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    // SAFETY: `base` is within the string.
    let short = unsafe { argv0.add(base) };
    // SAFETY: as for program_invocation_name.
    unsafe { program_invocation_short_name = short };
}

/// glibc's own messages (`strerror`, `perror`, `%m`) come from its `libc` catalog, which
/// glibc looks up from inside libc under its compiled-in `/usr/share/locale`: the host's.
/// Bound to the image's directory (through our `bindtextdomain`, which translates it), they
/// are the image's, as in a real container; a program's own domains are bound by the
/// program itself, through the same wrapper.
#[cfg(target_env = "gnu")]
fn bind_libc_messages() {
    // SAFETY: NUL-terminated literals; glibc copies both strings.
    unsafe { fs::bindtextdomain(c"libc".as_ptr(), c"/usr/share/locale".as_ptr()) };
}

#[cfg(not(target_env = "gnu"))]
extern "C" fn init() {
    if state::get().is_some() {
        fakeroot::adopt_inherited();
        take_program_name();
        close_exec_descriptor();
        hide_own_variables();
    }
}

/// A real container's programs see only their own variables: `env`, `os.environ` or
/// `process.env` listing `SCAR_FC_*` (host paths) would differ from `chroot` and hand the
/// host's layout to whatever a script records. Everything the shim needs from them is in
/// its state by now (read above and in `state.rs`), and every exec hands them on again
/// from there (`exec.rs`), so their entries leave `environ`; the strings stay where they
/// are. `/proc/<pid>/environ`, the kernel's copy, still shows them (docs/limits.md).
fn hide_own_variables() {
    let Some(st) = state::get() else {
        return;
    };
    let list = sys::environment();
    if list.is_null() {
        return;
    }
    // SAFETY: the process's NULL-terminated array of NUL-terminated strings, read in an
    // initialiser, before the program runs and can change it.
    let len = unsafe { arena::entries(list) }.len();
    // SAFETY: that array, its `len` entries and the NULL after them, in writable memory
    // (the initial stack, or the heap after a setenv); initialisers run before the program
    // starts a thread, so nothing else reads or writes it meanwhile. Entries only move
    // down within it, as glibc's and musl's unsetenv move them.
    let entries = unsafe { std::slice::from_raw_parts_mut(list.cast_mut(), len + 1) };
    let mut kept = 0;
    for at in 0..len {
        let entry = entries[at];
        // SAFETY: each entry is NUL-terminated.
        let bytes = unsafe { sys::bytes(entry) };
        if !(bytes.starts_with(rootfs_paths::protocol::PREFIX.as_bytes())
            || st.is_own_preload(bytes))
        {
            entries[kept] = entry;
            kept += 1;
        }
    }
    entries[kept] = std::ptr::null();
}

/// The kernel named this process after the file it executed, the image's loader (so
/// `pgrep python3`, `killall` and `ps` would see `ld-linux-x86-64`); a real exec names it
/// after the program, which the exec path passes in `SCAR_FC_COMM`.
fn take_program_name() {
    // SAFETY: getenv of a NUL-terminated name; initialisers run before any other thread.
    let name = unsafe { libc::getenv(rootfs_paths::protocol::COMM.env.as_ptr()) };
    if name.is_null() {
        return;
    }
    // SAFETY: PR_SET_NAME copies at most 15 bytes of a NUL-terminated string and names the
    // calling thread, the only one yet.
    unsafe { sys::raw_syscall!(libc::SYS_prctl, libc::PR_SET_NAME, name) };
}

/// A program run from a close-on-exec descriptor (`exec::exec_descriptor`) starts with it
/// open, since its loader had to read the program through it; the kernel would have closed
/// it at the exec.
fn close_exec_descriptor() {
    // SAFETY: getenv of a NUL-terminated name; initialisers run before any other thread.
    let value = unsafe { libc::getenv(rootfs_paths::protocol::EXEC_FD.env.as_ptr()) };
    if value.is_null() {
        return;
    }
    // SAFETY: a getenv result is NUL-terminated.
    let digits = unsafe { sys::bytes(value) };
    if let Some(fd) =
        rootfs_paths::buf::parse_decimal(digits).and_then(|n| std::ffi::c_int::try_from(n).ok())
    {
        sys::close(fd);
    }
}

#[cfg(target_env = "gnu")]
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) = init;

#[cfg(not(target_env = "gnu"))]
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;
