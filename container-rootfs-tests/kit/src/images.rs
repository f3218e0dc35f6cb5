//! The images setup.sh builds offline and pushes to the anonymous registry on :5000, by the
//! name every test uses.

/// Debian bookworm (glibc 2.36) with perl, python3, cowsay, fortune and ImageMagick.
pub const DEBIAN: &str = "127.0.0.1:5000/library/debian-cowsay";
/// The same image as eStargz (converted by stargz-snapshotter's own estargz package, 256 KiB
/// chunks, perl and cowsay prioritized): loaded lazily from the registry as it is.
pub const DEBIAN_ESTARGZ: &str = "127.0.0.1:5000/library/debian-estargz";
/// The same image as zstd:chunked (stargz-snapshotter's variant: the same TOC, zstd frames).
pub const DEBIAN_ZSTD_CHUNKED: &str = "127.0.0.1:5000/library/debian-zstdchunked";
/// The same image pushed with zstd layers.
pub const DEBIAN_ZSTD: &str = "127.0.0.1:5000/library/debian-cowsay-zstd";
/// Debian bullseye (glibc 2.31: the old stat ABI, no `--argv0`).
pub const BULLSEYE: &str = "127.0.0.1:5000/library/debian-bullseye";
/// Debian bookworm with FFmpeg and the AWS CLI, for the examples.
pub const MEDIA: &str = "127.0.0.1:5000/library/debian-media";
/// Debian bookworm with the common language runtimes (Node, Java, Ruby, R, Erlang, Elixir,
/// PHP, Lua, Tcl, Perl, Python + numpy) and git, sqlite, file, ImageMagick, xz.
pub const POLYGLOT: &str = "127.0.0.1:5000/library/polyglot";
/// Debian bookworm arm64, debootstrapped through qemu.
pub const DEBIAN_ARM64: &str = "127.0.0.1:5000/library/debian-arm64";
/// A small glibc image made from the host's programs, with a whiteout and an opaque dir.
pub const GLIBC: &str = "127.0.0.1:5000/test/glibc";
/// The same, pushed as Docker schema 2.
pub const GLIBC_V2S2: &str = "127.0.0.1:5000/test/glibc-v2s2";
/// A small arm64 glibc image.
pub const GLIBC_ARM64: &str = "127.0.0.1:5000/test/glibc-arm64";
/// An Alpine-like musl image (busybox, musl's loader, a static program).
pub const MUSL: &str = "127.0.0.1:5000/test/musl";
/// A manifest list of `GLIBC` (amd64) and `MUSL` (arm64/v8).
pub const MULTI: &str = "127.0.0.1:5000/test/multi";
