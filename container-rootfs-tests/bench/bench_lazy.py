#!/usr/bin/env python3
"""bench_lazy.py BOOTSTRAP SHIM_DIR OUT_MD [RUNS] — lazy loading against the eager staged pull
(issue "Cold start II"), in one run: the scientific image (the harness's polyglot image and a
layer of SciPy, pandas, scikit-learn, Matplotlib and the compilers: 640 MB compressed, 1.9 GB
unpacked; BENCH_IMAGE=polyglot for the 815 MB one) staged by
`deployer stage` in the S3 stand-in (ministack) and mirrored to a local layout, then each
command run cold (a fresh cache each time) by `bootstrap run`:

  eager         SCAR_LAZY_LOAD=0: the whole tree is unpacked from the frames, then the command runs
  lazy          SCAR_LAZY_LOAD=1, SCAR_LAZY_TRACE=0: the tree from the skeletons, the command at
                once, files on demand, the rest in the layers' order
  lazy + trace  SCAR_LAZY_LOAD=1, SCAR_LAZY_TRACE=1, after one cold run of the same command
                stored its access trace beside the image (each command's trace is learnt
                afresh): the trace's files are fetched first, while the command starts

Commands: two that read a small part of the image (`import numpy`, `java -version`) and one
that reads all of it (tar of /usr, /etc, /var and /opt to /dev/null). Reports the time to the
command's first output byte and to its end (medians), and the peak RSS that /usr/bin/time
reports (largest run): the largest of bootstrap and the command, since bootstrap waits for it;
ratios are lazy ÷ eager from the same source, as only ratios within one run mean anything on
this machine. The tree's background fill is not waited for: `bootstrap run` ends with the
command, as an invocation's response does.

A third source needs no staging: the same image converted to eStargz (by stargz-snapshotter's
own code, scripts/build-estargz.sh, nothing prioritized) and pushed to the registry, pulled
eagerly (the blobs read as the gzip layers they are) or lazily (the TOCs, then ranged reads of
the registry); no trace is stored in a registry, so it has no `lazy + trace` row.
BENCH_SOURCES (comma-separated: s3, layout, estargz) narrows a run.

BENCH_LINK=25ms,70MB/s puts the S3 stand-in behind a link shaped like a Lambda function's
(link.py: each request answered that much later, the answers sharing that rate) for both
pulls; the other sources stay on loopback.

Where the cache is: BENCH_PLACES (comma-separated) among fresh-ext4 (as root: a new ext4
filesystem on a loop file for every run, as a new Lambda environment's /tmp is new; the
default as root, and where docs/limits.md asks a lazy tree to be), tmpfs (/dev/shm: the
default otherwise) and disk (this machine's /tmp).

A third table asks how far the skeleton itself is from the least it could cost: GNU tar
extracting the image's final tree as the skeleton makes it (directories, links, the files of
at most 1 KiB with their bytes, every larger file a hole of its real size, modes and times;
made once from an eager pull) onto the same place, against the lazy start's tree build
(`lazy tree built … ms=`, RUST_LOG=info) and the eager pull, each run of `bootstrap run …
-- /bin/true`. BENCH_TABLES (comma-separated: commands, skeleton) narrows a run.

A second table runs the same cold starts as Lambda does, through a Runtime API served here
(runtime_peer.py): `bootstrap` started with the image as SCAR_IMAGE (pulled in the init
phase, the default) and one event with the command; it reports the time from the process's
start to its first poll (the init phase) and to the event's response, and the runtime's own
peak RSS (its VmHWM, the command not included).
"""
import collections, json, os, queue, re, shutil, stat, statistics, subprocess, sys, tempfile, time

from link import ShapedLink, parse
from runtime_peer import RuntimeApiPeer
from staging import (AWS, FRESH_EXT4, REGISTRY, WORK, drop_filesystem, forget_traces, new_filesystem,
                     places, scientific, stage)

BOOTSTRAP, SHIM_DIR, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
RUNS = int(sys.argv[4]) if len(sys.argv) > 4 else 3
DEPLOYER = os.path.join(os.path.dirname(BOOTSTRAP), "deployer")
PLACES = places("fresh-ext4" if os.geteuid() == 0 else "tmpfs")
COMMANDS = [
    ("python3 -c 'import numpy'", ["python3", "-c", "import numpy; print(numpy.__version__)"]),
    ("java -version", ["sh", "-c", "java -version 2>&1"]),
    ("tar of the whole tree", ["sh", "-c", "tar -cf - /usr /etc /var /opt 2>/dev/null | wc -c"]),
]


MODES = ["eager", "lazy", "lazy + trace"]
LINK_SPEC = os.environ.get("BENCH_LINK")
LINK = ShapedLink(4566, *parse(LINK_SPEC)) if LINK_SPEC else None


def mode_env(cache, mode):
    aws = dict(AWS, AWS_ENDPOINT_URL=LINK.endpoint) if LINK else AWS
    return dict(aws, SCAR_CACHE_DIR=os.path.join(cache, "cache"), SCAR_SHIM_DIR=SHIM_DIR,
                SCAR_LAZY_LOAD="0" if mode == "eager" else "1",
                SCAR_LAZY_TRACE="1" if mode == "lazy + trace" else "0", RUST_LOG="warn")


def new_cache(place):
    """An empty directory for one cold start's cache at `place` (on a new filesystem there
    for fresh-ext4)."""
    if place == FRESH_EXT4:
        new_filesystem()
    return tempfile.mkdtemp(prefix="bench-lazy-", dir=place)


def cold_run(place, image, mode, argv):
    """One cold run; returns (seconds to the first output byte, to the end, peak RSS MB)."""
    cache = new_cache(place)
    stats = os.path.join(cache, "time.txt")
    env = mode_env(cache, mode)
    started = time.monotonic()
    child = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", stats, BOOTSTRAP, "run", image, "--"]
                             + argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = child.stdout.read(1)
    to_first = time.monotonic() - started
    rest = child.stdout.read()
    status = child.wait()
    to_end = time.monotonic() - started
    if status != 0 or not first:
        raise SystemExit(f"{argv} ({mode}) on {image}: exit {status}, output {first + rest!r}")
    rss = int(open(stats).read().split()[-1]) / 1024
    shutil.rmtree(cache, ignore_errors=True)
    return to_first, to_end, rss


def summary(runs):
    """Per mode: the medians of the two times and the largest RSS."""
    return {mode: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
                   max(r[2] for r in rs)) for mode, rs in runs.items()}


PEER = RuntimeApiPeer()


def cold_invoke(place, image, mode, argv):
    """One cold start through the Runtime API; returns (seconds to the first poll, to the
    response, the runtime's peak RSS MB)."""
    cache = new_cache(place)
    env = dict(mode_env(cache, mode), AWS_LAMBDA_RUNTIME_API=PEER.address, SCAR_IMAGE=image,
               AWS_LAMBDA_FUNCTION_NAME="bench-lazy", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="2048",
               AWS_LAMBDA_FUNCTION_VERSION="1", AWS_LAMBDA_LOG_LEVEL="error")
    # The runtime refuses SCAR_ variables it does not know; this one is the deployer's.
    env.pop("SCAR_DEPLOYER_CONFIG", None)
    PEER.forget()
    PEER.events.put((f"bench-{time.monotonic_ns()}", {"cmd_args": argv}))
    started = time.perf_counter()
    log = os.path.join(cache, "runtime.log")
    with open(log, "w") as stderr:
        proc = subprocess.Popen([BOOTSTRAP], env=env, stdout=subprocess.DEVNULL, stderr=stderr)

    def next_of(q):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                if proc.poll() is not None:
                    raise SystemExit(f"{argv} ({mode}) on {image}: the runtime exited "
                                     f"{proc.returncode}: {open(log).read()[-2000:]!r}")
        raise SystemExit(f"{argv} ({mode}) on {image}: no answer from the runtime in 300 s")

    try:
        polled = next_of(PEER.polls)
        next_of(PEER.replies)  # the event handed out
        path, done, body = next_of(PEER.replies)
        if not path.endswith("/response") or json.loads(body).get("exit_code") != 0:
            raise SystemExit(f"{argv} ({mode}) on {image} through the Runtime API: {path} {body[:500]!r}")
        # The next poll: the invocation is over as far as the runtime is concerned.
        next_of(PEER.polls)
        rss = int([l for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmHWM")][0].split()[1]) / 1024
    finally:
        PEER.stop(proc)
        shutil.rmtree(cache, ignore_errors=True)
    return polled - started, done - started, rss


def estargz(repo, layout, tag):
    """The harness's `layout:tag` as eStargz in the registry as `repo`; returns its reference."""
    here = os.path.dirname(os.path.abspath(__file__))
    converted = os.path.join(WORK, f"{layout}-estargz")
    subprocess.run([os.path.join(here, "../scripts/build-estargz.sh"), os.path.join(WORK, layout), tag,
                    converted], check=True)
    reference = f"{REGISTRY}/{repo}:latest"
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", "--preserve-digests",
                    f"oci:{converted}:{tag}", f"docker://{reference}"], check=True)
    return reference


# scar_image::skeleton::INLINE_BYTES: files this small travel inside the skeleton, bytes and all.
INLINE_BYTES = 1024


def copy_as_skeleton(src, dst, counts, first_name):
    """The tree at `src` made again at `dst` as a lazy start's skeleton makes it: every
    regular file over INLINE_BYTES a hole of its size, the rest as they are; `first_name` maps
    an inode to its first copy, for hard links."""
    os.mkdir(dst)
    for entry in os.scandir(src):
        there, here = entry.path, os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            copy_as_skeleton(there, here, counts, first_name)
            continue
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(there), here)
            counts["symlinks"] += 1
        elif not stat.S_ISREG(st.st_mode):
            counts["left out (devices, fifos, sockets)"] += 1
            continue
        elif st.st_ino in first_name:
            os.link(first_name[st.st_ino], here)
            counts["hard links"] += 1
            continue
        else:
            first_name[st.st_ino] = here
            if st.st_size <= INLINE_BYTES:
                shutil.copyfile(there, here)
                counts["files of at most 1 KiB"] += 1
            else:
                with open(here, "wb") as f:
                    f.truncate(st.st_size)
                counts["placeholders"] += 1
            os.chmod(here, stat.S_IMODE(st.st_mode))
        os.utime(here, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    st = os.stat(src)
    counts["directories"] += 1
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def skeleton_archive(image):
    """GNU tar's archive of `image`'s final tree as its skeleton makes it (from an eager pull
    on a tmpfs), on a tmpfs; returns (its path, what it holds)."""
    work = tempfile.mkdtemp(prefix="bench-skeleton-", dir="/dev/shm")
    pulled = subprocess.run([BOOTSTRAP, "pull", "--cache-dir", os.path.join(work, "cache"), image],
                            env=dict(AWS, SCAR_LAZY_LOAD="0"), check=True, capture_output=True, text=True)
    counts = collections.Counter()
    copy_as_skeleton(pulled.stdout.strip().splitlines()[-1], os.path.join(work, "tree"), counts, {})
    archive = "/dev/shm/bench-lazy-skeleton.tar"
    subprocess.run(["tar", "--sparse", "-cf", archive, "-C", os.path.join(work, "tree"), "."], check=True)
    shutil.rmtree(work)
    return archive, counts


def timed_start(place, image, mode):
    """One cold `bootstrap run IMAGE -- /bin/true`; returns (its seconds, the lazy tree's
    build in seconds as the runtime logs it, or None eagerly)."""
    cache = new_cache(place)
    env = dict(mode_env(cache, mode), RUST_LOG="scar_image=info")
    started = time.monotonic()
    done = subprocess.run([BOOTSTRAP, "run", image, "--", "/bin/true"], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"/bin/true ({mode}) on {image}: exit {done.returncode}: {done.stderr[-2000:]}")
    if mode == "eager":
        return seconds, None
    built = re.search(r"lazy tree built.*?\bms=(\d+)", done.stderr)
    if not built:
        raise SystemExit(f"/bin/true ({mode}) on {image}: no `lazy tree built` line in {done.stderr[-2000:]!r}")
    return seconds, int(built.group(1)) / 1000


def timed_extract(place, archive):
    """GNU tar extracting `archive` into a fresh cache directory at `place`; returns seconds."""
    cache = new_cache(place)
    started = time.monotonic()
    subprocess.run(["tar", "-xf", archive, "-C", cache, "--no-same-owner"], check=True)
    seconds = time.monotonic() - started
    shutil.rmtree(cache, ignore_errors=True)
    return seconds


def skeleton_table(sources):
    """The lazy start's tree against GNU tar making the same tree, and both against the eager pull."""
    archive, counts = skeleton_archive(sources[0][1])
    held = ", ".join(f"{n:,} {kind}" for kind, n in sorted(counts.items()))
    lines = [f"The skeleton against its floor: {RUNS} cold runs of each, round-robin after one warm-up, "
             f"medians; {os.cpu_count()} cores; the {IMAGE} image's final tree holds {held}.", "",
             "| image from | cache on | eager pull s | lazy start s | of it, tree built s "
             "| floor: GNU tar -x of the same tree s | tree built ÷ floor | floor ÷ eager pull | lazy start ÷ eager pull |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for source, image, _ in sources:
        for place_name, place in PLACES.items():
            eager, lazy, built, floor = [], [], [], []
            for run in range(RUNS + 1):
                e, _ = timed_start(place, image, "eager")
                l, b = timed_start(place, image, "lazy")
                f = timed_extract(place, archive)
                if run:
                    for kept, value in ((eager, e), (lazy, l), (built, b), (floor, f)):
                        kept.append(value)
            if place == FRESH_EXT4:
                drop_filesystem()
            e, l, b, f = (statistics.median(xs) for xs in (eager, lazy, built, floor))
            lines.append(f"| {source} | {place_name} | {e:.2f} | {l:.2f} | {b:.2f} | {f:.2f} | "
                         f"{b / f:.2f} | {f / e:.2f} | {l / e:.2f} |")
            print(lines[-1], flush=True)
    os.remove(archive)
    return "\n".join(lines)


def command_tables(sources):
    """The commands' cold starts, eager and lazy: by `bootstrap run`, and through the Runtime API."""
    lines = [f"{RUNS} cold runs of each, round-robin after one warm-up, medians; {os.cpu_count()} cores; "
             f"{IMAGE} image staged by `deployer stage` or converted to eStargz"
             + (f"; the S3 stand-in behind a link of {LINK_SPEC}." if LINK else "."), "",
             "| command | image from | cache on | pull | first output s | end s | peak RSS MB (largest process) | lazy ÷ eager (first output) | lazy ÷ eager (end) |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    peer_lines = ["Through the Runtime API: the image pulled in the init phase, then one event; "
                  "the same runs, medians.", "",
                  "| command | image from | cache on | pull | first poll s | response s | runtime's peak RSS MB | lazy ÷ eager (response) |",
                  "|---|---|---|---|---:|---:|---:|---:|"]
    for label, argv in COMMANDS:
        for source, image, modes in sources:
            for place_name, place in PLACES.items():
                runs = {mode: [] for mode in modes}
                invokes = {mode: [] for mode in modes}
                # The warm-up of `lazy + trace` is the cold start that learns this command's trace.
                if "lazy + trace" in modes:
                    forget_traces(image)
                for mode in runs:
                    cold_run(place, image, mode, argv)
                for _ in range(RUNS):
                    for mode in runs:
                        runs[mode].append(cold_run(place, image, mode, argv))
                        invokes[mode].append(cold_invoke(place, image, mode, argv))
                if place == FRESH_EXT4:
                    drop_filesystem()
                through_api = summary(invokes)
                for mode, (poll, response, rss) in through_api.items():
                    peer_lines.append(f"| {label} | {source} | {place_name} | {mode} | {poll:.2f} | {response:.2f} | "
                                      f"{rss:.0f} | {response / through_api['eager'][1]:.2f} |")
                print("\n".join(peer_lines[-len(modes):]), flush=True)
                medians = summary(runs)
                eager = medians["eager"]
                for mode, (first, end, rss) in medians.items():
                    lines.append(f"| {label} | {source} | {place_name} | {mode} | {first:.2f} | {end:.2f} | {rss:.0f} | "
                                 f"{first / eager[0]:.2f} | {end / eager[1]:.2f} |")
                print("\n".join(lines[-len(modes):]), flush=True)
    return "\n".join(lines) + "\n\n" + "\n".join(peer_lines)


WANTED = os.environ.get("BENCH_SOURCES", "s3,layout,estargz").split(",")
TABLES = os.environ.get("BENCH_TABLES", "commands,skeleton").split(",")
IMAGE = os.environ.get("BENCH_IMAGE", "scientific")
# The harness builds the polyglot image's layout; the scientific one is built here, once.
if IMAGE == "polyglot":
    REPO, LAYOUT, TAG = "library/polyglot", "oci-polyglot", "bookworm"
else:
    REPO, LAYOUT, TAG = scientific()
sources = []
if "s3" in WANTED or "layout" in WANTED:
    s3, layout = stage(DEPLOYER, REPO)
    sources += [(name, image, MODES) for key, name, image in
                [("s3", "S3 stand-in", s3), ("layout", "layout on disk", layout)] if key in WANTED]
if "estargz" in WANTED:
    sources.append(("eStargz in the registry", estargz(f"{REPO}-estargz", LAYOUT, TAG), ["eager", "lazy"]))
tables = []
if "commands" in TABLES:
    tables.append(command_tables(sources))
if "skeleton" in TABLES:
    tables.append(skeleton_table(sources))
table = "\n\n".join(tables)
print(table)
with open(OUT, "w") as f:
    f.write(table + "\n")
