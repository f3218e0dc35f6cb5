//! Probes: small C programs under `container-rootfs-tests/probes/` that make the calls a
//! language runtime makes and print what a container program sees, built for one target
//! with zig (the cross toolchain `make tools` installs) and shown inside the container
//! through a bound directory, under the shim and under chroot alike.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::lambda::{text, workspace};
use crate::work;

/// A directory holding one built probe and a scratch directory `s` the Lambda uid can write.
#[derive(Debug)]
pub struct Probe {
    dir: tempfile::TempDir,
}

impl Probe {
    /// Builds `probes/NAME.c` for a zig target (`x86_64-linux-gnu.2.31`, `x86_64-linux-musl`).
    pub fn build(name: &str, target: &str) -> Probe {
        std::fs::create_dir_all(work().join("probes")).unwrap();
        let dir = tempfile::tempdir_in(work().join("probes")).unwrap();
        let source = workspace().join(format!("container-rootfs-tests/probes/{name}.c"));
        let mut cc = Command::new("python3");
        cc.args(["-m", "ziglang", "cc", "-target", target, "-O2", "-o"])
            .arg(dir.path().join(name))
            .arg(&source);
        if target.contains("musl") {
            // zig links musl programs statically unless asked; the shim needs a dynamic one.
            cc.arg("-dynamic");
        }
        let out = cc.output().unwrap();
        assert!(out.status.success(), "zig cc {name}: {}", text(&out.stderr));
        std::fs::create_dir(dir.path().join("s")).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path().join("s"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        Probe { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
