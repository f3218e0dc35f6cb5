"""Images staged as `deployer stage` stages them, in the S3 stand-in (ministack on
127.0.0.1:4566) and mirrored to a local OCI layout, and the benchmarks' image of more than
1 GB: shared by bench_coldstart.py and bench_lazy.py."""
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
