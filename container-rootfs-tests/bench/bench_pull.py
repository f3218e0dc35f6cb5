#!/usr/bin/env python3
"""bench_pull.py BOOTSTRAP OUT_MD [RUNS] — pull + unpack of the Debian test image from the local
registry, side by side in one run with the baselines named in issue #2:

  ours          bootstrap pull (fresh cache each run)
  skopeo+umoci  skopeo copy docker://… oci:… && umoci unpack --rootless
  udocker       udocker pull + udocker create (PyPI udocker, the engine SCAR used)
  floor         each layer fetched by curl and piped through gzip -dc | tar -x

Prints a Markdown table (medians, ratios to ours, peak RSS) and the peak disk use of ours
relative to the unpacked size, and writes both to OUT_MD.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, threading, time, urllib.request

BOOTSTRAP, OUT = sys.argv[1], sys.argv[2]
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
REGISTRY, REPO, TAG = "127.0.0.1:5000", "library/debian-cowsay", "latest"
UDOCKER = os.environ.get("UDOCKER", "/tmp/scar-bench-venv/bin/udocker")
SCRATCH = tempfile.mkdtemp(prefix="bench-pull-", dir="/tmp")


def manifest():
    req = urllib.request.Request(f"http://{REGISTRY}/v2/{REPO}/manifests/{TAG}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    return json.load(urllib.request.urlopen(req))


def timed(cmd, env=None):
    """Runs cmd under GNU time; returns (seconds, peak RSS in MB of the measured process)."""
    stats = os.path.join(SCRATCH, "time.txt")
    start = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", stats] + cmd, check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    return elapsed, int(open(stats).read().split()[-1]) / 1024


def fresh(name):
    path = os.path.join(SCRATCH, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def ours():
    return timed([BOOTSTRAP, "pull", "--cache-dir", fresh("ours"), f"{REGISTRY}/{REPO}:{TAG}"])


def skopeo_umoci():
    d = fresh("skopeo")
    script = (f"skopeo copy -q --src-tls-verify=false docker://{REGISTRY}/{REPO}:{TAG} oci:{d}/layout:latest"
              f" && umoci unpack --rootless --image {d}/layout:latest {d}/bundle")
    return timed(["bash", "-c", script])


def udocker():
    d = fresh("udocker")
    env = dict(os.environ, UDOCKER_DIR=d)
    script = (f"{UDOCKER} --allow-root --insecure pull --registry=http://{REGISTRY} {REPO}:{TAG}"
              f" && {UDOCKER} --allow-root create --name=bench {REPO}:{TAG}")
    return timed(["bash", "-c", script], env=env)


def floor():
    d = fresh("floor")
    layers = [l["digest"] for l in manifest()["layers"]]
    script = " && ".join(f"curl -sf http://{REGISTRY}/v2/{REPO}/blobs/{l} | gzip -dc | tar -x -C {d} 2>/dev/null"
                         for l in layers)
    return timed(["bash", "-c", script])


def peak_disk_ratio():
    """Samples the cache size during one pull of ours: peak over final."""
    cache = fresh("disk")
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            out = subprocess.run(["du", "-sb", cache], capture_output=True, text=True).stdout.split()
            if out:
                peak[0] = max(peak[0], int(out[0]))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    subprocess.run([BOOTSTRAP, "pull", "--cache-dir", cache, f"{REGISTRY}/{REPO}:{TAG}"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done.set()
    sampler.join()
    final = int(subprocess.run(["du", "-sb", cache], capture_output=True, text=True).stdout.split()[0])
    return max(peak[0], final) / final, final


contenders = [("ours (bootstrap pull)", ours), ("skopeo copy + umoci unpack --rootless", skopeo_umoci),
              ("udocker pull + create", udocker), ("floor: curl \\| gzip -dc \\| tar -x", floor)]
runs = {name: [] for name, _ in contenders}
for _, fn in contenders:
    fn()  # warm-up: page cache, registry
# Round-robin, with the previous run's dirty pages flushed first, so that the machine's
# drift and one contender's writeback are not billed to another.
for _ in range(RUNS):
    for name, fn in contenders:
        subprocess.run(["sync"], check=True)
        runs[name].append(fn())
results = {name: (statistics.median(r[0] for r in rs), max(r[1] for r in rs)) for name, rs in runs.items()}
shutil.rmtree(SCRATCH, ignore_errors=True)
SCRATCH = tempfile.mkdtemp(prefix="bench-pull-", dir="/tmp")
disk_ratio, unpacked = peak_disk_ratio()
shutil.rmtree(SCRATCH, ignore_errors=True)

compressed = sum(l["size"] for l in manifest()["layers"])
ours_s = results["ours (bootstrap pull)"][0]
lines = [f"Image `{REPO}` from the local registry: {compressed / 1e6:.0f} MB compressed, "
         f"{unpacked / 1e6:.0f} MB unpacked; {RUNS} runs each after one warm-up, median wall time; "
         f"{os.cpu_count()} cores.", "",
         "| contender | median s | ours ÷ this | peak RSS MB |", "|---|---:|---:|---:|"]
for name, (median, rss) in results.items():
    lines.append(f"| {name} | {median:.2f} | {ours_s / median:.2f} | {rss:.0f} |")
lines += ["", f"Peak disk use of ours during a pull: {disk_ratio:.3f} × the unpacked size.",
          "RSS of the baselines is that of their largest process (a pipeline's stages are separate)."]
table = "\n".join(lines)
print(table)
with open(OUT, "w") as f:
    f.write(table + "\n")
