#!/bin/bash
# build-test-images.sh OUT_LAYOUT : small images made from this machine's own binaries.
#   glibc: layer 1 = dash, bash, coreutils and friends with their libraries and loader;
#          layer 2 = a file, a hard link, a symlink, a whiteout and an opaque directory.
#   musl:  an Alpine-like image: busybox built against musl (dynamic, every applet an
#          absolute symlink to /bin/busybox), a musl-gcc "hello", the musl loader, and
#          busybox-static as /bin/busybox.static (a static program).
set -euo pipefail
OUT=$1; HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
L1=$W/g1; L2=$W/g2; M=$W/m1
mkdir -p $L1/etc $L1/tmp $L1/root $L1/opt/data $L1/usr/bin $L2/etc $L2/opt/data $M/bin $M/lib $M/usr/bin $M/etc $M/tmp
for b in /bin/dash /bin/bash /bin/ls /bin/cat /bin/echo /usr/bin/env /bin/uname /bin/rm /bin/mkdir /usr/bin/id \
         /bin/pwd /usr/bin/find /usr/bin/du /usr/bin/readlink /usr/bin/realpath /bin/sed /usr/bin/wc /bin/true \
         /usr/bin/seq /usr/bin/whoami /usr/bin/stat /bin/ln /bin/touch /bin/cp /bin/mv /usr/bin/head /bin/grep \
         /bin/df /usr/bin/tr /usr/bin/xargs /usr/bin/sort /usr/bin/mktemp /bin/tar /usr/bin/printf /bin/sleep; do
  install -D "$b" "$L1$b"
  for lib in $(ldd "$b" | grep -o '/[^ ]*'); do install -D "$(readlink -f "$lib")" "$L1$lib"; done
done
ln -s dash $L1/bin/sh
chmod 1777 $L1/tmp
printf 'NAME="glibc test"\nID=glibctest\nVERSION_ID=1\n' > $L1/etc/os-release
echo 'root:x:0:0:root:/root:/bin/sh' > $L1/etc/passwd
echo 'root:x:0:' > $L1/etc/group
echo doomed > $L1/etc/doomed.txt; echo a > $L1/opt/data/a; echo b > $L1/opt/data/b
mkdir -p $L1/opt/data/sub && echo deep > $L1/opt/data/sub/deep
ln -s /bin/dash $L1/usr/bin/abs-dash             # absolute symlink: must resolve inside the rootfs
chmod 4755 $L1/bin/uname                         # setuid: must be dropped
echo 'hello from layer 2' > $L2/etc/hello.txt
ln $L2/etc/hello.txt $L2/etc/hello-hardlink.txt
ln -s hello.txt $L2/etc/hello-symlink.txt
: > $L2/etc/.wh.doomed.txt                       # whiteout: deletes /etc/doomed.txt of layer 1
: > $L2/opt/data/.wh..wh..opq                    # opaque: /opt/data holds only c
echo c > $L2/opt/data/c
python3 "$HERE/mkimage.py" "$OUT" glibc $L1 $L2
printf '#include <stdio.h>\nint main(){puts("hello from musl");return 0;}\n' > $W/h.c
musl-gcc -o $M/usr/bin/hello $W/h.c
cp /usr/lib/x86_64-linux-musl/libc.so $M/lib/ld-musl-x86_64.so.1
cp "$("$HERE/build-musl-busybox.sh")" $M/bin/busybox
cp /bin/busybox $M/bin/busybox.static
for a in $($M/bin/busybox --list); do [ -e $M/bin/$a ] || ln -s /bin/busybox $M/bin/$a; done
mkdir -p $M/usr/sbin $M/root && chmod 1777 $M/tmp
echo 'root:x:0:0:root:/root:/bin/sh' > $M/etc/passwd
echo 'root:x:0:' > $M/etc/group
printf 'NAME="musl test"\nID=musltest\nVERSION_ID=1\n' > $M/etc/os-release
python3 "$HERE/mkimage.py" "$OUT" musl $M
