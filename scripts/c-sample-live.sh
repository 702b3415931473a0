#!/usr/bin/env bash
# Runs the C sample against a live imgserver: handshake, key pinning, login and ping through
# libnetproto.so from C. Starts a throwaway server on a free loopback port and always stops it.
# Usage: scripts/c-sample-live.sh [BIN_DIR [SAMPLE]]: the imgserver of BIN_DIR (default
# target/release), the sample binary SAMPLE (default samples/c/np_sample; make install-check
# gives the installed imgserver and a sample built with pkg-config).
set -euo pipefail
rel=${1:-target/release}
sample=${2:-samples/c/np_sample}
dir=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
printf 'c-sample-password\n' | "$rel/imgserver" user add csample --state-dir "$dir/state" >/dev/null
"$rel/imgserver" --listen 127.0.0.1:0 --workers 1 --state-dir "$dir/state" >"$dir/out" 2>"$dir/log" &
server_pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$dir/out" && break; sleep 0.05; done
addr=$(awk '/^listening on/ {print $3}' "$dir/out")
[ -n "$addr" ] || { cat "$dir/log"; echo "c-sample-live: server did not start" >&2; exit 1; }
export IMGCLIENT_PASSWORD=c-sample-password NP_SAMPLE_KNOWN_SERVERS="$dir/known_servers"
ASAN_OPTIONS=detect_leaks=1 "$sample" ping "$addr" csample
# Second run: the key is now pinned, and must match.
ASAN_OPTIONS=detect_leaks=1 "$sample" ping "$addr" csample
grep -q "$addr" "$dir/known_servers" || { echo "c-sample-live: server key was not pinned" >&2; exit 1; }
# A wrong password is refused with AUTH_FAILED (exit code 1 from the sample).
if IMGCLIENT_PASSWORD=wrong "$sample" ping "$addr" csample 2>"$dir/err"; then
  echo "c-sample-live: wrong password was accepted" >&2; exit 1
fi
grep -q "authentication failed" "$dir/err" || { cat "$dir/err"; exit 1; }
echo "c-sample-live: ok (wrong password refused: $(head -1 "$dir/err"))"
