#!/bin/bash
# build-derived-image.sh SRC_LAYOUT SRC_TAG OUT_LAYOUT TAG PACKAGES...
# An image built FROM another with one `RUN apt-get install PACKAGES` step, as a Dockerfile
# makes it: the source's layers kept byte for byte, the step's changes added as one more layer
# (umoci repack of the changed tree). Used by the benchmarks for an image of more than 1 GB
# unpacked whose last layer is a user's own. Needs root (chroot). A second call is a no-op.
set -euo pipefail
SRC=$1; SRC_TAG=$2; OUT=$3; TAG=$4; shift 4; PACKAGES="$*"
if [ -f "$OUT/index.json" ] && grep -q "\"$TAG\"" "$OUT/index.json"; then exit 0; fi
W=$(mktemp -d /tmp/derived.XXXXXX)
trap 'umount "$W/bundle/rootfs/proc" 2>/dev/null || true; rm -rf "$W"' EXIT
rm -rf "$OUT.partial"; cp -a "$SRC" "$OUT.partial"
umoci unpack --image "$OUT.partial:$SRC_TAG" "$W/bundle" > /dev/null
unshare --mount --propagation private sh -c "mount -t proc proc '$W/bundle/rootfs/proc' && chroot '$W/bundle/rootfs' sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES && apt-get clean && rm -rf /var/lib/apt/lists/*'" > "$W/apt.log" 2>&1 \
  || { grep -B3 -A12 -m3 'rror' "$W/apt.log" | head -60; tail -20 "$W/apt.log"; exit 1; }
umoci repack --image "$OUT.partial:$TAG" "$W/bundle" > /dev/null
umoci gc --layout "$OUT.partial"
rm -rf "$OUT"; mv "$OUT.partial" "$OUT"
