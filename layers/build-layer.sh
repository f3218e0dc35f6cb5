#!/bin/bash
# build-layer.sh ARCH : the Lambda layer for ARCH (x86_64 or arm64), cross-built with
# cargo-zigbuild (zig from PyPI) only:
#   bootstrap                      static, musl, profile `layer`
#   lib/scar-fakechroot-glibc.so   glibc symbol versions <= GLIBC_2.17
#   lib/scar-fakechroot-musl.so    for musl images (Alpine and friends)
# zipped by `deployer layer build` into target/layer/scar-layer-ARCH.zip; fails above 10 MB.
# LAYER_PROFILE=layer-test builds the same code faster for the test suite (no size budget)
# and stops at the staged folder, which the suite runs: zipping it here would cost a `cargo
# run` of the deployer, a debug build with other features than the suite's own.
set -euo pipefail
ARCH=$1
case "$ARCH" in
  x86_64) RUST_ARCH=x86_64 ;;
  arm64) RUST_ARCH=aarch64 ;;
  *) echo "build-layer.sh: ARCH is x86_64 or arm64, not $ARCH" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
PROFILE=${LAYER_PROFILE:-layer}
LIMIT=$((10 * 1024 * 1024))
OUT=target/layer
STAGE=$OUT/$ARCH
mkdir -p "$STAGE/lib"
# The static bootstrap has a target dir of its own: the musl shim's RUSTFLAGS differ, and
# sharing one dir would rebuild every crate each time the two alternate.
CARGO_TARGET_DIR=target/layer-build cargo zigbuild -q -p bootstrap --profile "$PROFILE" --target "$RUST_ARCH-unknown-linux-musl"
cp "target/layer-build/$RUST_ARCH-unknown-linux-musl/$PROFILE/bootstrap" "$STAGE/bootstrap"
# Static means no program interpreter: it must start on provided.al2 and al2023 alike.
if readelf -l "$STAGE/bootstrap" | grep -q INTERP; then
  echo "build-layer.sh: $STAGE/bootstrap is dynamically linked" >&2; exit 1
fi
cargo zigbuild -q -p scar-fakechroot --release --target "$RUST_ARCH-unknown-linux-gnu.2.17"
cp "target/$RUST_ARCH-unknown-linux-gnu/release/libscar_fakechroot.so" "$STAGE/lib/scar-fakechroot-glibc.so"
RUSTFLAGS="-C target-feature=-crt-static" cargo zigbuild -q -p scar-fakechroot --release --target "$RUST_ARCH-unknown-linux-musl"
cp "target/$RUST_ARCH-unknown-linux-musl/release/libscar_fakechroot.so" "$STAGE/lib/scar-fakechroot-musl.so"
[ "$PROFILE" = layer-test ] && exit 0
cargo run -q -p deployer -- layer build --arch "$ARCH" --bootstrap "$STAGE/bootstrap" --shim-dir "$STAGE/lib" \
  --output "$OUT/scar-layer-$ARCH.zip"
SIZE=$(stat -c %s "$OUT/scar-layer-$ARCH.zip")
if [ "$PROFILE" = layer ] && [ "$SIZE" -gt "$LIMIT" ]; then
  echo "build-layer.sh: $OUT/scar-layer-$ARCH.zip is $SIZE bytes, over the 10 MB budget" >&2
  exit 1
fi
