#!/usr/bin/env bash
# `make run`: the service's main job on built-in defaults. Starts imgserver on loopback with a
# throwaway state directory, creates a demo user, pins the server key, blurs samples/cat.png,
# runs a short 150-connection load test, and stops the server gracefully (SIGTERM). Leaves no
# process behind, also on Ctrl-C.
set -euo pipefail
rel=${REL:-target/release}
out=${OUT:-out}
duration=${BENCH_DURATION:-5s}
mkdir -p "$out"
work=$(mktemp -d)
server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT
trap 'echo; echo "run: interrupted"; exit 130' INT TERM

echo "== starting imgserver (state in $work/state)"
printf 'demo-password\n' | "$rel/imgserver" user add demo --state-dir "$work/state"
"$rel/imgserver" --listen 127.0.0.1:0 --state-dir "$work/state" >"$work/server.out" 2>"$out/server.log" &
server_pid=$!
for _ in $(seq 200); do grep -q '^listening on' "$work/server.out" && break; sleep 0.05; done
addr=$(awk '/^listening on/ {print $3}' "$work/server.out")
[ -n "$addr" ] || { cat "$out/server.log"; echo "run: server did not start" >&2; exit 1; }
echo "listening on $addr (log: $out/server.log)"

export IMGSERVER_ADDR="$addr" IMGCLIENT_USER=demo IMGCLIENT_PASSWORD=demo-password
export IMGCLIENT_KNOWN_SERVERS="$work/known_servers"
echo
echo "== imgclient ping (first contact pins the server key)"
"$rel/imgclient" ping
echo
echo "== imgclient blur samples/cat.png -o $out/cat-blur.png"
"$rel/imgclient" blur samples/cat.png -o "$out/cat-blur.png"
echo
echo "== imgclient bench --conns 150 --dir samples --duration $duration"
"$rel/imgclient" bench --conns 150 --dir samples --duration "$duration" --json "$out/bench.json" --plot "$out/bench-latency.svg"
echo
echo "== stopping imgserver (SIGTERM)"
stop_server
tail -n 3 "$out/server.log"
echo
echo "outputs: $out/cat-blur.png  $out/bench.json  $out/bench-latency.svg  $out/server.log"
