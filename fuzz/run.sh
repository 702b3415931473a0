#!/usr/bin/env bash
# Coverage-guided fuzzing of libnetproto on the stable toolchain, with libFuzzer (libfuzzer-sys).
#
#   fuzz/run.sh [SECONDS] [TARGET...]   fuzz each target for SECONDS (default 60); exit 1 on a crash
#   fuzz/run.sh --minimize [TARGET...]  shrink corpus/<target>/ (-set_cover_merge=1; keeps seed-* files)
#   fuzz/run.sh --build                 only build the instrumented targets
#
# Corpus: corpus/<target>/ (new inputs are added there). Crashes: artifacts/<target>/ (ignored by
# git; move a fixed one to regressions/<target>-<what>.bin so `cargo test` replays it forever).
# Single process, no -jobs/-workers: the machine is shared. Safe from a clean clone.
set -euo pipefail
cd "$(dirname "$0")"

ALL_TARGETS=(frame_decoder server_handshake)

# Longest input libFuzzer may generate, per target: several maximal frames, enough to overflow
# the connection's 144 KiB input buffer in one delivery.
max_len() {
    case "$1" in
        frame_decoder) echo 200000 ;;
        server_handshake) echo 200000 ;;
        *) echo "unknown target $1" >&2; exit 2 ;;
    esac
}

# cargo-fuzz's instrumentation, minus the nightly-only -Zsanitizer=address: SanitizerCoverage
# (edge counters, PC table, comparison tracing) is plain LLVM passes and options, which stable
# rustc accepts through -C passes / -C llvm-args. `--cfg fuzzing` is what cargo-fuzz sets too.
# Debug assertions and overflow checks come from [profile.release] in Cargo.toml.
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing"
unset RUSTC_WRAPPER CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (as cargo-fuzz does)
# and puts the instrumented build in target/<host>/, apart from uninstrumented gen_corpus.
HOST=$(rustc -vV | sed -n 's/^host: //p')
BIN_DIR="target/$HOST/release"

build() {
    cargo build --release --locked --target "$HOST" --target-dir target \
        --bin frame_decoder --bin server_handshake
}

minimize() {
    local t=$1 tmp seeds
    tmp=$(mktemp -d)
    mkdir -p "corpus/$t"
    "$BIN_DIR/$t" -set_cover_merge=1 -max_len="$(max_len "$t")" -timeout=10 "$tmp" "corpus/$t" \
        >"artifacts/$t/merge.log" 2>&1 || { tail -40 "artifacts/$t/merge.log"; rm -rf "$tmp"; return 1; }
    # libFuzzer names files by their SHA-1: drop merged copies of the seeds, keep the seeds.
    seeds=$(cd "corpus/$t" && sha1sum seed-* 2>/dev/null | cut -d' ' -f1 || true)
    find "corpus/$t" -maxdepth 1 -type f ! -name 'seed-*' -delete
    for f in "$tmp"/*; do
        [ -e "$f" ] || continue
        grep -qx "$(basename "$f")" <<<"$seeds" || mv "$f" "corpus/$t/"
    done
    rm -rf "$tmp"
    echo "$t: corpus minimized to $(find "corpus/$t" -type f | wc -l) files, $(du -sh "corpus/$t" | cut -f1)"
}

fuzz() {
    local t=$1 secs=$2 log rc=0
    log="artifacts/$t/fuzz.log"
    echo "== $t: fuzzing for ${secs}s (corpus/$t, log $log)"
    "$BIN_DIR/$t" "corpus/$t" \
        -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
    # Coverage over time (INITED is the seed corpus; cov/ft must grow after it) and the totals.
    grep -E '^#[0-9]+[[:space:]]+(INITED|pulse|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        echo "!! $t: libFuzzer exited with $rc; the input is in artifacts/$t/. Log tail:"
        tail -60 "$log"
    fi
    return "$rc"
}

mode=fuzz
secs=60
case "${1:-}" in
    --minimize) mode=minimize; shift ;;
    --build) build; exit 0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    '' ) ;;
    *[!0-9]*) ;;  # a target name
    *) secs=$1; shift ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")

build
failed=()
for t in "${targets[@]}"; do
    max_len "$t" >/dev/null
    mkdir -p "corpus/$t" "artifacts/$t"
    if [ "$mode" = minimize ]; then
        minimize "$t" || failed+=("$t")
    else
        fuzz "$t" "$secs" || failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: ${targets[*]}: no crash"
