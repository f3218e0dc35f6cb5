//! What a rootfs needs to run its programs: its library directories, its glibc version
//! (which loader options exist) and its locale, gconv and zoneinfo data.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Directories the loader searches by default on Debian-, Red Hat- and Alpine-like images.
const DEFAULT_LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

/// Trees never holding libraries worth a loader's time.
const SKIPPED_TREES: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "usr/share",
    "usr/include",
    "var",
    "tmp",
    "run",
    "home",
    "root",
];

/// The scan depth below `/`: deep enough for `/usr/lib/x86_64-linux-gnu/perl5/5.36/…`'s
/// neighbours and `/opt/app/lib`, bounded so a huge tree does not stall a cold start.
const MAX_DEPTH: usize = 6;

/// Facts about one rootfs, computed once per cold start.
#[derive(Debug, Clone)]
pub struct RootfsProfile {
    /// Host paths, in search order: default dirs, ld.so.conf entries, then any other
    /// directory holding `lib*.so*`.
    pub library_dirs: Vec<PathBuf>,
    /// `(major, minor)` of the image's glibc; `None` for musl or static-only images.
    pub glibc: Option<(u32, u32)>,
    /// `LOCPATH`, `GCONV_PATH`, `TZDIR` values (host paths) for what the image has.
    pub data_env: Vec<(&'static str, PathBuf)>,
}

impl RootfsProfile {
    /// Scans `rootfs` (a host path).
    pub fn scan(rootfs: &Path) -> Self {
        Self::scan_with(rootfs, &|_| {})
    }

    /// As [`Self::scan`], calling `before_read` with each file before reading it (a lazy
    /// tree fills it there).
    pub fn scan_with(rootfs: &Path, before_read: &dyn Fn(&Path)) -> Self {
        let mut dirs = Vec::new();
        let mut seen = HashSet::new();
        let canonical_root = rootfs
            .canonicalize()
            .unwrap_or_else(|_| rootfs.to_path_buf());
        let mut add = |dir: PathBuf, dirs: &mut Vec<PathBuf>| {
            // `/lib` → `usr/lib` on merged-/usr images: keep one spelling of each directory.
            let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if dir.is_dir() && key.starts_with(&canonical_root) && seen.insert(key) {
                dirs.push(dir);
            }
        };
        for dir in DEFAULT_LIB_DIRS {
            add(rootfs.join(dir.trim_start_matches('/')), &mut dirs);
        }
        for dir in ld_so_conf_dirs(rootfs, before_read) {
            add(rootfs.join(dir.trim_start_matches('/')), &mut dirs);
        }
        let mut found = Vec::new();
        walk_for_libraries(rootfs, rootfs, 0, &mut found);
        found.sort();
        for dir in found {
            add(dir, &mut dirs);
        }
        let glibc = dirs.iter().find_map(|d| {
            let libc = d.join("libc.so.6");
            before_read(&libc);
            glibc_version(&libc)
        });
        let mut data_env = Vec::new();
        let locale = rootfs.join("usr/lib/locale");
        if locale.is_dir() {
            data_env.push(("LOCPATH", locale));
        }
        if let Some(gconv) = dirs
            .iter()
            .map(|d| d.join("gconv"))
            .find(|d| d.join("gconv-modules").exists() || d.join("gconv-modules.d").is_dir())
        {
            data_env.push(("GCONV_PATH", gconv));
        }
        let zoneinfo = rootfs.join("usr/share/zoneinfo");
        if zoneinfo.is_dir() {
            data_env.push(("TZDIR", zoneinfo));
        }
        Self {
            library_dirs: dirs,
            glibc,
            data_env,
        }
    }

    /// The `--library-path` value.
    pub fn library_path(&self) -> String {
        let parts: Vec<_> = self
            .library_dirs
            .iter()
            .map(|d| d.to_string_lossy())
            .collect();
        parts.join(":")
    }
}

/// Directories named in `/etc/ld.so.conf` and the files it includes (container paths).
fn ld_so_conf_dirs(rootfs: &Path, before_read: &dyn Fn(&Path)) -> Vec<String> {
    let mut out = Vec::new();
    let mut files = vec![rootfs.join("etc/ld.so.conf")];
    let mut read = 0;
    while let Some(file) = files.pop() {
        read += 1;
        if read > 64 {
            break;
        }
        before_read(&file);
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
        {
            if let Some(pattern) = line.strip_prefix("include").map(str::trim) {
                // Only the `dir/*.conf` form real images use.
                let (dir, suffix) = pattern.rsplit_once("/*").unwrap_or((pattern, ""));
                let Ok(entries) = std::fs::read_dir(rootfs.join(dir.trim_start_matches('/')))
                else {
                    continue;
                };
                let mut included: Vec<_> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().ends_with(suffix))
                    .collect();
                included.sort();
                files.extend(included.into_iter().rev());
            } else if line.starts_with('/') {
                out.push(line.to_owned());
            }
        }
    }
    out
}

fn walk_for_libraries(rootfs: &Path, dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut has_library = false;
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            let relative = path.strip_prefix(rootfs).unwrap_or(&path);
            if !SKIPPED_TREES.iter().any(|t| relative == Path::new(t)) {
                walk_for_libraries(rootfs, &path, depth + 1, found);
            }
        } else if !has_library {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            has_library = name.starts_with("lib") && name.contains(".so");
        }
    }
    if has_library {
        found.push(dir.to_path_buf());
    }
}

/// Reads `stable release version 2.36` (or `release version 2.31`) out of libc.so.6.
fn glibc_version(libc: &Path) -> Option<(u32, u32)> {
    let bytes = std::fs::read(libc).ok()?;
    let marker = b"release version ";
    let at = bytes.windows(marker.len()).position(|w| w == marker)? + marker.len();
    let text: String = bytes[at..]
        .iter()
        .take(12)
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|&b| b as char)
        .collect();
    let mut parts = text.trim_end_matches('.').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_library_dirs_in_order_and_conf_includes() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for dir in [
            "usr/lib/x86_64-linux-gnu",
            "opt/app/lib",
            "usr/share/lib",
            "etc/ld.so.conf.d",
            "custom/lib",
        ] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        std::fs::write(
            r.join("usr/lib/x86_64-linux-gnu/libc.so.6"),
            b"xx GNU C Library stable release version 2.31.\n",
        )
        .unwrap();
        std::fs::write(r.join("opt/app/lib/libapp.so.1"), b"").unwrap();
        std::fs::write(r.join("usr/share/lib/libignored.so"), b"").unwrap();
        std::fs::write(
            r.join("etc/ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n",
        )
        .unwrap();
        std::fs::write(
            r.join("etc/ld.so.conf.d/x.conf"),
            "# comment\n/custom/lib\n",
        )
        .unwrap();
        let profile = RootfsProfile::scan(r);
        let rel: Vec<_> = profile
            .library_dirs
            .iter()
            .map(|d| d.strip_prefix(r).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            rel,
            ["lib/x86_64-linux-gnu", "lib", "custom/lib", "opt/app/lib"],
            "one spelling per directory"
        );
        assert_eq!(profile.glibc, Some((2, 31)));
    }
}
