//! The shim matrix: each command runs through `bootstrap run` as
//! Lambda's uid 993, and under a real `chroot` as the same uid, the ground truth; outputs
//! must match byte for byte where they are deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;
use scar_test_kit::images;

use std::path::PathBuf;

use std::process::Output;

use common::framed::framed_layout_for_lambda;
use common::lambda::{
    Tools, arm64_tools, chroot_run, fresh_lambda_cache, lambda_rootfs_with, lambda_run_setting,
    lambda_run_with, native_tools, text,
};
use common::work;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Image {
    Bookworm,
    Bullseye,
    Small,
    Musl,
    /// Debian bookworm arm64, run by the arm64 layer's bootstrap and shim under qemu-user.
    DebianArm64,
    /// The small image made from Debian arm64 programs, likewise.
    SmallArm64,
    /// Debian bookworm with the common language runtimes (Node, Java, Ruby, R, Erlang,
    /// Elixir, PHP, Lua, Tcl, Perl, Python + numpy) and git, sqlite, file, ImageMagick, xz.
    Polyglot,
}

use Image::*;

impl Image {
    fn reference(self) -> &'static str {
        match self {
            Bookworm => images::DEBIAN,
            Bullseye => images::BULLSEYE,
            Small => images::GLIBC,
            Musl => images::MUSL,
            DebianArm64 => images::DEBIAN_ARM64,
            SmallArm64 => images::GLIBC_ARM64,
            Polyglot => images::POLYGLOT,
        }
    }

    fn tools(self) -> Tools {
        match self {
            DebianArm64 | SmallArm64 => arm64_tools(),
            _ => native_tools(),
        }
    }

    /// The harness's OCI layout and tag holding the image, to stage it as `deployer stage`
    /// does for lazy loading.
    fn layout(self) -> (&'static str, &'static str) {
        match self {
            Bookworm => ("oci-debian", "bookworm"),
            Bullseye => ("oci-bullseye", "bullseye"),
            Small => ("oci-small", "glibc"),
            Musl => ("oci-small", "musl"),
            Polyglot => ("oci-polyglot", "bookworm"),
            DebianArm64 => ("oci-debian-arm64", "bookworm-arm64"),
            SmallArm64 => ("oci-small-arm64", "glibc-arm64"),
        }
    }

    /// Cases run by one cold start on a lazy tree ([`LAZY_CASES_PER_COLD_START`]). Under qemu
    /// (the whole runtime is arm64 there) a cold start costs much more: all the cases share
    /// one, the first on placeholders only.
    fn lazy_cases_per_cold_start(self) -> usize {
        match self {
            DebianArm64 | SmallArm64 => usize::MAX,
            _ => LAZY_CASES_PER_COLD_START,
        }
    }

    /// The same image unpacked by umoci as root (original symlinks), for `chroot`.
    fn chroot_root(self) -> PathBuf {
        let name = match self {
            Bookworm => "debian",
            Bullseye => "bullseye",
            Small => "glibc",
            Musl => "musl",
            DebianArm64 => "debian-arm64",
            SmallArm64 => "glibc-arm64",
            Polyglot => "polyglot",
        };
        work().join("chroot").join(name).join("rootfs")
    }
}

const ALL: &[Image] = &[
    Bookworm,
    Bullseye,
    Small,
    Musl,
    DebianArm64,
    SmallArm64,
    Polyglot,
];
const DEBIAN: &[Image] = &[Bookworm, Bullseye, DebianArm64, Polyglot];
const GLIBC: &[Image] = &[Bookworm, Bullseye, Small, DebianArm64, SmallArm64, Polyglot];
/// Not under qemu: binfmt_misc without the P flag hands qemu the program's path, not the
/// argv[0] it was executed with, so `chroot`, the ground truth, loses `exec -a`'s name there.
const GLIBC_NATIVE: &[Image] = &[Bookworm, Bullseye, Small, Polyglot];
const POLYGLOT: &[Image] = &[Polyglot];
/// Not under qemu, whose process names and command lines are its own.
const NATIVE: &[Image] = &[Bookworm, Bullseye, Small, Musl, Polyglot];

#[derive(Debug, Clone, Copy)]
enum Check {
    /// stdout, stderr and status all equal.
    Same,
    /// stdout and status equal (stderr may name things differently).
    SameStdout,
}

struct Case {
    name: &'static str,
    script: &'static str,
    on: &'static [Image],
    check: Check,
    /// chroot must exit 0: equal failures (a runtime missing on both sides) are no proof.
    must_succeed: bool,
}

const fn case(
    name: &'static str,
    on: &'static [Image],
    check: Check,
    script: &'static str,
) -> Case {
    Case {
        name,
        script,
        on,
        check,
        must_succeed: false,
    }
}

/// A language runtime's case on the polyglot image: same output, and chroot succeeded.
const fn runtime(name: &'static str, script: &'static str) -> Case {
    Case {
        name,
        script,
        on: POLYGLOT,
        check: Check::Same,
        must_succeed: true,
    }
}

const CASES: &[Case] = &[
    case(
        "pipes and builtins",
        ALL,
        Check::Same,
        r#"cat /etc/os-release | grep -c ID | tr -d "\n"; echo; echo $((6*7))"#,
    ),
    case(
        "cwd and pwd",
        ALL,
        Check::Same,
        "cd /usr/bin && pwd && /bin/pwd && realpath ../../etc && cd .. && pwd",
    ),
    case(
        "`..` after a symlink, as chroot resolves it",
        ALL,
        Check::Same,
        "cd /tmp && mkdir -p crt-dd/a/b && ln -s crt-dd/a/b crt-ddl && ls /tmp/crt-ddl/.. && ls -d /tmp/crt-ddl/../../a; ls -d /lib/../etc /lib/../lib 2>&1 | sed 's/.*: //'; cat /etc/passwd/../x 2>&1 | sed 's/.*: //'; ln -s crt-ddloop crt-ddloop; ls /tmp/crt-ddloop/.. 2>&1 | sed 's/.*: //'; rm -rf crt-dd crt-ddl crt-ddloop",
    ),
    case(
        "ldd and the loader's listing name the image's paths",
        ALL,
        Check::Same,
        "ldd /bin/sh | sed 's/ (0x[0-9a-f]*)//'; echo \"ldd $?\"; LD_TRACE_LOADED_OBJECTS=1 /bin/sh | sed 's/ (0x[0-9a-f]*)//'; ldd /nonexistent 2>&1 | sed 's/^[^:]*: //'",
    ),
    case(
        "/proc/self/exe",
        ALL,
        Check::Same,
        "readlink -f /proc/self/exe; readlink /proc/self/exe; ls -l /proc/self/exe | sed 's/.* -> //'",
    ),
    case(
        "/proc/PID/exe of another program",
        &[Bookworm, Bullseye, Polyglot],
        Check::Same,
        r#"python3 -c 'import os, subprocess; p = subprocess.Popen(["sleep", "1"]); print(os.readlink("/proc/%d/exe" % p.pid), os.readlink("/proc/%d/task/%d/exe" % (p.pid, p.pid)), os.readlink("/proc/%d/exe" % os.getppid())); p.wait(); start = lambda q: (q, os.readlink("/proc/%d/exe" % q.pid)); runs = [start(subprocess.Popen(["sleep", "0.5"])) for _ in range(20)]; print(sorted({exe for _, exe in runs})); [q.wait() for q, _ in runs]'"#,
    ),
    case(
        "sizes of /proc's links and of the image's",
        NATIVE,
        Check::Same,
        "stat -c %s /proc/self/exe /proc/self/cwd /proc/self/fd/0; ln -s /etc/hostname /tmp/crt-z; stat -c %s /tmp/crt-z; rm /tmp/crt-z",
    ),
    case(
        "alternatives chain",
        DEBIAN,
        Check::Same,
        "readlink -f /usr/bin/awk; /usr/bin/awk 'BEGIN{print 1}'",
    ),
    case(
        "absolute symlink in the image",
        &[Small],
        Check::Same,
        "/usr/bin/abs-dash -c 'echo via link'; readlink /usr/bin/abs-dash",
    ),
    case(
        "absolute symlink made at run time",
        ALL,
        Check::Same,
        r#"ln -s "$(command -v env)" /tmp/crt-e && /tmp/crt-e true && echo ok; readlink /tmp/crt-e; rm /tmp/crt-e"#,
    ),
    case(
        "relative symlink made at run time",
        ALL,
        Check::Same,
        "ln -s ../../bin/ls /tmp/crt-l && /tmp/crt-l / ; rm /tmp/crt-l",
    ),
    case(
        "shebang with an argument",
        ALL,
        Check::Same,
        r#"printf '#!/bin/sh -e\necho $0 "$@"\n' > /tmp/crt-s; chmod +x /tmp/crt-s; /tmp/crt-s a b; rm /tmp/crt-s"#,
    ),
    case(
        "env python shebang",
        DEBIAN,
        Check::Same,
        r#"printf '#!/usr/bin/env python3\nimport sys\nprint(sys.argv)\n' > /tmp/crt-p; chmod +x /tmp/crt-p; /tmp/crt-p x; rm /tmp/crt-p"#,
    ),
    case(
        "script without a shebang",
        ALL,
        Check::Same,
        r#"printf 'echo noshebang $0\n' > /tmp/crt-n; chmod +x /tmp/crt-n; sh -c /tmp/crt-n; rm /tmp/crt-n"#,
    ),
    case(
        "env, xargs",
        ALL,
        Check::Same,
        "env ls / ; echo a b | xargs -n1 echo",
    ),
    case(
        "find -exec",
        ALL,
        Check::Same,
        r"find /etc -name os-release -exec cat {} \;",
    ),
    case(
        "perl system and exec",
        DEBIAN,
        Check::Same,
        r#"perl -e 'system("ls /"); exec("echo", "from perl exec")'"#,
    ),
    case(
        "python subprocess and posix_spawnp",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import subprocess,os; subprocess.run(["ls","/"]); p=os.posix_spawnp("true",["true"],os.environ); print(os.waitpid(p,0)[1])'"#,
    ),
    case(
        "python execv /proc/self/exe",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import os; os.execv("/proc/self/exe", ["python3","-c","print(1)"])'"#,
    ),
    // A last component that is empty, `.` or `..` names a directory or nothing: a file
    // with a `/` after it is ENOTDIR, and O_CREAT of `new/` is EISDIR, never a new file.
    case(
        "trailing slashes ask for a directory",
        DEBIAN,
        Check::Same,
        r#"cd /tmp; [ -e /etc/passwd/ ] || echo no-file-slash; [ -d /usr/bin/ ] && echo dir-slash; ls -d /usr/lib/. /usr/lib/..; cat /etc/hostname/ 2>&1 | sed 's/^.*cat: //'; python3 -c 'import os
try: os.open("/tmp/crt-new/", os.O_CREAT | os.O_WRONLY)
except OSError as e: print(e.strerror)
print(os.path.exists("/tmp/crt-new"), os.path.isfile("/etc/passwd/."))'"#,
    ),
    // Datagram sockets name their peer at each send and learn the sender at each receive:
    // both sides of every call are paths to translate. The names carry the process id: the
    // lazy matrix runs the same cases in the same chroot at once.
    case(
        "unix datagram sockets",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import os, socket
pid = str(os.getpid()); d, c = "/tmp/crt-d" + pid, "/tmp/crt-c" + pid
show = lambda *x: print(repr(x).replace(pid, "PID"))
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); srv.bind(d)
cli = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
cli.sendto(b"to", d); show(srv.recv(10))
cli.bind(c); srv.sendto(b"back", c); show(cli.recvfrom(10))
cli.sendmsg([b"msg"], [], 0, d); show(srv.recvfrom(10))
cli.sendto(b"again", d); show(srv.recvmsg(10)[::3])
cli.connect(d); show(cli.getpeername(), cli.getsockname()); os.unlink(d); os.unlink(c)'"#,
    ),
    case(
        "system and popen",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import os,ctypes; print(os.system("echo via system; exit 3")); c=ctypes.CDLL(None); c.popen.restype=ctypes.c_void_p; f=ctypes.c_void_p(c.popen(b"cat > /tmp/crt-po; exit 2", b"w")); c.fputs(b"via popen\\n", f); print(c.pclose(f)); print(open("/tmp/crt-po").read(), end="")'; rm /tmp/crt-po"#,
    ),
    // `ps`, `pgrep`, `killall` and psutil read these; the kernel's say "ld-linux" and
    // the loader's options (Bullseye's loader has no --argv0: the other path of the rule).
    case(
        "process names and command lines",
        NATIVE,
        Check::Same,
        r#"cat /proc/self/comm; printf '#!/bin/sh\ncat /proc/$$/comm\ntr "\\0" " " < /proc/$$/cmdline; echo\n' > /tmp/crt-name.sh; chmod +x /tmp/crt-name.sh; /tmp/crt-name.sh a 'b c'; sh -c 'cat /proc/$PPID/comm; cut -d" " -f2 /proc/$PPID/stat; tr "\0" " " < /proc/$PPID/cmdline; echo' x; rm /tmp/crt-name.sh"#,
    ),
    // Python's ctypes.util.find_library (python-magic, soundfile…) reads `ldconfig -p`; the
    // header line names the cache by host path here.
    case(
        "ldconfig's cache and find_library",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import ctypes.util as u; print([u.find_library(n) for n in ("c", "m", "z", "nosuchlib")])'; ldconfig -p | sed 1d | grep -c "=>"; ldconfig --version | head -1"#,
    ),
    // The loader run as a program reads the image's files; ldd's lines name them as
    // chroot's do.
    case(
        "ldd and the loader run as a program",
        &[Bookworm, Bullseye, Polyglot],
        Check::Same,
        r#"ldd /bin/ls | sed 's/ (0x[0-9a-f]*)//'; /lib64/ld-linux-x86-64.so.2 /bin/echo run by its loader; /lib64/ld-linux-x86-64.so.2 --verify /bin/ls; echo verify $?; /lib64/ld-linux-x86-64.so.2 --library-path /nowhere /bin/sh -c 'echo $0'"#,
    ),
    // Debian's threaded perl walks the accounts with getpwent_r and getgrent_r. The running
    // user, whom bootstrap names in the rootfs's files and chroot does not, is left out.
    case(
        "perl walks the image's accounts",
        DEBIAN,
        Check::Same,
        r#"perl -e 'while (@p = getpwent) { print "$p[0]:$p[2]\n" } while (@g = getgrent) { print "$g[0]:$g[2]\n" }' | grep -v -e ":$(id -u)\$" -e ":$(id -g)\$" | tr "\n" " ""#,
    ),
    case(
        "exec -a",
        GLIBC_NATIVE,
        Check::Same,
        r#"bash -c 'exec -a foo /bin/sh -c "echo \$0"'"#,
    ),
    // SameStdout: the image's files belong to the Lambda uid here, to root under chroot,
    // so busybox's `cp -a` warns about ownership only there.
    case(
        "file operations in /tmp",
        ALL,
        Check::SameStdout,
        r#"touch /tmp/crt-a && mkdir -p /tmp/crt-d/e && cp -a /etc/os-release /etc/passwd /tmp/crt-d/ && sed -i s/a/b/ /tmp/crt-d/passwd && mv /tmp/crt-d /tmp/crt-f && ls /tmp/crt-f && rm -r /tmp/crt-f /tmp/crt-a && d=$(mktemp -d) && rmdir "$d" && echo fileops ok"#,
    ),
    case(
        "tar",
        ALL,
        Check::Same,
        "tar -C / -cf /tmp/crt-t.tar etc/passwd && tar -tf /tmp/crt-t.tar && rm /tmp/crt-t.tar",
    ),
    case(
        "df",
        GLIBC,
        Check::SameStdout,
        "df /tmp >/dev/null && echo df ok",
    ),
    case(
        "find walker",
        ALL,
        Check::Same,
        "find /usr -xdev | wc -l; find / -maxdepth 1 | sort",
    ),
    case(
        "du walker",
        ALL,
        Check::Same,
        "du -s /usr >/dev/null && echo du ok",
    ),
    case("ls -laR", ALL, Check::Same, "ls -laR /etc | wc -l"),
    case(
        "python glob",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import glob;print(len(glob.glob("/usr/lib/**",recursive=True)))'"#,
    ),
    case(
        "python modules",
        DEBIAN,
        Check::Same,
        r#"python3 -c 'import sys,os,json,ssl,sqlite3,ctypes,email,asyncio; print(sys.executable, os.getcwd(), sys.prefix)'"#,
    ),
    case(
        "python venv",
        DEBIAN,
        Check::Same,
        "python3 -m venv --without-pip /tmp/crt-v && /tmp/crt-v/bin/python -c 'import sys; print(sys.prefix, sys.executable)'; rm -rf /tmp/crt-v",
    ),
    case(
        "perl modules",
        DEBIAN,
        Check::Same,
        r#"cd /etc && perl -MPOSIX -MFile::Find -e 'print getcwd(),"\n"; find(sub { print "$File::Find::name\n" if /^os-release$/ }, "/etc")'"#,
    ),
    case(
        "locale and time",
        DEBIAN,
        Check::Same,
        "locale -a; date -u -d @0; TZ=UTC0 date -d @86400 +%F",
    ),
    case("time", &[Small, Musl], Check::Same, "date -u -d @0 +%F"),
    case(
        "imagemagick",
        &[Bookworm],
        Check::Same,
        "convert -size 64x64 xc:red /tmp/crt-r.png && identify -format '%w %h %m\\n' /tmp/crt-r.png; rm /tmp/crt-r.png",
    ),
    case("cowsay", &[Bookworm], Check::Same, "/usr/games/cowsay moo"),
    // The language runtimes, each loading modules by relative and absolute paths, sizing and
    // resolving files of the image, starting subprocesses, and naming its own executable.
    runtime(
        "node: stat, realpath, lstat of an absolute link",
        r#"node -e 'const fs=require("fs"); console.log(fs.statSync("/etc/scar-test-image").size, fs.realpathSync("/usr/bin/awk"), fs.lstatSync("/usr/bin/awk").size, fs.existsSync("/work"))'"#,
    ),
    runtime(
        "node: require relative and absolute",
        r#"d=$(mktemp -d) && mkdir $d/lib && echo 'module.exports = require("./lib/b") * 2' > $d/a.js && echo 'module.exports = 21' > $d/lib/b.js && echo 'console.log(require("./a"), require(process.argv[2] + "/lib/b.js"))' > $d/main.js && cd $d && node main.js $d && node $d/main.js $d; rm -rf $d"#,
    ),
    runtime(
        "node: the image's own modules and process.execPath",
        r#"node -e 'console.log(process.execPath, require("path").basename(require.resolve("fs")), typeof require("child_process").spawnSync); console.log(require("fs").readlinkSync("/proc/self/exe"))'"#,
    ),
    runtime(
        "node: child processes and pipes",
        r#"node -e 'const cp=require("child_process"); console.log(cp.execSync("echo hi | tr a-z A-Z").toString().trim()); const r=cp.spawnSync("sh",["-c","cat /etc/scar-test-image; exit 3"]); console.log(r.status, r.stdout.toString().trim())'"#,
    ),
    runtime(
        "node: async fs through libuv's thread pool, temp files",
        r#"node -e 'const fs=require("fs"),os=require("os"),p=require("path"); const d=fs.mkdtempSync(p.join(os.tmpdir(),"n-")); fs.promises.writeFile(d+"/x","42").then(()=>fs.promises.readFile(d+"/x","utf8")).then(t=>fs.promises.stat(d+"/x").then(s=>{console.log(t,s.size,fs.readdirSync(d)); fs.rmSync(d,{recursive:true})}))'"#,
    ),
    runtime(
        "node: fs.watch",
        r#"node -e 'const fs=require("fs"); const d=fs.mkdtempSync("/tmp/w-"); const w=fs.watch(d,(e,f)=>{console.log("event", f); w.close(); fs.rmSync(d,{recursive:true})}); setTimeout(()=>fs.writeFileSync(d+"/new","1"),100)'"#,
    ),
    runtime(
        "node: http server and client on loopback",
        r#"node -e 'const h=require("http"); const s=h.createServer((q,r)=>r.end("pong "+q.url)).listen(0,"127.0.0.1",()=>h.get("http://127.0.0.1:"+s.address().port+"/x",r=>{let b="";r.on("data",c=>b+=c);r.on("end",()=>{console.log(b);s.close()})}))'"#,
    ),
    runtime(
        "python: numpy and the interpreter's paths",
        r#"python3 -c 'import numpy,sys,os; print(numpy.arange(12).reshape(3,4).sum(axis=0).tolist(), os.path.dirname(numpy.__file__)); print(sys.executable, os.path.realpath("/usr/bin/python3"), os.lstat("/usr/bin/awk").st_size)'"#,
    ),
    case(
        "fexecve: a memfd, a deleted file, a script, a pipe",
        &[Bookworm, Bullseye, Polyglot],
        Check::Same,
        r##"d=$(mktemp -d) && cat > $d/x.py <<'EOF'
import os
def run(fd, argv, inherit=None):
    if inherit is not None:
        os.set_inheritable(fd, inherit)
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(fd, argv, {"PATH": "/usr/bin:/bin"})
        except OSError as e:
            print("exec failed:", e.errno, flush=True)
            os._exit(7)
    print(argv[0], os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
def memfd(path, flags=0, data=None):
    fd = os.memfd_create("prog", flags)
    os.write(fd, data or open(path, "rb").read())
    return fd
script = b"#!/bin/sh\necho script $0 $1\n"
run(memfd("/bin/echo"), ["echo", "memfd, inherited"])
fd = memfd("/bin/sh", os.MFD_CLOEXEC)
run(fd, ["sh", "-c", "test -e /proc/$$/fd/%d && echo open || echo closed; readlink /proc/self/exe" % fd])
run(memfd(None, data=script), ["s", "arg"])
run(memfd(None, os.MFD_CLOEXEC, script), ["s", "close-on-exec"])
with open("/tmp/fexecve-del", "wb") as f:
    f.write(script)
os.chmod("/tmp/fexecve-del", 0o755)
fd = os.open("/tmp/fexecve-del", os.O_RDONLY)
os.unlink("/tmp/fexecve-del")
run(fd, ["d", "deleted"], inherit=True)
run(os.open("/bin/cat", os.O_RDONLY), ["cat", "/proc/self/comm"])
run(os.pipe()[0], ["pipe"])
EOF
python3 $d/x.py; rm -rf $d"##,
    ),
    runtime(
        "python: relative imports, subprocess pipes",
        r#"d=$(mktemp -d) && echo 'X = 7' > $d/m.py && cd $d && python3 -c 'import m, subprocess; p = subprocess.run("sort | uniq -c", shell=True, input=b"b\na\nb\n", capture_output=True); print(m.X, p.stdout.decode().split())'; rm -rf $d"#,
    ),
    runtime(
        "ruby: files, require, subprocess, its own path",
        r#"d=$(mktemp -d) && echo 'V = 5' > $d/v.rb && ruby -I$d -rjson -e 'require "v"; require_relative "/etc/../'$d'/v.rb"; puts V, File.size("/etc/scar-test-image"), File.realpath("/usr/bin/awk"), `echo sub`.strip, JSON.generate({"a"=>[1]}), File.readlink("/proc/self/exe")'; rm -rf $d"#,
    ),
    runtime(
        "perl: its executable, stat, readlink, pipes",
        r#"perl -MCwd=abs_path -e 'print join(" ", $^X, -s "/etc/scar-test-image", readlink("/usr/bin/awk"), abs_path("/usr/bin/awk")), "\n"; open(my $p, "-|", "echo piped") or die; print <$p>'"#,
    ),
    runtime(
        "php: files, realpath, two popens",
        r#"cd /tmp && php -r 'echo filesize("/etc/scar-test-image"), " ", realpath("/usr/bin/awk"), " ", PHP_BINARY, "\n"; $a = popen("cat > /tmp/php-a", "w"); $b = popen("cat > /tmp/php-b", "w"); fwrite($a, "A"); fwrite($b, "B"); echo pclose($a), pclose($b), file_get_contents("/tmp/php-a"), file_get_contents("/tmp/php-b"), "\n"; unlink("/tmp/php-a"); unlink("/tmp/php-b");'"#,
    ),
    runtime(
        "lua: two write popens at once",
        r#"lua5.4 -e 'local a = io.popen("cat > /tmp/lua-a", "w"); local b = io.popen("cat > /tmp/lua-b", "w"); a:write("one"); b:write("two"); print(a:close()); print(b:close()); print(io.open("/tmp/lua-a"):read("a"), io.open("/tmp/lua-b"):read("a")); os.remove("/tmp/lua-a"); os.remove("/tmp/lua-b")'"#,
    ),
    runtime(
        "lua: read popen and files",
        r#"lua5.4 -e 'print(io.popen("echo lua; ls /etc/scar-test-image"):read("a")); print(io.open("/etc/scar-test-image"):read("l"))'"#,
    ),
    runtime(
        "tcl: file commands and exec",
        r#"echo 'puts [file size /etc/scar-test-image]; puts [file readlink /usr/bin/awk]; puts [file normalize /usr/bin/../bin/awk]; puts [exec sh -c "echo from tcl"]; puts [info nameofexecutable]' | tclsh"#,
    ),
    runtime(
        "erlang: BEAM starts, reads files, runs a port",
        r#"HOME=/tmp erl -noshell -eval 'io:format("~p ~s~n", [filelib:file_size("/etc/scar-test-image"), os:cmd("echo port")]), {ok, L} = file:read_link("/usr/bin/awk"), io:format("~s~n", [L]), halt().'"#,
    ),
    runtime(
        "elixir: scripts and System.cmd",
        r#"HOME=/tmp elixir -e 'IO.puts(File.read!("/etc/scar-test-image")); {out, 0} = System.cmd("echo", ["cmd"]); IO.write(out); IO.puts(Path.expand("../x", "/usr/bin"))'"#,
    ),
    runtime(
        "java: the source launcher, files, a subprocess, its own path",
        r#"d=$(mktemp -d) && printf '%s\n' 'import java.nio.file.*;' 'class M { public static void main(String[] a) throws Exception {' 'System.out.println(Files.size(Path.of("/etc/scar-test-image")) + " " + Path.of("/usr/bin/awk").toRealPath());' 'Process p = new ProcessBuilder("sh", "-c", "echo from java").start(); System.out.print(new String(p.getInputStream().readAllBytes())); System.out.println(p.waitFor());' 'System.out.println(ProcessHandle.current().info().command().orElse("?").startsWith("/usr/lib/jvm/"));' '}}' > $d/M.java && java -Xshare:auto $d/M.java; rm -rf $d"#,
    ),
    runtime(
        "R: files, system, two pipes",
        r#"Rscript -e 'cat(file.size("/etc/scar-test-image"), Sys.readlink("/usr/bin/awk"), normalizePath("/usr/bin/awk"), "\n"); a <- pipe("cat > /tmp/r-a", "w"); b <- pipe("cat > /tmp/r-b", "w"); writeLines("ra", a); writeLines("rb", b); close(a); close(b); cat(readLines("/tmp/r-a"), readLines("/tmp/r-b"), "\n"); system("echo from R"); invisible(file.remove("/tmp/r-a", "/tmp/r-b"))'"#,
    ),
    runtime(
        "procps: ps and pgrep find programs by their own names",
        r#"sh -c 'ps -o comm=,args= -p $$; pgrep -x -c -P $PPID sh; pgrep -f -c -P $PPID "^sh -c ps"' x"#,
    ),
    runtime(
        "git: init, commit, log, status",
        r#"d=$(mktemp -d) && cd $d && git init -q -b main && echo x > f && git add f && git -c user.email=a@b -c user.name=n commit -q -m first && git log --format=%s && git status --short --branch && git rev-parse --show-toplevel | sed "s|$d|D|"; rm -rf $d"#,
    ),
    runtime(
        "sqlite: a database file",
        r#"d=$(mktemp -d) && sqlite3 $d/t.db 'create table t(x); insert into t values (6*7);' && sqlite3 $d/t.db 'select x from t; pragma journal_mode;'; rm -rf $d"#,
    ),
    runtime(
        "file: the magic database",
        "file -L /usr/bin/awk /etc/scar-test-image | sed 's/, BuildID[^,]*//'; file /usr/bin/awk",
    ),
    runtime(
        "xz and ImageMagick through pipes",
        "echo compressed | xz | xz -d; convert -size 3x2 xc:blue png:- | identify -format '%w %h %m\\n' -",
    ),
    case(
        "dotdot stays inside",
        ALL,
        Check::Same,
        "cat /../../../etc/os-release | grep ^ID=; cd /../../.. && pwd && ls | head -3",
    ),
    case(
        "missing program",
        ALL,
        Check::SameStdout,
        "nosuchprog; echo status $?",
    ),
    case(
        "exit status",
        ALL,
        Check::Same,
        "echo out; echo err >&2; exit 7",
    ),
];

fn matrix(image: Image) {
    let tools = image.tools();
    lambda_rootfs_with(&tools, image.reference());
    compare_cases(
        image,
        |_| true,
        1,
        |argv| lambda_run_with(&tools, image.reference(), &[], argv),
    );
}

/// Matrix cases run by one cold start on a lazy tree: the first starts on placeholders only,
/// the next ones while the tree is still filling. A cold start builds the whole skeleton tree
/// (5,000 to 11,000 files), seconds on a throttled disk: four cases to one keeps CI's time
/// with the arm64 matrix added.
const LAZY_CASES_PER_COLD_START: usize = 4;

/// The matrix on a lazily loaded tree: the image staged with skeletons, and each few cases a
/// cold start on a cache of its own, so that they run on placeholders whose files arrive
/// through the shim's requests while the background fill replaces others. The cache is on
/// disk, as Lambda's /tmp is: on tmpfs a directory listed while its files are put in place
/// may show a name twice or miss one (docs/limits.md). The polyglot image runs only its own
/// cases: the others run on Bookworm, its base.
fn lazy_matrix(image: Image) {
    let tools = image.tools();
    let (layout, tag) = image.layout();
    let staged = framed_layout_for_lambda(&work().join(layout), tag);
    let reference = format!("oci:{}:{tag}", staged.path().display());
    let own_cases = |case: &Case| image != Polyglot || case.on == POLYGLOT;
    compare_cases(
        image,
        own_cases,
        image.lazy_cases_per_cold_start(),
        |argv| {
            let cache = fresh_lambda_cache();
            let cache_dir = cache.path().to_str().unwrap();
            lambda_run_setting(
                &tools,
                &reference,
                &["--cache-dir", cache_dir],
                &[("SCAR_LAZY_LOAD", "1")],
                argv,
            )
        },
    );
}

/// What one case printed and how it ended.
struct Ran {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<i32>,
}

/// Runs the cases given as arguments one after the other, each in its own shell, marking
/// where each one's output ends and with what status.
const BATCH: &str = r#"for s in "$@"; do /bin/sh -c "$s"; printf '\n@@case-end %s\n' "$?"; printf '\n@@case-end\n' >&2; done"#;

/// `scripts` run with `run`, one process for all (through [`BATCH`]) when there are several.
fn run_cases(scripts: &[&str], run: &dyn Fn(&[&str]) -> Output) -> Vec<Ran> {
    if let [script] = scripts {
        let out = run(&["/bin/sh", "-c", script]);
        return vec![Ran {
            stdout: out.stdout,
            stderr: out.stderr,
            status: out.status.code(),
        }];
    }
    let mut argv = vec!["/bin/sh", "-c", BATCH, "batch"];
    argv.extend_from_slice(scripts);
    let out = run(&argv);
    let stdouts = split(&out.stdout, b"\n@@case-end ");
    let stderrs = split(&out.stderr, b"\n@@case-end\n");
    // Each case's end is marked on both streams, or the batch itself broke (on both sides
    // alike it would compare equal).
    assert!(
        stdouts.len() == scripts.len() + 1 && stderrs.len() == scripts.len() + 1,
        "a batch of {} cases ended early ({:?}):\n{}{}",
        scripts.len(),
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    let mut ran = Vec::with_capacity(scripts.len());
    let mut stdout = stdouts[0].to_vec();
    for (after, stderr) in stdouts[1..].iter().zip(&stderrs) {
        let end = after
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(after.len());
        let status = std::str::from_utf8(&after[..end])
            .ok()
            .and_then(|s| s.parse().ok());
        let next = after.get(end + 1..).unwrap_or_default().to_vec();
        ran.push(Ran {
            stdout: std::mem::replace(&mut stdout, next),
            stderr: stderr.to_vec(),
            status,
        });
    }
    ran
}

/// `bytes` cut at each `marker` (removed).
fn split<'a>(bytes: &'a [u8], marker: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = bytes;
    while let Some(at) = rest.windows(marker.len()).position(|w| w == marker) {
        parts.push(&rest[..at]);
        rest = &rest[at + marker.len()..];
    }
    parts.push(rest);
    parts
}

/// Runs the image's cases (those `chosen`), `per_run` to a `run`, and the same under chroot,
/// and fails naming every case whose outputs differ.
fn compare_cases(
    image: Image,
    chosen: impl Fn(&Case) -> bool,
    per_run: usize,
    run: impl Fn(&[&str]) -> Output,
) {
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| c.on.contains(&image) && chosen(c))
        .collect();
    let chroot = |argv: &[&str]| chroot_run(&image.chroot_root(), argv);
    let mut failures = Vec::new();
    for batch in cases.chunks(per_run) {
        let scripts: Vec<&str> = batch.iter().map(|c| c.script).collect();
        let ours = run_cases(&scripts, &run);
        let truths = run_cases(&scripts, &chroot);
        for ((case, ours), truth) in batch.iter().zip(ours).zip(truths) {
            let same_stdout = ours.stdout == truth.stdout && ours.status == truth.status;
            let same = match case.check {
                Check::Same => same_stdout && ours.stderr == truth.stderr,
                Check::SameStdout => same_stdout,
            };
            let failed = truth.status.is_none() || (case.must_succeed && truth.status != Some(0));
            if !same || failed {
                failures.push(format!(
                    "--- {:?} {}: {}\n  chroot ({:?}):\n{}{}\n  shim ({:?}):\n{}{}",
                    image,
                    case.name,
                    case.script,
                    truth.status,
                    text(&truth.stdout),
                    text(&truth.stderr),
                    ours.status,
                    text(&ours.stdout),
                    text(&ours.stderr),
                ));
            }
        }
    }
    assert!(cases.len() > 10, "too few cases for {image:?}");
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from chroot:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn matrix_bookworm_glibc_2_36() {
    matrix(Bookworm);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn matrix_bullseye_glibc_2_31() {
    matrix(Bullseye);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn matrix_small_host_image() {
    matrix(Small);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn matrix_musl() {
    matrix(Musl);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn matrix_polyglot_language_runtimes() {
    matrix(Polyglot);
}

#[test]
#[ignore = "needs the harness, root, qemu-user and the arm64 layer (make test)"]
fn matrix_debian_arm64_under_qemu() {
    matrix(DebianArm64);
}

#[test]
#[ignore = "needs the harness, root, qemu-user and the arm64 layer (make test)"]
fn matrix_small_arm64_under_qemu() {
    matrix(SmallArm64);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn lazy_matrix_bookworm() {
    lazy_matrix(Bookworm);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn lazy_matrix_bullseye() {
    lazy_matrix(Bullseye);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn lazy_matrix_small_host_image() {
    lazy_matrix(Small);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn lazy_matrix_musl() {
    lazy_matrix(Musl);
}

#[test]
#[ignore = "needs the harness, root and the shim (make test)"]
fn lazy_matrix_polyglot_language_runtimes() {
    lazy_matrix(Polyglot);
}

/// The arm64 runtime, shim and fetcher (all under qemu) on a lazily loaded arm64 tree.
#[test]
#[ignore = "needs the harness, root, qemu-user and the arm64 layer (make test)"]
fn lazy_matrix_debian_arm64_under_qemu() {
    lazy_matrix(DebianArm64);
}
