#!/usr/bin/env bash
# Asserts that imgserver and imgclient link libnetproto.so dynamically: NEEDED entry, protocol
# symbols undefined in the binaries (so no static copy), RUNPATH $ORIGIN, and that both run
# with and without LD_LIBRARY_PATH. Usage: scripts/check-dynamic.sh [target/release]
set -euo pipefail
dir=${1:-target/release}
fail() { echo "check-dynamic: FAIL: $*" >&2; exit 1; }
[ -f "$dir/libnetproto.so" ] || fail "$dir/libnetproto.so missing (build the workspace first)"
nm -D --defined-only "$dir/libnetproto.so" | grep -q ' T np_conn_poll_event$' || fail "libnetproto.so does not export np_conn_poll_event"
for bin in imgserver imgclient; do
  f="$dir/$bin"
  [ -x "$f" ] || fail "$f missing"
  readelf -d "$f" | grep -q 'NEEDED.*\[libnetproto\.so\]' || fail "$bin: no NEEDED libnetproto.so"
  readelf -d "$f" | grep -q 'RUNPATH.*\$ORIGIN' || fail "$bin: no RUNPATH \$ORIGIN"
  undefined=$(nm -D --undefined-only "$f" | grep -c ' U np_' || true)
  defined=$(nm "$f" 2>/dev/null | grep -cE ' [TtDd] np_' || true)
  [ "$undefined" -ge 5 ] || fail "$bin: only $undefined np_* symbols undefined (expected the protocol API)"
  [ "$defined" -eq 0 ] || fail "$bin: defines $defined np_* symbols itself: a static copy of libnetproto was linked"
  env -u LD_LIBRARY_PATH "$f" --version >/dev/null || fail "$bin does not run without LD_LIBRARY_PATH"
  LD_LIBRARY_PATH="$dir" "$f" --version >/dev/null || fail "$bin does not run with LD_LIBRARY_PATH"
  resolved=$(env -u LD_LIBRARY_PATH ldd "$f" | awk '/libnetproto/ {print $3}')
  [ -n "$resolved" ] || fail "$bin: ldd does not resolve libnetproto.so"
  echo "check-dynamic: $bin: NEEDED libnetproto.so, $undefined np_* symbols undefined, none defined, RUNPATH \$ORIGIN, resolves to $resolved"
done
echo "check-dynamic: ok"
