#!/usr/bin/env bash
# Installs the Debian packages the build and tests need, if missing. Idempotent; needs root
# (or sudo) the first time. Rust itself comes with the machine.
set -euo pipefail
need=()
# cbindgen regenerates/verifies include/netproto.h; the Makefile pins the version (Debian
# bookworm's package), since other versions format the header differently.
CBINDGEN_VERSION=0.24.3
command -v cbindgen >/dev/null || need+=("cbindgen=${CBINDGEN_VERSION}*")
command -v cc >/dev/null || need+=(gcc)               # C sample; vendored libwebp (libwebp-sys)
command -v readelf >/dev/null || need+=(binutils)     # check-dynamic
command -v pkg-config >/dev/null || need+=(pkg-config)  # install-check builds the C sample with it
command -v man >/dev/null || need+=(man-db)           # install-check renders the installed man pages
command -v cmake >/dev/null || need+=(cmake)          # builds the vendored libjpeg-turbo (turbojpeg crate)
command -v nasm >/dev/null || need+=(nasm)            # its SIMD code (the build refuses to go without it), rav1e's too
command -v systemd-analyze >/dev/null || need+=(systemd)  # e2e_systemd checks dist/imgserver.service with it
command -v promtool >/dev/null || need+=(prometheus)  # only its promtool: e2e_metrics checks the metrics text
# The Python package's tests (install-check) make a virtual environment: Debian's python3 needs
# python3-venv for that (ensurepip); a python3 that has it already needs nothing.
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v haproxy >/dev/null || need+=(haproxy)     # bookworm's 2.6: the balancer of make cluster, e2e_cluster, bench/cluster.py
if command -v cbindgen >/dev/null && [ "$(cbindgen --version | sed -n 's/^cbindgen //p')" != "$CBINDGEN_VERSION" ]; then
    echo "install-deps: warning: $(cbindgen --version) found; make header/check-header need cbindgen $CBINDGEN_VERSION" >&2
fi
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
