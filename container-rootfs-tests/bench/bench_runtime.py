#!/usr/bin/env python3
"""bench_runtime.py BOOTSTRAP SHIM_DIR OUT_MD [RUNS] — the runtime's own cost (issue #4):

  start to first poll   from spawning `bootstrap` to its first GET /invocation/next
  warm invoke of true   from handing out the event to receiving the response, through a
                        Runtime API served here (HTTP on 127.0.0.1), image already cached
  bootstrap run true    `bootstrap run IMAGE -- /bin/true`, a whole process, warm cache
  native true           spawning /bin/true on the host
  idle RSS              of the waiting runtime after the warm invocations
  100 MB of short lines a command printing them, output logged live (SCAR_LOG_OUTPUT=live,
                        the default; the log read as fast as CloudWatch would) against the
                        same with output captured only (off): time and peak RSS

Medians; writes a Markdown table to stdout and OUT_MD.
"""
import json, os, queue, statistics, subprocess, sys, time

from runtime_peer import RuntimeApiPeer

BOOTSTRAP, SHIM_DIR, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
RUNS = int(sys.argv[4]) if len(sys.argv) > 4 else 50
IMAGE = "127.0.0.1:5000/library/debian-cowsay"
CACHE = "/tmp/scar-bench-runtime-cache"
peer = RuntimeApiPeer()
events, replies, polls = peer.events, peer.replies, peer.polls


def big_output(env, mode, runs=3):
    """Median seconds and peak RSS (MB) of invocations printing 100 MB of short lines; None
    when this runtime has no SCAR_LOG_OUTPUT."""
    while not polls.empty():
        polls.get()
    proc = subprocess.Popen([BOOTSTRAP], env={**env, "SCAR_LOG_OUTPUT": mode}, stderr=subprocess.DEVNULL)
    try:
        polls.get(timeout=10)
    except queue.Empty:
        proc.kill(); proc.wait()
        time.sleep(0.3)
        peer.forget()
        return None
    times = []
    for i in range(runs):
        events.put((f"big-{mode}-{i}", {"cmd_args": ["/bin/sh", "-c", "yes 0123456789abcdef | head -c 100000000"]}))
        kind, sent = replies.get(timeout=120)
        path, done, body = replies.get(timeout=120)
        assert path.endswith("/response"), (path, body)
        polls.get(timeout=30)
        times.append(done - sent)
    peak = int([l for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmHWM")][0].split()[1]) / 1024
    peer.stop(proc)
    return statistics.median(times), peak


def big_output_rows(lines):
    if lines["off"] is None or lines["live"] is None:
        return "| 100 MB of short lines, logged live | n/a (this runtime has no SCAR_LOG_OUTPUT) | |\n"
    (off_s, off_rss), (live_s, live_rss) = lines["off"], lines["live"]
    return (f"| 100 MB of short lines, captured only (`SCAR_LOG_OUTPUT=off`) | {off_s:.2f} s, peak RSS {off_rss:.1f} MB | |\n"
            f"| 100 MB of short lines, logged live (the default) | {live_s:.2f} s, peak RSS {live_rss:.1f} MB | |\n"
            f"| live ÷ captured only | {live_s / off_s:.2f} × | ≤ 1.2 × |\n"
            f"| peak RSS, logged live | {live_rss:.1f} MB | ≤ 32 MB |\n")


def main():
    env = {"PATH": "/usr/bin:/bin", "AWS_LAMBDA_RUNTIME_API": peer.address, "AWS_LAMBDA_LOG_LEVEL": "error",
           "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_LAMBDA_FUNCTION_VERSION": "1",
           "SCAR_IMAGE": IMAGE, "SCAR_SHIM_DIR": SHIM_DIR, "SCAR_CACHE_DIR": CACHE}
    subprocess.run([BOOTSTRAP, "pull", "--cache-dir", CACHE, IMAGE], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start_polls = []
    for i in range(5):
        started = time.perf_counter()
        proc = subprocess.Popen([BOOTSTRAP], env=env)
        start_polls.append((polls.get(timeout=30) - started) * 1000)
        proc.kill(); proc.wait()
        events.put(("drain", {}))  # unblock the handler thread the killed runtime left waiting
    peer.forget()
    proc = subprocess.Popen([BOOTSTRAP], env=env)
    polls.get(timeout=30)
    warm = []
    for i in range(RUNS + 3):
        events.put((f"r{i}", {"cmd_args": ["/bin/true"]}))
        kind, sent = replies.get(timeout=60)
        path, done, body = replies.get(timeout=60)
        assert path.endswith("/response"), (path, body)
        assert json.loads(body)["exit_code"] == 0, body
        polls.get(timeout=30)
        if i >= 3:
            warm.append((done - sent) * 1000)
    time.sleep(0.5)
    rss = int([l for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
    peer.stop(proc)

    def wall(cmd, n):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out.append((time.perf_counter() - t) * 1000)
        return statistics.median(out)

    lines = {mode: big_output(env, mode) for mode in ("off", "live")}
    run_ms = wall([BOOTSTRAP, "run", "--cache-dir", CACHE, "--shim-dir", SHIM_DIR, IMAGE, "--", "/bin/true"], 20)
    native_ms = wall(["/bin/true"], RUNS)
    warm_ms = statistics.median(warm)
    table = f"""| measure | median | target |
|---|---:|---|
| start to first poll | {statistics.median(start_polls):.1f} ms | ≤ 20 ms |
| warm invoke of `true` (event out → response in) | {warm_ms:.1f} ms | |
| native `/bin/true` (spawn and wait) | {native_ms:.1f} ms | |
| runtime overhead over the command (warm − native) | {warm_ms - native_ms:.1f} ms | ≤ 5 ms |
| `bootstrap run IMAGE -- /bin/true` (whole process, warm cache) | {run_ms:.1f} ms | |
| idle RSS of the waiting runtime | {rss:.1f} MB | ≤ 20 MB |
{big_output_rows(lines)}
{RUNS} warm invocations after 3 warm-ups, 5 cold starts, 20 `bootstrap run`s; release build.
"""
    print(table)
    open(OUT, "w").write(table)


if __name__ == "__main__":
    main()
