//! The symlinks of a rootfs being built, by relative path: asked, for every entry of every
//! layer, whether one of the entry's parents is a symlink (which would carry the write out
//! of the tree). Kept as sorted byte strings: each parent is a prefix of the entry's name
//! ending before a `/`, looked up with `memcmp`, and a directory's symlinks are one range.
//! (Ordered `Path`s compare component by component: with every parent of every entry asked,
//! that comparison was a fifth of building a tree.)

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Symlinks by clean relative path (`a/b`, as `path::entry_name` makes them).
#[derive(Debug, Default)]
pub(super) struct Symlinks(BTreeSet<Vec<u8>>);

fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

impl Symlinks {
    pub(super) fn insert(&mut self, rel: &Path) {
        self.0.insert(bytes(rel).to_vec());
    }

    pub(super) fn remove(&mut self, rel: &Path) {
        self.0.remove(bytes(rel));
    }

    pub(super) fn contains(&self, rel: &Path) -> bool {
        self.0.contains(bytes(rel))
    }

    /// Forgets `rel` and every symlink below it.
    pub(super) fn remove_under(&mut self, rel: &Path) {
        self.remove(rel);
        let mut prefix = bytes(rel).to_vec();
        prefix.push(b'/');
        let doomed: Vec<Vec<u8>> = self
            .0
            .range(prefix.clone()..)
            .take_while(|p| p.starts_with(&prefix))
            .cloned()
            .collect();
        for p in doomed {
            self.0.remove(&p);
        }
    }

    /// The outermost parent of `rel` that is a symlink.
    pub(super) fn ancestor_of<'p>(&self, rel: &'p Path) -> Option<&'p Path> {
        if self.0.is_empty() {
            return None;
        }
        let name = bytes(rel);
        name.iter()
            .enumerate()
            .filter(|&(at, &b)| b == b'/' && at > 0)
            .map(|(at, _)| &name[..at])
            .find(|parent| self.0.contains(*parent))
            .map(|parent| Path::new(OsStr::from_bytes(parent)))
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().map(|p| Path::new(OsStr::from_bytes(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Symlinks {
        let mut links = Symlinks::default();
        for name in names {
            links.insert(Path::new(name));
        }
        links
    }

    #[test]
    fn a_parent_symlink_is_found_and_a_sibling_with_a_longer_name_is_not() {
        let links = set(&["usr/lib", "a/b", "bin"]);
        let found = |p: &str| {
            links
                .ancestor_of(Path::new(p))
                .map(|a| a.display().to_string())
        };
        assert_eq!(found("usr/lib/x/y"), Some("usr/lib".into()));
        assert_eq!(found("usr/lib"), None, "a name is not its own parent");
        assert_eq!(found("usr/lib64/x"), None);
        assert_eq!(found("usr/li/x"), None);
        assert_eq!(found("bin/sh"), Some("bin".into()));
        assert_eq!(found("binary/sh"), None);
        assert_eq!(found("a/b/c"), Some("a/b".into()));
        assert_eq!(Symlinks::default().ancestor_of(Path::new("a/b")), None);
    }

    #[test]
    fn removing_a_directory_forgets_the_symlinks_below_it_only() {
        let mut links = set(&["d", "d/x", "d/y/z", "d-x", "dd/x", "e"]);
        links.remove_under(Path::new("d"));
        let left: Vec<String> = links.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(left, ["d-x", "dd/x", "e"]);
        links.remove(Path::new("e"));
        assert!(!links.contains(Path::new("e")));
        assert!(links.contains(Path::new("dd/x")));
    }
}
