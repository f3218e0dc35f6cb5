//! Lambda runs every image as uid 993, which no image's /etc/passwd lists. Programs that
//! look the user up (`whoami`, `id`, ssh, Python's `getpass`) would fail, so the container
//! sees an /etc/passwd and /etc/group with an entry for the running uid and gid added.
//!
//! The image's `User` cannot be applied (Lambda runs one uid), but what it means for the
//! environment can: `HOME` is that user's home, as a container runtime sets it, so what an
//! image built as `USER app` keeps there (`pip install --user` in `~/.local`, dotfiles) is
//! found.

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
    mounts_for(rootfs, scratch, uid, gid)
}

/// [`identity_mounts`] for the ids `uid` and `gid`.
fn mounts_for(rootfs: &Path, scratch: &Path, uid: u32, gid: u32) -> Vec<(String, PathBuf)> {
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
        let Some(image_bytes) = read_account_file(rootfs, name) else {
            tracing::warn!(
                file = name,
                "the image's /etc/{name} is over 4 MiB: the running user is not added to it"
            );
            continue;
        };
        // A GECOS field in Latin-1 is no reason to lose the file: its bytes are kept.
        if lists_id(&String::from_utf8_lossy(&image_bytes), id) {
            continue;
        }
        let host_file = dir.join(format!("{name}-{uid}-{gid}"));
        if host_file.exists()
            || write_atomically(&host_file, &[&image_bytes, line.as_bytes()]).is_ok()
        {
            mounts.push((format!("/etc/{name}"), host_file));
        }
    }
    mounts
}

/// The most of an image's account file read: a larger one is no account file (a hostile
/// layer's 4 GiB sparse /etc/passwd would otherwise be read into memory whole).
const MAX_ACCOUNT_FILE_BYTES: u64 = 4 << 20;

/// The image's `/etc/NAME`: empty when there is none (or it cannot be read), `None` when
/// it is larger than [`MAX_ACCOUNT_FILE_BYTES`]. Symlinks in the tree resolve inside it, as
/// the unpacker stores them.
fn read_account_file(rootfs: &Path, name: &str) -> Option<Vec<u8>> {
    super::read_capped(&rootfs.join("etc").join(name), MAX_ACCOUNT_FILE_BYTES)
        .unwrap_or(Some(Vec::new()))
}

/// `HOME` for a command of the image whose tree is `rootfs` and whose config names `user`,
/// when neither the image's Env nor the caller sets one (see [`home_in`]).
pub fn home_of(rootfs: &Path, user: Option<&str>) -> String {
    let bytes = read_account_file(rootfs, "passwd").unwrap_or_default();
    let home = home_in(&String::from_utf8_lossy(&bytes), user);
    if let Some(user) = user.filter(|u| !u.is_empty()) {
        tracing::debug!(
            user,
            home,
            "the image's User is not applied (Lambda runs one uid); HOME is its home"
        );
    }
    home
}

/// As runc sets `HOME`: the home directory of the passwd entry whose name is `user`'s (or
/// whose uid is, when it is a number; `name:group` and `uid:gid` name the user by their
/// first part), root's when no user is named, and `/` when the file has no such entry.
fn home_in(passwd: &str, user: Option<&str>) -> String {
    let wanted = user
        .map(|u| u.split(':').next().unwrap_or_default())
        .filter(|u| !u.is_empty())
        .unwrap_or("0");
    let wanted_uid = wanted.parse::<u32>().ok();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _, uid, _, _, home, ..] = fields.as_slice() else {
                return None;
            };
            let matches =
                *name == wanted || (wanted_uid.is_some() && uid.parse::<u32>().ok() == wanted_uid);
            matches.then(|| (*home).to_owned())
        })
        .filter(|home| !home.is_empty())
        .unwrap_or_else(|| "/".to_owned())
}

fn write_atomically(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    for part in parts {
        file.write_all(part)?;
        if !part.is_empty() && !part.ends_with(b"\n") {
            file.write_all(b"\n")?;
        }
    }
    file.persist(path).map(drop).map_err(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_the_image_users_home_as_runc_sets_it() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      app:x:1000:1000::/home/app:/bin/sh\n\
                      1001:x:1002:1002::/home/numeric-name:/bin/sh\n\
                      nohome:x:1003:1003:::/bin/sh\n";
        for (user, home) in [
            (None, "/root"),
            (Some(""), "/root"),
            (Some("0"), "/root"),
            (Some("root"), "/root"),
            (Some("app"), "/home/app"),
            (Some("1000"), "/home/app"),
            (Some("app:staff"), "/home/app"),
            (Some("1000:50"), "/home/app"),
            (Some("1001"), "/home/numeric-name"),
            (Some("1002"), "/home/numeric-name"),
            (Some("ghost"), "/"),
            (Some("4242"), "/"),
            (Some("nohome"), "/"),
        ] {
            assert_eq!(home_in(passwd, user), home, "{user:?}");
        }
        assert_eq!(home_in("", None), "/", "an image without /etc/passwd");
        assert_eq!(home_in("garbage\n::\n", Some("app")), "/");
    }

    #[test]
    fn home_of_reads_the_images_passwd() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(home_of(dir.path(), Some("app")), "/", "no /etc/passwd");
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(home_of(dir.path(), Some("app")), "/home/app");
        assert_eq!(home_of(dir.path(), None), "/root");
    }

    #[test]
    fn an_account_file_over_the_bound_is_not_read_into_memory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let huge = std::fs::File::create(dir.path().join("etc/passwd")).unwrap();
        huge.set_len(4 << 30).unwrap();
        assert_eq!(read_account_file(dir.path(), "passwd"), None);
        assert_eq!(home_of(dir.path(), None), "/");
        let mounts = mounts_for(dir.path(), &dir.path().join("scratch"), 4242, 4242);
        assert!(
            mounts.iter().all(|(at, _)| at != "/etc/passwd"),
            "no identity file made from it"
        );
        assert_eq!(read_account_file(dir.path(), "group"), Some(Vec::new()));
    }

    #[test]
    fn an_account_file_not_in_utf8_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let latin1 =
            b"root:x:0:0:root:/root:/bin/sh\njos\xe9:x:1000:1000:Jos\xe9:/home/jose:/bin/sh\n";
        std::fs::write(dir.path().join("etc/passwd"), latin1).unwrap();
        assert_eq!(home_of(dir.path(), Some("1000")), "/home/jose");
        let mounts = mounts_for(dir.path(), &dir.path().join("scratch"), 4242, 4242);
        let passwd = mounts.iter().find(|(at, _)| at == "/etc/passwd").unwrap();
        let written = std::fs::read(&passwd.1).unwrap();
        assert!(written.starts_with(latin1), "the image's bytes first");
        let added = String::from_utf8_lossy(&written[latin1.len()..]).into_owned();
        assert!(
            added.contains(":x:4242:4242:") && added.ends_with(":/tmp:/bin/sh\n"),
            "then the running user: {added}"
        );
    }

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
