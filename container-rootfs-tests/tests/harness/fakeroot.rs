//! Fake root (`bootstrap run --fakeroot`, `SCAR_FAKEROOT=1`): what a command sees is
//! compared with real root under chroot, and real Debian packages are installed with apt
//! and dpkg from a local repository (setup.sh serves it on 127.0.0.1:5020), then run.
//!
//! These tests use their own cache: installs change the image's rootfs, which the shim
//! matrix compares with an untouched chroot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use scar_test_kit::images;
use scar_test_kit::lambda::{LAMBDA_UID, chroot_run_as, lambda_run, side_by_side, text};
use scar_test_kit::work;

fn fakeroot_cache() -> String {
    let dir = work().join("cache-fakeroot");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(LAMBDA_UID), Some(LAMBDA_UID)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.display().to_string()
}

fn polyglot_chroot() -> PathBuf {
    work().join("chroot/polyglot/rootfs")
}

fn run_fakeroot(extra: &[&str], script: &str) -> std::process::Output {
    let cache = fakeroot_cache();
    let mut args = vec!["--fakeroot", "--cache-dir", cache.as_str()];
    args.extend(extra);
    lambda_run(images::POLYGLOT, &args, &["/bin/sh", "-c", script])
}

/// Identity, ownership set and read back through every family of calls (`syscall()`
/// included) and by another process, the ids `/proc/<pid>/status` shows, and a privilege
/// drop that cannot be undone and holds in the programs it execs, as root sees them.
const AS_ROOT: &str = r#"
id -u; id -g; id -un; id -G
touch /tmp/fr-a && stat -c '%u %g %U' /tmp/fr-a
chown 1:2 /tmp/fr-a && stat -c '%u %g' /tmp/fr-a
chown :3 /tmp/fr-a && stat -c '%u %g' /tmp/fr-a
ln -sf fr-a /tmp/fr-l && chown -h 5:6 /tmp/fr-l && stat -c '%u %g' /tmp/fr-l /tmp/fr-a
python3 -c '
import os
os.chown("/tmp/fr-a", 7, 8)
st = os.stat("/tmp/fr-a"); print(st.st_uid, st.st_gid)
fd = os.open("/tmp/fr-a", os.O_RDONLY); os.fchown(fd, 9, 10); print(os.fstat(fd).st_uid, os.fstat(fd).st_gid)
os.lchown("/tmp/fr-l", 11, 12); print(os.lstat("/tmp/fr-l").st_uid, os.stat("/tmp/fr-l").st_uid)
'
sh -c 'stat -c "%u %g" /tmp/fr-a; ls -ln /tmp/fr-a | cut -d" " -f3,4'
chmod 4755 /tmp/fr-a && stat -c '%a' /tmp/fr-a
mkdir -p /tmp/fr-d && chown 20:21 /tmp/fr-d && rmdir /tmp/fr-d && mkdir /tmp/fr-d && stat -c '%u %g' /tmp/fr-d
rm -f /tmp/fr-a /tmp/fr-l && rmdir /tmp/fr-d
touch /tmp/fr-b && stat -c '%u %g' /tmp/fr-b && rm /tmp/fr-b
grep -E '^(Uid|Gid|Groups):' /proc/self/status
awk '/^(Uid|Gid):/ {print $1, $2, $3}' /proc/$$/status
python3 -c '
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
os.mkdir("/tmp/fr-e"); os.chown("/tmp/fr-e", 22, 23)
print(libc.syscall(263, -100, b"/tmp/fr-e", 0x200))
os.mkdir("/tmp/fr-e"); st = os.stat("/tmp/fr-e"); print(st.st_uid, st.st_gid); os.rmdir("/tmp/fr-e")
os.setgroups([4]); os.setresgid(0, 100, 0); os.setresuid(0, 65534, 0)
with open("/proc/self/status") as f:
    print([l.split() for l in f if l.startswith(("Uid:", "Gid:", "Groups:"))])
os.setresuid(0, 0, 0)
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
print(os.getresuid(), os.getresgid(), os.getgroups())
try:
    os.setuid(0); print("regained root")
except PermissionError:
    print("cannot regain root")
sys.stdout.flush()
os.execvp("sh", ["sh", "-c", "id -u; id -g; id -G; grep -E \"^(Uid|Gid|Groups):\" /proc/self/status; \
  python3 -c \"import os; print(os.getresuid(), os.getresgid())\"; \
  touch /tmp/fr-n; mkdir /tmp/fr-m; ln -s fr-n /tmp/fr-s; mkfifo /tmp/fr-p; \
  python3 -c \"import tempfile, os; f, p = tempfile.mkstemp(); print(os.stat(p).st_uid); os.unlink(p)\"; \
  d=$(mktemp -d); stat -c %u:%g $d /tmp/fr-n /tmp/fr-m /tmp/fr-s /tmp/fr-p; rm -r $d /tmp/fr-n /tmp/fr-m /tmp/fr-s /tmp/fr-p"])
'
"#;

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn fake_root_answers_as_real_root_does() {
    let ours = run_fakeroot(&[], AS_ROOT);
    let truth = chroot_run_as(&polyglot_chroot(), "0:0", &[], &["/bin/sh", "-c", AS_ROOT]);
    let report = side_by_side("chroot as root", &truth, "fake root", &ours);
    assert_eq!(truth.status.code(), Some(0), "{report}");
    assert!(
        text(&truth.stdout).contains("cannot regain root\n65534\n65534\n65534\n"),
        "{report}"
    );
    assert_eq!(ours.stdout, truth.stdout, "{report}");
    assert_eq!(ours.status.code(), Some(0), "{report}");
}

/// musl reads /etc/passwd and /etc/group from inside libc: a user that busybox's `adduser`
/// writes into the image is then found by a musl program's lookups (busybox has its own),
/// by every family of them, as under chroot.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn a_user_added_in_a_musl_image_is_found_as_under_chroot() {
    const LOOKUP: &str = r#"#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    struct passwd *p = getpwnam(argv[1]);
    if (!p) { printf("no user %s\n", argv[1]); return 0; }
    printf("%s %u %u %s %s\n", p->pw_name, p->pw_uid, p->pw_gid, p->pw_dir, p->pw_shell);
    uid_t uid = p->pw_uid; gid_t gid = p->pw_gid;
    struct passwd pr, *pres; char buf[1024];
    if (getpwuid_r(uid, &pr, buf, sizeof buf, &pres) == 0 && pres) printf("%s\n", pres->pw_name);
    struct group *g = getgrgid(gid);
    if (g) { printf("%s %u", g->gr_name, g->gr_gid); for (char **m = g->gr_mem; *m; m++) printf(" %s", *m); printf("\n"); }
    struct group gr, *gres; char gbuf[1024];
    if (getgrnam_r(g ? g->gr_name : "", &gr, gbuf, sizeof gbuf, &gres) == 0 && gres) printf("%u\n", gres->gr_gid);
    p = getpwuid(uid);
    printf("%s\n", p ? p->pw_name : "?");
    return 0;
}
"#;
    const SCRIPT: &str = "set -e
addgroup -g 4321 crew
adduser -D -H -h /home/alice -u 1234 -G crew alice
addgroup -g 4322 band && addgroup alice band
/tmp/program alice; /tmp/program nobody-here
deluser alice; delgroup crew 2>/dev/null || true; delgroup band 2>/dev/null || true
/tmp/program alice";
    let truth = same_as_chroot_root(images::MUSL, "musl", "musl-gcc", LOOKUP, SCRIPT);
    assert!(
        truth.starts_with(
            "alice 1234 4321 /home/alice /bin/sh\nalice\ncrew 4321 alice\n4321\nalice\n"
        ),
        "{truth}"
    );
}

/// Enumeration and group lists read the image's files too (libc reads them from inside
/// itself): `getpwent`, `getgrent` with `set*ent` rewinding, and `getgrouplist` with
/// enough room and with too little, on glibc and on musl, as under chroot.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn enumeration_and_group_lists_read_the_images_accounts_as_under_chroot() {
    const WALK: &str = r#"#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    gid_t g[64]; int n = 64;
    int r = getgrouplist(argv[1], atoi(argv[2]), g, &n);
    printf("%d:", r); for (int i = 0; i < n; i++) printf(" %u", g[i]); printf("\n");
    int small = 1; g[0] = 0;
    r = getgrouplist(argv[1], atoi(argv[2]), g, &small);
    printf("%d %d %u\n", r, small, g[0]);
    struct passwd *p; setpwent();
    while ((p = getpwent())) printf("%s:%u ", p->pw_name, p->pw_uid);
    endpwent(); printf("\n");
    struct group *gr; setgrent();
    while ((gr = getgrent())) printf("%s:%u:%s ", gr->gr_name, gr->gr_gid, gr->gr_mem[0] ? gr->gr_mem[0] : "");
    endgrent(); printf("\n");
    setpwent(); getpwent(); getpwent(); setpwent(); p = getpwent();
    printf("%s\n", p ? p->pw_name : "-"); endpwent();
#ifdef __GLIBC__
    struct passwd pw, *pp; struct group gg, *gp; char b[4096], tiny[8];
    setpwent(); printf("%d ", getpwent_r(&pw, tiny, sizeof tiny, &pp));
    while (getpwent_r(&pw, b, sizeof b, &pp) == 0) printf("%s ", pp->pw_name);
    endpwent(); printf("\n"); setgrent();
    while (getgrent_r(&gg, b, sizeof b, &gp) == 0) printf("%s ", gp->gr_name);
    endgrent(); printf("\n");
#endif
    if (initgroups(argv[1], atoi(argv[2])) != 0) perror("initgroups");
    n = getgroups(64, g);
    printf("init %d:", n); for (int i = 0; i < n; i++) printf(" %u", g[i]); printf("\n");
    return 0;
}
"#;
    const SCRIPT: &str = "set -e
echo 'zz-carol:x:2345:2345::/home/carol:/bin/sh' >> /etc/passwd
printf 'zz-carol:x:2345:\nzz-audio:x:2400:zz-dave,zz-carol\nzz-video:x:2401:zz-carol\nzz-carol2:x:2345:zz-carol\nzz-sound:x:2400:zz-carol\n' >> /etc/group
/tmp/program zz-carol 2345
sed -i '/^zz-/d' /etc/passwd /etc/group";
    // musl lists a group of the user's own gid again, glibc does not; both keep repeats,
    // and `initgroups` sets them as the kernel keeps them, sorted.
    for (image, chroot, compiler, groups, init) in [
        (
            images::GLIBC,
            "glibc",
            "gcc",
            "4: 2345 2400 2401 2400\n-1 4 2345\n",
            "init 4: 2345 2400 2400 2401\n",
        ),
        (
            images::MUSL,
            "musl",
            "musl-gcc",
            "5: 2345 2400 2401 2345 2400\n-1 5 2345\n",
            "init 5: 2345 2345 2400 2400 2401\n",
        ),
    ] {
        let truth = same_as_chroot_root(image, chroot, compiler, WALK, SCRIPT);
        assert!(truth.starts_with(groups), "{chroot}: {truth}");
        assert!(truth.contains("zz-carol:2345"), "{chroot}: {truth}");
        assert!(truth.ends_with(init), "{chroot}: {truth}");
        if chroot == "glibc" {
            // The reentrant walk: a buffer too small, then the same first entry again.
            assert!(truth.contains("\n34 root "), "{truth}");
        }
    }
}

/// Shadow lookups read the image's `/etc/shadow` and `/etc/gshadow` (libc opens them from
/// inside itself, where the host's files or a module the host's nsswitch.conf names
/// answered): `getspnam`, `getspnam_r` with enough room and too little, a name that another
/// one begins with, a name absent, lines with empty numbers, and on glibc the `getspent`
/// walk and `_r`, `getsgnam` and the `getsgent` walk; musl's `getspent` finds nothing, as
/// its own does under chroot, and musl has no gshadow.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn shadow_lookups_read_the_images_file_as_under_chroot() {
    const LOOKUP: &str = r#"#include <errno.h>
#ifdef __GLIBC__
#include <gshadow.h>
#endif
#include <shadow.h>
#include <stdio.h>
static void show(const char *what, struct spwd *s) {
    if (!s) { printf("%s: none\n", what); return; }
    printf("%s: %s %s %ld %ld %ld %ld %ld %ld %lu\n", what, s->sp_namp, s->sp_pwdp, s->sp_lstchg,
           s->sp_min, s->sp_max, s->sp_warn, s->sp_inact, s->sp_expire, s->sp_flag);
}
int main(void) {
    show("zz-ann", getspnam("zz-ann"));
    show("zz-bo", getspnam("zz-bo"));
    show("zz-a", getspnam("zz-a"));
    show("zz-nobody", getspnam("zz-nobody"));
    struct spwd sp, *res = 0; char buf[1024], tiny[16];
    int rc = getspnam_r("zz-ann", &sp, buf, sizeof buf, &res);
    printf("r %d ", rc); show("zz-ann", res);
    rc = getspnam_r("zz-ann", &sp, tiny, sizeof tiny, &res);
    printf("tiny %d %s\n", rc, res ? "found" : "none");
    struct spwd *s; int n = 0; setspent();
    while ((s = getspent())) if (s->sp_namp[0] == 'z') printf("%s ", s->sp_namp), n++;
    endspent(); printf("walk %d\n", n);
#ifdef __GLIBC__
    setspent(); n = 0;
    while (getspent_r(&sp, buf, sizeof buf, &res) == 0) n += res->sp_namp[0] == 'z';
    endspent(); printf("walk_r %d\n", n);
    struct sgrp *g = getsgnam("zz-crew");
    if (g) printf("%s %s %s %s\n", g->sg_namp, g->sg_passwd, g->sg_adm[0] ? g->sg_adm[0] : "-",
                  g->sg_mem[0] && g->sg_mem[1] ? g->sg_mem[1] : "-");
    printf("%s\n", getsgnam("zz-nocrew") ? "found" : "none");
    struct sgrp sg, *sgres = 0;
    printf("r %d %s\n", getsgnam_r("zz-crew", &sg, tiny, sizeof tiny, &sgres), sgres ? "found" : "none");
    setsgent(); n = 0;
    while ((g = getsgent())) n += g->sg_namp[0] == 'z';
    endsgent(); printf("gwalk %d\n", n);
#endif
    return 0;
}
"#;
    const SCRIPT: &str = "set -e
touch /etc/shadow
cp /etc/shadow /tmp/shadow.kept
printf 'zz-ann:$6$salt$hash:19000:0:99999:7:::\\nzz-bo:!:::::::\\nzz-a:*:1:2:3:4:5:6:7\\n' >> /etc/shadow
touch /etc/gshadow
cp /etc/gshadow /tmp/gshadow.kept
printf 'zz-crew:!:zz-ann:zz-ann,zz-bo\\nzz-band:*::\\n' >> /etc/gshadow
/tmp/program
cp /tmp/shadow.kept /etc/shadow; rm /tmp/shadow.kept
cp /tmp/gshadow.kept /etc/gshadow; rm /tmp/gshadow.kept";
    for (image, chroot, compiler, walk) in [
        (
            images::GLIBC,
            "glibc",
            "gcc",
            "zz-ann zz-bo zz-a walk 3\nwalk_r 3\nzz-crew ! zz-ann zz-bo\nnone\nr 34 none\ngwalk 2\n",
        ),
        (images::MUSL, "musl", "musl-gcc", "walk 0\n"),
    ] {
        let truth = same_as_chroot_root(image, chroot, compiler, LOOKUP, SCRIPT);
        assert!(
            truth.starts_with(
                "zz-ann: zz-ann $6$salt$hash 19000 0 99999 7 -1 -1 18446744073709551615\n\
                 zz-bo: zz-bo ! -1 -1 -1 -1 -1 -1 18446744073709551615\n\
                 zz-a: zz-a * 1 2 3 4 5 6 7\nzz-nobody: none\nr 0 zz-ann: zz-ann"
            ),
            "{chroot}: {truth}"
        );
        assert!(truth.contains("tiny 34 none\n"), "{chroot}: {truth}");
        assert!(truth.ends_with(walk), "{chroot}: {truth}");
    }
}

/// Compiles `source` with `compiler`, runs `script` (which finds the program at
/// /tmp/program) under chroot as root on a copy of the `chroot` tree and under fake root on
/// `image` (its own cache), and requires the same output and a zero status. Returns the
/// output.
fn same_as_chroot_root(
    image: &str,
    chroot: &str,
    compiler: &str,
    source: &str,
    script: &str,
) -> String {
    same_as_chroot_as(Root::Fake, image, chroot, compiler, source, script)
}

/// Who runs our side of [`same_as_chroot_as`].
#[derive(Clone, Copy, PartialEq)]
enum Root {
    /// The Lambda user under `--fakeroot`.
    Fake,
    /// Real root without `--fakeroot` (`bootstrap run` on a machine of one's own).
    Real,
}

/// [`same_as_chroot_root`], our side run as `who`.
fn same_as_chroot_as(
    who: Root,
    image: &str,
    chroot: &str,
    compiler: &str,
    source: &str,
    script: &str,
) -> String {
    let build = tempfile::tempdir().unwrap();
    std::fs::write(build.path().join("program.c"), source).unwrap();
    let out = std::process::Command::new(compiler)
        .args(["-O1", "-o"])
        .arg(build.path().join("program"))
        .arg(build.path().join("program.c"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{compiler}: {}", text(&out.stderr));

    let root = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!(
            "{}/.",
            work().join("chroot").join(chroot).join("rootfs").display()
        ))
        .arg(root.path())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::copy(
        build.path().join("program"),
        root.path().join("tmp/program"),
    )
    .unwrap();
    let truth = chroot_run_as(root.path(), "0:0", &[], &["/bin/sh", "-c", script]);

    // A cache of its own: the scripts change the image's account files and leave the
    // program in its /tmp, which other tests of the same image run at the same time would
    // see.
    let own_cache = scar_test_kit::lambda::fresh_lambda_cache();
    let cache = own_cache.path().display().to_string();
    let mount = format!("/mnt={}", build.path().display());
    let in_image = format!("cp /mnt/program /tmp/program\n{script}");
    std::fs::set_permissions(build.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ours = match who {
        Root::Fake => lambda_run(
            image,
            &["--fakeroot", "--cache-dir", &cache, "--mount", &mount],
            &["/bin/sh", "-c", &in_image],
        ),
        Root::Real => std::process::Command::new(scar_test_kit::lambda::bootstrap_bin())
            .args([
                "run",
                "--cache-dir",
                &cache,
                "--mount",
                &mount,
                "--shim-dir",
            ])
            .arg(scar_test_kit::lambda::shim_dir())
            .args([
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ])
            .args([image, "--", "/bin/sh", "-c", &in_image])
            .env("AWS_LAMBDA_LOG_LEVEL", "error")
            .output()
            .unwrap(),
    };
    let report = side_by_side(
        &format!("{chroot}: chroot as root"),
        &truth,
        "fake root",
        &ours,
    );
    assert_eq!(truth.status.code(), Some(0), "{report}");
    assert_eq!(ours.stdout, truth.stdout, "{report}");
    assert_eq!(ours.status.code(), Some(0), "{report}");
    text(&truth.stdout)
}

/// `initgroups` without fake root lists the user's groups from the image's `/etc/group`
/// (libc's own reads the host's files), then asks the kernel: as real root (`bootstrap run`
/// on one's own machine) the groups are the image's, as under chroot.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn initgroups_without_fake_root_lists_the_images_groups() {
    const GROUPS: &str = r#"#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    gid_t g[64];
    if (initgroups(argv[1], atoi(argv[2])) != 0) { perror("initgroups"); return 1; }
    int n = getgroups(64, g);
    printf("%d:", n); for (int i = 0; i < n; i++) printf(" %u", g[i]); printf("\n");
    return 0;
}
"#;
    const SCRIPT: &str = "set -e
cp /etc/group /tmp/group.kept
printf 'zz-band:x:2401:zz-erin\\nzz-crew:x:2402:zz-erin,zz-finn\\n' >> /etc/group
/tmp/program zz-erin 2400
cp /tmp/group.kept /etc/group; rm /tmp/group.kept";
    let truth = same_as_chroot_as(Root::Real, images::GLIBC, "glibc", "gcc", GROUPS, SCRIPT);
    assert_eq!(truth, "3: 2400 2401 2402\n");
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn without_the_flag_nothing_changes() {
    let out = lambda_run(
        images::POLYGLOT,
        &[],
        &[
            "/bin/sh",
            "-c",
            "id -u; touch /tmp/nf-a; chown 1 /tmp/nf-a; echo $?; stat -c %u /tmp/nf-a; rm /tmp/nf-a",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        format!("{LAMBDA_UID}\n1\n{LAMBDA_UID}\n"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("Operation not permitted"),
        "{}",
        text(&out.stderr)
    );
}

/// The image's static `ldconfig` would run unconfined and rebuild the host's cache: a
/// rebuild never runs, and succeeds, as dpkg's triggers need; `-p` only prints the image's
/// cache (the matrix compares it with chroot).
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn ldconfig_never_rebuilds_a_cache_and_succeeds() {
    let host_cache = std::fs::metadata("/etc/ld.so.cache")
        .and_then(|m| m.modified())
        .ok();
    let out = run_fakeroot(
        &[],
        "ldconfig; echo $?; /sbin/ldconfig -p >/dev/null; echo $?",
    );
    assert_eq!(text(&out.stdout), "0\n0\n", "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("statically linked"),
        "{}",
        text(&out.stderr)
    );
    let after = std::fs::metadata("/etc/ld.so.cache")
        .and_then(|m| m.modified())
        .ok();
    assert_eq!(host_cache, after, "the host's ld.so.cache changed");
}

/// apt-get from a local repository: a package with a shared library (jq), one whose
/// postinst adds a user with adduser/groupadd (uuid-runtime), then dpkg -i of a .deb;
/// each installed program then runs, and the files belong to root.
#[test]
#[ignore = "needs the harness (its apt repository), root and the shim (make test)"]
fn apt_get_and_dpkg_install_packages_that_then_run() {
    let script = r#"
set -e
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
echo "deb [trusted=yes] http://127.0.0.1:5020 ./" > /etc/apt/sources.list.d/local.list
export DEBIAN_FRONTEND=noninteractive
apt-get purge -y -q hello jq libjq1 libonig5 uuid-runtime >/dev/null 2>&1 || true
[ -e /usr/bin/hello ] && { echo "hello still installed"; exit 1; }
apt-get update -q >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 1; }
apt-get install -y -q --no-install-recommends hello jq uuid-runtime >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 1; }
hello
echo '{"a":[1,2]}' | jq -c .a
id uuidd | cut -d' ' -f1
stat -c '%U:%G %a' /usr/bin/hello /usr/bin/jq /usr/sbin/uuidd
dpkg -s uuid-runtime | grep '^Status'
dpkg -r hello >/dev/null
[ -e /usr/bin/hello ] || echo "hello removed"
dpkg -i /mnt/hello_*.deb >/dev/null
hello -g 'installed by dpkg'
"#;
    let repo = format!("/mnt={}", work().join("apt-repo").display());
    let out = run_fakeroot(&["--mount", &repo], script);
    assert_eq!(
        text(&out.stdout),
        "Hello, world!\n[1,2]\nuid=103(uuidd)\nroot:root 755\nroot:root 755\nroot:root 755\n\
         Status: install ok installed\nhello removed\ninstalled by dpkg\n",
        "stderr:\n{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}

/// pip, run from its own wheel (the image has none), installs a wheel with a C extension and
/// a console script into the image's system site-packages as root would; the extension then
/// loads and the script runs, both owned by root; pip uninstall removes them again.
#[test]
#[ignore = "needs the harness (its wheels), root and the shim (make test)"]
fn pip_installs_a_wheel_with_a_c_extension_that_then_runs() {
    let script = r#"
set -e
PIP="$(echo /mnt/pip-*.whl)/pip"
pip() { python3 "$PIP" "$@" --no-cache-dir --disable-pip-version-check --break-system-packages; }
pip uninstall -y -q scarext >/dev/null 2>&1 || true
python3 -c 'import scarext' 2>/dev/null && { echo "scarext still installed"; exit 1; }
pip install -q --no-index /mnt/scarext-*.whl >/tmp/pip.log 2>&1 || { cat /tmp/pip.log; exit 1; }
python3 -c 'import scarext; print(scarext.add(2, 3), scarext.__file__.startswith("/usr/local/lib/python3"))'
scarext-hello
command -v scarext-hello
stat -c '%U:%G' "$(python3 -c 'import scarext; print(scarext.__file__)')" /usr/local/bin/scarext-hello
pip uninstall -y -q scarext
python3 -c 'import scarext' 2>/dev/null || echo "uninstalled"
"#;
    let wheels = format!("/mnt={}", work().join("wheels").display());
    let out = run_fakeroot(&["--mount", &wheels], script);
    assert_eq!(
        text(&out.stdout),
        "5 True\nscarext says 42\n/usr/local/bin/scarext-hello\nroot:root\nroot:root\nuninstalled\n",
        "stderr:\n{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}
