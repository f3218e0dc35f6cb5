//! What `/proc/<pid>/status` says under fake root.
//!
//! Programs that ask "am I root?" by reading `/proc/self/status` instead of calling
//! `getuid` (procps' `ps`, shell scripts with `awk '/^Uid:/'`, some installers) would see
//! the Lambda user's ids, which every `get*id` of the same process denies. The shim answers
//! such an open with a copy of the kernel's file whose `Uid:`, `Gid:` and `Groups:` lines
//! carry the ids `get*id` report: this process's own fake ones for its own file, and for
//! another process's the rule `stat` applies to owners (the Lambda user's ids read as
//! root's, as everything it owns does). Every other line is the kernel's, byte for byte.

use crate::buf::{decimal, parse_decimal};
use crate::proc_path::{Process, process_file};

/// Whose status file a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    /// This process's (or one of its threads'): `self`, `thread-self` or its own pid.
    This,
    /// Another process's, with the pid as written.
    Other,
}

/// `Some` when `path` is `/proc/{self,thread-self,PID}/status` or
/// `/proc/{self,PID}/task/TID/status`; `own_pid` (asked only for a numeric name, since it
/// costs the caller a system call on every open) tells this process's pid from another's.
pub fn whose(path: &[u8], own_pid: impl FnOnce() -> u32) -> Option<Whose> {
    match process_file(path, b"status")? {
        Process::Caller | Process::CallingThread => Some(Whose::This),
        Process::Pid(pid) if pid == own_pid() => Some(Whose::This),
        Process::Pid(_) => Some(Whose::Other),
    }
}

/// The ids a rewritten file shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids<'a> {
    /// This process's fake credentials: real, effective, saved uid and gid, and its
    /// supplementary groups. The filesystem ids follow the effective ones.
    Own {
        uids: [u32; 3],
        gids: [u32; 3],
        groups: &'a [u32],
    },
    /// Another process: the kernel's ids, with the Lambda user's `(uid, gid)` read as 0.
    Mapped { lambda_uid: u32, lambda_gid: u32 },
}

/// The output did not fit: the caller opens the kernel's file instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// Writes `kernel` (a whole status file) into `out` with the id lines rewritten for
/// `ids`; returns the length written.
pub fn rewrite(kernel: &[u8], ids: Ids<'_>, out: &mut [u8]) -> Result<usize, TooLong> {
    let mut w = Writer { out, len: 0 };
    for line in kernel.split_inclusive(|&b| b == b'\n') {
        let (body, newline) = match line.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (line, false),
        };
        match id_line(body) {
            Some((key, values)) => {
                w.put(key)?;
                w.put(b"\t")?;
                write_ids(&mut w, key, values, ids)?;
                if key == b"Groups:" {
                    // The kernel ends the list with a space, even an empty one.
                    w.put(b" ")?;
                }
            }
            None => w.put(body)?,
        }
        if newline {
            w.put(b"\n")?;
        }
    }
    Ok(w.len)
}

/// `Uid:`, `Gid:` or `Groups:` with the text after its tab.
fn id_line(body: &[u8]) -> Option<(&[u8], &[u8])> {
    [&b"Uid:"[..], b"Gid:", b"Groups:"]
        .into_iter()
        .find_map(|key| {
            let values = body.strip_prefix(key)?.strip_prefix(b"\t")?;
            Some((key, values))
        })
}

fn write_ids(w: &mut Writer<'_>, key: &[u8], kernel: &[u8], ids: Ids<'_>) -> Result<(), TooLong> {
    match ids {
        Ids::Own { uids, gids, groups } => {
            let own = match key {
                b"Uid:" => &uids,
                b"Gid:" => &gids,
                _ => return w.numbers(groups.iter().copied(), b" "),
            };
            // The fourth is the filesystem id, which follows the effective one.
            w.numbers([own[0], own[1], own[2], own[1]].into_iter(), b"\t")
        }
        Ids::Mapped {
            lambda_uid,
            lambda_gid,
        } => {
            let lambda = if key == b"Uid:" {
                lambda_uid
            } else {
                lambda_gid
            };
            let separator: &[u8] = if key == b"Groups:" { b" " } else { b"\t" };
            let mut first = true;
            for field in kernel.split(|b| b.is_ascii_whitespace()) {
                if field.is_empty() {
                    continue;
                }
                if !first {
                    w.put(separator)?;
                }
                first = false;
                match parse_decimal(field) {
                    Some(id) if id == lambda => w.put(b"0")?,
                    _ => w.put(field)?,
                }
            }
            Ok(())
        }
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), TooLong> {
        let end = self.len + bytes.len();
        self.out
            .get_mut(self.len..end)
            .ok_or(TooLong)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn numbers(
        &mut self,
        values: impl Iterator<Item = u32>,
        separator: &[u8],
    ) -> Result<(), TooLong> {
        let mut digits = [0; 20];
        for (i, value) in values.enumerate() {
            if i > 0 {
                self.put(separator)?;
            }
            self.put(decimal(u64::from(value), &mut digits))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status file as Linux 6.x writes it (trimmed), for the Lambda user 993.
    const KERNEL: &[u8] =
        b"Name:\tawk\nUmask:\t0022\nState:\tR (running)\nTgid:\t41\nPid:\t41\nPPid:\t40\n\
Uid:\t993\t993\t993\t993\nGid:\t990\t990\t990\t990\nFDSize:\t64\nGroups:\t990 27 \n\
NStgid:\t41\nVmRSS:\t    1024 kB\nCapEff:\t0000000000000000\n";

    fn rewritten(ids: Ids<'_>) -> std::string::String {
        let mut out = [0; 1024];
        let len = rewrite(KERNEL, ids, &mut out).unwrap();
        std::string::String::from_utf8(out[..len].to_vec()).unwrap()
    }

    #[test]
    fn own_file_shows_the_fake_ids_and_nothing_else_changes() {
        let text = rewritten(Ids::Own {
            uids: [0, 65534, 0],
            gids: [0, 0, 0],
            groups: &[0, 4],
        });
        assert!(text.contains("\nUid:\t0\t65534\t0\t65534\n"), "{text}");
        assert!(text.contains("\nGid:\t0\t0\t0\t0\n"), "{text}");
        assert!(text.contains("\nGroups:\t0 4 \n"), "{text}");
        let others = |t: &str| -> std::vec::Vec<std::string::String> {
            t.lines()
                .filter(|l| {
                    !l.starts_with("Uid:") && !l.starts_with("Gid:") && !l.starts_with("Groups:")
                })
                .map(std::string::String::from)
                .collect()
        };
        assert_eq!(others(&text), others(core::str::from_utf8(KERNEL).unwrap()));
    }

    #[test]
    fn no_groups_is_a_lone_space_as_the_kernel_writes_it() {
        let text = rewritten(Ids::Own {
            uids: [0; 3],
            gids: [0; 3],
            groups: &[],
        });
        assert!(text.contains("\nGroups:\t \n"), "{text}");
    }

    #[test]
    fn another_process_shows_the_lambda_user_as_root() {
        let text = rewritten(Ids::Mapped {
            lambda_uid: 993,
            lambda_gid: 990,
        });
        assert!(text.contains("\nUid:\t0\t0\t0\t0\n"), "{text}");
        assert!(text.contains("\nGid:\t0\t0\t0\t0\n"), "{text}");
        assert!(text.contains("\nGroups:\t0 27 \n"), "{text}");
        let stranger = rewritten(Ids::Mapped {
            lambda_uid: 1000,
            lambda_gid: 1000,
        });
        assert!(
            stranger.contains("\nUid:\t993\t993\t993\t993\n"),
            "{stranger}"
        );
    }

    #[test]
    fn too_small_a_buffer_is_refused_not_cut() {
        let mut out = [0; 100];
        let ids = Ids::Own {
            uids: [0; 3],
            gids: [0; 3],
            groups: &[0],
        };
        assert_eq!(rewrite(KERNEL, ids, &mut out), Err(TooLong));
    }

    #[test]
    fn only_status_files_of_processes_are_recognised() {
        let own = || 41;
        for (path, expected) in [
            (&b"/proc/self/status"[..], Some(Whose::This)),
            (b"/proc/thread-self/status", Some(Whose::This)),
            (b"/proc/41/status", Some(Whose::This)),
            (b"/proc/self/task/42/status", Some(Whose::This)),
            (b"/proc/41/task/41/status", Some(Whose::This)),
            (b"/proc/1/status", Some(Whose::Other)),
            (b"/proc/1/task/7/status", Some(Whose::Other)),
            (b"/proc/self/stat", None),
            (b"/proc/self/statuses", None),
            (b"/proc/status", None),
            (b"/proc/self/task/status", None),
            (b"/proc/thread-self/task/3/status", None),
            (b"/proc/12x/status", None),
            (b"/proc/99999999999/status", None),
            (b"/rootfs/proc/self/status", None),
        ] {
            assert_eq!(
                whose(path, own),
                expected,
                "{}",
                core::str::from_utf8(path).unwrap()
            );
        }
    }
}
