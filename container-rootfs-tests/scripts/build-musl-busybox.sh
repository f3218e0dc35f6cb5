#!/bin/bash
# build-musl-busybox.sh : prints the path of a busybox built against musl and linked
# dynamically (what Alpine ships), building it once from Debian's source tarball.
# The cache lives in $CRT_WORK/src. Needs musl-tools, bzip2, make and gcc.
set -euo pipefail
W=${CRT_WORK:-/tmp/scar-crt}/src; mkdir -p "$W"; cd "$W"
V=1.35.0
OUT=$W/busybox-$V-musl
if [ ! -x "$OUT" ]; then
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  [ -f busybox_$V.orig.tar.bz2 ] || curl -sfO "$MIRROR/pool/main/b/busybox/busybox_$V.orig.tar.bz2"
  rm -rf busybox-$V inc && tar xjf busybox_$V.orig.tar.bz2 && mkdir inc
  # musl-gcc sees only musl's headers; busybox also wants the kernel's.
  for d in linux asm-generic mtd; do ln -s /usr/include/$d inc/$d; done
  ln -s /usr/include/x86_64-linux-gnu/asm inc/asm
  ( cd busybox-$V && make -s defconfig >/dev/null \
      && sed -i 's/^CONFIG_TC=y/# CONFIG_TC is not set/' .config \
      && make -s -j"$(nproc)" CC="musl-gcc -isystem $W/inc" >build.log 2>&1 ) \
    || { tail -20 busybox-$V/build.log >&2; exit 1; }
  cp busybox-$V/busybox "$OUT"
  rm -rf busybox-$V inc
fi
echo "$OUT"
