//! Pure path rules for layer entries: no I/O here, so every rule is unit-tested.

use std::path::{Component, Path, PathBuf};

/// Why an entry's name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// `/etc/passwd`: layers hold relative names only.
    Absolute,
    /// A `..` component, which could climb out of the rootfs.
    ParentDir,
    /// Nothing left after removing `.` components.
    Empty,
}

impl NameError {
    /// A short reason for error messages.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Absolute => "absolute name",
            Self::ParentDir => "name contains '..'",
            Self::Empty => "empty name",
        }
    }
}

/// Turns a tar entry name into a clean relative path (`./a//b/` → `a/b`), refusing absolute
/// names and any `..` component. Tar writers emit `./` prefixes and trailing slashes freely;
/// neither changes where the entry lands.
pub fn entry_name(raw: &Path) -> Result<PathBuf, NameError> {
    let mut clean = PathBuf::new();
    let mut absolute = false;
    for component in raw.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(NameError::ParentDir),
            Component::RootDir | Component::Prefix(_) => absolute = true,
        }
    }
    // `/` alone (umoci writes it) names the root, like `./`; anything below it is refused.
    match (clean.as_os_str().is_empty(), absolute) {
        (true, _) => Err(NameError::Empty),
        (false, true) => Err(NameError::Absolute),
        (false, false) => Ok(clean),
    }
}

/// What an entry's file name asks for, per the OCI image layer spec.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// A normal entry.
    None,
    /// `.wh.NAME`: delete NAME (from lower layers) in the same directory.
    Remove(&'a std::ffi::OsStr),
    /// `.wh..wh..opq`: hide every lower-layer child of the directory.
    Opaque,
    /// Another `.wh..wh.` name (AUFS metadata such as `.wh..wh.plnk`): never materialised.
    Metadata,
    /// `.wh.`, `.wh..`, `.wh...`: a whiteout of nothing, of the directory itself or of its
    /// parent. Refused, as containerd does.
    Invalid,
}

/// Classifies an entry name (its last component).
pub fn whiteout(name: &Path) -> Whiteout<'_> {
    use std::os::unix::ffi::OsStrExt;
    let Some(file) = name.file_name() else {
        return Whiteout::None;
    };
    let bytes = file.as_bytes();
    if bytes == b".wh..wh..opq" {
        Whiteout::Opaque
    } else if bytes.starts_with(b".wh..wh.") {
        Whiteout::Metadata
    } else if let Some(rest) = bytes.strip_prefix(b".wh.") {
        match rest {
            b"" | b"." | b".." => Whiteout::Invalid,
            _ => Whiteout::Remove(std::ffi::OsStr::from_bytes(rest)),
        }
    } else {
        Whiteout::None
    }
}

/// Lexically resolves `path` (relative to the rootfs, components may be `..`) with `..`
/// clamped at the root, as the kernel does for `..` at `/` inside a chroot.
fn clamp_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The symlink target to store on disk for a link at `link` (relative to the rootfs) whose
/// image target is `target`. This is the rootfs's symlink convention, which the shim relies on:
///
/// * an absolute target `/etc/alternatives/awk` is stored as `<final_root>/etc/alternatives/awk`,
///   so the kernel resolves it inside the rootfs with no help and the shim's `readlink` only has
///   to strip the `<final_root>` prefix to show the image's own target;
/// * a relative target is kept byte for byte, unless its `..` components would climb above the
///   rootfs; such a target is clamped at `/` (chroot semantics) and stored in the absolute form.
pub fn confined_link_target(link: &Path, target: &Path, final_root: &Path) -> PathBuf {
    if target.is_absolute() {
        return final_root.join(clamp_lexically(target));
    }
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir if depth == 0 => {
                return absolute_link_target(link, target, final_root);
            }
            Component::ParentDir => depth -= 1,
            _ => {}
        }
    }
    target.to_path_buf()
}

/// The absolute form of a link's relative target: resolved lexically from the link's
/// directory, `..` clamped at `/`, under `final_root`. It holds no `..`, so the kernel can
/// never climb out of the rootfs through it.
pub fn absolute_link_target(link: &Path, target: &Path, final_root: &Path) -> PathBuf {
    let resolved = link.parent().unwrap_or(Path::new("")).join(target);
    final_root.join(clamp_lexically(&resolved))
}

/// Whether a relative `target` of the link at `link` walks through a symlink and climbs
/// with `..` after it. Counting `..` against the components walked is only right when every
/// component is a real directory: through `q -> .`, `q/q/../..` climbs two levels from where
/// it started. Such a target must be stored in its absolute form.
pub fn climbs_through_a_symlink(
    link: &Path,
    target: &Path,
    is_symlink: impl Fn(&Path) -> bool,
) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut walked = link.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut through_symlink = false;
    for component in target.components() {
        match component {
            Component::Normal(part) => {
                walked.push(part);
                through_symlink |= is_symlink(&walked);
            }
            Component::ParentDir if through_symlink => return true,
            Component::ParentDir => {
                walked.pop();
            }
            _ => {}
        }
    }
    false
}

/// The image's view of a stored symlink target: the inverse of [`confined_link_target`]
/// (the shim's `readlink` does this at run time; here it checks the round trip).
#[cfg(test)]
fn image_link_target<'a>(stored: &'a Path, final_root: &Path) -> std::borrow::Cow<'a, Path> {
    match stored.strip_prefix(final_root) {
        Ok(rest) => std::borrow::Cow::Owned(Path::new("/").join(rest)),
        Err(_) => std::borrow::Cow::Borrowed(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(
            entry_name(Path::new("./usr//bin/")),
            Ok(PathBuf::from("usr/bin"))
        );
        assert_eq!(entry_name(Path::new("a/./b")), Ok(PathBuf::from("a/b")));
    }

    #[test]
    fn escaping_names_are_refused() {
        assert_eq!(
            entry_name(Path::new("/etc/passwd")),
            Err(NameError::Absolute)
        );
        assert_eq!(entry_name(Path::new("../x")), Err(NameError::ParentDir));
        assert_eq!(
            entry_name(Path::new("a/../../x")),
            Err(NameError::ParentDir)
        );
        assert_eq!(entry_name(Path::new("a/..")), Err(NameError::ParentDir));
        assert_eq!(entry_name(Path::new("./")), Err(NameError::Empty));
        assert_eq!(entry_name(Path::new("/")), Err(NameError::Empty));
    }

    #[test]
    fn whiteouts_are_classified() {
        assert_eq!(
            whiteout(Path::new("etc/.wh.doomed")),
            Whiteout::Remove("doomed".as_ref())
        );
        assert_eq!(whiteout(Path::new("opt/.wh..wh..opq")), Whiteout::Opaque);
        assert_eq!(whiteout(Path::new(".wh..wh.plnk")), Whiteout::Metadata);
        assert_eq!(whiteout(Path::new("etc/what.wh.x")), Whiteout::None);
    }

    #[test]
    fn absolute_targets_are_rooted() {
        let root = Path::new("/c/rootfs");
        let t = confined_link_target(
            Path::new("usr/bin/awk"),
            Path::new("/etc/alternatives/awk"),
            root,
        );
        assert_eq!(t, PathBuf::from("/c/rootfs/etc/alternatives/awk"));
        let t = confined_link_target(Path::new("x"), Path::new("/../../etc/shadow"), root);
        assert_eq!(t, PathBuf::from("/c/rootfs/etc/shadow"));
        assert_eq!(
            image_link_target(&t, root).as_ref(),
            Path::new("/etc/shadow")
        );
    }

    #[test]
    fn relative_targets_are_kept_unless_they_climb_out() {
        let root = Path::new("/c/rootfs");
        let keep = confined_link_target(Path::new("usr/bin/x"), Path::new("../../bin/ls"), root);
        assert_eq!(keep, PathBuf::from("../../bin/ls"));
        assert_eq!(
            image_link_target(&keep, root).as_ref(),
            Path::new("../../bin/ls")
        );
        let out = confined_link_target(
            Path::new("usr/bin/x"),
            Path::new("../../../../etc/shadow"),
            root,
        );
        assert_eq!(out, PathBuf::from("/c/rootfs/etc/shadow"));
        let top = confined_link_target(Path::new("x"), Path::new(".."), root);
        assert_eq!(top, PathBuf::from("/c/rootfs"));
    }

    #[test]
    fn whiteouts_of_nothing_itself_or_the_parent_are_invalid() {
        for name in [".wh.", ".wh..", ".wh..."] {
            assert_eq!(whiteout(Path::new(name)), Whiteout::Invalid, "{name}");
            assert_eq!(
                whiteout(&Path::new("a/b").join(name)),
                Whiteout::Invalid,
                "{name}"
            );
        }
        assert_eq!(
            whiteout(Path::new("a/.wh....")),
            Whiteout::Remove(std::ffi::OsStr::new("...")),
            "a file named ... is a name like any other"
        );
    }

    #[test]
    fn a_climb_after_a_symlink_is_caught_whatever_the_count() {
        let symlinks = [Path::new("q"), Path::new("d/s")];
        let is_symlink = |p: &Path| symlinks.contains(&p);
        assert!(climbs_through_a_symlink(
            Path::new("p"),
            Path::new("q/q/q/../../../x"),
            is_symlink
        ));
        assert!(climbs_through_a_symlink(
            Path::new("d/p"),
            Path::new("s/.."),
            is_symlink
        ));
        assert!(
            !climbs_through_a_symlink(Path::new("d/p"), Path::new("../d/s"), is_symlink),
            "a symlink last is fine"
        );
        assert!(!climbs_through_a_symlink(
            Path::new("a/b/p"),
            Path::new("../c/../x"),
            is_symlink
        ));
        assert!(
            !climbs_through_a_symlink(Path::new("p"), Path::new("/q/.."), is_symlink),
            "absolute targets are stored clamped"
        );
        assert_eq!(
            absolute_link_target(
                Path::new("p"),
                Path::new("q/q/q/../../../x"),
                Path::new("/R")
            ),
            Path::new("/R/x")
        );
    }
}
