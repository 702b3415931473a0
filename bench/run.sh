#!/usr/bin/env bash
# bench/run.sh [--smoke | --quick] [--no-third-party] [--no-build]: the benchmark suite
# (`make bench`). One run on one machine with one image set, measuring
#   1. imgfilters in-process (imgbench), 1 core and all cores, jobs blur2 / resize50 / gray;
#   2. the same jobs in sharp, pyvips and Pillow, in-process, 1 and all cores;
#   3. the same jobs end to end through imgserver (imgclient bench, 150 connections), each
#      in PAIRS interleaved pairs with imgfilters and sharp in-process on every core;
#   4. PING at 150 connections against redis-benchmark's; no-op job vs PING at 1 connection
#      (PAIRS interleaved pairs each);
#   5. the workers' sandbox cost: blur2 and a no-op job on two servers side by side, default
#      (seccomp + Landlock) and --sandbox none, alternated on/off (SBX_PAIRS pairs);
#   6. growth curves (growth.py): ms per job from 0.1 to 50 MP, throughput and p99 at 1, 10,
#      150 and 1,000 connections, throughput with 1 and 2 workers;
#   7. thumbor and ipx as services against imgserver, interleaved pairs (bench/anchors.py);
#   8. the master's memory: idle connections and a 50 MP image (bench/memory.py);
#   9. lossy WebP and AVIF output against sharp: bytes and encode time (bench/formats.py);
# then writes bench/RESULTS.md and bench/results.svg (bench/report.py).
#
#   --smoke  < 60 s, no network, no third-party installs: two small images, the project's own
#            paths only (in-process, one service/in-process pair per job, no-op vs PING, one
#            sandbox on/off pair, growth curves at two sizes and 1 and 10 connections); the
#            report goes to bench/.cache/smoke/ and is checked. For `make test`.
#   --quick  the full comparison with shorter runs (~10 min).
#   --no-third-party  skip sharp/pyvips/Pillow/redis/thumbor/ipx (no installs).
#   --no-build        use the binaries in target/release as they are.
# Everything runs on loopback, each step under `timeout`; every background process is stopped
# on exit, error or Ctrl-C. Intermediate files: bench/.cache/ (git-ignored).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"

mode=full third=1 build=1
for a in "$@"; do
  case "$a" in
    --smoke) mode=smoke third=0 ;;
    --quick) mode=quick ;;
    --no-third-party) third=0 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

cache=$here/.cache
if [ "$mode" = smoke ]; then
  out=$cache/smoke
  md=$out/RESULTS.md svg=$out/results.svg
else
  out=$cache
  md=$here/RESULTS.md svg=$here/results.svg
fi
results=$out/results
images=$cache/images/$([ "$mode" = smoke ] && echo smoke || echo full)
tiny=$cache/images/tiny
rel=$root/target/release
cores=$(nproc)
py=python3
start=$(date +%s)

# Measurement lengths per mode: passes at least REPEAT times and MIN_TIME seconds in-process;
# PAIRS interleaved service / in-process pairs per job (each in-process side at least
# PAIR_REPEAT passes and PAIR_MIN_TIME seconds) of SVC_SECONDS of work per service run, and as
# many PING / redis-benchmark and no-op / PING pairs; SBX_PAIRS on/off pairs of SBX_SECONDS
# (blur2) and SBX_NOOP_SECONDS (no-op) runs for the sandbox cost (smoke: by duration);
# growth curves at GROWTH_SIZES megapixels (GROWTH_REPEAT passes, GROWTH_MIN_TIME seconds)
# and GROWTH_CONNS connections, GROWTH_SECONDS per service run, GROWTH_PAIRS 1-worker /
# 2-worker pairs at GROWTH_WCONNS connections.
case "$mode" in
  full)  REPEAT=3 MIN_TIME=5 SVC_SECONDS=12 LAT_SECONDS=5 PING_SECONDS=6 REDIS_N=300000
         PAIRS=3 PAIR_REPEAT=2 PAIR_MIN_TIME=3
         SBX_PAIRS=5 SBX_SECONDS=10 SBX_NOOP_SECONDS=5
         GROWTH_SIZES=0.1,0.5,1,2,5,10,20,50 GROWTH_REPEAT=3 GROWTH_MIN_TIME=2
         GROWTH_CONNS=1,10,150,1000 GROWTH_SECONDS=8 GROWTH_PAIRS=3 GROWTH_WCONNS=16 ;;
  quick) REPEAT=2 MIN_TIME=1 SVC_SECONDS=4 LAT_SECONDS=2 PING_SECONDS=3 REDIS_N=100000
         PAIRS=3 PAIR_REPEAT=1 PAIR_MIN_TIME=1
         SBX_PAIRS=3 SBX_SECONDS=4 SBX_NOOP_SECONDS=3
         GROWTH_SIZES=0.1,0.5,1,2,5,10,20,50 GROWTH_REPEAT=2 GROWTH_MIN_TIME=0.5
         GROWTH_CONNS=1,10,150,1000 GROWTH_SECONDS=3 GROWTH_PAIRS=3 GROWTH_WCONNS=16 ;;
  smoke) REPEAT=1 MIN_TIME=0 SVC_SECONDS=1 LAT_SECONDS=1 PING_SECONDS=1 REDIS_N=0
         PAIRS=1 PAIR_REPEAT=1 PAIR_MIN_TIME=0
         SBX_PAIRS=1 SBX_SECONDS=0.5 SBX_NOOP_SECONDS=0.5
         GROWTH_SIZES=0.1,0.5 GROWTH_REPEAT=1 GROWTH_MIN_TIME=0
         GROWTH_CONNS=1,10 GROWTH_SECONDS=0.5 GROWTH_PAIRS=1 GROWTH_WCONNS=8 ;;
esac

redis_pid="" redis_dir=""
cleanup() {
  if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  [ -z "$redis_dir" ] || rm -rf "$redis_dir"
}
trap cleanup EXIT
trap 'echo; echo "bench: interrupted" >&2; exit 130' INT TERM

say() { printf '\n== %s\n' "$*" >&2; }

say "bench ($mode) on $cores cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$results" "$out/outputs"
mkdir -p "$results"

if [ "$build" = 1 ]; then
  say "build (make build)"
  timeout --foreground 1800 make -s build >&2
fi
for b in imgserver imgclient imgbench libnetproto.so.1; do
  [ -e "$rel/$b" ] || { echo "bench: $rel/$b is missing (run make build)" >&2; exit 1; }
done
# The whole run uses one private copy of the build: a rebuild in target/ meanwhile (others
# working in the tree) must not swap binaries under a running server, whose workers re-exec
# their own binary, nor leave perf without symbols. RUNPATH $ORIGIN finds the .so beside them (cp follows the soname link: a real file).
bin=$cache/bin
rm -rf "$bin"
mkdir -p "$bin"
cp "$rel/imgserver" "$rel/imgclient" "$rel/imgbench" "$rel/libnetproto.so.1" "$bin/"
rel=$bin
export BENCH_BIN=$bin

say "images"
timeout --foreground 900 "$here/images.sh" "$([ "$mode" = smoke ] && echo smoke || echo full)" "$images"
"$rel/imgbench" list --images "$images" >"$results/manifest.json"

if [ "$third" = 1 ]; then
  say "third-party libraries (bench/setup.sh)"
  timeout --foreground 1800 "$here/setup.sh"
fi
$py "$here/report.py" --collect-meta "$results/meta.json" --mode "$mode" --images "$images"

# One measured command: measure.py keeps its JSON with the machine's load during it.
measure() { # OUT TIMEOUT CMD...
  local o=$1 t=$2
  shift 2
  $py "$here/measure.py" --out "$o" --timeout "$t" -- "$@"
}
procs_list="1 $cores"
[ "$cores" -gt 1 ] || procs_list=1
jobs="blur2 resize50 gray"
sharp_cmd=""
timeout_run=$([ "$mode" = full ] && echo 1200 || echo 300)

say "in-process: imgfilters (imgbench)"
# resize50d: the resize again with imgfilters and sharp each at its defaults (both shrink a
# JPEG on load); every other job runs with shrink-on-load off everywhere (the same work).
for job in $jobs resize50d; do
  for p in $procs_list; do
    save=()
    [ "$p" != 1 ] || save=(--save "$out/outputs/imgfilters/$job")
    echo "imgbench $job procs=$p" >&2
    measure "$results/inproc-imgfilters-$job-p$p.json" "$timeout_run" \
      "$rel/imgbench" run --job "$job" --procs "$p" --images "$images" \
      --repeat "$REPEAT" --min-time "$MIN_TIME" "${save[@]}"
  done
done

if [ "$third" = 1 ]; then
  # The third-party encoders copy what imgfilters' own output shows: JPEG chroma subsampling,
  # PNG zlib level class and row filtering (bench/imgmeta.py --encoder).
  blur_out=$out/outputs/imgfilters/blur2
  enc=$($py "$here/imgmeta.py" --encoder "$(ls "$blur_out"/*.jpg | head -n1)" \
    "$(ls "$blur_out"/*.png | head -n1)")
  echo "$enc" >"$results/encoder.json"
  read -r sub lvl filt < <($py -c 'import json,sys; e=json.loads(sys.argv[1]);
print(e["subsampling"], e["png_level"], e["png_filter"])' "$enc")
  common=(--quality 85 --subsampling "$sub" --png-level "$lvl" --png-filter "$filt")
  # The same sharp runner and settings for service.py's service / sharp pairs.
  sharp_cmd=$(printf '%q ' env NODE_PATH="$here/.deps/node/node_modules" node \
    "$here/runners/sharp_bench.js" "${common[@]}")
  say "in-process: sharp, pyvips, Pillow (JPEG q85 $sub, PNG level $lvl, filter $filt)"
  venv=$here/.deps/venv/bin/python
  for impl in sharp pyvips pillow; do
    impl_jobs=$jobs
    [ "$impl" != sharp ] || impl_jobs="$jobs resize50d"
    for job in $impl_jobs; do
      for p in $procs_list; do
        save=()
        [ "$p" != 1 ] || save=(--save "$out/outputs/$impl/$job")
        case $impl in
          sharp) cmd=(env NODE_PATH="$here/.deps/node/node_modules" node "$here/runners/sharp_bench.js") ;;
          pyvips) cmd=("$venv" "$here/runners/vips_bench.py") ;;
          pillow) cmd=("$venv" "$here/runners/pillow_bench.py") ;;
        esac
        echo "$impl $job procs=$p" >&2
        measure "$results/inproc-$impl-$job-p$p.json" "$timeout_run" "${cmd[@]}" \
          --job "$job" --procs "$p" --images "$images" --repeat "$REPEAT" \
          --min-time "$MIN_TIME" "${common[@]}" "${save[@]}"
      done
    done
  done
fi

# --- web output formats (bench/formats.py): lossy WebP q80 and AVIF q60 at 800 px wide,
# imgfilters against sharp (sharp only with the third-party libraries); full and --quick only.
if [ "$mode" != smoke ]; then
  say "in-process: web output formats (bench/formats.py)"
  timeout --foreground 1800 $py "$here/formats.py" --results "$results" --images "$images" --bin "$rel" \
    --node-path "$here/.deps/node/node_modules" --repeat "$REPEAT" --min-time "$MIN_TIME" ||
    echo "bench: formats.py failed (no formats section)" >&2
fi
# --- end of web output formats

# The in-process cost of the no-op probe (decode + encode of the 8x8 image), to split the
# service's no-op round trip into image work and everything else.
measure "$results/inproc-imgfilters-noop-tiny.json" 120 \
  "$rel/imgbench" run --job noop --procs 1 --images "$tiny" --repeat 200

# redis-server for service.py's PING / redis-benchmark pairs, stopped right after them.
redis_addr=""
if [ "$third" = 1 ] && command -v redis-server >/dev/null; then
  port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis_dir=$(mktemp -d)
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize no \
    --dir "$redis_dir" --logfile "$results/redis.log" &
  redis_pid=$!
  for _ in $(seq 100); do
    [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] ||
    { echo "bench: redis-server did not start (log: $results/redis.log)" >&2; exit 1; }
  redis_addr=127.0.0.1:$port
fi

say "service: imgserver end to end (imgclient bench, encrypted, closed loop), $PAIRS pairs"
svc=(--images "$images" --tiny "$tiny" --manifest "$results/manifest.json"
  --results "$results" --conns 150 --seconds "$SVC_SECONDS"
  --latency-seconds "$LAT_SECONDS" --ping-seconds "$PING_SECONDS"
  --pairs "$PAIRS" --inproc-repeat "$PAIR_REPEAT" --inproc-min-time "$PAIR_MIN_TIME"
  --sharp "$sharp_cmd" --redis "$redis_addr" --redis-n "$REDIS_N"
  --sandbox-pairs "$SBX_PAIRS" --sandbox-seconds "$SBX_SECONDS"
  --sandbox-noop-seconds "$SBX_NOOP_SECONDS")
[ "$mode" != smoke ] || svc+=(--smoke)
perf_ok=0
if [ "$mode" = full ] && command -v perf >/dev/null &&
  perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
  perf_ok=1
  svc+=(--perf)
fi
timeout --foreground 2400 $py "$here/service.py" "${svc[@]}"
cleanup
redis_pid="" redis_dir=""

say "growth curves: ms per job vs megapixels, connections, workers (growth.py)"
growth=(--images "$images" --manifest "$results/manifest.json" --results "$results"
  --cache "$cache" --sizes "$GROWTH_SIZES" --repeat "$GROWTH_REPEAT"
  --min-time "$GROWTH_MIN_TIME" --conns "$GROWTH_CONNS" --seconds "$GROWTH_SECONDS"
  --pairs "$GROWTH_PAIRS" --worker-conns "$GROWTH_WCONNS")
[ "$mode" != smoke ] || growth+=(--smoke)
timeout --foreground 1800 $py "$here/growth.py" "${growth[@]}"

if [ "$mode" != smoke ]; then
  # The master's memory (bench/memory.py): 10 000 idle connections before and after login,
  # after they close, and a 50 MP image's peak; goal rows in goals-memory.json.
  say "memory: the master's RSS per idle connection and for a 50 MP image (memory.py)"
  timeout --foreground 600 $py "$here/memory.py" --results "$results" ||
    echo "bench: the memory figures failed (above); the report leaves them out" >&2
fi

# --- service anchors (bench/anchors.py): thumbor and ipx against imgserver, interleaved ------
if [ "$third" = 1 ]; then
  anchor_s=$([ "$mode" = full ] && echo 20 || echo 8)
  say "service anchors: imgserver, thumbor, ipx; blur σ2 on cat.png, 150 connections, 3 pairs"
  timeout --foreground 1800 $py "$here/anchors.py" --results "$results" \
    --outputs "$out/outputs/anchors" --image "$root/samples/cat.png" --conns 150 \
    --seconds "$anchor_s" --pairs 3 ||
    echo "bench: the service anchors failed (above); the report leaves them out" >&2
fi
# --- end of service anchors -------------------------------------------------------------------

# --- scale-out (bench/cluster.py): 2 servers behind HAProxy against 1 direct; not in --smoke
if [ "$mode" != smoke ]; then
  say "scale-out: 2 servers behind HAProxy against 1 server direct, $PAIRS pairs (cluster.py)"
  timeout --foreground 900 $py "$here/cluster.py" --results "$results" --images "$images" \
    --seconds "$SVC_SECONDS" --pairs "$PAIRS" ||
    echo "bench: the scale-out figures failed (above); the report leaves them out" >&2
fi

# --- result cache (bench/cache.py): cache on vs off on a Zipf workload, a burst of one image;
# not in --smoke (every other figure here is a cache-off figure: harness.Server's default)
if [ "$mode" != smoke ]; then
  say "result cache: on vs off on a Zipf(1.1) workload, $PAIRS pairs; 150 identical requests at once (cache.py)"
  timeout --foreground 900 $py "$here/cache.py" --results "$results" --images "$images" \
    --seconds "$SVC_SECONDS" --pairs "$PAIRS" ||
    echo "bench: the cache figures failed (above); the report leaves them out" >&2
fi

# --- one decode, many outputs (bench/variants.py): 3 variants as one multi-output job vs the
# 3 separate jobs, interleaved pairs, fresh cache-off servers; not in --smoke
if [ "$mode" != smoke ]; then
  say "multi-output jobs: 3 variants in one job vs 3 separate jobs, $PAIRS pairs (variants.py)"
  timeout --foreground 900 $py "$here/variants.py" --results "$results" --images "$images" \
    --seconds "$SVC_SECONDS" --pairs "$PAIRS" ||
    echo "bench: the multi-output figures failed (above); the report leaves them out" >&2
fi

if [ "$perf_ok" = 1 ]; then
  say "profile: perf record (cpu-clock) of imgbench, one thread, one pass per job"
  for job in $jobs; do
    data=$results/perf-$job.data
    timeout --foreground 600 perf record -q -e cpu-clock -F 999 -o "$data" -- \
      "$rel/imgbench" run --job "$job" --procs 1 --images "$images" --repeat 1 >/dev/null 2>&1 &&
      timeout 300 perf report -i "$data" --stdio --no-children --sort dso,symbol \
        --percent-limit 1.5 >"$results/profile-inproc-$job.txt" 2>/dev/null || true
    rm -f "$data"
  done
fi

say "report"
$py "$here/report.py" --results "$results" --md "$md" --svg "$svg" \
  --seconds "$(($(date +%s) - start))"
if [ "$mode" = smoke ]; then
  # The smoke run is a test: the report must exist and carry the project's own figures.
  for want in "In-process throughput" "End to end through imgserver" "no-op job" \
    "Worker sandbox cost" "## Goals" "service vs own in-process" "Growth curves" \
    "ms per job against megapixels" "Throughput and p99 against connections" \
    "Throughput with 1 and 2 workers" "<svg" "ms per job vs megapixels"; do
    grep -q -- "$want" "$md" "$svg" || { echo "bench smoke: FAIL: '$want' missing" >&2; exit 1; }
  done
  echo "bench smoke: ok ($(($(date +%s) - start)) s): $md" >&2
else
  echo "bench: wrote $md and $svg ($(($(date +%s) - start)) s)" >&2
fi
