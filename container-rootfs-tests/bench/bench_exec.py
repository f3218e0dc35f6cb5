#!/usr/bin/env python3
"""bench_exec.py BOOTSTRAP SHIM_DIR OUT_MD [RUNS] — the shim's overhead (issue #3), side by side
in one run on the Debian bookworm test image:

  native      chroot ROOT (as root): the ground truth, no translation at all
  ours        the command line `bootstrap run` starts: the image's loader, --preload our shim
  fakechroot  Debian's fakechroot 2.20 (`fakechroot -e none chroot ROOT`)
  proot       `proot -r ROOT` (ptrace)

Workloads: exec latency (1000 × /bin/true from sh), path-heavy `find /usr -type f | wc -l`, a
python import of several modules, and `tar -cf /dev/null /usr/lib`; then Node requiring a
module tree by name (Debian's /usr/share/nodejs on NODE_PATH: each `require` stats its way
through the candidates, and libuv reaches `statx` through `syscall()`) on the polyglot image,
the same four tools; then, as root, `apt-get install` and `purge` of one package under a fake
root (ours --fakeroot, proot -0) against real root in a chroot. Every tool runs through the
same kind of one-line wrapper script, timed by hyperfine; medians, ratios to native and the
added time per exec go to a Markdown table on stdout and in OUT_MD.
"""
import itertools, json, os, shlex, signal, shutil, subprocess, sys, tempfile, time

BOOTSTRAP, SHIM_DIR, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
RUNS = int(sys.argv[4]) if len(sys.argv) > 4 else 10
WORK = os.environ.get("CRT_WORK", "/tmp/scar-crt")
IMAGE = "127.0.0.1:5000/library/debian-cowsay"
CHROOT = f"{WORK}/chroot/debian/rootfs"
POLYGLOT_IMAGE = "127.0.0.1:5000/library/polyglot"
POLYGLOT_CHROOT = f"{WORK}/chroot/polyglot/rootfs"
NODE_MODULES = ["acorn", "acorn-walk", "acorn-loose", "acorn-jsx", "acorn-node", "acorn-globals", "undici",
                "busboy", "xtend", "binary-search", "cjs-module-lexer", "streamsearch"]
NODE_REQUIRE = ("NODE_PATH=/usr/share/nodejs node -e 'for (const m of " + json.dumps(NODE_MODULES).replace(" ", "")
                + ") require(m); console.log(Object.keys(require.cache).length)'")
CACHE = "/tmp/scar-bench-exec-cache"
SCRATCH = tempfile.mkdtemp(prefix="bench-exec-", dir="/tmp")
PROBES = itertools.count()

WORKLOADS = [
    ("exec ×1000", "for i in $(seq 1000); do /bin/true; done"),
    ("find /usr -type f", "find /usr -type f | wc -l"),
    ("python imports", "python3 -c 'import email, asyncio, json, http.client, ssl, sqlite3'"),
    ("tar /usr/lib", "tar -cf /dev/null /usr/lib"),
]


def ours_command_line(*flags, image=IMAGE):
    """Starts `bootstrap run` once and reads the loader command line and environment it made.
    The probe command is this call's own (a probe left by an earlier call or run, for another
    image, must not be read), and is ended once read."""
    probe = f"sleep 120 # bench-exec-probe {os.getpid()} {next(PROBES)}"
    proc = subprocess.Popen([BOOTSTRAP, "run", *flags, "--cache-dir", CACHE, "--shim-dir", SHIM_DIR, image, "--",
                             "/bin/sh", "-c", probe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": "/usr/bin:/bin", "AWS_LAMBDA_LOG_LEVEL": "error"})
    try:
        for _ in range(600):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:-1]
                    if argv and argv[-1] == probe.encode() and b"--library-path" in argv:
                        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")[:-1]
                        os.kill(int(pid), signal.SIGKILL)
                        return [a.decode() for a in argv[:-1]], [e.decode() for e in env]
                except OSError:
                    pass
            time.sleep(0.05)
        sys.exit("bench_exec: bootstrap run never started the probe")
    finally:
        proc.kill()
        proc.wait()


def wrapper(name, argv, env=None):
    path = os.path.join(SCRATCH, name)
    prefix = "env -i " + " ".join(shlex.quote(e) for e in env) + " " if env is not None else ""
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec " + prefix + " ".join(shlex.quote(a) for a in argv) + ' "$@"\n')
    os.chmod(path, 0o755)
    return path


def four_tools(prefix, chroot, argv, env, base_env):
    """(name, wrapper script) of native chroot, ours (the loader command line `argv` and
    environment `env` that `bootstrap run` made for this image), fakechroot and proot."""
    return [
        ("native", wrapper(f"{prefix}native", ["chroot", chroot, "/bin/sh", "-c"], base_env)),
        ("ours", wrapper(f"{prefix}ours", argv, env)),
        ("fakechroot", wrapper(f"{prefix}fakechroot", ["fakechroot", "-e", "none", "chroot", chroot, "/bin/sh", "-c"], base_env)),
        ("proot", wrapper(f"{prefix}proot", ["proot", "-r", chroot, "/bin/sh", "-c"], base_env)),
    ]


def median_ms(script, workload):
    out = os.path.join(SCRATCH, "h.json")
    cmd = f"{script} {shlex.quote(workload)}"
    subprocess.run(["hyperfine", "-N", "--warmup", "2", "--runs", str(RUNS), "--export-json", out, cmd],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.load(open(out))["results"][0]["median"] * 1000


def check_same_output(tools, workload):
    outputs = {name: subprocess.run([script, workload], capture_output=True).stdout for name, script in tools}
    if workload.startswith("find") and len(set(outputs.values())) != 1:
        sys.exit(f"bench_exec: tools disagree on {workload!r}: {outputs}")


# One package installed and purged again with apt from the harness's local repository
# (setup.sh serves it on 127.0.0.1:5020), so that every run starts from the same tree.
APT_SETUP = ("rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && "
             "echo 'deb [trusted=yes] http://127.0.0.1:5020 ./' > /etc/apt/sources.list.d/local.list && "
             "apt-get update -q >/dev/null 2>&1 && apt-get purge -y -q hello >/dev/null 2>&1; true")
APT_ROUND_TRIP = ("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends hello >/dev/null 2>&1"
                  " && hello >/dev/null && apt-get purge -y -q hello >/dev/null 2>&1")


def fake_root_installs(base_env):
    """apt-get install + purge of `hello` as root: real root in a chroot (the ground truth),
    ours under `--fakeroot`, and proot -0, the only peer with a fake root. The chroot and
    proot work on private copies of the image's tree; ours on its own cache."""
    argv, env = ours_command_line("--fakeroot")
    trees = {}
    for name in ("native", "proot"):
        trees[name] = os.path.join(SCRATCH, f"{name}-tree")
        subprocess.run(["cp", "-a", CHROOT, trees[name]], check=True)
    tools = [
        ("native", wrapper("native-root", ["chroot", trees["native"], "/bin/sh", "-c"], base_env)),
        ("ours --fakeroot", wrapper("ours-fakeroot", argv, env)),
        ("proot -0", wrapper("proot-root", ["proot", "-0", "-r", trees["proot"], "/bin/sh", "-c"], base_env)),
    ]
    results = {}
    for name, script in tools:
        subprocess.run([script, APT_SETUP], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        check = subprocess.run([script, APT_ROUND_TRIP], capture_output=True)
        if check.returncode != 0:
            sys.exit(f"bench_exec: {name} could not install hello: {check.stderr.decode()[-2000:]}")
        results[name] = median_ms(script, APT_ROUND_TRIP)
        print(f"  apt round trip       {name:15} {results[name]:9.1f} ms", file=sys.stderr)
    native, ours, proot = (results[n] for n in ("native", "ours --fakeroot", "proot -0"))
    return [
        "",
        "Fake root: `apt-get install hello` (local repository), run it, `apt-get purge hello`, as root.",
        "",
        "| | native chroot (real root) | ours --fakeroot | proot -0 |",
        "|---|---:|---:|---:|",
        f"| install + purge | {native:.0f} ms (1.00×) | {ours:.0f} ms ({ours / native:.2f}×) | {proot:.0f} ms ({proot / native:.2f}×) |",
        "",
        f"Target for ours: ≥ 3 × faster than proot -0: proot takes {proot / ours:.1f} × as long.",
    ]


def node_requires(base_env):
    """NODE_REQUIRE on the polyglot image: native chroot, ours, fakechroot, proot. Ours must
    print what native prints; a peer that does not is shown failing, with its last error
    line, and is not timed."""
    argv, env = ours_command_line(image=POLYGLOT_IMAGE)
    tools = four_tools("node-", POLYGLOT_CHROOT, argv, env, base_env)
    runs = {name: subprocess.run([script, NODE_REQUIRE], capture_output=True) for name, script in tools}
    expected = runs["native"].stdout
    if not expected.strip() or runs["ours"].stdout != expected:
        sys.exit(f"bench_exec: node require: native printed {expected!r}, ours {runs['ours'].stdout!r}: "
                 f"{runs['ours'].stderr.decode()[-1000:]}")
    results, cells = {}, []
    for name, script in tools:
        run = runs[name]
        if run.stdout != expected:
            said = [l for l in run.stderr.decode(errors="replace").splitlines() if "rror" in l]
            cells.append(f"fails: {said[0][:90] if said else f'exit {run.returncode}'}".replace("|", "/"))
            print(f"  node require         {name:11} fails", file=sys.stderr)
            continue
        results[name] = median_ms(script, NODE_REQUIRE)
        cells.append(f"{results[name]:.0f} ms ({results[name] / results['native']:.2f}×)")
        print(f"  node require         {name:11} {results[name]:9.1f} ms", file=sys.stderr)
    native = results["native"]
    proot = (f"proot takes {results['proot'] / results['ours']:.1f} × as long" if "proot" in results
             else "proot fails")
    return [
        "",
        f"Node 18 on the polyglot image: `require` of {len(NODE_MODULES)} packages by name from "
        "/usr/share/nodejs (NODE_PATH), the modules they load in turn included.",
        "",
        "| workload | " + " | ".join(n for n, _ in tools) + " |",
        "|---|" + "---:|" * len(tools),
        "| node require | " + " | ".join(cells) + " |",
        "",
        f"Targets for ours: ≤ 1.3 × native ({results['ours'] / native:.2f}), ≥ 3 × faster than proot ({proot}).",
    ]


def main():
    argv, env = ours_command_line()
    base_env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"]
    tools = four_tools("", CHROOT, argv, env, base_env)
    results = {}
    for label, workload in WORKLOADS:
        check_same_output(tools, workload)
        for name, script in tools:
            results[(label, name)] = median_ms(script, workload)
            print(f"  {label:20} {name:11} {results[(label, name)]:9.1f} ms", file=sys.stderr)
    names = [n for n, _ in tools]
    lines = ["| workload | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, _ in WORKLOADS:
        native = results[(label, "native")]
        cells = [f"{results[(label, n)]:.0f} ms ({results[(label, n)] / native:.2f}×)" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    per_exec = {n: (results[("exec ×1000", n)] - results[("exec ×1000", "native")]) / 1000 for n in names}
    lines.append("| added per exec | " + " | ".join(f"{per_exec[n]:.2f} ms" for n in names) + " |")
    paths = ["find /usr -type f", "python imports", "tar /usr/lib"]
    summary = [
        "",
        f"Medians of {RUNS} runs (hyperfine -N, 2 warm-ups), ratio to native in brackets.",
        "Targets for ours: path-heavy ≤ 1.3 × native, ≥ 3 × faster than proot, no slower than fakechroot, ≤ 1 ms per exec.",
    ]
    for label in paths:
        o, n, p, f = (results[(label, t)] for t in ("ours", "native", "proot", "fakechroot"))
        summary.append(f"- {label}: {o / n:.2f} × native; proot takes {p / o:.1f} × as long as ours, fakechroot {f / o:.2f} ×.")
    summary.append(f"- exec: {per_exec['ours']:.2f} ms added per exec (fakechroot {per_exec['fakechroot']:.2f}, proot {per_exec['proot']:.2f}).")
    table = "\n".join(lines + summary + node_requires(base_env) + fake_root_installs(base_env)) + "\n"
    print(table)
    open(OUT, "w").write(table)


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
