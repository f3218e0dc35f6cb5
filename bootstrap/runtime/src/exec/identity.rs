//! Lambda runs every image as uid 993, which no image's /etc/passwd lists. Programs that
//! look the user up (`whoami`, `id`, ssh, Python's `getpass`) would fail, so the container
//! sees an /etc/passwd and /etc/group with an entry for the running uid and gid added.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The name the host gives `id` in a passwd/group style file.
fn host_name(file: &Path, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}

fn lists_id(text: &str, id: u32) -> bool {
    text.lines()
        .any(|line| line.split(':').nth(2).and_then(|f| f.parse::<u32>().ok()) == Some(id))
}

/// `(container path, host file)` maps for /etc/passwd and /etc/group when the image lacks
/// the running ids; the files are written once into `scratch`.
pub fn identity_mounts(rootfs: &Path, scratch: &Path) -> Vec<(String, PathBuf)> {
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let user = host_name(Path::new("/etc/passwd"), uid).unwrap_or_else(|| format!("user{uid}"));
    let group = host_name(Path::new("/etc/group"), gid).unwrap_or_else(|| format!("group{gid}"));
    // One file per image and user.
    let dir = scratch.join("identity").join(super::image_key(rootfs));
    let mut mounts = Vec::new();
    for (name, id, line) in [
        (
            "passwd",
            uid,
            format!("{user}:x:{uid}:{gid}:{user}:/tmp:/bin/sh\n"),
        ),
        ("group", gid, format!("{group}:x:{gid}:\n")),
    ] {
        let image_file = rootfs.join("etc").join(name);
        let image_text = std::fs::read_to_string(&image_file).unwrap_or_default();
        if lists_id(&image_text, id) {
            continue;
        }
        let host_file = dir.join(format!("{name}-{uid}-{gid}"));
        if host_file.exists()
            || write_atomically(&host_file, &[image_text.as_str(), line.as_str()]).is_ok()
        {
            mounts.push((format!("/etc/{name}"), host_file));
        }
    }
    mounts
}

fn write_atomically(path: &Path, parts: &[&str]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    for part in parts {
        file.write_all(part.as_bytes())?;
        if !part.is_empty() && !part.ends_with('\n') {
            file.write_all(b"\n")?;
        }
    }
    file.persist(path).map(drop).map_err(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_running_ids_only_when_the_image_lacks_them() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let mounts = identity_mounts(&rootfs, &dir.path().join("scratch"));
        if uid == 0 {
            assert!(mounts.is_empty(), "root is in every image");
            return;
        }
        assert_eq!(mounts.len(), 2);
        let passwd = std::fs::read_to_string(&mounts[0].1).unwrap();
        assert!(
            passwd.starts_with("root:x:0:0:root:/root:/bin/sh\n"),
            "{passwd}"
        );
        assert!(lists_id(&passwd, uid), "{passwd}");
        assert!(
            mounts[0].1.starts_with(dir.path().join("scratch")),
            "written in the scratch directory"
        );
    }
}
