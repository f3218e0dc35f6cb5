#!/usr/bin/env python3
"""bench_exec.py BOOTSTRAP SHIM_DIR OUT_MD [RUNS] — the shim's overhead (issue #3), side by side
in one run on the Debian bookworm test image:

  native      chroot ROOT (as root): the ground truth, no translation at all
  ours        the command line `bootstrap run` starts: the image's loader, --preload our shim
  fakechroot  Debian's fakechroot 2.20 (`fakechroot -e none chroot ROOT`)
  proot       `proot -r ROOT` (ptrace)

Workloads: exec latency (1000 × /bin/true from sh), path-heavy `find /usr -type f | wc -l`, a
python import of several modules, and `tar -cf /dev/null /usr/lib`. Every tool runs through the
same kind of one-line wrapper script, timed by hyperfine; medians, ratios to native and the
added time per exec go to a Markdown table on stdout and in OUT_MD.
"""
import json, os, shlex, subprocess, sys, tempfile, time

BOOTSTRAP, SHIM_DIR, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
RUNS = int(sys.argv[4]) if len(sys.argv) > 4 else 10
WORK = os.environ.get("CRT_WORK", "/tmp/scar-crt")
IMAGE = "127.0.0.1:5000/library/debian-cowsay"
CHROOT = f"{WORK}/chroot/debian/rootfs"
CACHE = "/tmp/scar-bench-exec-cache"
SCRATCH = tempfile.mkdtemp(prefix="bench-exec-", dir="/tmp")
PROBE = "sleep 120 # bench-exec-probe"

WORKLOADS = [
    ("exec ×1000", "for i in $(seq 1000); do /bin/true; done"),
    ("find /usr -type f", "find /usr -type f | wc -l"),
    ("python imports", "python3 -c 'import email, asyncio, json, http.client, ssl, sqlite3'"),
    ("tar /usr/lib", "tar -cf /dev/null /usr/lib"),
]


def ours_command_line():
    """Starts `bootstrap run` once and reads the loader command line and environment it made."""
    proc = subprocess.Popen([BOOTSTRAP, "run", "--cache-dir", CACHE, "--shim-dir", SHIM_DIR, IMAGE, "--",
                             "/bin/sh", "-c", PROBE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": "/usr/bin:/bin", "AWS_LAMBDA_LOG_LEVEL": "error"})
    try:
        for _ in range(600):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:-1]
                    if argv and argv[-1] == PROBE.encode() and b"--library-path" in argv:
                        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")[:-1]
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


def main():
    argv, env = ours_command_line()
    base_env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"]
    tools = [
        ("native", wrapper("native", ["chroot", CHROOT, "/bin/sh", "-c"], base_env)),
        ("ours", wrapper("ours", argv, env)),
        ("fakechroot", wrapper("fakechroot", ["fakechroot", "-e", "none", "chroot", CHROOT, "/bin/sh", "-c"], base_env)),
        ("proot", wrapper("proot", ["proot", "-r", CHROOT, "/bin/sh", "-c"], base_env)),
    ]
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
    table = "\n".join(lines + summary) + "\n"
    print(table)
    open(OUT, "w").write(table)


if __name__ == "__main__":
    main()
