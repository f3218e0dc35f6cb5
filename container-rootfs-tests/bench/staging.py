"""Images staged as `deployer stage` stages them, in the S3 stand-in (ministack on
127.0.0.1:4566) and mirrored to a local OCI layout, and the benchmarks' image of more than
1 GB, and the places a cold start's cache is timed on: shared by bench_coldstart.py and
bench_lazy.py."""
import json, os, shutil, subprocess, urllib.request

WORK = os.environ.get("CRT_WORK", "/tmp/scar-crt")
REGISTRY = "127.0.0.1:5000"
STAGED_BUCKET = "bench-coldstart-staged"
AWS = dict(os.environ, AWS_ENDPOINT_URL="http://127.0.0.1:4566", AWS_ACCESS_KEY_ID="testing",
           AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
           SCAR_DEPLOYER_CONFIG=os.path.join(WORK, "bench-deployer.toml"))

MIRROR = """
import os, sys, boto3
bucket, prefix = sys.argv[1][len("s3://"):].split("/", 1)
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for item in page.get("Contents", []):
        path = os.path.join(sys.argv[2], item["Key"][len(prefix):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(bucket, item["Key"], path)
"""


# A new Lambda environment's /tmp is a new ext4 filesystem; as root, the benchmarks make one
# for every run on a loop file (inode tables written at mkfs time, so that no background
# initialisation runs during the timed run).
FRESH_EXT4 = "/mnt/scar-bench-fresh-ext4"
FRESH_EXT4_FILE = "/var/tmp/scar-bench-fresh-ext4.img"
PLACES = {"disk": "/tmp", "tmpfs": "/dev/shm", "fresh-ext4": FRESH_EXT4}


def places(default):
    """The places BENCH_PLACES names (comma-separated; `default` when unset), name → path;
    fresh-ext4 only as root."""
    names = os.environ.get("BENCH_PLACES", default).split(",")
    unknown = [n for n in names if n not in PLACES]
    if unknown:
        raise SystemExit(f"BENCH_PLACES: unknown place {unknown} (known: {', '.join(PLACES)})")
    if "fresh-ext4" in names and os.geteuid() != 0:
        raise SystemExit("BENCH_PLACES: fresh-ext4 needs root (it mounts a loop file)")
    return {name: PLACES[name] for name in names}


def new_filesystem():
    """A new, empty ext4 at FRESH_EXT4 (the old one unmounted)."""
    drop_filesystem()
    subprocess.run(["truncate", "-s", "8G", FRESH_EXT4_FILE], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                    FRESH_EXT4_FILE], check=True)
    os.makedirs(FRESH_EXT4, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", FRESH_EXT4_FILE, FRESH_EXT4], check=True)


def drop_filesystem():
    """FRESH_EXT4 unmounted and its file removed, if they are there."""
    if os.path.ismount(FRESH_EXT4):
        subprocess.run(["umount", FRESH_EXT4], check=True)
    if os.path.exists(FRESH_EXT4_FILE):
        os.remove(FRESH_EXT4_FILE)


HERE = os.path.dirname(os.path.abspath(__file__))
# What a scientific user adds to the polyglot image in one `RUN apt-get install` step: SciPy
# (with pythran, which brings Boost's headers), pandas, scikit-learn, Matplotlib and the GNU
# compilers. The image is 1.9 GB unpacked (the issues' benchmarks ask for at least 1 GB).
SCIENTIFIC_PACKAGES = ["python3-scipy", "python3-pandas", "python3-sklearn", "python3-matplotlib",
                       "gcc", "g++", "gfortran"]


def pushed(repo):
    """Whether the local registry holds `repo:latest`."""
    req = urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/latest", method="HEAD",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    try:
        urllib.request.urlopen(req)
        return True
    except OSError:
        return False


def scientific():
    """The harness's polyglot image plus one layer of SciPy, pandas, scikit-learn, Matplotlib
    and the compilers, built once (scripts/build-derived-image.sh) and pushed to the local
    registry; returns (its repository, its layout's name under WORK, its tag)."""
    repo, layout, tag = "library/scientific", "oci-scientific", "latest"
    if not pushed(repo):
        subprocess.run([os.path.join(HERE, "../scripts/build-derived-image.sh"),
                        os.path.join(WORK, "oci-polyglot"), "bookworm", os.path.join(WORK, layout), tag]
                       + SCIENTIFIC_PACKAGES, check=True)
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", "--preserve-digests",
                        f"oci:{os.path.join(WORK, layout)}:{tag}", f"docker://{REGISTRY}/{repo}:{tag}"],
                       check=True)
    return repo, layout, tag


def stage(deployer, repo):
    """Stages the registry's `repo` in the S3 stand-in with `deployer`, and mirrors the staged
    layout to a local directory; returns (the s3:// reference, the oci: reference)."""
    name = repo.split("/")[-1]
    out = subprocess.run([deployer, "stage", "-i", f"{REGISTRY}/{repo}:latest", "-db", STAGED_BUCKET,
                          "-n", name, "--json"], env=AWS, check=True, capture_output=True, text=True)
    reference = json.loads(out.stdout)["reference"]
    local = os.path.join(WORK, f"bench-framed-{name}")
    shutil.rmtree(local, ignore_errors=True)
    subprocess.run([os.path.join(WORK, "venv-moto/bin/python"), "-c", MIRROR, reference, local],
                   env=AWS, check=True)
    return reference, f"oci:{local}"


FORGET = """
import os, sys, boto3
bucket, prefix = sys.argv[1][len("s3://"):].split("/", 1)
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "scar/"):
    for item in page.get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=item["Key"])
"""


def forget_traces(reference):
    """Removes the access traces stored beside a staged image (`scar/` in its layout)."""
    if reference.startswith("oci:"):
        shutil.rmtree(os.path.join(reference[len("oci:"):], "scar"), ignore_errors=True)
    else:
        subprocess.run([os.path.join(WORK, "venv-moto/bin/python"), "-c", FORGET, reference],
                       env=AWS, check=True)
