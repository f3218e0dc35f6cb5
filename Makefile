# Entry points; the README's two commands are `make demo` and `make test`. `make check` is the
# tier that needs neither root nor services.
CRT_WORK ?= /tmp/scar-crt
export CRT_WORK
SETUP := container-rootfs-tests/scripts/setup.sh
BOOTSTRAP_RELEASE := target/release/bootstrap

.PHONY: demo test check docs unit lint fmt setup teardown bench-lazy bench-pull bench-coldstart bench-exec bench-runtime soak fuzz launch shim tools shim-tools layer binaries
SHIM_DIR := target/shim
SHIM_GNU_TARGET := x86_64-unknown-linux-gnu
SHIM_MUSL_TARGET := x86_64-unknown-linux-musl

CROSS_TARGETS := x86_64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl

## tools: the cross toolchain (zig via PyPI; Rust's musl and aarch64 targets)
tools:
	command -v cargo-zigbuild >/dev/null || pip install -q ziglang cargo-zigbuild
	for t in $(CROSS_TARGETS); do rustup target list --installed | grep -qx $$t || rustup target add $$t; done

## shim-tools: only what the x86_64 shims need (the demo)
shim-tools:
	command -v cargo-zigbuild >/dev/null || pip install -q ziglang cargo-zigbuild
	rustup target list --installed | grep -qx $(SHIM_MUSL_TARGET) || rustup target add $(SHIM_MUSL_TARGET)

## layer: the Lambda layer zips for x86_64 and arm64 (static bootstrap, both shims), with sizes
LAYER_PROFILE ?= layer
layer: tools
	LAYER_PROFILE=$(LAYER_PROFILE) layers/build-layer.sh x86_64
	LAYER_PROFILE=$(LAYER_PROFILE) layers/build-layer.sh arm64

## shim: the fakechroot shim, a glibc build bound to GLIBC_2.17 at most and a musl build
shim: shim-tools
	cargo zigbuild -q -p scar-fakechroot --release --target $(SHIM_GNU_TARGET).2.17
	RUSTFLAGS="-C target-feature=-crt-static" cargo zigbuild -q -p scar-fakechroot --release --target $(SHIM_MUSL_TARGET)
	mkdir -p $(SHIM_DIR)
	cp target/$(SHIM_GNU_TARGET)/release/libscar_fakechroot.so $(SHIM_DIR)/scar-fakechroot-glibc.so
	cp target/$(SHIM_MUSL_TARGET)/release/libscar_fakechroot.so $(SHIM_DIR)/scar-fakechroot-musl.so

## demo: build the Debian image offline, serve it from a local registry, and run one Lambda
## invocation of it through `bootstrap --emulate` (pull, shim, script, output files)
demo: shim
	CRT_ONLY=demo $(SETUP)
	cargo build --release -p bootstrap
	@echo "== one invocation, cold: pull (network -> sha256 -> gunzip -> tar) then the script"
	SCAR_CACHE_DIR=$(CRT_WORK)/demo-cache SCAR_SHIM_DIR=$(CURDIR)/$(SHIM_DIR) \
	  $(BOOTSTRAP_RELEASE) --emulate examples/events/direct-script.json --image 127.0.0.1:5000/library/debian-cowsay
	@echo "== the same image, warm, with the image's own program and arguments"
	SCAR_CACHE_DIR=$(CRT_WORK)/demo-cache SCAR_SHIM_DIR=$(CURDIR)/$(SHIM_DIR) \
	  $(BOOTSTRAP_RELEASE) --emulate examples/events/direct-args.json --image 127.0.0.1:5000/library/debian-cowsay

# Clippy runs inside the builds of `check` and `test` (.ci/clippy-rustc says why).
LINTED_RUSTC := $(CURDIR)/.ci/clippy-rustc

## test: everything CI runs (fmt, clippy, unit tests, the container-rootfs suite, the
## deployer against moto and ministack, arm64 under qemu, the examples)
## The harness's set-up is mostly downloads: it runs alongside the builds.
test: export RUSTC_WORKSPACE_WRAPPER = $(LINTED_RUSTC)
test:
	$(MAKE) --no-print-directory -j3 check setup binaries
	cargo nextest run --workspace --run-ignored only --no-fail-fast

## check: formatting, clippy, the unit tests, the docs check and the API docs (rustdoc's
## warnings, broken links among them, are errors); no root, no services.
## Clippy lints each workspace crate as the test build compiles it; the shim, which that build
## does not compile (`test = false`), is linted on its own.
check: export RUSTC_WORKSPACE_WRAPPER = $(LINTED_RUSTC)
check:
	cargo fmt --all -- --check
	cargo clippy -p scar-fakechroot -- -D warnings
	cargo nextest run --workspace
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

## docs: rewrite the generated parts of docs/ (configuration.md, syscall-gate.md,
## scar-functions.schema.json) from their sources
docs:
	UPDATE_DOCS=1 cargo test -q -p scar-runtime docs::tests
	UPDATE_DOCS=1 cargo test -q -p deployer definitions::tests::the_json_schema

## binaries: what the suite runs besides the debug bootstrap and deployer (which the test
## build of `check` makes, with its features): the shims and the arm64 layer's static
## bootstrap, run under qemu, built with the faster `layer-test` profile (same code, no size
## budget) and left unzipped. The deployer's tests zip an x86_64 layer from the debug build
## (the kit's `layer_zip` says why).
binaries: shim tools
	LAYER_PROFILE=layer-test layers/build-layer.sh arm64

## unit: the tests that need neither root nor the harness
unit:
	cargo nextest run --workspace

## lint: formatting and a plain `cargo clippy`, without building the tests
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

setup:
	$(SETUP)

teardown:
	container-rootfs-tests/scripts/teardown.sh

## bench-lazy: cold starts of a 1.9 GB image (polyglot + SciPy, pandas, compilers: built once) staged and
## as eStargz in the registry, lazy against eager (first output, end; and through a Runtime API:
## first poll, response), and its tree against GNU tar's extraction of the same tree; caches on
## a new ext4 per cold start as root, else a tmpfs (BENCH_PLACES)
bench-lazy: setup shim
	cargo build --release -p bootstrap -p deployer
	python3 container-rootfs-tests/bench/bench_lazy.py $(BOOTSTRAP_RELEASE) $(SHIM_DIR) target/bench-lazy.md 3

## bench-pull: pull+unpack against skopeo+umoci, udocker and the curl|gzip|tar floor
bench-pull: setup
	cargo build --release -p bootstrap
	test -x /tmp/scar-bench-venv/bin/udocker || (python3 -m venv /tmp/scar-bench-venv && /tmp/scar-bench-venv/bin/pip install -q udocker)
	python3 container-rootfs-tests/bench/bench_pull.py $(BOOTSTRAP_RELEASE) target/bench-pull.md 5

## bench-coldstart: the eager pull of four images (two of one big layer, one of four, one of 1.9 GB
## built FROM another), cache on
## the disk and on a tmpfs, from the registry and staged as frames (S3 stand-in, local layout),
## against skopeo+umoci, udocker and the floor; BASELINE_BOOTSTRAP=PATH adds
## an earlier build as a contender
bench-coldstart: setup
	cargo build --release -p bootstrap -p deployer
	test -x /tmp/scar-bench-venv/bin/udocker || (python3 -m venv /tmp/scar-bench-venv && /tmp/scar-bench-venv/bin/pip install -q udocker)
	python3 container-rootfs-tests/bench/bench_coldstart.py $(BOOTSTRAP_RELEASE) target/bench-coldstart.md 3

## soak: one runtime serves 10,000 mixed invocations; memory, descriptors and leftovers
## (RELIABILITY.md), written to target/soak.md
soak: setup binaries
	SOAK_INVOCATIONS=10000 cargo nextest run -p container-rootfs-tests --run-ignored only -E 'test(/^runtime_loop::soak_many/)'
	cat target/soak.md

## fuzz: the parser fuzz targets (property tests with generated inputs) at 20,000 cases
## each instead of the few thousand `make check` runs; failures land in proptest-regressions/
fuzz:
	PROPTEST_CASES=20000 cargo test --release -p scar-image fuzz -- --nocapture
	PROPTEST_CASES=20000 cargo test --release -p scar-runtime fuzz -- --nocapture
	PROPTEST_CASES=20000 cargo test --release -p deployer fuzz -- --nocapture
	PROPTEST_CASES=20000 cargo test --release -p rootfs-paths fuzz -- --nocapture

## launch: SCAR's event launcher (deployer run -es) over 1,000 objects on ministack, each
## processed exactly once (RELIABILITY.md)
launch: setup binaries
	LAUNCH_OBJECTS=1000 cargo nextest run -p deployer --run-ignored only -E 'test(the_event_launcher)' --no-capture

## bench-exec: the shim against native chroot, Debian's fakechroot and proot (needs root)
bench-exec: setup shim
	cargo build --release -p bootstrap
	command -v hyperfine >/dev/null && command -v fakechroot >/dev/null && command -v proot >/dev/null || \
	  (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends hyperfine fakechroot proot >/dev/null)
	python3 container-rootfs-tests/bench/bench_exec.py $(BOOTSTRAP_RELEASE) $(CURDIR)/$(SHIM_DIR) target/bench-exec.md 10

## bench-runtime: the runtime's start, warm per-invocation overhead and idle memory
bench-runtime: setup shim
	cargo build --release -p bootstrap
	python3 container-rootfs-tests/bench/bench_runtime.py $(BOOTSTRAP_RELEASE) $(CURDIR)/$(SHIM_DIR) target/bench-runtime.md 50
