//! `ldd`'s lines as a chroot prints them.
//!
//! In trace mode (`ld.so --list`, `LD_TRACE_LOADED_OBJECTS=1`, which `ldd` sets) the loader
//! prints where it found each object, and under the shim it found them by host path
//! (`libc.so.6 => /tmp/…/rootfs/lib/x86_64-linux-gnu/libc.so.6 (0x…)`), the loader itself
//! too, which it then names twice (`/lib64/ld-linux-x86-64.so.2 => /tmp/…/rootfs/lib64/…`)
//! because the name it was run by is not its `PT_INTERP`. The shim runs such a loader with
//! its output through [`container_line`]: every absolute path goes back to its container
//! form, and a name that then repeats its own path is printed once, as a chroot prints it.

use crate::buf::{Overflow, PathBuf};
use crate::layout::Layout;

/// Writes `line` (one line of the loader's listing, without its newline) to `out` with its
/// host paths as container paths.
pub fn container_line(layout: &Layout<'_>, line: &[u8], out: &mut PathBuf) -> Result<(), Overflow> {
    out.clear();
    let mut rest = line;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        match (word.first(), layout.to_container(word)) {
            (Some(b'/'), Some((prefix, tail))) => {
                out.push(prefix)?;
                out.push(tail)?;
            }
            _ => out.push(word)?,
        }
        let spaces = after
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(after.len());
        out.push(&after[..spaces])?;
        rest = &after[spaces..];
    }
    collapse_self_name(out)
}

/// `\tNAME => NAME (0x…)` becomes `\tNAME (0x…)`.
fn collapse_self_name(out: &mut PathBuf) -> Result<(), Overflow> {
    let line = out.as_bytes();
    let indent = line
        .iter()
        .take_while(|&&b| b == b'\t' || b == b' ')
        .count();
    let body = &line[indent..];
    let Some(arrow) = find(body, b" => ") else {
        return Ok(());
    };
    let (name, target) = (&body[..arrow], &body[arrow + 4..]);
    let Some(rest) = target.strip_prefix(name) else {
        return Ok(());
    };
    if !(rest.is_empty() || rest.starts_with(b" ")) {
        return Ok(());
    }
    let mut collapsed = PathBuf::new();
    collapsed.push(&line[..indent])?;
    collapsed.push(name)?;
    collapsed.push(rest)?;
    out.set(collapsed.as_bytes())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::parse_mounts;
    use std::string::String;
    use std::vec::Vec;

    fn line(text: &str) -> String {
        let mounts: Vec<_> = parse_mounts(b"/proc:/tmp=/host/scratch/tmp").collect();
        let layout = Layout {
            root: b"/cache/images/ab/rootfs",
            mounts: &mounts,
        };
        let mut out = PathBuf::new();
        container_line(&layout, text.as_bytes(), &mut out).unwrap();
        String::from_utf8_lossy(out.as_bytes()).into_owned()
    }

    #[test]
    fn the_loaders_host_paths_are_printed_as_the_containers() {
        assert_eq!(
            line(
                "\tlibc.so.6 => /cache/images/ab/rootfs/lib/x86_64-linux-gnu/libc.so.6 (0x00007f0000000000)"
            ),
            "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0000000000)"
        );
        assert_eq!(
            line("\tlibx.so => /host/scratch/tmp/lib/libx.so (0x1)"),
            "\tlibx.so => /tmp/lib/libx.so (0x1)"
        );
    }

    #[test]
    fn the_loader_named_by_its_own_path_is_printed_once() {
        assert_eq!(
            line(
                "\t/lib64/ld-linux-x86-64.so.2 => /cache/images/ab/rootfs/lib64/ld-linux-x86-64.so.2 (0x00007f1)"
            ),
            "\t/lib64/ld-linux-x86-64.so.2 (0x00007f1)"
        );
    }

    #[test]
    fn other_lines_are_kept() {
        for kept in [
            "\tlinux-vdso.so.1 (0x00007ffd)",
            "\tlibmissing.so.3 => not found",
            "\tstatically linked",
            "\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x2)",
            "\tlibfoo.so => /elsewhere/libfoo.so (0x3)",
            "",
            "/opt/app:",
        ] {
            assert_eq!(line(kept), kept);
        }
        // Only a path that is the loader's own repeated collapses.
        assert_eq!(
            line("\tlibm.so => /lib/libm.so.6 (0x2)"),
            "\tlibm.so => /lib/libm.so.6 (0x2)"
        );
        assert_eq!(
            line("\t/lib/a.so => /lib/a.so.1 (0x2)"),
            "\t/lib/a.so => /lib/a.so.1 (0x2)"
        );
    }
}
