# Entry points; the README's two commands are `make demo` and `make test`.
CRT_WORK ?= /tmp/scar-crt
export CRT_WORK
SETUP := container-rootfs-tests/scripts/setup.sh
BOOTSTRAP_RELEASE := target/release/bootstrap

.PHONY: demo test unit lint fmt setup teardown bench-pull bench-exec shim tools
SHIM_DIR := target/shim
SHIM_GNU_TARGET := x86_64-unknown-linux-gnu
SHIM_MUSL_TARGET := x86_64-unknown-linux-musl

## tools: the cross toolchain for the shim (zig via PyPI; Rust's musl target)
tools:
	command -v cargo-zigbuild >/dev/null || pip install -q ziglang cargo-zigbuild
	rustup target list --installed | grep -q $(SHIM_MUSL_TARGET) || rustup target add $(SHIM_MUSL_TARGET)

## shim: the fakechroot shim, a glibc build bound to GLIBC_2.17 at most and a musl build
shim: tools
	cargo zigbuild -q -p scar-fakechroot --release --target $(SHIM_GNU_TARGET).2.17
	RUSTFLAGS="-C target-feature=-crt-static" cargo zigbuild -q -p scar-fakechroot --release --target $(SHIM_MUSL_TARGET)
	mkdir -p $(SHIM_DIR)
	cp target/$(SHIM_GNU_TARGET)/release/libscar_fakechroot.so $(SHIM_DIR)/scar-fakechroot-glibc.so
	cp target/$(SHIM_MUSL_TARGET)/release/libscar_fakechroot.so $(SHIM_DIR)/scar-fakechroot-musl.so

## demo: build the offline images and a local registry, pull the Debian image, run cowsay in it
demo: setup shim
	cargo build --release -p bootstrap
	@echo "== cold pull (network -> sha256 -> gunzip -> tar, no compressed copy kept)"
	time $(BOOTSTRAP_RELEASE) pull --cache-dir $(CRT_WORK)/demo-cache 127.0.0.1:5000/library/debian-cowsay
	@echo "== run a program of the image through the fakechroot shim, as an unprivileged user would"
	$(BOOTSTRAP_RELEASE) run --cache-dir $(CRT_WORK)/demo-cache --shim-dir $(SHIM_DIR) 127.0.0.1:5000/library/debian-cowsay -- \
	  sh -c '/usr/games/cowsay "Hello from $$(. /etc/os-release; echo $$PRETTY_NAME) on $$(uname -m)"'

## test: everything CI runs (fmt, clippy, unit tests, the container-rootfs suite)
test: lint setup shim
	cargo build -p bootstrap
	cargo nextest run --workspace --run-ignored all --no-fail-fast

## unit: the tests that need neither root nor the harness
unit:
	cargo nextest run --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

setup:
	$(SETUP)

teardown:
	container-rootfs-tests/scripts/teardown.sh

## bench-pull: pull+unpack against skopeo+umoci, udocker and the curl|gzip|tar floor
bench-pull: setup
	cargo build --release -p bootstrap
	test -x /tmp/scar-bench-venv/bin/udocker || (python3 -m venv /tmp/scar-bench-venv && /tmp/scar-bench-venv/bin/pip install -q udocker)
	python3 container-rootfs-tests/bench/bench_pull.py $(BOOTSTRAP_RELEASE) target/bench-pull.md 5

## bench-exec: the shim against native chroot, Debian's fakechroot and proot (needs root)
bench-exec: setup shim
	cargo build --release -p bootstrap
	command -v hyperfine >/dev/null && command -v fakechroot >/dev/null && command -v proot >/dev/null || \
	  (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends hyperfine fakechroot proot >/dev/null)
	python3 container-rootfs-tests/bench/bench_exec.py $(BOOTSTRAP_RELEASE) $(CURDIR)/$(SHIM_DIR) target/bench-exec.md 10
