//! `bootstrap run` as Lambda's uid: the options, the exit status, static programs, the
//! deadline, and no library loaded from outside the rootfs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;
use scar_test_kit::images;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::lambda::{lambda_rootfs, lambda_run, shim_dir, text};

const BOOKWORM: &str = images::DEBIAN;
const BULLSEYE: &str = images::BULLSEYE;
const MUSL: &str = images::MUSL;
const SMALL: &str = images::GLIBC;

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn the_lambda_uid_has_a_name_in_every_image() {
    // None of the images lists uid 993; glibc >= 2.32 reads the host's passwd itself, older
    // libcs and musl get the shim's entry, made from the host's.
    for image in [BOOKWORM, BULLSEYE, SMALL, MUSL] {
        let out = lambda_run(image, &[], &["/bin/sh", "-c", "id -u; whoami; id -un"]);
        assert_eq!(
            text(&out.stdout),
            "993\nsbx_user1051\nsbx_user1051\n",
            "{image}: {}",
            text(&out.stderr)
        );
    }
    for image in [BOOKWORM, BULLSEYE] {
        let out = lambda_run(
            image,
            &[],
            &["/bin/sh", "-c", "getent passwd 993 | cut -d: -f1,3"],
        );
        assert_eq!(
            text(&out.stdout),
            "sbx_user1051:993\n",
            "{image}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn options_env_workdir_and_the_image_default_command() {
    let out = lambda_run(
        BOOKWORM,
        &["--workdir", "/usr/share", "--env", "GREETING=hello there"],
        &["/bin/sh", "-c", "pwd; echo $GREETING; echo $LANG"],
    );
    assert_eq!(
        text(&out.stdout),
        "/usr/share\nhello there\nC.UTF-8\n",
        "{}",
        text(&out.stderr)
    );
    // The image's Cmd is /bin/sh; with no stdin it exits 0 at once.
    let out = lambda_run(BOOKWORM, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn the_exit_status_is_the_commands_and_a_missing_program_is_named() {
    let out = lambda_run(BOOKWORM, &[], &["/bin/sh", "-c", "exit 42"]);
    assert_eq!(out.status.code(), Some(42));
    let out = lambda_run(BOOKWORM, &[], &["no-such-program"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no-such-program: not found in the container's PATH"),
        "{err}"
    );
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn libraries_come_from_the_rootfs_only() {
    for image in [BOOKWORM, BULLSEYE] {
        let rootfs = lambda_rootfs(image);
        let out = lambda_run(
            image,
            &[],
            &[
                "/bin/sh",
                "-c",
                "LD_DEBUG=libs python3 -c 'import ssl, sqlite3' 2>&1 | grep 'calling init:'",
            ],
        );
        let listing = text(&out.stdout);
        let loaded: Vec<&str> = listing
            .lines()
            .filter_map(|l| l.split("calling init: ").nth(1))
            .collect();
        assert!(
            loaded.len() >= 5,
            "{image}: too few libraries seen:\n{listing}{}",
            text(&out.stderr)
        );
        let shims = shim_dir().canonicalize().unwrap();
        let outside: Vec<_> = loaded
            .iter()
            .filter(|l| {
                !l.starts_with(rootfs.to_str().unwrap()) && !l.starts_with(shims.to_str().unwrap())
            })
            .collect();
        assert!(
            outside.is_empty(),
            "{image}: loaded from outside the rootfs: {outside:?}"
        );
        assert!(
            loaded.iter().any(|l| l.contains("libssl")),
            "{image}: {loaded:?}"
        );
    }
}

/// The kernel and the loader name the image's libraries by host path (`/proc/self/maps`,
/// `dladdr`); a program that finds its data next to its library (`dirname(lib)/../share`, as
/// runtimes that locate their install from their shared library do) must read the image's
/// files there, `..` included, and nothing outside.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn paths_found_next_to_a_library_name_the_images_files() {
    let script = r#"lib=$(grep -m1 -o '/[^ ]*/libc\.so\.6' /proc/self/maps)
dir=$(dirname "$lib")
head -1 "$dir/../../../etc/os-release"
ls "$dir/../../.." | grep -c '^etc$'
cat "$dir/../../../../../../../../../../etc/scar-test-image""#;
    let out = lambda_run(BOOKWORM, &[], &["/bin/sh", "-c", script]);
    assert_eq!(
        text(&out.stdout),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n1\nbuilt offline by container-rootfs-tests\n",
        "{}",
        text(&out.stderr)
    );
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn static_programs_run_with_a_warning_or_are_refused() {
    let out = lambda_run(
        MUSL,
        &[],
        &["/bin/sh", "-c", "/bin/busybox.static echo static-ok"],
    );
    assert_eq!(text(&out.stdout), "static-ok\n");
    assert!(
        text(&out.stderr).contains("statically linked"),
        "{}",
        text(&out.stderr)
    );
    let out = lambda_run(
        MUSL,
        &["--static-binaries", "refuse"],
        &[
            "/bin/sh",
            "-c",
            "/bin/busybox.static echo static-ok; echo status $?",
        ],
    );
    assert!(
        !text(&out.stdout).contains("static-ok"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("status 126"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("SCAR_STATIC_BINARIES=refuse"),
        "{}",
        text(&out.stderr)
    );
    let out = lambda_run(
        MUSL,
        &["--static-binaries", "refuse"],
        &["/bin/busybox.static", "true"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("statically linked"),
        "{}",
        text(&out.stderr)
    );
}

fn lambda_processes(pattern: &str) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-u", "993", "-a", "-f", pattern])
        .output()
        .unwrap();
    text(&out.stdout)
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn the_timeout_ends_the_whole_process_group() {
    let marker = "crt-timeout-marker";
    let script = format!("sleep 300 & sleep 301 & echo started; sleep 302 # {marker}");
    let started = Instant::now();
    let out = lambda_run(BOOKWORM, &["--timeout", "2"], &["/bin/sh", "-c", &script]);
    let took = started.elapsed();
    assert_eq!(text(&out.stdout), "started\n");
    assert_eq!(
        out.status.code(),
        Some(128 + 15),
        "ended by SIGTERM: {}",
        text(&out.stderr)
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(lambda_processes("sleep 30[012]"), "", "orphans left behind");
}

/// An image of the glibc test image's tree with `layer` on top, written in `work` as an OCI
/// layout tagged `tag`, and the same tree copied for `chroot`: (layout, chroot root).
/// A work directory the Lambda uid can read (it reads the image from there) and its
/// `layer/`, with `dirs` made in the layer.
fn layer_workspace(dirs: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let layer = work.path().join("layer");
    for dir in dirs {
        std::fs::create_dir_all(layer.join(dir)).unwrap();
    }
    (work, layer)
}

/// This machine's gcc, run in `dir`.
fn gcc(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("gcc")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "gcc {args:?}: {}", text(&out.stderr));
}

/// The glibc test tree with `layer` copied over it, at `to`: the tree a chroot runs.
fn merged_over_the_glibc_tree(layer: &std::path::Path, to: &std::path::Path) {
    for from in [common::work().join("chroot/glibc/rootfs"), layer.join(".")] {
        let out = Command::new("cp")
            .arg("-a")
            .arg(&from)
            .arg(to)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

fn over_the_glibc_image(
    work: &std::path::Path,
    layer: &std::path::Path,
    tag: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let tree = common::work().join("chroot/glibc/rootfs");
    let layout = work.join("oci");
    let out = Command::new("python3")
        .arg(common::lambda::workspace().join("container-rootfs-tests/scripts/mkimage.py"))
        .arg(&layout)
        .arg(tag)
        .arg(&tree)
        .arg(layer)
        .output()
        .unwrap();
    assert!(out.status.success(), "mkimage: {}", text(&out.stderr));
    let root = work.join("root");
    merged_over_the_glibc_tree(layer, &root);
    (layout, root)
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn the_images_locales_and_message_catalogs_work_as_under_chroot() {
    // The glibc test image (this machine's programs) with a layer that adds the locale
    // archive this machine's `localedef` writes, as `locale-gen` does in an image: glibc
    // reads that archive from inside libc, by a fixed path the shim cannot translate.
    let (work, layer) = layer_workspace(&["usr/lib/locale"]);
    for (input, charmap, name) in [
        ("de_DE", "UTF-8", "de_DE.UTF-8"),
        ("fr_FR", "ISO-8859-1", "fr_FR.ISO-8859-1"),
    ] {
        let out = Command::new("localedef")
            .args(["-i", input, "-f", charmap, "--prefix"])
            .arg(&layer)
            .arg(name)
            .output()
            .unwrap();
        assert!(out.status.success(), "localedef: {}", text(&out.stderr));
    }
    // glibc's own messages come from the image's catalog (a French one here, filed as
    // German, so that the host's German catalog cannot pass for it).
    let catalog = layer.join("usr/share/locale/de/LC_MESSAGES");
    std::fs::create_dir_all(&catalog).unwrap();
    std::fs::copy(
        "/usr/share/locale/fr/LC_MESSAGES/libc.mo",
        catalog.join("libc.mo"),
    )
    .unwrap();
    let (layout, root) = over_the_glibc_image(work.path(), &layer, "locales");

    // Month and day names, digit grouping and collation of each locale, as the programs of
    // the image print them; a locale the archive lacks falls back to C on both sides.
    let script = "for l in de_DE.UTF-8 fr_FR.ISO-8859-1 fr_FR.iso88591 xx_XX.UTF-8; do \
                    LC_ALL=$l ls -l --time-style=+%A,%B /opt/data | grep -o '[^ ]*,[^ ]*'; \
                    LC_ALL=$l /usr/bin/printf \"%'d\\n\" 1234567; \
                    printf 'b\\nA\\na\\nB\\n' | LC_ALL=$l sort | tr '\\n' ' '; echo; \
                    LC_ALL=$l cat /nowhere; \
                  done; LANG=de_DE.UTF-8 ls -l --time-style=+%B /opt/data | grep -c Januar";
    let cache = common::lambda::fresh_lambda_cache();
    let image = format!("oci:{}:locales", layout.display());
    let ours = lambda_run(
        &image,
        &["--cache-dir", &cache.path().to_string_lossy()],
        &["/bin/sh", "-c", script],
    );
    let truth = common::lambda::chroot_run(&root, &["/bin/sh", "-c", script]);
    assert!(
        text(&truth.stdout).contains("Donnerstag,Januar\n1.234.567\na A b B \n"),
        "the ground truth itself: {}{}",
        text(&truth.stdout),
        text(&truth.stderr)
    );
    assert!(text(&truth.stdout).contains("jeudi,janvier\n"));
    assert!(
        text(&truth.stderr).contains("cat: /nowhere: Aucun fichier ou dossier de ce type\n"),
        "{}",
        text(&truth.stderr)
    );
    assert_eq!(
        (text(&ours.stdout), text(&ours.stderr), ours.status.code()),
        (
            text(&truth.stdout),
            text(&truth.stderr),
            truth.status.code()
        )
    );
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn a_programs_own_library_path_wins_over_the_images_as_under_chroot() {
    // An application in /opt with its own libfoo beside it, found through `$ORIGIN/../lib`
    // (RUNPATH, as today's linkers write it, and RPATH), and another libfoo in the image's
    // library directory; one program also run through a symlink elsewhere, whose `$ORIGIN`
    // is the file's directory, not the link's.
    let (work, layer) = layer_workspace(&[
        "usr/lib/x86_64-linux-gnu",
        "opt/app/lib",
        "opt/app/bin",
        "usr/bin",
    ]);
    let src = work.path();
    std::fs::write(
        src.join("image.c"),
        "const char *foo(void){return \"image foo\";}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("app.c"),
        "const char *foo(void){return \"app foo\";}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("main.c"),
        "#include <stdio.h>\nconst char *foo(void);\nint main(){puts(foo());return 0;}\n",
    )
    .unwrap();
    let shared = ["-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o"];
    gcc(
        src,
        &[
            &shared[..],
            &["layer/usr/lib/x86_64-linux-gnu/libfoo.so.1", "image.c"],
        ]
        .concat(),
    );
    gcc(
        src,
        &[&shared[..], &["layer/opt/app/lib/libfoo.so.1", "app.c"]].concat(),
    );
    for (name, dtags) in [
        ("runpath", "-Wl,--enable-new-dtags"),
        ("rpath", "-Wl,--disable-new-dtags"),
    ] {
        let out = format!("layer/opt/app/bin/{name}");
        gcc(
            src,
            &[
                "-o",
                &out,
                "main.c",
                "layer/opt/app/lib/libfoo.so.1",
                dtags,
                "-Wl,-rpath,$ORIGIN/../lib",
            ],
        );
    }
    std::os::unix::fs::symlink("/opt/app/bin/runpath", layer.join("usr/bin/app-link")).unwrap();

    let (layout, root) = over_the_glibc_image(work.path(), &layer, "own");

    let script = "/opt/app/bin/runpath; /opt/app/bin/rpath; /usr/bin/app-link; \
                  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu /opt/app/bin/runpath";
    let truth = common::lambda::chroot_run(&root, &["/bin/sh", "-c", script]);
    assert_eq!(
        text(&truth.stdout),
        "app foo\napp foo\napp foo\nimage foo\n",
        "the ground truth itself: {}",
        text(&truth.stderr)
    );
    let cache = common::lambda::fresh_lambda_cache();
    let cache_dir = cache.path().to_string_lossy().into_owned();
    let image = format!("oci:{}:own", layout.display());
    // Each as a later exec (the shim's), then each as the container's first command
    // (bootstrap's).
    let ours = lambda_run(
        &image,
        &["--cache-dir", &cache_dir],
        &["/bin/sh", "-c", script],
    );
    assert_eq!(
        (text(&ours.stdout), text(&ours.stderr)),
        (text(&truth.stdout), text(&truth.stderr))
    );
    let mut first = String::new();
    for (program, env) in [
        ("/opt/app/bin/runpath", None),
        ("/opt/app/bin/rpath", None),
        ("/usr/bin/app-link", None),
        (
            "/opt/app/bin/runpath",
            Some("LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu"),
        ),
    ] {
        let mut run_args = vec!["--cache-dir", &cache_dir];
        if let Some(env) = env {
            run_args.extend(["--env", env]);
        }
        let out = lambda_run(&image, &run_args, &[program]);
        assert!(out.status.success(), "{program}: {}", text(&out.stderr));
        first.push_str(&text(&out.stdout));
    }
    assert_eq!(first, text(&truth.stdout), "as the first command");
    // `ldd` (the loader's --list, which the image's ldd script runs) lists the libraries
    // as the loader run that way finds them: the program's own first, but `$ORIGIN` taken
    // from the path given, here a symlink. The lines name container paths; the program's
    // own search path reaches the loader already joined (`/opt/app/lib`, where chroot's
    // loader prints `/opt/app/bin/../lib`).
    let ldd = "for p in /opt/app/bin/runpath /usr/bin/app-link; do \
               /lib64/ld-linux-x86-64.so.2 --list $p; done | grep -o 'libfoo.so.1 => [^ ]*'";
    let truth = common::lambda::chroot_run(&root, &["/bin/sh", "-c", ldd]);
    assert_eq!(
        text(&truth.stdout),
        "libfoo.so.1 => /opt/app/bin/../lib/libfoo.so.1\n\
         libfoo.so.1 => /usr/lib/x86_64-linux-gnu/libfoo.so.1\n"
    );
    let ours = lambda_run(
        &image,
        &["--cache-dir", &cache_dir],
        &["/bin/sh", "-c", ldd],
    );
    assert_eq!(
        text(&ours.stdout),
        "libfoo.so.1 => /opt/app/lib/libfoo.so.1\n\
         libfoo.so.1 => /usr/lib/x86_64-linux-gnu/libfoo.so.1\n",
        "{}",
        text(&ours.stderr)
    );
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn the_images_ldconfig_order_picks_its_libraries_as_under_chroot() {
    // Debian's ld.so.conf lists /usr/local/lib first, so a library built into it (as
    // scientific images build newer GDAL, PROJ or sqlite there) wins over the distribution's
    // copy of the same soname; and `ldconfig DIR` in an image's build makes DIR's libraries
    // known through the cache alone (as CUDA images do with their own lib64).
    let (work, layer) = layer_workspace(&[
        "usr/lib/x86_64-linux-gnu",
        "usr/local/lib",
        "usr/local/bin",
        "opt/extra/lib",
        "etc/ld.so.conf.d",
    ]);
    let src = work.path();
    let gcc = |args: &[&str]| gcc(src, args);
    for (file, body) in [
        (
            "local.c",
            "const char *which(void){return \"usr/local\";}\n",
        ),
        ("system.c", "const char *which(void){return \"system\";}\n"),
        ("extra.c", "const char *extra(void){return \"extra\";}\n"),
        (
            "main.c",
            "#include <stdio.h>\nconst char *which(void);const char *extra(void);\n\
             int main(){puts(which());puts(extra());return 0;}\n",
        ),
    ] {
        std::fs::write(src.join(file), body).unwrap();
    }
    let which = ["-shared", "-fPIC", "-Wl,-soname,libwhich.so.1", "-o"];
    gcc(&[
        &which[..],
        &["layer/usr/local/lib/libwhich.so.1", "local.c"],
    ]
    .concat());
    gcc(&[
        &which[..],
        &["layer/usr/lib/x86_64-linux-gnu/libwhich.so.1", "system.c"],
    ]
    .concat());
    gcc(&[
        "-shared",
        "-fPIC",
        "-Wl,-soname,libextra.so.1",
        "-o",
        "layer/opt/extra/lib/libextra.so.1",
        "extra.c",
    ]);
    gcc(&[
        "-o",
        "layer/usr/local/bin/which-lib",
        "main.c",
        "layer/usr/lib/x86_64-linux-gnu/libwhich.so.1",
        "layer/opt/extra/lib/libextra.so.1",
    ]);
    std::fs::write(
        layer.join("etc/ld.so.conf"),
        "include /etc/ld.so.conf.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(layer.join("etc/ld.so.conf.d/libc.conf"), "/usr/local/lib\n").unwrap();
    std::fs::write(
        layer.join("etc/ld.so.conf.d/x86_64-linux-gnu.conf"),
        "/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n",
    )
    .unwrap();
    // The image's build ran `ldconfig /opt/extra/lib`: its cache goes into the layer.
    let merged = work.path().join("merged");
    merged_over_the_glibc_tree(&layer, &merged);
    let out = Command::new("ldconfig")
        .arg("-r")
        .arg(&merged)
        .arg("/opt/extra/lib")
        .output()
        .unwrap();
    assert!(out.status.success(), "ldconfig: {}", text(&out.stderr));
    std::fs::copy(
        merged.join("etc/ld.so.cache"),
        layer.join("etc/ld.so.cache"),
    )
    .unwrap();

    let (layout, root) = over_the_glibc_image(work.path(), &layer, "ldconfig");
    let truth = common::lambda::chroot_run(&root, &["/bin/sh", "-c", "which-lib"]);
    assert_eq!(
        text(&truth.stdout),
        "usr/local\nextra\n",
        "the ground truth itself: {}",
        text(&truth.stderr)
    );
    let cache = common::lambda::fresh_lambda_cache();
    let cache_dir = cache.path().to_string_lossy().into_owned();
    let image = format!("oci:{}:ldconfig", layout.display());
    let ours = lambda_run(
        &image,
        &["--cache-dir", &cache_dir],
        &["/bin/sh", "-c", "which-lib"],
    );
    assert_eq!(
        (text(&ours.stdout), text(&ours.stderr)),
        ("usr/local\nextra\n".to_owned(), String::new()),
        "as a later exec"
    );
    let first = lambda_run(
        &image,
        &["--cache-dir", &cache_dir],
        &["/usr/local/bin/which-lib"],
    );
    assert_eq!(
        text(&first.stdout),
        "usr/local\nextra\n",
        "as the first command"
    );
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn the_shims_own_variables_stay_out_of_the_containers_environment() {
    // Both ways the shim is loaded: the loader's `--preload` (glibc ≥ 2.30), and the
    // `LD_PRELOAD` the exec path sets for older loaders (Amazon Linux 2's glibc 2.26,
    // CentOS 7's 2.17), taken here by an image whose libc says 2.26.
    let script = "env | grep -c -e SCAR_FC_ -e LD_PRELOAD; \
                  sh -c 'env | grep -c -e SCAR_FC_ -e LD_PRELOAD'; \
                  env -i /bin/sh -c 'env | grep -c -e SCAR_FC_ -e PRELOAD; ls /lib64 | wc -l'";
    let (work, layer) = layer_workspace(&["lib/x86_64-linux-gnu"]);
    let libc = "lib/x86_64-linux-gnu/libc.so.6";
    let real = std::fs::read(common::work().join("chroot/glibc/rootfs").join(libc)).unwrap();
    let marker = b"release version 2.";
    let at = real
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("libc names its version")
        + marker.len();
    let mut old = real.clone();
    old[at..at + 2].copy_from_slice(b"26");
    std::fs::write(layer.join(libc), old).unwrap();
    let (layout, root) = over_the_glibc_image(work.path(), &layer, "old-loader");
    let truth = common::lambda::chroot_run(&root, &["/bin/sh", "-c", script]);
    assert_eq!(
        text(&truth.stdout),
        "0\n0\n0\n1\n",
        "the ground truth itself: {}",
        text(&truth.stderr)
    );
    let cache = common::lambda::fresh_lambda_cache();
    let cache_dir = cache.path().to_string_lossy().into_owned();
    for image in [
        format!("oci:{}:old-loader", layout.display()),
        images::GLIBC.to_owned(),
    ] {
        let ours = lambda_run(
            &image,
            &["--cache-dir", &cache_dir],
            &["/bin/sh", "-c", script],
        );
        assert_eq!(
            (text(&ours.stdout), text(&ours.stderr)),
            (text(&truth.stdout), String::new()),
            "{image}"
        );
    }
}

/// `ENTRYPOINT ["/tini", "--"]`: tini, catatonit and their kind are static, and a static
/// program's exec of its command would look on the host (where, on Lambda, the command is
/// missing). The wrapper is passed over and the command runs inside the image, as the
/// first command (bootstrap's plan) and as a later exec (the shim's), with the command's
/// output and status; a wrapper asked for its version runs as itself.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn static_init_wrappers_run_the_command_they_wrap_inside_the_image() {
    let (work, layer) = layer_workspace(&["usr/local/bin", "opt"]);
    let bin = layer.join("usr/local/bin");
    for wrapper in ["tini-static", "catatonit"] {
        let from = common::work().join("init-wrappers/usr/bin").join(wrapper);
        std::fs::copy(&from, bin.join(wrapper))
            .unwrap_or_else(|e| panic!("{}: {e} (setup.sh unpacks it)", from.display()));
    }
    std::fs::write(layer.join("opt/only-here"), "in the image\n").unwrap();
    std::fs::write(
        bin.join("entry.sh"),
        "#!/bin/sh\nexec tini-static -s -- \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(bin.join("entry.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (layout, root) = over_the_glibc_image(work.path(), &layer, "init");
    let image = format!("oci:{}:init", layout.display());
    let cache = common::lambda::fresh_lambda_cache();
    let cache_dir = cache.path().to_string_lossy().into_owned();
    let cases: &[(&[&str], &str, i32)] = &[
        (
            &[
                "/usr/local/bin/tini-static",
                "--",
                "/bin/sh",
                "-c",
                "cat /opt/only-here; exit 3",
            ],
            "in the image\n",
            3,
        ),
        (
            &[
                "tini-static",
                "-g",
                "-p",
                "SIGKILL",
                "--",
                "sh",
                "-c",
                "cat /opt/only-here",
            ],
            "in the image\n",
            0,
        ),
        (
            &["catatonit", "--", "cat", "/opt/only-here"],
            "in the image\n",
            0,
        ),
        (&["entry.sh", "cat", "/opt/only-here"], "in the image\n", 0),
        (
            &["sh", "-c", "tini-static -- cat /opt/only-here"],
            "in the image\n",
            0,
        ),
    ];
    for (argv, expected, status) in cases {
        let truth = common::lambda::chroot_run(&root, argv);
        assert_eq!(
            (text(&truth.stdout).as_str(), truth.status.code()),
            (*expected, Some(*status)),
            "the ground truth itself, {argv:?}: {}",
            text(&truth.stderr)
        );
        let ours = lambda_run(&image, &["--cache-dir", &cache_dir], argv);
        assert_eq!(
            (text(&ours.stdout), ours.status.code()),
            (text(&truth.stdout), truth.status.code()),
            "{argv:?}: {}",
            text(&ours.stderr)
        );
    }
    let version = ["tini-static", "--version"];
    let truth = common::lambda::chroot_run(&root, &version);
    let ours = lambda_run(&image, &["--cache-dir", &cache_dir], &version);
    assert!(
        text(&truth.stdout).starts_with("tini version "),
        "{truth:?}"
    );
    assert_eq!(text(&ours.stdout), text(&truth.stdout));
}

/// The deadline asks the command to stop with the image's `STOPSIGNAL`, as `docker stop`
/// does (a Python script's `KeyboardInterrupt` under `STOPSIGNAL SIGINT`), and SIGTERM
/// without one; a name that is no signal falls back to SIGTERM.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn the_deadline_sends_the_images_stop_signal() {
    let (work, _) = layer_workspace(&[]);
    let layout = work.path().join("oci");
    let tree = common::work().join("chroot/glibc/rootfs");
    let script = "trap 'echo stopped by INT; exit 7' INT; trap 'echo stopped by TERM; exit 8' TERM; \
                  echo started; sleep 30 & wait";
    let cache = common::lambda::fresh_lambda_cache();
    let cache_dir = cache.path().to_string_lossy().into_owned();
    for (tag, stop_signal, expected, status) in [
        ("unset", "", "started\nstopped by TERM\n", 8),
        ("int", "SIGINT", "started\nstopped by INT\n", 7),
        ("number", "2", "started\nstopped by INT\n", 7),
        ("nonsense", "SIGNOPE", "started\nstopped by TERM\n", 8),
    ] {
        let out = Command::new("python3")
            .arg(common::lambda::workspace().join("container-rootfs-tests/scripts/mkimage.py"))
            .arg(&layout)
            .arg(tag)
            .arg(&tree)
            .env("STOP_SIGNAL", stop_signal)
            .output()
            .unwrap();
        assert!(out.status.success(), "mkimage: {}", text(&out.stderr));
        let image = format!("oci:{}:{tag}", layout.display());
        let started = Instant::now();
        let ours = lambda_run(
            &image,
            &["--cache-dir", &cache_dir, "--timeout", "2"],
            &["/bin/sh", "-c", script],
        );
        assert_eq!(
            (text(&ours.stdout).as_str(), ours.status.code()),
            (expected, Some(status)),
            "{tag}: {}",
            text(&ours.stderr)
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{tag}: not ended"
        );
    }
}

/// The image's `User` is not applied (Lambda runs one uid: a limit, docs/limits.md), but
/// `HOME` is that user's home in the image's /etc/passwd, as runc sets it when the image's
/// Env has none: what an image built as `USER app` keeps there is found. A user the file
/// lacks gets `/`, no user root's home; the image's own `HOME` wins.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn home_is_the_home_of_the_images_user() {
    let (work, layer) = layer_workspace(&["etc", "home/app"]);
    let tree = common::work().join("chroot/glibc/rootfs");
    let mut passwd = std::fs::read_to_string(tree.join("etc/passwd")).unwrap();
    passwd.push_str("app:x:1000:1000::/home/app:/bin/sh\n");
    std::fs::write(layer.join("etc/passwd"), passwd).unwrap();
    std::fs::write(layer.join("home/app/marker"), "kept in app's home\n").unwrap();
    let layout = work.path().join("oci");
    let cache = common::lambda::fresh_lambda_cache();
    let cache_dir = cache.path().to_string_lossy().into_owned();
    for (tag, user, env_home, expected) in [
        ("named", "app", "", "/home/app\nkept in app's home\n"),
        (
            "numeric",
            "1000:1000",
            "",
            "/home/app\nkept in app's home\n",
        ),
        ("unset", "", "", "/root\n"),
        ("unknown", "4242", "", "/\n"),
        ("own", "app", "/srv", "/srv\n"),
    ] {
        let mut mkimage = Command::new("python3");
        mkimage
            .arg(common::lambda::workspace().join("container-rootfs-tests/scripts/mkimage.py"))
            .arg(&layout)
            .arg(tag)
            .arg(&tree)
            .arg(&layer)
            .env("IMAGE_USER", user);
        if !env_home.is_empty() {
            mkimage.env("IMAGE_HOME", env_home);
        }
        let out = mkimage.output().unwrap();
        assert!(out.status.success(), "mkimage: {}", text(&out.stderr));
        // Not `lambda_run`, which sets HOME as chroot's runs get it.
        let ours = Command::new("setpriv")
            .args(["--reuid", "993", "--regid", "993", "--clear-groups", "--"])
            .arg(common::lambda::bootstrap_bin())
            .args(["run", "--cache-dir", &cache_dir, "--shim-dir"])
            .arg(common::lambda::shim_dir())
            .arg(format!("oci:{}:{tag}", layout.display()))
            .args([
                "--",
                "/bin/sh",
                "-c",
                "echo $HOME; cat $HOME/marker 2>/dev/null; true",
            ])
            .env("AWS_LAMBDA_LOG_LEVEL", "error")
            .output()
            .unwrap();
        assert_eq!(
            text(&ours.stdout),
            expected,
            "{tag}: {}",
            text(&ours.stderr)
        );
    }
}

/// A container's first command that is the loader itself (`ld.so [OPTIONS] PROGRAM`, as
/// some images' CMD starts a program with a library path of its own) runs as the shim runs
/// every later loader run: the program and the path options are the image's, the other
/// options kept, and what it prints is what chroot prints; on the musl image too. A loader
/// run with no program answers itself.
#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn a_first_command_that_is_the_loader_runs_the_images_program() {
    let work = common::work();
    for (image, chroot, argv) in [
        (
            images::DEBIAN,
            "debian",
            &[
                "/lib64/ld-linux-x86-64.so.2",
                "/bin/cat",
                "/etc/scar-test-image",
            ][..],
        ),
        (
            images::DEBIAN,
            "debian",
            &[
                "/lib64/ld-linux-x86-64.so.2",
                "--library-path",
                "/usr/lib/x86_64-linux-gnu",
                "--inhibit-rpath",
                "",
                "/bin/sh",
                "-c",
                "echo $0; cat /etc/scar-test-image",
            ][..],
        ),
        (
            images::MUSL,
            "musl",
            &[
                "/lib/ld-musl-x86_64.so.1",
                "/bin/busybox",
                "cat",
                "/etc/os-release",
            ][..],
        ),
    ] {
        let truth =
            common::lambda::chroot_run(&work.join("chroot").join(chroot).join("rootfs"), argv);
        assert_eq!(
            truth.status.code(),
            Some(0),
            "{argv:?}: {}",
            text(&truth.stderr)
        );
        let ours = lambda_run(image, &[], argv);
        assert_eq!(
            (text(&ours.stdout), ours.status.code()),
            (text(&truth.stdout), Some(0)),
            "{argv:?}: {}",
            text(&ours.stderr)
        );
    }
    // `--list` (what `ldd` runs) loads no code: the image's libraries, by host path.
    let listed = lambda_run(
        images::DEBIAN,
        &[],
        &["/lib64/ld-linux-x86-64.so.2", "--list", "/bin/true"],
    );
    assert!(
        text(&listed.stdout).contains("/rootfs/lib/x86_64-linux-gnu/libc.so.6"),
        "{}",
        text(&listed.stderr)
    );
    let version = lambda_run(
        images::DEBIAN,
        &[],
        &["/lib64/ld-linux-x86-64.so.2", "--version"],
    );
    assert!(
        text(&version.stdout).starts_with("ld.so (Debian GLIBC"),
        "{}",
        text(&version.stderr)
    );
}
