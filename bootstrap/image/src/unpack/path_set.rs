//! Sets of relative paths in a rootfs being built (its symlinks; a lazy tree's placeholders
//! and their hard links), asked two things at every entry of every layer: whether one of the
//! entry's parents is in the set (a symlink would carry the write out of the tree), and what
//! lies below a directory a layer removes. Kept as sorted byte strings: each parent is a
//! prefix of the entry's name ending before a `/`, looked up with `memcmp`, and a directory's
//! members are one range. (Ordered `Path`s compare component by component, and a scan of a
//! whole set per removed directory is quadratic: each was a fifth to a third of building a
//! tree.)

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Clean relative paths (`a/b`, as `path::entry_name` makes them).
#[derive(Debug, Default, Clone)]
pub(crate) struct PathSet(BTreeSet<Vec<u8>>);

fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

impl PathSet {
    pub(crate) fn insert(&mut self, rel: &Path) {
        self.0.insert(bytes(rel).to_vec());
    }

    /// [`Self::insert`] without a copy, for a name the caller is done with.
    pub(crate) fn insert_owned(&mut self, rel: PathBuf) {
        self.0.insert(rel.into_os_string().into_vec());
    }

    pub(crate) fn remove(&mut self, rel: &Path) {
        self.0.remove(bytes(rel));
    }

    pub(crate) fn contains(&self, rel: &Path) -> bool {
        self.0.contains(bytes(rel))
    }

    /// Whether a path below `rel` is in the set.
    pub(crate) fn has_under(&self, rel: &Path) -> bool {
        let mut prefix = bytes(rel).to_vec();
        prefix.push(b'/');
        self.0
            .range(prefix.clone()..)
            .next()
            .is_some_and(|p| p.starts_with(&prefix))
    }

    /// Takes `rel` and every path below it out of the set; returns them.
    pub(crate) fn remove_under(&mut self, rel: &Path) -> Vec<PathBuf> {
        let mut prefix = bytes(rel).to_vec();
        prefix.push(b'/');
        let mut doomed: Vec<Vec<u8>> = self
            .0
            .range(prefix.clone()..)
            .take_while(|p| p.starts_with(&prefix))
            .cloned()
            .collect();
        if self.0.contains(bytes(rel)) {
            doomed.push(bytes(rel).to_vec());
        }
        doomed
            .into_iter()
            .map(|p| {
                self.0.remove(&p);
                PathBuf::from(OsString::from_vec(p))
            })
            .collect()
    }

    /// The outermost parent of `rel` that is a symlink.
    pub(crate) fn ancestor_of<'p>(&self, rel: &'p Path) -> Option<&'p Path> {
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

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().map(|p| Path::new(OsStr::from_bytes(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> PathSet {
        let mut links = PathSet::default();
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
        assert_eq!(PathSet::default().ancestor_of(Path::new("a/b")), None);
    }

    #[test]
    fn removing_a_directory_takes_the_paths_below_it_only() {
        let mut links = set(&["d", "d/x", "d/y/z", "d-x", "dd/x", "e"]);
        let mut removed: Vec<String> = links
            .remove_under(Path::new("d"))
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        removed.sort();
        assert_eq!(removed, ["d", "d/x", "d/y/z"]);
        assert!(links.remove_under(Path::new("nothing")).is_empty());
        let left: Vec<String> = links.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(left, ["d-x", "dd/x", "e"]);
        links.remove(Path::new("e"));
        assert!(!links.contains(Path::new("e")));
        assert!(links.contains(Path::new("dd/x")));
    }
}
