#!/bin/bash
# setup.sh : everything the container-rootfs tests stand on, on 127.0.0.1 only.
#   - Debian packages (registry, skopeo, umoci, debootstrap, musl, busybox, …)
#   - images built offline: test/glibc, test/musl (host binaries), debian bookworm with
#     perl, python3, cowsay and imagemagick (debootstrap)
#   - docker-registry instances: anonymous :5000, bearer-token :5010 (token server :5011,
#     user testuser:testpass), basic-auth :5012 (that user, and AWS with the token moto's
#     ECR gives account 123456789012; /etc/hosts gains 123456789012.dkr.ecr.us-east-1.amazonaws.com
#     for 127.0.0.1: the ECR stand-in), and the fault proxy :5013; the
#     AWS fault proxy :4567 in front of ministack (S3 and Lambda's Invoke)
#   - ministack on :4566 (S3, Lambda with a local Runtime API, API Gateway)
#   - moto server on :5001 (the AWS control plane the deployer drives: Lambda, S3, IAM,
#     CloudWatch Logs, API Gateway), with Lambda's Docker executor off
#   - the same images as OCI layouts, docker-archives (plain and gzipped), zstd and Docker
#     schema-2 pushes, a manifest list, and umoci reference unpacks
# Writes $CRT_WORK/env.sh. Idempotent: what exists is kept, running services are reused.
# CRT_ONLY=demo sets up only what `make demo` uses: the Debian image and the anonymous registry.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
W=${CRT_WORK:-/tmp/scar-crt}; mkdir -p "$W"; cd "$W"
export DEBIAN_FRONTEND=noninteractive

need=()
for pkg in docker-registry skopeo umoci debootstrap busybox-static musl-tools apache2-utils python3-cryptography openssl curl zstd bzip2 unzip make binutils qemu-user-static dpkg-dev python3-dev python3-pip python3-setuptools python3-wheel gcc locales libc-l10n \
           golang-go golang-github-klauspost-compress-dev golang-github-vbatts-tar-split-dev golang-golang-x-sync-dev golang-github-opencontainers-go-digest-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
PY=/usr/bin/python3

# Lambda runs functions as sbx_user1051 (uid 993); the shim tests run as the same uid.
id -u sbx_user1051 >/dev/null 2>&1 || useradd --system --uid 993 --user-group --no-create-home \
  --home-dir /nonexistent --shell /usr/sbin/nologin sbx_user1051

# arm64 under qemu-user: binfmt_misc hands aarch64 ELF files to qemu-aarch64-static. The F
# flag opens the emulator now, so it also serves programs inside chroots and rootfs trees.
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' > /proc/sys/fs/binfmt_misc/register

if [ "${CRT_ONLY:-}" = demo ]; then
  echo "setup: the demo's image and registry only"
  "$HERE/build-debian-image.sh" bookworm oci-debian bookworm perl python3 cowsay fortune-mod fortunes-min imagemagick
  chmod -R a+rX oci-debian
  if ! { [ -f registry-demo.pid ] && kill -0 "$(cat registry-demo.pid)" 2>/dev/null; } && ! curl -s -o /dev/null http://127.0.0.1:5000/; then
    mkdir -p reg
    printf 'version: 0.1\nstorage: {filesystem: {rootdirectory: %s/reg}, delete: {enabled: true}}\nhttp: {addr: "127.0.0.1:5000", secret: t}\n' "$W" > registry.yml
    docker-registry serve registry.yml > registry.log 2>&1 & echo $! > registry.pid
    for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:5000/ && break; sleep 0.1; done
  fi
  curl -s http://127.0.0.1:5000/v2/_catalog | grep -q '"library/debian-cowsay"' || \
    skopeo copy -q --dest-tls-verify=false oci:oci-debian:bookworm docker://127.0.0.1:5000/library/debian-cowsay:latest
  echo "setup: demo ready in $W"
  exit 0
fi

echo "setup: building images (in parallel; logs in $W/build-*.log)"
# Each build waits mostly on the mirror or on qemu, so they overlap; each writes its own layout.
build_pids=(); build_names=()
build() { # name command...
  local name=$1; shift
  "$@" > "$W/build-$name.log" 2>&1 & build_pids+=($!); build_names+=("$name")
}
[ -f oci-small/index.json ] || build small "$HERE/build-test-images.sh" oci-small
# Its eStargz twin, converted by stargz-snapshotter's own code, for the lazy eStargz tests.
build debian bash -c '"$0/build-debian-image.sh" bookworm oci-debian bookworm perl python3 cowsay fortune-mod fortunes-min imagemagick &&
  "$0/build-estargz.sh" oci-debian bookworm oci-debian-estargz usr/bin/perl,usr/games/cowsay &&
  "$0/build-estargz.sh" oci-debian bookworm oci-debian-zstdchunked usr/bin/perl,usr/games/cowsay zstdchunked' "$HERE"
# glibc 2.31: the stat ABI before 2.33 (__xstat), no --argv0 in its loader.
build bullseye "$HERE/build-debian-image.sh" bullseye oci-bullseye bullseye perl python3
# The examples' second image: FFmpeg and the AWS CLI.
build media "$HERE/build-debian-image.sh" bookworm oci-media bookworm ffmpeg awscli
# The language runtimes the shim must run as a chroot does (shim_matrix's polyglot cases).
build polyglot "$HERE/build-debian-image.sh" bookworm oci-polyglot bookworm nodejs lua5.4 php-cli ruby tcl perl \
  python3-numpy git sqlite3 file imagemagick xz-utils erlang-base elixir default-jre-headless r-base-core
# The arm64 pair: Debian bookworm arm64 (debootstrapped through qemu) and a small image
# made from its programs.
build arm64 bash -c 'ARCH=arm64 "$0/build-debian-image.sh" bookworm oci-debian-arm64 bookworm-arm64 python3 &&
  "$0/build-arm64-small.sh" oci-debian-arm64 bookworm-arm64 oci-small-arm64' "$HERE"
failed=0
for i in "${!build_pids[@]}"; do
  if ! wait "${build_pids[$i]}"; then
    echo "setup: building image ${build_names[$i]} failed:"; tail -30 "$W/build-${build_names[$i]}.log"; failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
chmod -R a+rX oci-small oci-debian oci-debian-estargz oci-debian-zstdchunked oci-bullseye oci-media oci-polyglot oci-debian-arm64 oci-small-arm64

start() { # name pidfile command...
  local name=$1 pidfile=$2; shift 2
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
  "$@" > "$W/$name.log" 2>&1 & echo $! > "$pidfile"
}
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "setup: $1 did not come up"; exit 1; }

mkdir -p reg tok
[ -f tok/token.key ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout tok/token.key -out tok/token.crt -days 30 -subj /CN=test-token-issuer 2>/dev/null
[ -f htpasswd ] || htpasswd -Bbn testuser testpass > htpasswd
# ECR stand-in: the basic-auth registry accepts the token moto's GetAuthorizationToken gives
# account 123456789012 (AWS:123456789012-auth-token), and that account's ECR host name leads
# to it.
grep -q '^AWS:' htpasswd || htpasswd -Bb htpasswd AWS 123456789012-auth-token 2>/dev/null
host=123456789012.dkr.ecr.us-east-1.amazonaws.com
grep -q " $host\$" /etc/hosts || echo "127.0.0.1 $host" >> /etc/hosts
storage="storage: {filesystem: {rootdirectory: $W/reg}, delete: {enabled: true}}"
printf 'version: 0.1\n%s\nhttp: {addr: "127.0.0.1:5000", secret: t}\n' "$storage" > registry.yml
printf 'version: 0.1\n%s\nhttp: {addr: "127.0.0.1:5010", secret: t}\nauth: {token: {realm: "http://127.0.0.1:5011/token", service: test-registry, issuer: test-issuer, rootcertbundle: %s}}\n' "$storage" "$W/tok/token.crt" > registry-token.yml
printf 'version: 0.1\n%s\nhttp: {addr: "127.0.0.1:5012", secret: t}\nauth: {htpasswd: {realm: test-registry, path: %s}}\n' "$storage" "$W/htpasswd" > registry-basic.yml
start registry registry.pid docker-registry serve registry.yml
start registry-token registry-token.pid docker-registry serve registry-token.yml
start registry-basic registry-basic.pid docker-registry serve registry-basic.yml
start token-server token-server.pid env USERS=testuser:testpass $PY "$HERE/token_server.py" tok/token.key tok/token.crt 5011
# A local apt repository of real Debian packages for the fake-root installs (tests/harness/fakeroot.rs):
# one with a shared library (jq, libjq1, libonig5), one whose postinst adds a user
# (uuid-runtime, with adduser and init-system-helpers), and hello. The host is the
# images' release (bookworm), so its apt downloads them.
if [ ! -f apt-repo/Packages ]; then
  rm -rf apt-repo && mkdir -p apt-repo
  ( cd apt-repo && { apt-get download hello jq libjq1 libonig5 uuid-runtime adduser init-system-helpers >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get download hello jq libjq1 libonig5 uuid-runtime adduser init-system-helpers >/dev/null 2>&1; }; } \
    && dpkg-scanpackages . /dev/null > Packages 2>/dev/null )
fi
# Init wrappers as images use them in their ENTRYPOINT (tests/harness/shim_run.rs): Debian's
# static builds of tini and catatonit, unpacked.
if [ ! -x init-wrappers/usr/bin/tini-static ]; then
  rm -rf init-wrappers && mkdir -p init-wrappers
  ( cd init-wrappers && { apt-get download tini catatonit >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get download tini catatonit >/dev/null 2>&1; }; } \
    && for deb in ./*.deb; do dpkg-deb -x "$deb" .; done && rm -f ./*.deb )
fi
# The pip install under fake root (tests/harness/fakeroot.rs): pip itself as a wheel (PyPI; the images
# have no pip, and a pip wheel runs as `python3 pip-*.whl/pip`) and a wheel with a C extension
# built here from fixtures/scarext by the host's Python, which is the images' (bookworm's 3.11).
if ! ls wheels/scarext-*.whl >/dev/null 2>&1; then
  rm -rf wheels scarext-src && mkdir -p wheels && cp -r "$HERE/../fixtures/scarext" scarext-src
  $PY -m pip download -q pip==24.0 --no-deps -d wheels
  $PY -m pip wheel -q --no-deps --no-build-isolation -w wheels ./scarext-src
  rm -rf scarext-src
fi
start apt-repo apt-repo.pid $PY -m http.server 5020 --bind 127.0.0.1 --directory "$W/apt-repo"
start fault-proxy fault-proxy.pid $PY "$HERE/fault_proxy.py" 5013 http://127.0.0.1:5000 "$W/fault-proxy.requests"
# ministack (PyPI): S3, Lambda (runs a provided.al2023 bootstrap as a local process with its
# own Runtime API), API Gateway, on :4566. Its own venv: it pins botocore.
[ -x venv-ms/bin/ministack ] || { python3 -m venv venv-ms && venv-ms/bin/pip install -q ministack==1.5.33; }
start ministack ministack.pid env BIND_HOST=127.0.0.1 GATEWAY_PORT=4566 "$W/venv-ms/bin/ministack"
# An AWS front on :4567: S3 throttles (slowdown-* buckets) or fails (broken-* buckets), Lambda's
# Invoke throttles (throttled-* functions).
start aws-fault-proxy aws-fault-proxy.pid $PY "$HERE/aws_fault_proxy.py" 4567 http://127.0.0.1:4566 "$W/aws-fault-proxy.requests"
# moto (PyPI): the control-plane state the deployer tests check through their own clients.
[ -x venv-moto/bin/moto_server ] || { python3 -m venv venv-moto && venv-moto/bin/pip install -q 'moto[server]==5.2.5'; }
start moto moto.pid "$W/venv-moto/bin/moto_server" -H 127.0.0.1 -p 5001
for port in 5000 5010 5012 5011 5013 5020 4566 4567 5001; do wait_http "http://127.0.0.1:$port/"; done
curl -sf -X POST -H 'Content-Type: application/json' -d '{"lambda":{"use_docker":false}}' \
  http://127.0.0.1:5001/moto-api/config >/dev/null

echo "setup: pushing"
push() { skopeo copy -q --dest-tls-verify=false "$@"; }
catalog=$(curl -s http://127.0.0.1:5000/v2/_catalog)
has() { grep -q "\"$1\"" <<<"$catalog"; }
has test/glibc || push oci:oci-small:glibc docker://127.0.0.1:5000/test/glibc:latest
has test/musl || push oci:oci-small:musl docker://127.0.0.1:5000/test/musl:latest
has test/glibc-v2s2 || push --format v2s2 oci:oci-small:glibc docker://127.0.0.1:5000/test/glibc-v2s2:latest
has library/debian-cowsay || push oci:oci-debian:bookworm docker://127.0.0.1:5000/library/debian-cowsay:latest
has library/debian-estargz || push --preserve-digests oci:oci-debian-estargz:bookworm docker://127.0.0.1:5000/library/debian-estargz:latest
has library/debian-zstdchunked || push --preserve-digests oci:oci-debian-zstdchunked:bookworm docker://127.0.0.1:5000/library/debian-zstdchunked:latest
has library/debian-bullseye || push oci:oci-bullseye:bullseye docker://127.0.0.1:5000/library/debian-bullseye:latest
has library/debian-media || push oci:oci-media:bookworm docker://127.0.0.1:5000/library/debian-media:latest
has library/polyglot || push oci:oci-polyglot:bookworm docker://127.0.0.1:5000/library/polyglot:latest
has library/debian-arm64 || push oci:oci-debian-arm64:bookworm-arm64 docker://127.0.0.1:5000/library/debian-arm64:latest
has test/glibc-arm64 || push oci:oci-small-arm64:glibc-arm64 docker://127.0.0.1:5000/test/glibc-arm64:latest
if ! has library/debian-cowsay-zstd; then
  # skopeo keeps a known gzip blob instead of recompressing unless the source is plain and
  # its blob-info cache forgets the gzip twin (shared/testinfra.md §6).
  rm -rf plain && skopeo copy -q --dest-decompress oci:oci-debian:bookworm dir:plain
  rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
  push --dest-compress-format zstd dir:plain docker://127.0.0.1:5000/library/debian-cowsay-zstd:latest
  rm -rf plain
fi
if ! has test/multi; then
  push oci:oci-small:glibc docker://127.0.0.1:5000/test/multi:amd64
  push oci:oci-small:musl docker://127.0.0.1:5000/test/multi:arm64
  accept='Accept: application/vnd.oci.image.manifest.v1+json'
  entry() { # tag arch variant
    local d s
    d=$(curl -sI -H "$accept" "http://127.0.0.1:5000/v2/test/multi/manifests/$1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
    s=$(curl -s -H "$accept" "http://127.0.0.1:5000/v2/test/multi/manifests/$1" | wc -c)
    printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"os":"linux","architecture":"%s"%s}}' "$d" "$s" "$2" "$3"
  }
  index=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s,%s]}' \
    "$(entry amd64 amd64 '')" "$(entry arm64 arm64 ',"variant":"v8"')")
  curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data "$index" \
    http://127.0.0.1:5000/v2/test/multi/manifests/latest >/dev/null
fi

echo "setup: archives and reference unpacks"
[ -f glibc.tar ] || push oci:oci-small:glibc docker-archive:glibc.tar:test/glibc:latest
[ -f glibc.tar.gz ] || gzip -1 -c glibc.tar > glibc.tar.gz
[ -f debian.tar.gz ] || { push oci:oci-debian:bookworm docker-archive:debian.tar:library/debian-cowsay:latest && gzip -1 debian.tar; }
mkdir -p ref
for spec in glibc:oci-small:glibc musl:oci-small:musl debian:oci-debian:bookworm bullseye:oci-bullseye:bullseye \
            debian-arm64:oci-debian-arm64:bookworm-arm64 glibc-arm64:oci-small-arm64:glibc-arm64; do
  IFS=: read -r name layout tag <<<"$spec"
  [ -d "ref/$name/rootfs" ] || umoci unpack --rootless --image "$layout:$tag" "ref/$name" >/dev/null 2>&1
  # Rootless umoci loosens some modes and fakes devices as empty files; a root unpack keeps
  # the image's exact modes and device nodes, the ground truth for those two properties.
  [ -d "ref-root/$name/rootfs" ] || umoci unpack --image "$layout:$tag" "ref-root/$name" >/dev/null 2>&1
  # The shim's ground truth: a root unpack used with a real chroot, with the mount points
  # a container runtime would add (the tests bind /proc, /dev and /sys there).
  if [ ! -d "chroot/$name/rootfs" ]; then
    umoci unpack --image "$layout:$tag" "chroot/$name" >/dev/null 2>&1
    mkdir -p "chroot/$name/rootfs/proc" "chroot/$name/rootfs/dev" "chroot/$name/rootfs/sys"
  fi
done
# The eStargz twin's reference: umoci reads its blobs as the gzip tars they are.
for dir in ref ref-root; do
  flag=--rootless; [ "$dir" = ref-root ] && flag=
  [ -d "$dir/debian-estargz/rootfs" ] || umoci unpack $flag --image oci-debian-estargz:bookworm "$dir/debian-estargz" >/dev/null 2>&1
done
# The polyglot image is only run under chroot (no reference unpack is compared with it).
if [ ! -d chroot/polyglot/rootfs ]; then
  umoci unpack --image oci-polyglot:bookworm chroot/polyglot >/dev/null 2>&1
  mkdir -p chroot/polyglot/rootfs/proc chroot/polyglot/rootfs/dev chroot/polyglot/rootfs/sys
fi
chmod -R a+rX "$W"

cat > env.sh <<ENV
export CRT_WORK=$W
export CRT_REGISTRY=127.0.0.1:5000
export CRT_TOKEN_REGISTRY=127.0.0.1:5010
export CRT_BASIC_REGISTRY=127.0.0.1:5012
export CRT_FAULT_PROXY=127.0.0.1:5013
ENV
echo "setup: ready in $W"
