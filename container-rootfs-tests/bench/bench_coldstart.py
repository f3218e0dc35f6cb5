#!/usr/bin/env python3
"""bench_coldstart.py BOOTSTRAP OUT_MD [RUNS] — the eager pull of issue #13, image by image,
with the cache on the disk and on a tmpfs, side by side in one run:

  ours          bootstrap pull (fresh cache each run)
  ours, staged  bootstrap pull s3://… of the image as `deployer stage` puts it in the S3
                stand-in (ministack on 127.0.0.1:4566): zstd frames fetched with parallel
                ranged GETs and decompressed on every core. Not moto: it answers a ranged GET
                of a large object slowly enough to measure nothing else (polyglot: 52 s)
  ours, framed layout  the same frames from a layout on the local disk (no HTTP): what the
                decoding costs without the S3 stand-in's own CPU
  ours before   the registry pull and the framed layout with BASELINE_BOOTSTRAP, when set (a
                build of an earlier commit)
  skopeo+umoci  skopeo copy docker://… oci:… && umoci unpack --rootless
  udocker       udocker pull + udocker create (PyPI udocker, the engine SCAR used)
  floor         each layer in turn: curl | gzip -dc | tar -x

Images from the local registry: debian-cowsay (one big layer and a whiteout layer),
polyglot (the same shape, 815 MB unpacked) and layered: the polyglot tree cut into four
layers of 130–250 MB (base, glibc libraries, the JVM, the Python/R/Erlang libraries), the
shape of an image built FROM a base with a few RUN steps. The script builds and pushes it
once (from the harness's polyglot chroot). scientific: the polyglot image and one more layer
(SciPy, pandas, scikit-learn, Matplotlib, the GNU compilers; 1.9 GB unpacked), built once by
staging.scientific().

Places: disk (/tmp on this machine's ext4), tmpfs (/dev/shm) and, as root, fresh-ext4: a new
ext4 filesystem (on a loop file) made and mounted for every run, as a new Lambda
environment's /tmp is new. On the shared disk, ext4's inode allocator skips the inodes
deleted in the last minutes (`recently_deleted()` in its `find_inode_bit()`, seen by `perf`):
right after an earlier run's tree was removed, every file costs ten times the system time, so
the disk rows depend on what ran before; the fresh-ext4 rows do not.

Reports wall, user and system time (medians) and peak RSS; ratios are to the floor, as only
ratios within one run mean anything on this machine. BENCH_IMAGES (comma-separated names),
BENCH_PLACES (disk, tmpfs, fresh-ext4) and BENCH_ONLY (a part of the contenders' names) narrow
a run.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, urllib.request

from staging import (AWS, FRESH_EXT4, REGISTRY, WORK, drop_filesystem, new_filesystem, places,
                     pushed, scientific, stage)

BOOTSTRAP, OUT = sys.argv[1], sys.argv[2]
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
BASELINE = os.environ.get("BASELINE_BOOTSTRAP")
UDOCKER = os.environ.get("UDOCKER", "/tmp/scar-bench-venv/bin/udocker")
HERE = os.path.dirname(os.path.abspath(__file__))
# BENCH_IMAGES=debian-cowsay,layered and BENCH_PLACES=tmpfs narrow a run.
IMAGES = [f"library/{name}" for name in
          os.environ.get("BENCH_IMAGES", "debian-cowsay,polyglot,layered,scientific").split(",")]
PLACES = places("disk,tmpfs,fresh-ext4" if os.geteuid() == 0 else "disk,tmpfs")
DEPLOYER = os.path.join(os.path.dirname(BOOTSTRAP), "deployer")
FLOOR = "floor: curl \\| gzip -dc \\| tar -x"

def manifest(repo):
    req = urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/latest",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    return json.load(urllib.request.urlopen(req))


def build_layered():
    """Four layers cut from the polyglot tree (hard-linked copies, then mkimage.py)."""
    rootfs = os.path.join(WORK, "chroot/polyglot/rootfs")
    split = tempfile.mkdtemp(prefix="layered-", dir=WORK)
    lib = "usr/lib"
    cuts = {"glibc-libs": [f"{lib}/x86_64-linux-gnu"], "jvm": [f"{lib}/jvm"],
            "languages": [f"{lib}/python3", f"{lib}/python3.11", f"{lib}/R", f"{lib}/erlang"]}
    base = os.path.join(split, "base")
    subprocess.run(["cp", "-al", rootfs, base], check=True)
    for name, paths in cuts.items():
        for path in paths:
            target = os.path.join(split, name, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(os.path.join(base, path), target)
    layout = os.path.join(WORK, "oci-layered")
    subprocess.run([sys.executable, os.path.join(HERE, "../scripts/mkimage.py"), layout, "latest", base]
                   + [os.path.join(split, name) for name in cuts], check=True)
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:latest",
                    f"docker://{REGISTRY}/library/layered:latest"], check=True)
    shutil.rmtree(split)


def timed(cmd, place, env=None):
    """Runs cmd under GNU time; returns (wall, user, system seconds, peak RSS MB)."""
    stats = os.path.join(place, "bench-coldstart-time.txt")
    subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", stats] + cmd, check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, user, system, rss = open(stats).read().split()[-4:]
    return float(wall), float(user), float(system), int(rss) / 1024


def fresh(place, name):
    if place == FRESH_EXT4:
        new_filesystem()
    path = os.path.join(place, "bench-coldstart", name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def ours(binary):
    return lambda repo, place: timed([binary, "pull", "--cache-dir", fresh(place, "ours"),
                                      f"{REGISTRY}/{repo}:latest"], place)


def ours_staged(which, binary=BOOTSTRAP):
    """which: 0 for the S3 stand-in, 1 for the local framed layout."""
    return lambda repo, place: timed([binary, "pull", "--cache-dir", fresh(place, "staged"),
                                      STAGED[repo][which]], place, env=AWS)


def skopeo_umoci(repo, place):
    d = fresh(place, "skopeo")
    script = (f"skopeo copy -q --src-tls-verify=false docker://{REGISTRY}/{repo}:latest oci:{d}/layout:latest"
              f" && umoci unpack --rootless --image {d}/layout:latest {d}/bundle")
    return timed(["bash", "-c", script], place)


def udocker(repo, place):
    d = fresh(place, "udocker")
    script = (f"{UDOCKER} --allow-root --insecure pull --registry=http://{REGISTRY} {repo}:latest"
              f" && {UDOCKER} --allow-root create --name=bench {repo}:latest")
    return timed(["bash", "-c", script], place, env=dict(os.environ, UDOCKER_DIR=d))


def floor(repo, place):
    d = fresh(place, "floor")
    script = " && ".join(f"curl -sf http://{REGISTRY}/v2/{repo}/blobs/{l['digest']} | gzip -dc | tar -x -C {d} 2>/dev/null"
                         for l in manifest(repo)["layers"])
    return timed(["bash", "-c", script], place)


if "library/layered" in IMAGES and not pushed("library/layered"):
    build_layered()
if "library/scientific" in IMAGES:
    scientific()
STAGED = {repo: stage(DEPLOYER, repo) for repo in IMAGES}
contenders = [("ours", ours(BOOTSTRAP)), ("ours, staged in S3 (frames)", ours_staged(0)),
              ("ours, framed layout on disk", ours_staged(1))]
if BASELINE:
    contenders += [("ours before", ours(BASELINE)),
                   ("ours before, framed layout on disk", ours_staged(1, BASELINE))]
contenders += [("skopeo + umoci", skopeo_umoci), ("udocker pull + create", udocker), (FLOOR, floor)]
# BENCH_ONLY=ours narrows the contenders to those whose name holds it (the floor always runs).
contenders = [(name, fn) for name, fn in contenders
              if os.environ.get("BENCH_ONLY", "") in name or name == FLOOR]

lines = [f"{RUNS} runs of each contender per image and place, round-robin after one warm-up, "
         f"medians; {os.cpu_count()} cores; peak RSS is the largest process's.", "",
         "| image | cache on | contender | wall s | user s | sys s | ÷ floor (wall) | peak RSS MB |",
         "|---|---|---|---:|---:|---:|---:|---:|"]
for repo in IMAGES:
    layers = manifest(repo)["layers"]
    label = f"{repo.split('/')[-1]} ({len(layers)} layers, {sum(l['size'] for l in layers) / 1e6:.0f} MB gz)"
    for place_name, place in PLACES.items():
        runs = {name: [] for name, _ in contenders}
        for _, fn in contenders:
            fn(repo, place)
        for _ in range(RUNS):
            for name, fn in contenders:
                subprocess.run(["sync"], check=True)
                runs[name].append(fn(repo, place))
        shutil.rmtree(os.path.join(place, "bench-coldstart"), ignore_errors=True)
        if place == FRESH_EXT4:
            drop_filesystem()
        medians = {name: [statistics.median(r[i] for r in rs) for i in range(3)] + [max(r[3] for r in rs)]
                   for name, rs in runs.items()}
        floor_wall = medians[FLOOR][0]
        for name, (wall, user, system, rss) in medians.items():
            lines.append(f"| {label} | {place_name} | {name} | {wall:.2f} | {user:.2f} | {system:.2f} | "
                         f"{wall / floor_wall:.2f} | {rss:.0f} |")
        print(lines[-len(contenders):] and "\n".join(lines[-len(contenders):]), flush=True)
table = "\n".join(lines)
print(table)
with open(OUT, "w") as f:
    f.write(table + "\n")
