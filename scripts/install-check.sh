#!/usr/bin/env bash
# make install-check: installs the release build into a throwaway DESTDIR (target/install-check,
# emptied first) and uses it as a system install is used: the C sample built out of tree with
# pkg-config against the installed header and library and run against a live server started
# from the installed imgserver; the installed binaries resolving the installed library with
# no LD_LIBRARY_PATH; the man pages rendering; the bash completions sourcing; the Python tests
# against the installed files; then make uninstall leaving no file behind.
# Usage: scripts/install-check.sh [REL_DIR]  (default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
rel=${1:-target/release}
export DESTDIR=$PWD/target/install-check/root PREFIX=/opt/imgserver
root=$DESTDIR$PREFIX
work=$PWD/target/install-check/work
fail() { echo "install-check: FAIL: $*" >&2; exit 1; }
rm -rf target/install-check
mkdir -p "$DESTDIR" "$work"

scripts/install.sh install "$rel" >"$work/install.log"
echo "install-check: installed $(grep -c '^f ' "$root/share/imgserver/install-manifest") files and links under $root"

# (a) The C sample, out of tree, the usual way: pkg-config, with the DESTDIR as its sysroot.
pc() { PKG_CONFIG_PATH=$root/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$DESTDIR pkg-config "$@" netproto; }
[ "$(pc --modversion)" = "$("$root/bin/imgserver" --version | awk '{print $2}')" ] || fail "netproto.pc Version differs from the binaries'"
flags=$(pc --cflags --libs)
case $flags in *"-I$root/include"*"-L$root/lib"*|*"-L$root/lib"*"-I$root/include"*) ;; *) fail "pkg-config gives '$flags'";; esac
# shellcheck disable=SC2086  # the flags are words
cc -std=c11 -O1 -Wall -Wextra -Werror -Wpedantic -o "$work/np_sample" samples/c/np_sample.c $flags -Wl,-rpath,"$root/lib"
readelf -d "$work/np_sample" | grep -q 'NEEDED.*\[libnetproto\.so\.1\]' || fail "np_sample: no NEEDED libnetproto.so.1"
echo "install-check: np_sample built with: cc ... \$(pkg-config --cflags --libs netproto) = $flags"
"$work/np_sample" selftest >/dev/null
scripts/c-sample-live.sh "$root/bin" "$work/np_sample"

# (b) The installed binaries find the installed library, by their own RUNPATH.
for bin in imgserver imgclient; do
  resolved=$(env -u LD_LIBRARY_PATH ldd "$root/bin/$bin" | awk '/libnetproto/ {print $3}')
  [ "$(readlink -f "$resolved")" = "$(readlink -f "$root/lib/libnetproto.so.1")" ] || fail "$bin resolves libnetproto to '$resolved', not the installed one"
  env -u LD_LIBRARY_PATH "$root/bin/$bin" --version >/dev/null || fail "installed $bin does not run"
  for page in "$root/share/man/man1/$bin.1" "$root/share/man/man1/$bin"-*.1; do
    head -5 "$page" | grep -q "^\.TH $(basename "$page" .1) 1" || fail "$page: no .TH header"
  done
  MANWIDTH=80 man -l "$root/share/man/man1/$bin.1" 2>"$work/man.err" | grep -q "^NAME" || { cat "$work/man.err"; fail "man -l does not render $bin.1"; }
  bash -c "source '$root/share/bash-completion/completions/$bin' && complete -p $bin" >/dev/null || fail "$bin bash completion does not source"
  echo "install-check: $bin: resolves $resolved, $(ls "$root/share/man/man1/$bin"*.1 | wc -l) man pages render, bash completion sources"
done
[ -L "$root/lib/libnetproto.so" ] && [ "$(readlink "$root/lib/libnetproto.so.1")" = libnetproto.so.1.0.0 ] || fail "library links"
grep -q "^ExecStart=$PREFIX/bin/imgserver " "$root/lib/systemd/system/imgserver.service" || fail "imgserver.service ExecStart does not follow PREFIX"

# (d) The Python package against the installed files.
scripts/python-tests.sh --bin "$root/bin" --lib "$root/lib/libnetproto.so.1" --header "$root/include/netproto.h"

# (c) Uninstall removes every file and link it installed.
scripts/install.sh uninstall
left=$(find "$DESTDIR" -mindepth 1 ! -type d | head -5)
[ -z "$left" ] || fail "uninstall left: $left"
echo "install-check: ok (uninstall left no files)"
