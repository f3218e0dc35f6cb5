//! What `/proc/<pid>/cmdline` says for a program of the container.
//!
//! Every program here starts as `ROOT/…/ld.so --library-path DIRS [--inhibit-cache]
//! [--preload SHIM] [--argv0 NAME] ROOT/PROGRAM ARGS…`, and the kernel's cmdline is that
//! whole line (with a caller's own loader options after ours when it ran the loader itself,
//! as `ldd` does: they are the loader's, [`loader_option`]). `ps`, `pgrep -f`, `pkill -f`, psutil and "is it already running?" checks
//! would see host paths and the loader's options where a chroot shows `NAME ARGS…`. The
//! shim answers an open of the file with a copy that starts at the program's own `argv[0]`.
//! A process not started that way (the host's, or one that rewrote its title, as
//! `setproctitle` does) is shown as the kernel has it.

use crate::protocol::{LoaderOption, loader_option};

/// True for `/proc/{self,thread-self,PID}/cmdline` and `/proc/{self,PID}/task/TID/cmdline`.
pub fn is_cmdline(path: &[u8]) -> bool {
    crate::proc_path::process_file(path, b"cmdline").is_some()
}

/// Where the program's own command line starts in a loader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch<'a> {
    /// The program's `argv[0]`.
    pub argv0: Argv0<'a>,
    /// Offset in the kernel's cmdline of the program's first argument after `argv[0]`.
    pub args_start: usize,
}

/// The program's `argv[0]`, as far as the cmdline tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argv0<'a> {
    /// The loader's `--argv0`.
    Given(&'a [u8]),
    /// Loaders without `--argv0` (glibc before 2.33) have only the program's host path;
    /// the exec passed `argv[0]` in `SCAR_FC_ARGV0`, which the caller may look up.
    HostProgram(&'a [u8]),
}

/// `Some` when `head`, the start of a kernel cmdline (NUL-separated), is a program of the
/// rootfs at host path `root` started through its loader, and holds everything up to the
/// program's first argument.
pub fn launch<'a>(head: &'a [u8], root: &[u8]) -> Option<Launch<'a>> {
    let mut fields = Fields { head, at: 0 };
    if !inside(fields.next()?, root) || fields.peek()? != b"--library-path" {
        return None;
    }
    let mut argv0 = None;
    loop {
        let field = fields.next()?;
        match loader_option(field) {
            LoaderOption::Flag => {}
            LoaderOption::Paths => {
                fields.next()?;
            }
            LoaderOption::Value => {
                let value = fields.next()?;
                if field == b"--argv0" {
                    argv0 = Some(value);
                }
            }
            LoaderOption::Program => {
                return Some(Launch {
                    argv0: argv0.map_or(Argv0::HostProgram(field), Argv0::Given),
                    args_start: fields.at,
                });
            }
        }
    }
}

fn inside(path: &[u8], root: &[u8]) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.first() == Some(&b'/'))
}

/// The NUL-terminated fields of a cmdline; a field cut off by the end of `head` is none.
struct Fields<'a> {
    head: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn peek(&self) -> Option<&'a [u8]> {
        let rest = self.head.get(self.at..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(&rest[..end])
    }

    fn next(&mut self) -> Option<&'a [u8]> {
        let field = self.peek()?;
        self.at += field.len() + 1;
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &[u8] = b"/tmp/scar/images/abc/rootfs";

    #[test]
    fn cmdline_paths_are_recognised() {
        for yes in [
            &b"/proc/self/cmdline"[..],
            b"/proc/thread-self/cmdline",
            b"/proc/42/cmdline",
            b"/proc/42/task/43/cmdline",
            b"/proc/self/task/1/cmdline",
        ] {
            assert!(is_cmdline(yes), "{}", std::str::from_utf8(yes).unwrap());
        }
        for no in [
            &b"/proc/self/status"[..],
            b"/proc/cmdline",
            b"/proc/x/cmdline",
            b"/proc/42/task/cmdline",
            b"/proc/thread-self/task/1/cmdline",
            b"/proc/42/cmdline/x",
            b"/tmp/proc/42/cmdline",
        ] {
            assert!(!is_cmdline(no), "{}", std::str::from_utf8(no).unwrap());
        }
    }

    #[test]
    fn a_glibc_launch_starts_at_argv0() {
        let line = b"/tmp/scar/images/abc/rootfs/lib64/ld-linux-x86-64.so.2\0--library-path\0/a:/b\0--inhibit-cache\0--preload\0/opt/lib/shim.so\0--argv0\0cat\0/tmp/scar/images/abc/rootfs/usr/bin/cat\0/proc/self/cmdline\0";
        let launch = launch(line, ROOT).unwrap();
        assert_eq!(launch.argv0, Argv0::Given(b"cat"));
        assert_eq!(&line[launch.args_start..], b"/proc/self/cmdline\0");
    }

    #[test]
    fn a_callers_own_loader_options_are_cut_too() {
        let line = b"/tmp/scar/images/abc/rootfs/lib64/ld.so\0--library-path\0/a\0--argv0\0sh\0--inhibit-rpath\0\0--verify\0/tmp/scar/images/abc/rootfs/bin/sh\0-c\0:\0";
        let launch = launch(line, ROOT).unwrap();
        assert_eq!(launch.argv0, Argv0::Given(b"sh"));
        assert_eq!(&line[launch.args_start..], b"-c\0:\0");
    }

    #[test]
    fn an_old_loader_leaves_only_the_program_path() {
        let line = b"/tmp/scar/images/abc/rootfs/lib64/ld-linux-x86-64.so.2\0--library-path\0/a\0--inhibit-cache\0/tmp/scar/images/abc/rootfs/bin/sh\0";
        let launch = launch(line, ROOT).unwrap();
        assert_eq!(
            launch.argv0,
            Argv0::HostProgram(b"/tmp/scar/images/abc/rootfs/bin/sh")
        );
        assert_eq!(launch.args_start, line.len());
    }

    #[test]
    fn a_musl_launch_and_an_empty_argv0() {
        let line = b"/tmp/scar/images/abc/rootfs/lib/ld-musl-x86_64.so.1\0--library-path\0/a\0--preload\0/s.so\0--argv0\0\0/tmp/scar/images/abc/rootfs/bin/busybox\0ls\0-l\0";
        let launch = launch(line, ROOT).unwrap();
        assert_eq!(launch.argv0, Argv0::Given(b""));
        assert_eq!(&line[launch.args_start..], b"ls\0-l\0");
    }

    #[test]
    fn other_command_lines_are_left_alone() {
        for line in [
            // The host's programs, and another rootfs's.
            &b"/usr/bin/sleep\x0010\0"[..],
            b"/tmp/scar/images/abcd/rootfs/lib64/ld.so\0--library-path\0/a\0/x\0",
            // The loader run without our options, and a rewritten title.
            b"/tmp/scar/images/abc/rootfs/lib64/ld.so\0/tmp/scar/images/abc/rootfs/bin/ls\0",
            b"postgres: checkpointer   \0\0\0",
            // Cut off before the program: the caller shows the kernel's.
            b"/tmp/scar/images/abc/rootfs/lib64/ld.so\0--library-path\0/a:/b",
            b"/tmp/scar/images/abc/rootfs/lib64/ld.so\0--library-path\0/a\0--argv0\0x\0/tmp/scar/images/abc/rootfs/bin/ls",
            b"",
        ] {
            assert_eq!(launch(line, ROOT), None, "{:?}", line);
        }
    }
}
