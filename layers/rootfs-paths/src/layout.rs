//! Where a container path lives on the host, and back.
//!
//! A path is cleaned lexically (`//`, `.`, `..` collapsed, `..` never above `/`) and then
//! sent to the first mount whose container prefix holds it, or else below the rootfs. The
//! shim resolves a container path's `..` first ([`crate::dotdot`]), as a chroot does.
//! Mounts are passthroughs (`/proc`, the request's /tmp dirs: the same path on both sides)
//! or maps (`/tmp` → a host scratch dir). Symlinks are left to the kernel: the unpacker
//! stores absolute targets with the rootfs in front, so the kernel already resolves them
//! inside it.

use crate::buf::{Overflow, PathBuf};

/// A host directory seen at `container` inside the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount<'a> {
    pub container: &'a [u8],
    pub host: &'a [u8],
}

impl Mount<'_> {
    pub fn is_passthrough(&self) -> bool {
        self.container == self.host
    }
}

/// Parses `SCAR_FC_MOUNTS`: `:`-separated entries, each `PATH` (a passthrough) or
/// `CONTAINER=HOST`. Entries that are not absolute are skipped.
pub fn parse_mounts(spec: &[u8]) -> impl Iterator<Item = Mount<'_>> {
    spec.split(|&b| b == b':').filter_map(|entry| {
        let (container, host) = match entry.iter().position(|&b| b == b'=') {
            Some(i) => (&entry[..i], &entry[i + 1..]),
            None => (entry, entry),
        };
        let container = trim_trailing_slashes(container);
        let host = trim_trailing_slashes(host);
        let absolute = |p: &[u8]| p.len() > 1 && p[0] == b'/';
        (absolute(container) && absolute(host)).then_some(Mount { container, host })
    })
}

fn trim_trailing_slashes(mut p: &[u8]) -> &[u8] {
    while p.len() > 1 && p.ends_with(b"/") {
        p = &p[..p.len() - 1];
    }
    p
}

/// The remainder of `path` below `dir` (`""` or `"/…"`), if `path` is `dir` or inside it.
pub fn strip_dir<'p>(path: &'p [u8], dir: &[u8]) -> Option<&'p [u8]> {
    let rest = path.strip_prefix(dir)?;
    (rest.is_empty() || rest[0] == b'/').then_some(rest)
}

/// True when a path has a `..` component, the only case needing more than a prefix.
pub fn has_dotdot(path: &[u8]) -> bool {
    path.split(|&b| b == b'/').any(|c| c == b"..")
}

/// True when relative symlink `target`, stored in container directory `dir`, would climb
/// above `/`: the kernel would then leave the rootfs, where chroot stays at `/`.
pub fn climbs_above_root(dir: &[u8], target: &[u8]) -> bool {
    let mut depth: usize = dir
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .count();
    for component in target.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

/// Whether the last component of `path` is empty, `.` or `..`, which the kernel resolves
/// only as a directory.
pub fn names_a_directory(path: &[u8]) -> bool {
    path.contains(&b'/')
        && matches!(
            path.rsplit(|&b| b == b'/').next().unwrap_or_default(),
            b"" | b"." | b".."
        )
}

/// Appends the lexical clean form of absolute `path` to the empty `out`.
pub fn clean_into(path: &[u8], out: &mut PathBuf) -> Result<(), Overflow> {
    out.clear();
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => out.pop_component(),
            name => {
                if out.as_bytes() != b"/" {
                    out.push(b"/")?;
                }
                out.push(name)?;
            }
        }
    }
    if out.is_empty() {
        out.push(b"/")?;
    }
    Ok(())
}

/// A rootfs on the host and the mounts layered over it, longest container prefix first.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    pub root: &'a [u8],
    pub mounts: &'a [Mount<'a>],
}

impl<'a> Layout<'a> {
    /// Writes the host path of the absolute container `path` into `out`.
    ///
    /// A path already below the rootfs is kept: the shim hands its own host paths
    /// (`LOCPATH`, the library path) to programs, and the kernel and the loader show them
    /// (`/proc/self/maps`, `dladdr`, `dl_iterate_phdr`), so a program that finds its files
    /// next to its library (`dirname(dladdr(…))/../share`) names them so; those must not be
    /// prefixed twice. With `..` it is kept if its clean form stays below the rootfs.
    ///
    /// A path whose last component is empty, `.` or `..` keeps a trailing `/`, so that the
    /// kernel still requires a directory there: `stat("/etc/passwd/")` fails with `ENOTDIR`
    /// and `open("/tmp/new/", O_CREAT)` with `EISDIR`, as in a chroot.
    pub fn to_host(&self, path: &[u8], out: &mut PathBuf) -> Result<(), Overflow> {
        if strip_dir(path, self.root).is_some() && !has_dotdot(path) {
            return out.set(path);
        }
        let mut clean = PathBuf::new();
        clean_into(path, &mut clean)?;
        let clean = clean.as_bytes();
        if strip_dir(path, self.root).is_some() && strip_dir(clean, self.root).is_some() {
            out.set(clean)?;
        } else if let Some(mount) = self
            .mounts
            .iter()
            .find(|mount| strip_dir(clean, mount.container).is_some())
        {
            out.set(mount.host)?;
            out.push(strip_dir(clean, mount.container).unwrap_or_default())?;
        } else {
            out.set(self.root)?;
            if clean != b"/" {
                out.push(clean)?;
            }
        }
        if clean != b"/" && names_a_directory(path) {
            out.push(b"/")?;
        }
        Ok(())
    }

    /// The container path of a host path as `(prefix, rest)`, or `None` when the host path
    /// is seen unchanged in the container (passthroughs and anything outside the rootfs).
    pub fn to_container<'p>(&self, host: &'p [u8]) -> Option<(&'a [u8], &'p [u8])> {
        for mount in self.mounts.iter().filter(|m| !m.is_passthrough()) {
            if let Some(rest) = strip_dir(host, mount.host) {
                return Some((mount.container, rest));
            }
        }
        match strip_dir(host, self.root)? {
            b"" => Some((b"/", b"")),
            rest => Some((b"", rest)),
        }
    }

    /// Writes the container form of `host` into `out`.
    pub fn to_container_into(&self, host: &[u8], out: &mut PathBuf) -> Result<(), Overflow> {
        match self.to_container(host) {
            Some((prefix, rest)) => {
                out.set(prefix)?;
                out.push(rest)
            }
            None => out.set(host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const ROOT: &[u8] = b"/tmp/scar/images/abc/rootfs";

    fn host(layout: &Layout<'_>, path: &str) -> std::string::String {
        let mut out = PathBuf::new();
        layout
            .to_host(path.as_bytes(), &mut out)
            .unwrap_or_default();
        std::string::String::from_utf8_lossy(out.as_bytes()).into_owned()
    }

    fn with_mounts<R>(f: impl FnOnce(&Layout<'_>) -> R) -> R {
        let mut mounts: Vec<Mount<'_>> =
            parse_mounts(b"/proc:/dev/:/tmp=/tmp/run-1/tmp:/tmp/req-7:relative:/etc/hosts")
                .collect();
        mounts.sort_by_key(|m| core::cmp::Reverse(m.container.len()));
        f(&Layout {
            root: ROOT,
            mounts: &mounts,
        })
    }

    #[test]
    fn mounts_parse_passthroughs_and_maps_and_skip_relative_entries() {
        let mounts: Vec<_> = parse_mounts(b"/proc:/dev/:/tmp=/host/tmp:rel:/a=b").collect();
        assert_eq!(mounts.len(), 3);
        assert!(mounts[0].is_passthrough());
        assert_eq!(mounts[1].container, b"/dev", "trailing slash dropped");
        assert_eq!(
            (mounts[2].container, mounts[2].host),
            (&b"/tmp"[..], &b"/host/tmp"[..])
        );
    }

    #[test]
    fn container_paths_land_in_the_rootfs() {
        with_mounts(|l| {
            assert_eq!(
                host(l, "/usr/bin/perl"),
                "/tmp/scar/images/abc/rootfs/usr/bin/perl"
            );
            assert_eq!(host(l, "/"), "/tmp/scar/images/abc/rootfs");
            assert_eq!(
                host(l, "//usr/./bin//"),
                "/tmp/scar/images/abc/rootfs/usr/bin/"
            );
        });
    }

    /// The kernel resolves a last component that is empty, `.` or `..` only as a directory:
    /// one `/` stays at the end wherever the path lands.
    #[test]
    fn a_trailing_slash_or_dot_still_asks_for_a_directory() {
        with_mounts(|l| {
            assert_eq!(
                host(l, "/etc/passwd/"),
                "/tmp/scar/images/abc/rootfs/etc/passwd/"
            );
            assert_eq!(host(l, "/usr/."), "/tmp/scar/images/abc/rootfs/usr/");
            assert_eq!(host(l, "/usr/lib/.."), "/tmp/scar/images/abc/rootfs/usr/");
            assert_eq!(host(l, "/tmp/new/"), "/tmp/run-1/tmp/new/");
            assert_eq!(host(l, "/proc/self/"), "/proc/self/");
            assert_eq!(host(l, "/"), "/tmp/scar/images/abc/rootfs");
            assert_eq!(host(l, "/usr/.."), "/tmp/scar/images/abc/rootfs");
            assert_eq!(
                host(l, "/tmp/scar/images/abc/rootfs/usr/lib/../bin/"),
                "/tmp/scar/images/abc/rootfs/usr/bin/"
            );
            assert!(!names_a_directory(b"/usr/bin"));
            assert!(
                !names_a_directory(b"."),
                "a relative name is not cleaned here"
            );
            assert!(names_a_directory(b"/usr/bin/.."));
        });
    }

    #[test]
    fn dotdot_never_climbs_out_of_the_rootfs() {
        with_mounts(|l| {
            assert_eq!(
                host(l, "/../../etc/shadow"),
                "/tmp/scar/images/abc/rootfs/etc/shadow"
            );
            assert_eq!(host(l, "/usr/../../.."), "/tmp/scar/images/abc/rootfs");
            assert_eq!(
                host(l, "/tmp/../etc/passwd"),
                "/tmp/scar/images/abc/rootfs/etc/passwd"
            );
            assert_eq!(
                host(
                    l,
                    "/tmp/scar/images/abc/rootfs/../../../../../../etc/shadow"
                ),
                "/tmp/scar/images/abc/rootfs/etc/shadow",
                "a host path with .. is cleaned as a container path"
            );
        });
    }

    #[test]
    fn mounts_pass_through_or_map_by_longest_prefix() {
        with_mounts(|l| {
            assert_eq!(host(l, "/proc/self/exe"), "/proc/self/exe");
            assert_eq!(host(l, "/proc"), "/proc");
            assert_eq!(host(l, "/process"), "/tmp/scar/images/abc/rootfs/process");
            assert_eq!(host(l, "/tmp/a"), "/tmp/run-1/tmp/a");
            assert_eq!(host(l, "/tmp/req-7/output/x"), "/tmp/req-7/output/x");
            assert_eq!(host(l, "/etc/hosts"), "/etc/hosts");
            assert_eq!(
                host(l, "/etc/hostname"),
                "/tmp/scar/images/abc/rootfs/etc/hostname"
            );
        });
    }

    #[test]
    fn host_paths_inside_the_rootfs_are_kept() {
        with_mounts(|l| {
            let p = "/tmp/scar/images/abc/rootfs/usr/lib/locale";
            assert_eq!(host(l, p), p);
            assert_eq!(
                host(
                    l,
                    "/tmp/scar/images/abc/rootfs/usr/lib/../../etc/os-release"
                ),
                "/tmp/scar/images/abc/rootfs/etc/os-release"
            );
            // Climbing out of the rootfs is a container path like any other (here below the
            // container's /tmp, a mount): it never reaches the host's file.
            assert_eq!(
                host(l, "/tmp/scar/images/abc/rootfs/../../etc/shadow"),
                "/tmp/run-1/tmp/scar/images/etc/shadow"
            );
        });
    }

    #[test]
    fn host_paths_map_back_to_container_paths() {
        with_mounts(|l| {
            let back = |h: &str| {
                let mut out = PathBuf::new();
                l.to_container_into(h.as_bytes(), &mut out)
                    .unwrap_or_default();
                std::string::String::from_utf8_lossy(out.as_bytes()).into_owned()
            };
            assert_eq!(back("/tmp/scar/images/abc/rootfs/usr/bin"), "/usr/bin");
            assert_eq!(back("/tmp/scar/images/abc/rootfs"), "/");
            assert_eq!(
                back("/tmp/scar/images/abc/rootfsX"),
                "/tmp/scar/images/abc/rootfsX"
            );
            assert_eq!(back("/tmp/run-1/tmp/x"), "/tmp/x");
            assert_eq!(back("/tmp/req-7/output"), "/tmp/req-7/output");
            assert_eq!(back("/proc/1"), "/proc/1");
        });
    }

    #[test]
    fn relative_targets_that_climb_above_root() {
        assert!(climbs_above_root(b"/tmp", b"../../bin/ls"));
        assert!(!climbs_above_root(b"/tmp", b"../bin/ls"));
        assert!(!climbs_above_root(b"/usr/bin", b"../../bin/x/../../y"));
        assert!(climbs_above_root(b"/", b".."));
        assert!(!climbs_above_root(b"/a/b", b"c/../../.."));
    }

    #[test]
    fn overlong_paths_are_refused_not_truncated() {
        with_mounts(|l| {
            let mut long = Vec::from(&b"/a"[..]);
            long.resize(5000, b'x');
            let mut out = PathBuf::new();
            assert_eq!(l.to_host(&long, &mut out), Err(Overflow));
        });
    }
}
