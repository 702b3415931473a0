#!/usr/bin/env bash
# Asserts that libnetproto.so is a proper shared library and that imgserver and imgclient link
# it dynamically: its SONAME libnetproto.so.1 and nothing but np_* exported; in each binary a
# NEEDED libnetproto.so.1, the protocol symbols undefined (so no static copy), a RUNPATH with
# $ORIGIN (the build tree) and $ORIGIN/../lib (an install); both run with and without
# LD_LIBRARY_PATH. Usage: scripts/check-dynamic.sh [target/release]
set -euo pipefail
dir=${1:-target/release}
fail() { echo "check-dynamic: FAIL: $*" >&2; exit 1; }
so=$dir/libnetproto.so
[ -f "$so" ] || fail "$so missing (build the workspace first)"
[ "$(readlink "$dir/libnetproto.so.1")" = libnetproto.so ] || fail "$dir/libnetproto.so.1 is not a link to libnetproto.so (netproto-sys/build.rs makes it)"
[ "$(readlink "$dir/deps/libnetproto.so.1")" = libnetproto.so ] || fail "$dir/deps/libnetproto.so.1 is not a link to libnetproto.so"
readelf -d "$so" | grep -q 'SONAME.*\[libnetproto\.so\.1\]' || fail "libnetproto.so has no SONAME libnetproto.so.1"
nm -D --defined-only "$so" | grep -q ' T np_conn_poll_event$' || fail "libnetproto.so does not export np_conn_poll_event"
exported=$(nm -D --defined-only "$so" | grep -c ' np_' || true)
others=$(nm -D --defined-only "$so" | grep -v ' np_' || true)
[ -z "$others" ] || fail "libnetproto.so exports more than np_*: $(echo "$others" | head -5 | tr '\n' ' ')"
echo "check-dynamic: libnetproto.so: SONAME libnetproto.so.1, exports $exported symbols, all np_*"
for bin in imgserver imgclient; do
  f="$dir/$bin"
  [ -x "$f" ] || fail "$f missing"
  readelf -d "$f" | grep -q 'NEEDED.*\[libnetproto\.so\.1\]' || fail "$bin: no NEEDED libnetproto.so.1"
  runpath=$(readelf -d "$f" | sed -n 's/.*RUNPATH.*\[\(.*\)\]/\1/p')
  case ":$runpath:" in *':$ORIGIN:'*) ;; *) fail "$bin: RUNPATH '$runpath' lacks \$ORIGIN";; esac
  case ":$runpath:" in *':$ORIGIN/../lib:'*) ;; *) fail "$bin: RUNPATH '$runpath' lacks \$ORIGIN/../lib";; esac
  undefined=$(nm -D --undefined-only "$f" | grep -c ' U np_' || true)
  defined=$(nm "$f" 2>/dev/null | grep -cE ' [TtDd] np_' || true)
  [ "$undefined" -ge 5 ] || fail "$bin: only $undefined np_* symbols undefined (expected the protocol API)"
  [ "$defined" -eq 0 ] || fail "$bin: defines $defined np_* symbols itself: a static copy of libnetproto was linked"
  env -u LD_LIBRARY_PATH "$f" --version >/dev/null || fail "$bin does not run without LD_LIBRARY_PATH"
  LD_LIBRARY_PATH="$dir" "$f" --version >/dev/null || fail "$bin does not run with LD_LIBRARY_PATH"
  resolved=$(env -u LD_LIBRARY_PATH ldd "$f" | awk '/libnetproto/ {print $3}')
  [ -n "$resolved" ] || fail "$bin: ldd does not resolve libnetproto.so.1"
  echo "check-dynamic: $bin: NEEDED libnetproto.so.1, $undefined np_* symbols undefined, none defined, RUNPATH $runpath, resolves to $resolved"
done
echo "check-dynamic: ok"
