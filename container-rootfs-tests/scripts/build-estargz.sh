#!/bin/bash
# build-estargz.sh SRC_LAYOUT TAG DST_LAYOUT [PRIORITIZED] [FORMAT] : the image SRC_LAYOUT:TAG
# converted to eStargz (FORMAT estargz, the default) or zstd:chunked (FORMAT zstdchunked) by
# the stargz-snapshotter project's own estargz package (tools/estargz), as `ctr-remote image
# optimize` converts one: 256 KiB chunks (large files cut in several), and the comma-separated
# PRIORITIZED files first (before the prefetch landmark).
# Needs golang-go and the package's Debian sources (setup.sh installs them). Idempotent.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$1 TAG=$2 DST=$3 PRIORITIZED=${4:-} FORMAT=${5:-estargz}
W=${CRT_WORK:-/tmp/scar-crt}
[ -f "$DST/index.json" ] && exit 0
# Debian's -dev package depends on containerd's whole tree; the estargz package needs only its
# own sources and the few libraries setup.sh installs, so its .deb is unpacked, not installed.
GOSRC=$W/stargz-src
if [ ! -d "$GOSRC/usr/share/gocode/src/github.com/containerd/stargz-snapshotter/estargz" ]; then
  rm -rf "$GOSRC" && mkdir -p "$GOSRC"
  (cd "$GOSRC" && apt-get download -q golang-github-containerd-stargz-snapshotter-dev >/dev/null &&
    dpkg -x golang-github-containerd-stargz-snapshotter-dev_*.deb .)
fi
if [ ! -x "$W/estargz-convert" ]; then
  GO111MODULE=off GOPATH="$GOSRC/usr/share/gocode:/usr/share/gocode" GOCACHE="$W/gocache" \
    go build -o "$W/estargz-convert" "$HERE/../tools/estargz/main.go"
fi
rm -rf "$DST.part"
"$W/estargz-convert" -src "$SRC" -tag "$TAG" -dst "$DST.part" -chunk-size 262144 -level 1 \
  ${PRIORITIZED:+-prioritize "$PRIORITIZED"} $([ "$FORMAT" = zstdchunked ] && echo -zstdchunked)
mv "$DST.part" "$DST"
