#!/usr/bin/env bash
# Runs the Python package's tests (python/tests) against live servers: a virtual environment
# at target/python-venv (created with python3 -m venv on first use, reused afterwards) gets
# the pinned test requirements (python/requirements-test.txt) and the package itself,
# installed from python/ (not editable: the tests import the installed copy), then pytest -q.
#
#   scripts/python-tests.sh [--bin DIR] [--lib FILE] [--header FILE] [PYTEST ARGS...]
#
# DIR holds imgserver and imgclient (default target/release); FILE is the libnetproto
# shared library the package loads through NETPROTO_LIBRARY (default
# target/release/libnetproto.so); --header is the netproto.h the table tests compare
# against (default libnetproto/include/netproto.h). Exit status: pytest's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/release"
lib=""
header="$root/libnetproto/include/netproto.h"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --lib) lib=$2; shift 2 ;;
    --header) header=$2; shift 2 ;;
    --help|-h) sed -n '2,14p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
abspath() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd)" "$(basename "$1")"); }
bin=$(cd "$bin" && pwd)
[ -n "$lib" ] || lib="$bin/libnetproto.so"
for f in "$bin/imgserver" "$bin/imgclient" "$lib" "$header"; do
  [ -e "$f" ] || { echo "python-tests: $f is missing (make build first)" >&2; exit 2; }
done
lib=$(abspath "$lib")
header=$(abspath "$header")

venv="$root/target/python-venv"
py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv" || {
    echo "python-tests: '$py -m venv' failed (Debian: apt-get install python3-venv)" >&2
    rm -rf "$venv"; exit 2
  }
fi
pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
"${pip[@]}" install -r "$root/python/requirements-test.txt"
# Rebuilt and reinstalled every run, so the tests see the sources as they are now.
"${pip[@]}" install --force-reinstall --no-deps "$root/python"

export IMGSERVER_BIN="$bin/imgserver" IMGCLIENT_BIN="$bin/imgclient"
export NETPROTO_LIBRARY="$lib" NETPROTO_HEADER="$header" NETPROTO_TEST_INSTALLED=1
# No bytecode or cache files in the checkout.
export PYTHONDONTWRITEBYTECODE=1
# The venv's pytest script puts its own directory, not the current one, first on sys.path,
# so the installed package is what gets imported, never python/netproto (test_installed
# checks).
cd "$root"
exec "$venv/bin/pytest" -q -p no:cacheprovider python/tests "$@"
