# imgserver: build, test, run. `make test` is what CI runs (.ci/run); `make run` is the demo.
CARGO ?= cargo
REL := target/release
export CARGO_TERM_COLOR ?= never

.PHONY: all build test deps check-fresh lint unit readme-check failpoints header check-header cbindgen-version fuzz-build check-dynamic c-sample install uninstall install-check python-test run fuzz soak bench bench-smoke cluster screenshots clean

all: build

## build: release build of the whole workspace (binaries, libnetproto.so); the Debian packages
## the build needs (cmake and nasm for the vendored libjpeg-turbo) are installed first, so that
## `make run` works as the first command on a fresh machine
build: deps
	$(CARGO) build --release --workspace --bins --lib

## deps: Debian packages the build and the tests need (cmake, nasm, cbindgen, a C compiler,
## binutils), installed if missing; every target that compiles starts with it
deps:
	@scripts/install-deps.sh

## check-fresh: every target that compiles starts with the dependency installer, which covers
## every tool the build runs (the README's fresh-machine promise)
check-fresh:
	@scripts/check-fresh.sh

## test: every check the project has, from a clean clone
test: deps check-fresh lint build unit check-header check-dynamic c-sample install-check readme-check bench-smoke
	@echo "make test: all checks passed"

## lint: formatting and clippy with warnings as errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release -p imgserver --features failpoints --all-targets -- -D warnings

## unit: unit, integration and end-to-end tests (release: image code is ~20x slower in debug)
unit: failpoints
	$(CARGO) test --release --workspace

## failpoints: the test-only variant of imgserver with its failpoints compiled in (inputs that
## crash, hang or slow a worker, or try to escape its sandbox), as $(REL)/imgserver-failpoints
## for the end-to-end tests; $(REL)/imgserver is rebuilt without them right after
failpoints: deps
	$(CARGO) build --release -p imgserver --features failpoints
	cp $(REL)/imgserver $(REL)/imgserver-failpoints
	$(CARGO) build --release -p imgserver

## header: regenerate libnetproto/src/capi/wire.rs from the wire table, then
## libnetproto/include/netproto.h from the C ABI sources (with the pinned cbindgen)
CBINDGEN_VERSION := 0.24.3
CBINDGEN := cd libnetproto && cbindgen --quiet --config cbindgen.toml --crate libnetproto
header: cbindgen-version
	NP_REGENERATE_WIRE=1 $(CARGO) test --release -p libnetproto --lib --quiet generated_c_wire_items_match_the_table
	$(CBINDGEN) --output include/netproto.h

## check-header: fail if the generated wire items or the committed header differ from a fresh
## generation, or if the Rust binding's numbers differ from the header's
check-header: cbindgen-version
	$(CARGO) test --release -p libnetproto --lib --quiet generated_c_wire_items_match_the_table
	@tmp=$$(mktemp); \
	($(CBINDGEN) --output $$tmp) && \
	if cmp -s $$tmp libnetproto/include/netproto.h; then echo "check-header: netproto.h is up to date"; rm -f $$tmp; \
	else diff -u libnetproto/include/netproto.h $$tmp | head -40; rm -f $$tmp; echo "check-header: FAIL: run 'make header' and commit"; exit 1; fi
	$(CARGO) test --release -p netproto-sys --test abi --quiet

## cbindgen-version: refuse to generate the header with any cbindgen but the pinned one (the
## output differs between versions; scripts/install-deps.sh installs this one)
cbindgen-version: deps
	@v=$$(cbindgen --version 2>/dev/null | sed -n 's/^cbindgen //p'); \
	if [ "$$v" != "$(CBINDGEN_VERSION)" ]; then \
	echo "cbindgen $(CBINDGEN_VERSION) is required (found: $${v:-none}); run scripts/install-deps.sh or 'cargo install cbindgen --version $(CBINDGEN_VERSION) --locked'"; exit 1; fi

## check-dynamic: both binaries link libnetproto.so.1 dynamically (NEEDED, RUNPATH with
## $ORIGIN/../lib) and run with and without LD_LIBRARY_PATH; the .so has its soname and
## exports only np_*
check-dynamic: build
	scripts/check-dynamic.sh $(REL)

## c-sample: build the C sample against the .so (ASan+UBSan, -Werror); run its in-memory
## self-test and a handshake + login + ping against a live imgserver
c-sample: build
	$(MAKE) -C samples/c LIBDIR=../../$(REL)
	ASAN_OPTIONS=detect_leaks=1 samples/c/np_sample selftest
	scripts/c-sample-live.sh $(REL)

## install: the release build as a system library and its tools under $(DESTDIR)$(PREFIX)
## (default /usr/local): binaries, libnetproto.so.1.0.0 with its two links, netproto.h,
## netproto.pc, man pages, bash/zsh/fish completions, the systemd unit and the dist examples
## (scripts/install.sh; README, "Installing"); no root needed when the target is writable
PREFIX ?= /usr/local
DESTDIR ?=
install: build
	PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" scripts/install.sh install $(REL)

## uninstall: removes exactly what install put under $(DESTDIR)$(PREFIX) (its manifest)
uninstall:
	PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" scripts/install.sh uninstall

## install-check: install into target/install-check, build the C sample out of tree with
## pkg-config and run it against the installed imgserver, check the installed binaries find
## the installed library, the man pages and completions, run the Python tests against the
## installed files, then uninstall and check nothing is left
install-check: build
	scripts/install-check.sh $(REL)

## python-test: the Python package's tests (python/) against the build tree, in the venv
## target/python-venv (scripts/python-tests.sh installs pytest into it); `make test` runs them
## against the installed files instead, in install-check
python-test: build
	scripts/python-tests.sh --bin $(REL) --lib $(REL)/libnetproto.so

## fuzz: coverage-guided fuzzing of the frame decoder and the server handshake (stable
## toolchain, libFuzzer with sancov flags), FUZZ_SECONDS per target; new corpus entries land in
## fuzz/corpus, crashes in fuzz/artifacts
FUZZ_SECONDS ?= 60
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

## fuzz-build: the fuzz workspace (targets crate, libFuzzer binaries, corpus generator) still
## builds, uninstrumented; the corpus itself is replayed by `make unit` (libnetproto's
## fuzz_replay unit test)
fuzz-build:
	cd fuzz && $(CARGO) build --release --locked

## soak: the long variants of the fault, hostile-peer and abuse tests (10 000 idle connections,
## a 30 s bench with a worker killed every second, SIGTERM under load ten times, the floods of
## e2e_abuse at their full sizes)
soak: build failpoints
	IMGSERVER_SOAK=1 $(CARGO) test --release -p imgserver --test e2e_faults --test e2e_hostile --test e2e_abuse -- --test-threads=1 --nocapture

## bench: own in-process vs sharp/pyvips/Pillow vs imgserver end to end (interleaved pairs), PING
## vs redis-benchmark, thumbor and ipx as services, growth curves, master memory, WebP/AVIF output;
## writes bench/RESULTS.md and bench/results.svg with the goals table (tens of minutes plus build;
## installs sharp, pyvips, Pillow, thumbor, ipx into bench/.deps, redis-server and wrk via apt)
bench: build
	bench/run.sh --no-build

## bench-smoke: the bench harness on two small images, no network (< 60 s)
bench-smoke: build
	bench/run.sh --smoke --no-build

## cluster: three servers (CLUSTER_SERVERS=N for more) behind HAProxy on loopback, one shared
## key and users file: waits until HAProxy has every server UP, runs a job and a 150-connection
## bench through it, prints each server's share of the jobs, stops everything
cluster: build
	scripts/cluster.sh

## screenshots: regenerate docs/screenshots/*.png from a real run (server on loopback, blur,
## 150-connection bench, SIGTERM); installs ImageMagick, librsvg2-bin, DejaVu fonts if missing
screenshots: build
	scripts/screenshots.sh

## readme-check: run README.md's ```console blocks in order, in a fresh home directory, against
## the current build; each command must succeed and print what the README shows (numbers, key
## fingerprints and the home directory aside)
readme-check: build
	scripts/readme-check.py --bin $(REL)

## run: the main job on built-in defaults: server on loopback, blur, 150-connection bench, stop
run: build
	scripts/demo.sh

clean:
	$(CARGO) clean
	$(MAKE) -C samples/c clean
