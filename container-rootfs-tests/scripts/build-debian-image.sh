#!/bin/bash
# build-debian-image.sh SUITE OUT_LAYOUT TAG PACKAGES...
# A real Debian image made offline: debootstrap minbase + packages installed with apt inside
# a chroot, written as a one-layer OCI image layout with umoci, then a second layer with real
# whiteouts (files deleted from the first layer) so that whiteouts are exercised on a real image.
# Needs root (debootstrap, chroot). The finished layout is kept: a second call is a no-op.
# ARCH=arm64 builds a foreign image: debootstrap's second stage and apt then run under
# qemu-user through binfmt_misc (setup.sh registers it).
set -euo pipefail
SUITE=$1; OUT=$2; TAG=$3; shift 3; PACKAGES="$*"
if [ -f "$OUT/index.json" ] && grep -q "\"$TAG\"" "$OUT/index.json"; then exit 0; fi
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || echo http://deb.debian.org/debian)}
W=$(mktemp -d /tmp/debimg.XXXXXX); trap 'rm -rf "$W"' EXIT
ARCH=${ARCH:-$(dpkg --print-architecture)}
debootstrap --arch="$ARCH" --variant=minbase "$SUITE" "$W/rootfs" "$MIRROR" > "$W/debootstrap.log" 2>&1 \
  || { tail -20 "$W/debootstrap.log"; exit 1; }
if [ -n "$PACKAGES" ]; then
  # Java's postinst runs the JVM (it needs /proc) and links man pages into man1.
  mkdir -p "$W/rootfs/usr/share/man/man1"
  unshare --mount --propagation private sh -c "mount -t proc proc '$W/rootfs/proc' && chroot '$W/rootfs' sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES && apt-get clean && rm -rf /var/lib/apt/lists/*'" > "$W/apt.log" 2>&1 \
    || { grep -B3 -A12 -m3 'rror' "$W/apt.log" | head -60; tail -20 "$W/apt.log"; exit 1; }
fi
mkdir -p "$(dirname "$OUT")"
[ -f "$OUT/index.json" ] || umoci init --layout "$OUT"
umoci new --image "$OUT:$TAG-base"
umoci insert --image "$OUT:$TAG-base" "$W/rootfs" / > /dev/null
umoci config --image "$OUT:$TAG-base" --architecture "$ARCH" --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games \
  --config.env LANG=C.UTF-8 --config.cmd /bin/sh --config.workingdir /
# Layer 2: delete documentation (real whiteouts, some under an opaque-free tree) and add a file.
umoci unpack --rootless --image "$OUT:$TAG-base" "$W/bundle" > /dev/null
rm -rf "$W/bundle/rootfs/usr/share/doc/"* "$W/bundle/rootfs/usr/share/man"
echo "built offline by container-rootfs-tests" > "$W/bundle/rootfs/etc/scar-test-image"
umoci repack --image "$OUT:$TAG" "$W/bundle" > /dev/null
umoci gc --layout "$OUT"
