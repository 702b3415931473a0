#!/usr/bin/env bash
# `make cluster`: several imgserver processes behind one HAProxy on loopback. Starts N servers
# (default 3; `scripts/cluster.sh 5`) with one shared key and users file, generates the
# HAProxy configuration from dist/haproxy.cfg, starts HAProxy, waits until it reports every
# server UP, then runs one imgclient job and a short bench through it and prints each
# server's share of the jobs. Stops everything on exit, also on failure or Ctrl-C; exits
# nonzero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
rel=${REL:-target/release}
n=${1:-${CLUSTER_SERVERS:-3}}
requests=${CLUSTER_REQUESTS:-3000}
conns=${CLUSTER_CONNS:-150}
workers=${CLUSTER_WORKERS:-1}
case "$n" in '' | *[!0-9]* | 0) echo "cluster: the number of servers must be a positive integer" >&2; exit 1 ;; esac
for b in imgserver imgclient; do
  [ -x "$rel/$b" ] || { echo "cluster: $rel/$b is missing: run make build first" >&2; exit 1; }
done
command -v haproxy >/dev/null || { echo "cluster: haproxy is missing: run scripts/install-deps.sh" >&2; exit 1; }
command -v python3 >/dev/null || { echo "cluster: python3 is missing" >&2; exit 1; }

mkdir -p target
work=$(mktemp -d target/cluster.XXXXXX)
# HAProxy takes a path without a slash in front for HOST:PORT: the socket gets an absolute one.
sock="$PWD/$work/haproxy.sock"
pids=()
haproxy_pid=""
# SIGTERM to HAProxy and every server, then wait for them: the servers drain and exit 0.
stop_all() {
  local failed=0
  [ -n "$haproxy_pid" ] && kill -TERM "$haproxy_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  [ -n "$haproxy_pid" ] && { wait "$haproxy_pid" 2>/dev/null || true; }
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || failed=$((failed + 1)); done
  haproxy_pid="" pids=()
  return $failed
}
cleanup() {
  local rc=$?
  stop_all || true
  if [ $rc -ne 0 ]; then
    echo "cluster: FAILED (exit $rc); logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'echo; echo "cluster: interrupted"; exit 130' INT TERM

# A free loopback port for HAProxy's frontend (the servers take port 0 and print theirs).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# One command on HAProxy's stats socket, its answer on stdout.
haproxy_cmd() {
  python3 - "$sock" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while chunk := s.recv(65536):
    out += chunk
sys.stdout.write(out.decode())
EOF
}
# `name status` for every server of the backend, from `show stat` (CSV: pxname,svname,…,status).
server_states() {
  haproxy_cmd "show stat" | awk -F, '$1 == "imgservers" && $2 != "BACKEND" {print $2, $18}'
}
# Waits (bounded, polling) until a file has a line matching a pattern; prints its field 3+.
wait_line() {
  local file=$1 pattern=$2 what=$3
  for _ in $(seq 400); do
    if grep -q "$pattern" "$file" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "cluster: $what did not start; its log:" >&2
  cat "$file" >&2 || true
  return 1
}

shared="$work/shared"
mkdir -p "$shared"
chmod 700 "$shared"
echo "== $n servers, one key ($shared/server.key) and one users file ($shared/users)"
printf 'demo-password\n' | "$rel/imgserver" user add demo --users-file "$shared/users" >/dev/null

addrs=() aports=()
for i in $(seq "$n"); do
  d="$work/s$i"
  mkdir -p "$d"
  "$rel/imgserver" --listen 127.0.0.1:0 --state-dir "$d" --workers "$workers" \
    --key-file "$shared/server.key" --users-file "$shared/users" \
    --proxy-protocol --agent-listen 127.0.0.1:0 \
    >"$d/server.out" 2>"$d/server.log" &
  pids+=($!)
  wait_line "$d/server.out" '^listening on' "server s$i"
  wait_line "$d/server.log" 'agent-check listening on' "server s$i's agent"
  addrs+=("$(awk '/^listening on/ {print $3; exit}' "$d/server.out")")
  aports+=("$(sed -n 's/.*agent-check listening on [^ ]*:\([0-9]*\).*/\1/p' "$d/server.log" | head -1)")
  echo "s$i: $(tail -n1 <<<"${addrs[-1]}") (agent port ${aports[-1]}, log $d/server.log)"
done

# The configuration: the template with its one server line repeated per server.
front="127.0.0.1:$(free_port)"
cfg="$work/haproxy.cfg"
servers=""
for i in $(seq "$n"); do servers+="s$i ${addrs[$((i - 1))]} ${aports[$((i - 1))]}"$'\n'; done
awk -v servers="$servers" '
  /# servers: begin/ { print; inblock = 1; next }
  /# servers: end/ {
    k = split(servers, lines, "\n")
    for (j = 1; j <= k; j++) {
      if (lines[j] == "") continue
      split(lines[j], f, " ")
      line = pattern
      sub(/server [^ ]+ [^ ]+/, "server " f[1] " " f[2], line)
      sub(/agent-port [0-9]+/, "agent-port " f[3], line)
      print line
    }
    inblock = 0; print; next
  }
  inblock && /^ *server / && pattern == "" { pattern = $0; next }
  inblock && /^ *server / { next }
  { print }
' dist/haproxy.cfg >"$cfg"
export IMGCLUSTER_BIND="$front" IMGCLUSTER_STATS_SOCKET="$sock"
haproxy -c -q -f "$cfg"
haproxy -db -f "$cfg" 2>"$work/haproxy.log" &
haproxy_pid=$!
echo "haproxy: $front (config $cfg)"

echo
echo "== waiting until HAProxy reports every server UP"
up=0
for _ in $(seq 200); do
  if [ -S "$sock" ]; then
    states=$(server_states 2>/dev/null || true)
    up=$(grep -c ' UP$' <<<"$states" || true)
    [ "$up" -eq "$n" ] && break
  fi
  kill -0 "$haproxy_pid" 2>/dev/null || { cat "$work/haproxy.log" >&2; echo "cluster: haproxy exited" >&2; exit 1; }
  sleep 0.1
done
if [ "$up" -ne "$n" ]; then
  echo "cluster: only $up of $n servers UP after 20 s:" >&2
  server_states >&2 || true
  cat "$work/haproxy.log" >&2
  exit 1
fi
server_states

export IMGCLIENT_SERVER="$front" IMGCLIENT_USER=demo IMGCLIENT_PASSWORD=demo-password
export IMGCLIENT_KNOWN_SERVERS="$work/known_servers"
echo
echo "== imgclient blur samples/cat.png through HAProxy (first contact pins the cluster's one key)"
"$rel/imgclient" blur samples/cat.png -o "$work/cat-blur.png"
echo
echo "== imgclient bench --conns $conns --requests $requests through HAProxy"
"$rel/imgclient" bench --conns "$conns" --requests "$requests" --op thumbnail:64 --dir samples
echo
echo "== each server's share (imgserver stats: jobs_ok)"
total=0
declare -a jobs
for i in $(seq "$n"); do
  j=$("$rel/imgserver" stats --json --state-dir "$work/s$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs_ok"])')
  jobs+=("$j")
  total=$((total + j))
done
for i in $(seq "$n"); do
  j=${jobs[$((i - 1))]}
  printf 's%s  %-16s jobs_ok %6s  %5.1f%%\n' "$i" "${addrs[$((i - 1))]}" "$j" "$(python3 -c "print(100*$j/max($total,1))")"
  [ "$j" -gt 0 ] || { echo "cluster: server s$i got no job" >&2; exit 1; }
done
echo
echo "== stopping (SIGTERM to HAProxy and every server)"
stop_all || { echo "cluster: $? servers did not exit cleanly (logs in $work)" >&2; exit 1; }
echo "stopped: haproxy and $n servers, every server exited 0"
