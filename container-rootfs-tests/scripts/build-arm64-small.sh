#!/bin/bash
# build-arm64-small.sh DEBIAN_ARM64_LAYOUT TAG OUT_LAYOUT : the small glibc test image for
# arm64, made like build-test-images.sh's from a few programs and exactly the libraries they
# need (the NEEDED closure, read with readelf since ldd cannot inspect foreign binaries),
# taken from the Debian arm64 rootfs.
set -euo pipefail
SRC=$1; TAG=$2; OUT=$3; HERE=$(cd "$(dirname "$0")" && pwd)
if [ -f "$OUT/index.json" ] && grep -q '"glibc-arm64"' "$OUT/index.json"; then exit 0; fi
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
umoci unpack --rootless --image "$SRC:$TAG" "$W/deb" >/dev/null
R=$W/deb/rootfs; L=$W/l1
mkdir -p $L/etc $L/tmp $L/root $L/usr/bin
LIBDIR=usr/lib/aarch64-linux-gnu
copy_with_libs() {
  local rel=$1
  [ -e "$L/$rel" ] && return
  install -D "$(readlink -f "$R/$rel")" "$L/$rel"
  for lib in $(readelf -d "$R/$rel" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    copy_with_libs "$LIBDIR/$lib"
  done
}
for b in bin/dash bin/bash bin/ls bin/cat bin/echo usr/bin/env bin/uname bin/rm bin/mkdir usr/bin/id \
         bin/pwd usr/bin/find usr/bin/du usr/bin/readlink usr/bin/realpath bin/sed usr/bin/wc bin/true \
         usr/bin/seq usr/bin/whoami usr/bin/stat bin/ln bin/touch bin/cp bin/mv usr/bin/head bin/grep \
         bin/df usr/bin/tr usr/bin/xargs usr/bin/sort usr/bin/mktemp bin/tar usr/bin/printf bin/sleep bin/chmod; do
  copy_with_libs "$b"
done
install -D "$(readlink -f "$R/lib/ld-linux-aarch64.so.1")" "$L/lib/ld-linux-aarch64.so.1"
# glibc's compatibility stubs, which every glibc package ships (the shim, built against
# glibc 2.17, needs them; on glibc >= 2.34 they are empty).
copy_with_libs "$LIBDIR/libpthread.so.0"
copy_with_libs "$LIBDIR/libdl.so.2"
ln -s dash $L/bin/sh
chmod 1777 $L/tmp
printf 'NAME="glibc arm64 test"\nID=glibctest\nVERSION_ID=1\n' > $L/etc/os-release
echo 'root:x:0:0:root:/root:/bin/sh' > $L/etc/passwd
echo 'root:x:0:' > $L/etc/group
ARCH=arm64 python3 "$HERE/mkimage.py" "$OUT" glibc-arm64 $L
