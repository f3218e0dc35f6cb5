#!/usr/bin/env python3
"""mkimage.py OUT_LAYOUT TAG LAYERDIR... : one gzip layer per LAYERDIR, in an OCI image layout.

ARCH sets the config's architecture (amd64), STOP_SIGNAL its StopSignal (none), IMAGE_USER
its User (none), IMAGE_HOME a HOME in its Env (none).

Entries are root-owned with mtime 0 and sorted, so the same input gives the same digests.
Names ending in `.wh.*` are written as the whiteout entries they are.
"""
import gzip, hashlib, io, json, os, sys, tarfile

out, tag, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)


def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{digest}", "wb") as f:
        f.write(data)
    return "sha256:" + digest


def normalise(info):
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


layers, diff_ids = [], []
for root in dirs:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                tar.add(path, os.path.relpath(path, root), recursive=False, filter=normalise)
    raw = raw.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    compressed = gzip.compress(raw, mtime=0)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": put(compressed), "size": len(compressed)})

container = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
             "Cmd": ["/bin/sh"], "WorkingDir": "/"}
if os.environ.get("STOP_SIGNAL"):
    container["StopSignal"] = os.environ["STOP_SIGNAL"]
if os.environ.get("IMAGE_HOME"):
    container["Env"].append("HOME=" + os.environ["IMAGE_HOME"])
if os.environ.get("IMAGE_USER"):
    container["User"] = os.environ["IMAGE_USER"]
config = json.dumps({
    "architecture": os.environ.get("ARCH", "amd64"), "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
    "config": container}).encode()
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
    "layers": layers}).encode()
index_path = f"{out}/index.json"
index = json.load(open(index_path)) if os.path.exists(index_path) else {"schemaVersion": 2, "manifests": []}
index["manifests"] = [m for m in index["manifests"]
                      if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
                           "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag}})
json.dump(index, open(index_path, "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(f"{out}/oci-layout", "w"))
