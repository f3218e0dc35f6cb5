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

/// glibc's loader configuration, its cache and its C library (the last by file name).
const LD_SO_CONF: &str = "etc/ld.so.conf";
const LD_SO_CACHE: &str = "etc/ld.so.cache";
const LIBC: &str = "libc.so.6";

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
    /// Host paths, in the image's loader's order: `/etc/ld.so.conf`'s entries (the order
    /// in which `ldconfig` lets one directory's library win over another's), the default
    /// directories, other directories the image's `ld.so.cache` names (`ldconfig DIR`);
    /// on musl its path file or `/lib:/usr/local/lib:/usr/lib`. Then any other directory
    /// holding `lib*.so*`, where no loader would look (see docs/limits.md).
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
        let (configured, cached) = if is_musl(rootfs) {
            (musl_path_dirs(rootfs, before_read), Vec::new())
        } else {
            (
                ld_so_conf_dirs(rootfs, before_read),
                ld_so_cache_dirs(rootfs, before_read),
            )
        };
        let in_order = configured
            .iter()
            .map(String::as_str)
            .chain(DEFAULT_LIB_DIRS.iter().copied())
            .chain(cached.iter().map(String::as_str));
        for dir in in_order {
            add(rootfs.join(dir.trim_start_matches('/')), &mut dirs);
        }
        let mut found = Vec::new();
        walk_for_libraries(rootfs, rootfs, 0, &mut found);
        found.sort();
        for dir in found {
            add(dir, &mut dirs);
        }
        let glibc = dirs.iter().find_map(|d| {
            let libc = d.join(LIBC);
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

    /// The files a scan of `rootfs` reads (the loader's configuration and cache, libc in
    /// the default directories; not the files `ld.so.conf` includes, known only once it is
    /// read), and the loader every dynamic program of a glibc or musl image runs under, at
    /// the path this architecture's ABI gives it. A lazy tree fetches them together before
    /// the scan: one after another, as the scan and then the command's first exec would ask
    /// for them, they cost a round trip to the store each (`Sandbox::for_pulled`).
    pub fn files_read_first(rootfs: &Path) -> Vec<PathBuf> {
        let arch = std::env::consts::ARCH;
        let glibc_loader = if arch == "x86_64" {
            "lib64/ld-linux-x86-64.so.2".to_owned()
        } else {
            format!("lib/ld-linux-{arch}.so.1")
        };
        let mut files: Vec<PathBuf> = [
            LD_SO_CONF.to_owned(),
            LD_SO_CACHE.to_owned(),
            musl_path_file(),
            glibc_loader,
            format!("lib/ld-musl-{arch}.so.1"),
        ]
        .iter()
        .map(|file| rootfs.join(file))
        .collect();
        files.extend(
            DEFAULT_LIB_DIRS
                .iter()
                .map(|dir| rootfs.join(dir.trim_start_matches('/')).join(LIBC)),
        );
        files
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
    let mut files = vec![rootfs.join(LD_SO_CONF)];
    let mut read = 0;
    while let Some(file) = files.pop() {
        read += 1;
        if read > 64 {
            break;
        }
        before_read(&file);
        let Ok(Some(bytes)) = super::read_capped(&file, MAX_CONFIG_BYTES) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
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

/// musl's search path file (relative to the rootfs).
fn musl_path_file() -> String {
    format!("etc/ld-musl-{}.path", std::env::consts::ARCH)
}

/// A musl image: its loader is `/lib/ld-musl-<arch>.so.1`.
fn is_musl(rootfs: &Path) -> bool {
    std::fs::read_dir(rootfs.join("lib")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("ld-musl-"))
    })
}

/// musl's search path: `/etc/ld-musl-<arch>.path` (entries split by `:` or lines) when the
/// image has one, else musl's built-in `/lib:/usr/local/lib:/usr/lib`.
fn musl_path_dirs(rootfs: &Path, before_read: &dyn Fn(&Path)) -> Vec<String> {
    let file = rootfs.join(musl_path_file());
    before_read(&file);
    match super::read_capped(&file, MAX_CONFIG_BYTES) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes)
            .split([':', '\n'])
            .map(str::trim)
            .filter(|d| d.starts_with('/'))
            .map(str::to_owned)
            .collect(),
        Ok(None) | Err(_) => ["/lib", "/usr/local/lib", "/usr/lib"]
            .map(str::to_owned)
            .to_vec(),
    }
}

/// The largest loader configuration file read (`ld.so.conf` and its includes, musl's path
/// file): real ones are a few lines.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The largest `libc.so.6` searched for its version: real ones are 2–3 MB.
const MAX_LIBC_BYTES: u64 = 64 << 20;

/// The largest `ld.so.cache` read: real ones are tens to hundreds of KiB.
const MAX_CACHE_BYTES: u64 = 16 << 20;

/// The directories of the libraries the image's `/etc/ld.so.cache` names, in the order
/// they first appear: they include those an image's build gave `ldconfig` on its command
/// line. The cache's string table holds each library's absolute path; reading those
/// strings needs no knowledge of the (old, compat or new) entry layout.
fn ld_so_cache_dirs(rootfs: &Path, before_read: &dyn Fn(&Path)) -> Vec<String> {
    use std::io::Read;
    let file = rootfs.join(LD_SO_CACHE);
    before_read(&file);
    let mut bytes = Vec::new();
    let Ok(cache) = std::fs::File::open(&file) else {
        return Vec::new();
    };
    if cache.take(MAX_CACHE_BYTES).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let mut dirs: Vec<String> = Vec::new();
    for token in bytes.split(|&b| b == 0) {
        let Ok(path) = std::str::from_utf8(token) else {
            continue;
        };
        if !path.starts_with('/') || path.chars().any(char::is_control) {
            continue;
        }
        if let Some((dir, _)) = path.rsplit_once('/')
            && !dir.is_empty()
            && !dirs.iter().any(|d| d == dir)
        {
            dirs.push(dir.to_owned());
        }
    }
    dirs
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
    let bytes = super::read_capped(libc, MAX_LIBC_BYTES).ok()??;
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

    /// The library directories a scan of `r` finds, relative to it.
    fn scanned_dirs(r: &Path) -> Vec<String> {
        RootfsProfile::scan(r)
            .library_dirs
            .iter()
            .map(|d| d.strip_prefix(r).unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// A hostile layer's files as large as a layer allows (4 GiB, sparse): the scan reads
    /// a bounded part of each, finds what it can, and does not hold them in memory.
    #[test]
    fn huge_loader_files_are_not_read_whole() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for dir in ["etc", "usr/lib/x86_64-linux-gnu"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        for file in ["etc/ld.so.conf", "usr/lib/x86_64-linux-gnu/libc.so.6"] {
            let huge = std::fs::File::create(r.join(file)).unwrap();
            huge.set_len(4 << 30).unwrap();
        }
        let profile = RootfsProfile::scan(r);
        assert_eq!(profile.glibc, None, "no version read from a 4 GiB libc");
        assert!(
            profile
                .library_dirs
                .contains(&r.join("usr/lib/x86_64-linux-gnu")),
            "{:?}",
            profile.library_dirs
        );
    }

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
        assert_eq!(
            scanned_dirs(r),
            ["custom/lib", "lib/x86_64-linux-gnu", "lib", "opt/app/lib"],
            "ld.so.conf's directories first, one spelling per directory"
        );
        assert_eq!(RootfsProfile::scan(r).glibc, Some((2, 31)));
    }

    #[test]
    fn directories_only_the_ld_so_cache_names_come_after_the_default_ones() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for dir in ["etc", "usr/lib", "opt/cuda/lib64", "opt/other"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        // The new format's layout: a header, entries, then the string table.
        let mut cache = b"glibc-ld.so.cache1.1\x02\0\0\0\x2f\0\0\0".to_vec();
        cache.extend_from_slice(&[0x2f, 0x01, 0, 0, 0x2f, 0, 0, 0]);
        for s in [
            "libcudart.so.12",
            "/opt/cuda/lib64/libcudart.so.12",
            "libz.so.1",
            "/usr/lib/libz.so.1",
            "/opt/gone/libx.so",
        ] {
            cache.extend_from_slice(s.as_bytes());
            cache.push(0);
        }
        std::fs::write(r.join("etc/ld.so.cache"), cache).unwrap();
        assert_eq!(scanned_dirs(r), ["usr/lib", "opt/cuda/lib64"]);
    }

    /// Every file a scan reads, bar those `ld.so.conf` includes, is among those a lazy tree
    /// fetches together before it, so that the scan waits for no fetch of its own.
    #[test]
    fn a_scan_reads_no_file_beyond_those_fetched_first() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for dir in ["usr/lib/x86_64-linux-gnu", "etc/ld.so.conf.d", "usr/lib64"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        for (link, target) in [("lib", "usr/lib"), ("lib64", "usr/lib64")] {
            std::os::unix::fs::symlink(target, r.join(link)).unwrap();
        }
        for (file, bytes) in [
            (
                "usr/lib/x86_64-linux-gnu/libc.so.6",
                &b"GNU C Library release version 2.36.\n"[..],
            ),
            ("usr/lib64/ld-linux-x86-64.so.2", b""),
            ("etc/ld.so.conf", b"include /etc/ld.so.conf.d/*.conf\n"),
            ("etc/ld.so.conf.d/libc.conf", b"/usr/local/lib\n"),
            ("etc/ld.so.cache", b"glibc-ld.so.cache1.1"),
        ] {
            std::fs::write(r.join(file), bytes).unwrap();
        }
        let first = RootfsProfile::files_read_first(r);
        let read = std::cell::RefCell::new(Vec::new());
        let profile = RootfsProfile::scan_with(r, &|file| read.borrow_mut().push(file.to_owned()));
        assert_eq!(profile.glibc, Some((2, 36)));
        let read = read.into_inner();
        for file in [
            "etc/ld.so.conf",
            "etc/ld.so.cache",
            "lib/x86_64-linux-gnu/libc.so.6",
        ] {
            assert!(
                read.contains(&r.join(file)),
                "the scan reads {file}: {read:?}"
            );
        }
        let beyond: Vec<_> = read
            .iter()
            .filter(|file| file.exists() && !file.starts_with(r.join("etc/ld.so.conf.d")))
            .filter(|file| !first.contains(file))
            .collect();
        assert!(beyond.is_empty(), "read but not fetched first: {beyond:?}");
        if std::env::consts::ARCH == "x86_64" {
            assert!(first.contains(&r.join("lib64/ld-linux-x86-64.so.2")));
        }
        // musl's: its path file and its loader, which is its libc.
        let musl = tempfile::tempdir().unwrap();
        let m = musl.path();
        for dir in ["lib", "etc"] {
            std::fs::create_dir_all(m.join(dir)).unwrap();
        }
        let loader = format!("lib/ld-musl-{}.so.1", std::env::consts::ARCH);
        std::fs::write(m.join(&loader), b"").unwrap();
        std::fs::write(m.join(musl_path_file()), b"/lib\n").unwrap();
        let read = std::cell::RefCell::new(Vec::new());
        RootfsProfile::scan_with(m, &|file| read.borrow_mut().push(file.to_owned()));
        let first = RootfsProfile::files_read_first(m);
        let read = read.into_inner();
        assert!(read.contains(&m.join(musl_path_file())), "{read:?}");
        assert!(
            read.iter()
                .all(|file| !file.exists() || first.contains(file)),
            "{read:?}"
        );
        assert!(first.contains(&m.join(loader)));
    }

    #[test]
    fn musl_searches_its_path_file_or_its_built_in_order() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for dir in ["lib", "usr/lib", "usr/local/lib", "opt/lib", "etc"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::fs::write(r.join("lib/ld-musl-x86_64.so.1"), b"").unwrap();
        assert_eq!(scanned_dirs(r), ["lib", "usr/local/lib", "usr/lib"]);
        std::fs::write(
            r.join(format!("etc/ld-musl-{}.path", std::env::consts::ARCH)),
            "/opt/lib:/usr/lib\n/lib\n",
        )
        .unwrap();
        assert_eq!(
            scanned_dirs(r),
            ["opt/lib", "usr/lib", "lib", "usr/local/lib"]
        );
    }
}
