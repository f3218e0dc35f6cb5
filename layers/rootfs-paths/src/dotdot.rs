//! `..` as a chroot resolves it: physically, after the symlinks before it are followed.
//!
//! A lexical `..` (`/a/link/..` is `/a`) is wrong wherever a symlink comes before it, and
//! merged-`/usr` images are full of them: `/lib/../etc` is `/usr/etc` in a chroot, since
//! `/lib` is `usr/lib`. Handing the kernel the host path with its `..` would be right
//! inside the tree but climbs out of it at the rootfs's top. So the walk is done here, in
//! container paths: every component up to the last `..` is looked at (`lstat`), a symlink
//! is read and followed (an absolute target from `/` of the container, as the shim and the
//! unpacker store it below the rootfs), `..` drops the last resolved component and stops at
//! `/`. What follows the last `..` is left to the kernel, as are paths without one.
//!
//! A component that does not exist or is not a directory fails the walk with the errno the
//! kernel would give the call (`ENOENT`, `ENOTDIR`), and more than [`MAX_FOLLOWS`] links
//! with `ELOOP`'s case: a `..` after it is never guessed.
//!
//! Allocation-free (stack buffers): the shim calls it on its exec path.

use crate::buf::{Overflow, PATH_MAX, PathBuf};
use crate::layout::{Layout, has_dotdot, names_a_directory};

/// Links followed in one walk before it fails, as Linux's `MAXSYMLINKS`.
pub const MAX_FOLLOWS: usize = 40;

/// What `lstat` says a name is, as far as the walk cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Symlink,
    /// Anything else: a `..` after it fails with `ENOTDIR`.
    Other,
}

/// The filesystem the walk looks at, by host path; errors are the kernel's errnos.
pub trait Lookup {
    /// What `host` is, its final symlink not followed.
    fn kind(&mut self, host: &PathBuf) -> Result<Kind, i32>;
    /// The target of symlink `host`, written to `target`; its length.
    fn link(&mut self, host: &PathBuf, target: &mut [u8]) -> Result<usize, i32>;
}

/// Why a walk failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// A component's lookup failed with this errno.
    Errno(i32),
    /// A component followed by `..` is not a directory.
    NotDirectory,
    /// More than [`MAX_FOLLOWS`] symlinks.
    Loop,
    /// A path grew past `PATH_MAX`.
    TooLong,
}

impl From<Overflow> for Unresolved {
    fn from(_: Overflow) -> Self {
        Self::TooLong
    }
}

/// Writes to `out` the container path `path` (absolute) with every `..` resolved as a
/// chroot resolves it; a path without `..` is copied.
pub fn resolve(
    layout: &Layout<'_>,
    path: &[u8],
    out: &mut PathBuf,
    fs: &mut impl Lookup,
) -> Result<(), Unresolved> {
    if !has_dotdot(path) {
        out.set(path)?;
        return Ok(());
    }
    let mut rest = PathBuf::new();
    rest.set(path)?;
    out.set(b"/")?;
    let mut host = PathBuf::new();
    let mut target = [0u8; PATH_MAX];
    let mut follows = 0;
    'walk: loop {
        let bytes = rest.as_bytes();
        let mut at = 0;
        while at <= bytes.len() {
            let end = bytes[at..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(bytes.len(), |i| at + i);
            let (component, after) = (&bytes[at..end], &bytes[end..]);
            at = end + 1;
            match component {
                b"" | b"." => continue,
                b".." => {
                    out.pop_component();
                    continue;
                }
                _ => {}
            }
            push_component(out, component)?;
            if !has_dotdot(after) {
                // The kernel resolves the rest, as it would in a chroot.
                if !after.is_empty() {
                    out.push(after)?;
                }
                break 'walk;
            }
            layout.to_host(out.as_bytes(), &mut host)?;
            match fs.kind(&host).map_err(Unresolved::Errno)? {
                Kind::Directory => continue,
                Kind::Other => return Err(Unresolved::NotDirectory),
                Kind::Symlink => {}
            }
            follows += 1;
            if follows > MAX_FOLLOWS {
                return Err(Unresolved::Loop);
            }
            let length = fs.link(&host, &mut target).map_err(Unresolved::Errno)?;
            let link = &target[..length.min(target.len())];
            // The link's own name goes; its target takes its place before the rest.
            out.pop_component();
            let mut next = PathBuf::new();
            if link.first() == Some(&b'/') {
                layout.to_container_into(link, &mut next)?;
                out.set(b"/")?;
            } else {
                next.set(link)?;
            }
            next.push(b"/")?;
            next.push(after)?;
            rest = next;
            continue 'walk;
        }
        break;
    }
    if out.as_bytes() != b"/" && names_a_directory(path) {
        out.push(b"/")?;
    }
    Ok(())
}

fn push_component(out: &mut PathBuf, name: &[u8]) -> Result<(), Overflow> {
    if out.as_bytes() != b"/" {
        out.push(b"/")?;
    }
    out.push(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::string::String;
    use std::vec::Vec;

    const ROOT: &[u8] = b"/r";

    /// A tree by host path: directories, files, and symlinks with their stored targets.
    struct Tree(BTreeMap<Vec<u8>, Option<Vec<u8>>>, usize);

    impl Tree {
        fn new(entries: &[(&str, Option<&str>)]) -> Self {
            let mut map = BTreeMap::new();
            for (path, what) in entries {
                map.insert(
                    path.as_bytes().to_vec(),
                    what.map(|w| w.as_bytes().to_vec()),
                );
            }
            Self(map, 0)
        }
    }

    impl Lookup for Tree {
        fn kind(&mut self, host: &PathBuf) -> Result<Kind, i32> {
            self.1 += 1;
            let key = host
                .as_bytes()
                .strip_suffix(b"/")
                .unwrap_or(host.as_bytes());
            match self.0.get(key) {
                None => Err(2),
                Some(None) if key.ends_with(b".txt") => Ok(Kind::Other),
                Some(None) => Ok(Kind::Directory),
                Some(Some(_)) => Ok(Kind::Symlink),
            }
        }
        fn link(&mut self, host: &PathBuf, target: &mut [u8]) -> Result<usize, i32> {
            let Some(Some(link)) = self.0.get(host.as_bytes()) else {
                return Err(22);
            };
            target[..link.len()].copy_from_slice(link);
            Ok(link.len())
        }
    }

    fn tree() -> Tree {
        Tree::new(&[
            ("/r/usr", None),
            ("/r/usr/lib", None),
            ("/r/usr/lib/jvm", None),
            ("/r/usr/lib/jvm/java", None),
            ("/r/usr/lib/jvm/java/bin", None),
            ("/r/usr/etc", None),
            ("/r/etc", None),
            ("/r/etc/a.txt", None),
            // Merged /usr: a relative link at the top.
            ("/r/lib", Some("usr/lib")),
            // An absolute link, stored below the rootfs.
            ("/r/etc/alternatives", Some("/r/usr/lib/jvm/java/bin")),
            ("/r/tmp", None),
            ("/r/tmp/up", Some("../..")),
            ("/r/tmp/loop", Some("loop")),
        ])
    }

    fn walk(fs: &mut Tree, path: &str) -> Result<String, Unresolved> {
        let layout = Layout {
            root: ROOT,
            mounts: &[],
        };
        let mut out = PathBuf::new();
        resolve(&layout, path.as_bytes(), &mut out, fs)?;
        Ok(String::from_utf8_lossy(out.as_bytes()).into_owned())
    }

    #[test]
    fn dotdot_after_a_symlink_is_taken_from_its_target() {
        let fs = &mut tree();
        assert_eq!(walk(fs, "/lib/../etc").unwrap(), "/usr/etc");
        assert_eq!(
            walk(fs, "/lib/jvm/java/bin/../lib").unwrap(),
            "/usr/lib/jvm/java/lib"
        );
        assert_eq!(
            walk(fs, "/etc/alternatives/..").unwrap(),
            "/usr/lib/jvm/java/"
        );
        assert_eq!(
            walk(fs, "/etc/alternatives/../../x/y").unwrap(),
            "/usr/lib/jvm/x/y"
        );
    }

    #[test]
    fn dotdot_never_climbs_above_the_root() {
        let fs = &mut tree();
        assert_eq!(walk(fs, "/../../etc").unwrap(), "/etc");
        assert_eq!(walk(fs, "/tmp/up/../etc").unwrap(), "/etc");
        assert_eq!(walk(fs, "/usr/..").unwrap(), "/");
    }

    #[test]
    fn the_tail_after_the_last_dotdot_is_left_to_the_kernel() {
        let fs = &mut tree();
        // `missing` and `lib` after the last `..` are not looked at.
        assert_eq!(
            walk(fs, "/usr/lib/../missing/lib").unwrap(),
            "/usr/missing/lib"
        );
        assert_eq!(fs.1, 2, "only /usr and /usr/lib were looked up");
        // Without `..`, nothing is.
        assert_eq!(walk(fs, "/lib/x").unwrap(), "/lib/x");
        assert_eq!(fs.1, 2);
    }

    #[test]
    fn what_the_kernel_would_refuse_is_refused() {
        let fs = &mut tree();
        assert_eq!(walk(fs, "/missing/../etc"), Err(Unresolved::Errno(2)));
        assert_eq!(
            walk(fs, "/etc/a.txt/../a.txt"),
            Err(Unresolved::NotDirectory)
        );
        assert_eq!(walk(fs, "/tmp/loop/.."), Err(Unresolved::Loop));
    }

    #[test]
    fn a_path_ending_in_dotdot_still_names_a_directory() {
        let fs = &mut tree();
        assert_eq!(walk(fs, "/usr/lib/..").unwrap(), "/usr/");
        assert_eq!(walk(fs, "/usr/lib/jvm/./..//").unwrap(), "/usr/lib/");
    }

    proptest::proptest! {
        /// Whatever the path, a walk that succeeds gives an absolute path with no `..`
        /// left in it, which `Layout::to_host` can only place below the rootfs.
        #[test]
        fn a_resolved_path_has_no_dotdot_left(
            parts in proptest::collection::vec(
                proptest::sample::select(std::vec!["usr", "lib", "..", ".", "", "etc", "tmp", "up", "alternatives", "jvm"]),
                0..12,
            )
        ) {
            let path = std::format!("/{}", parts.join("/"));
            if let Ok(resolved) = walk(&mut tree(), &path) {
                proptest::prop_assert!(resolved.starts_with('/'), "{path} gave {resolved}");
                proptest::prop_assert!(
                    !resolved.split('/').any(|c| c == ".."),
                    "{path} gave {resolved}"
                );
            }
        }
    }
}
