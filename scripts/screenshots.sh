#!/usr/bin/env bash
# `make screenshots`: regenerates docs/screenshots/*.png from a real run, never by hand.
#
# Starts its own imgserver (loopback, port 0, throwaway state directory), runs the real
# commands, records what a terminal would show (a "$ command" line, then its output), renders
# those transcripts as dark terminal windows (DejaVu Sans Mono, ImageMagick), and stops the
# server with SIGTERM. Produces:
#   server-startup.png  imgserver's start-up: `listening on`, key fingerprint, workers ready
#   filter-job.png      samples/cat.png and the server's blur of it side by side, the command,
#                       the client's `wrote ...` line and the server's log line for the job
#   bench.png           a 150-connection bench and the latency plot it draws (SVG -> PNG)
#   shutdown.png        SIGTERM: the server's last log lines, then proof nothing is left
# Installs ImageMagick, librsvg2-bin and fonts-dejavu-core from Debian if missing. Leaves no
# process behind, also on Ctrl-C. Content varies between runs (timings, pids, ports); the
# layout does not.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rel=$root/target/release
out=out                          # client outputs, as in `make run` (git-ignored)
shots=${SHOTS_DIR:-docs/screenshots}   # written only when every image was made
duration=${BENCH_DURATION:-5s}
workers=2                        # fixed, so the start-up and shutdown logs have a fixed length

# ---------------------------------------------------------------- tools (Debian packages)
font_dir=/usr/share/fonts/truetype/dejavu
MONO=$font_dir/DejaVuSansMono.ttf
MONO_BOLD=$font_dir/DejaVuSansMono-Bold.ttf
SANS=$font_dir/DejaVuSans.ttf
IM=()
find_imagemagick() {
  # `magick` (ImageMagick 7) or a `convert` that really is ImageMagick: a machine may have a
  # stand-in called `convert` earlier on PATH.
  local c
  IM=()
  if command -v magick >/dev/null && magick -version 2>/dev/null | grep -q '^Version: ImageMagick' ; then
    IM=(magick); return 0
  fi
  for c in $(type -ap convert) /usr/bin/convert-im6.q16 /usr/bin/convert; do
    if [ -x "$c" ] && "$c" -version 2>/dev/null | grep -q '^Version: ImageMagick' ; then IM=("$c"); return 0; fi
  done
  return 1
}
need=()
find_imagemagick || need+=(imagemagick)
command -v rsvg-convert >/dev/null || need+=(librsvg2-bin)
[ -f "$MONO" ] && [ -f "$MONO_BOLD" ] && [ -f "$SANS" ] || need+=(fonts-dejavu-core)
command -v ps >/dev/null || need+=(procps)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "screenshots: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  hash -r
  find_imagemagick || { echo "screenshots: no ImageMagick after installing it" >&2; exit 1; }
fi

[ -x "$rel/imgserver" ] && [ -x "$rel/imgclient" ] || make build

# ---------------------------------------------------------------- rendering
BG='#1e1e1e'        # terminal background
FG='#d4d4d4'        # output text
PROMPT='#8ae234'    # "$ "
CMD='#ffffff'       # the command typed
BAR='#3c3c3c'       # window title bar
TITLE_FG='#bbbbbb'
COLS=120            # terminal width in columns; longer lines wrap, as in a terminal
PT=15               # point size of the terminal text
PAD=18              # padding around the terminal text

# Text for label: ImageMagick expands %-escapes, backslash escapes and a leading @ (file), and
# drops leading spaces (those become no-break spaces, same width in a monospace font).
NBSP=$(printf '\xc2\xa0')
im_text() {
  local s=${1//\\/\\\\} lead
  s=${s//%/%%}
  lead=${s%%[! ]*}
  [ -z "$lead" ] || s="${lead// /$NBSP}${s#"$lead"}"
  [[ $s == @* ]] && s="\\$s"
  [ -n "$s" ] || s=' '
  printf '%s' "$s"
}
text_w=0            # pixel width of COLS columns
measure() {
  text_w=$("${IM[@]}" -font "$MONO" -pointsize "$PT" label:"$(printf 'M%.0s' $(seq "$COLS"))" -format '%w' info:)
}

# render_term OUT.png TITLE TRANSCRIPT: a terminal window showing TRANSCRIPT, where lines that
# start with "$ " are prompts (command in bold white), everything else is output.
render_term() {
  local png=$1 title=$2 file=$3 line piece first args=()
  args+=(-size "${text_w}x1" "xc:$BG" +size)   # fixes the width: -append pads to the widest
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line == '$ '* ]]; then
      first=1
      while IFS= read -r piece; do
        if [ $first = 1 ]; then
          args+=( '(' -font "$MONO" -fill "$PROMPT" label:'$ '
                  -font "$MONO_BOLD" -fill "$CMD" label:"$(im_text "$piece")" +append ')' )
          first=0
        else
          args+=(-font "$MONO_BOLD" -fill "$CMD" label:"$(im_text "$piece")")
        fi
      done < <(printf '%s\n' "${line#\$ }" | fold -w $((COLS - 2)))
    elif [ -z "$line" ]; then
      args+=(-font "$MONO" -fill "$FG" label:' ')
    else
      while IFS= read -r piece; do
        args+=(-font "$MONO" -fill "$FG" label:"$(im_text "$piece")")
      done < <(printf '%s\n' "$line" | expand -t 8 | fold -w "$COLS")
    fi
  done < "$file"
  local win_w=$((text_w + 2 * PAD))
  "${IM[@]}" -background "$BG" -pointsize "$PT" "${args[@]}" -gravity West -append \
    -bordercolor "$BG" -border "${PAD}x${PAD}" \
    '(' -size "${win_w}x30" "xc:$BAR" \
        -fill '#ff5f56' -draw 'circle 18,15 23,15' \
        -fill '#ffbd2e' -draw 'circle 38,15 43,15' \
        -fill '#27c93f' -draw 'circle 58,15 63,15' \
        -font "$SANS" -pointsize 13 -fill "$TITLE_FG" -gravity center \
        -annotate +0+0 "$(im_text "$title")" ')' \
    +swap -gravity center -append -depth 8 -strip -define png:compression-level=9 "$png"
}

# ---------------------------------------------------------------- the real run
mkdir -p "$out" "$shots"
work=$(mktemp -d)
img=$work/img                    # the images, moved to $shots at the end
mkdir "$img"
state=$work/state
log=$out/server.log
server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$server_pid" 2>/dev/null || true   # workers die with it (PDEATHSIG)
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT
exec 3>&2                        # the real stderr, also while a command's output is captured
trap 'echo "screenshots: interrupted; docs/screenshots left as it was" >&3; exit 130' INT TERM

export PATH="$rel:$PATH"          # so the commands shown are the commands run: `imgclient ...`
export IMGCLIENT_USER=demo IMGCLIENT_PASSWORD=demo-password
export IMGCLIENT_KNOWN_SERVERS=$work/known_servers

fail() { echo "screenshots: $*; docs/screenshots left as it was" >&3; exit 1; }

# shot TRANSCRIPT CMD: appends "$ CMD" and CMD's output (stdout and stderr) to TRANSCRIPT, and
# also shows them here. CMD runs in this shell (so `wait` works); its exit status is left in
# shot_rc and its output in $work/cmd.out.
shot_rc=0
shot() {
  local t=$1 cmd=$2
  shot_rc=0
  printf '$ %s\n' "$cmd" | tee -a "$t"
  { eval "$cmd"; } > "$work/cmd.out" 2>&1 || shot_rc=$?
  tee -a "$t" < "$work/cmd.out"
}

measure

echo "== server start-up"
t_start=$work/startup.txt
: > "$t_start"
shot "$t_start" "ls -A /dev/shm > $work/shm-before.txt"
shot "$t_start" "printf 'demo-password\\n' | imgserver user add demo --state-dir $state"
start_cmd="imgserver --listen 127.0.0.1:0 --state-dir $state --workers $workers"
printf '$ %s\n' "$start_cmd" >> "$t_start"
# stdout (`listening on`) and stderr (the log) into one file, in the order they were written
$start_cmd > "$log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do
  [ "$(grep -c ' ready (pid ' "$log" || true)" -ge "$workers" ] && grep -q '^listening on' "$log" && break
  sleep 0.05
done
addr=$(awk '/^listening on/ {print $3}' "$log")
# the log up to the last worker's "ready" line
last_ready=$(grep -n ' ready (pid ' "$log" | tail -n 1 | cut -d: -f1)
[ -n "$addr" ] && [ -n "$last_ready" ] || { cat "$log" >&3; fail "the server did not start"; }
head -n "$last_ready" "$log" | tee -a "$t_start"
render_term "$img/server-startup.png" "imgserver: start-up" "$t_start"
mapfile -t worker_pids < <(sed -n 's/.* worker [0-9]* started, pid \([0-9]*\).*/\1/p' "$log")

export IMGSERVER_ADDR=$addr
imgclient ping > /dev/null 2>&1   # first contact pins the server key (as `make run` does)

echo "== filter job"
t_job=$work/job.txt
: > "$t_job"
shot "$t_job" "imgclient blur samples/cat.png -o $out/cat-blur.png"
[ "$shot_rc" -eq 0 ] || fail "imgclient blur failed (exit $shot_rc)"
for _ in $(seq 100); do grep -q ' job 1 req ' "$log" && break; sleep 0.05; done   # logged after the reply
shot "$t_job" "grep ' job 1 req ' $log"
render_term "$work/job-term.png" "imgclient blur: the command and the server's log line for the job" "$t_job"
in_size=$("${IM[@]}" samples/cat.png -format '%wx%h' info:)
out_size=$("${IM[@]}" "$out/cat-blur.png" -format '%wx%h' info:)
"${IM[@]}" -background "$BG" \
  '(' samples/cat.png '(' -font "$SANS" -pointsize 14 -fill "$FG" \
      label:"$(im_text "input: samples/cat.png ($in_size, $(stat -c %s samples/cat.png) bytes)")" ')' \
      -gravity center -append ')' \
  '(' -size 24x1 "xc:$BG" +size ')' \
  '(' "$out/cat-blur.png" '(' -font "$SANS" -pointsize 14 -fill "$FG" \
      label:"$(im_text "server output: $out/cat-blur.png ($out_size, $(stat -c %s "$out/cat-blur.png") bytes)")" ')' \
      -gravity center -append ')' \
  -gravity North +append -bordercolor "$BG" -border 16x16 "$work/job-images.png"
"${IM[@]}" -background "$BG" "$work/job-images.png" "$work/job-term.png" -gravity center -append \
  -depth 8 -strip -colors 256 -define png:compression-level=9 "PNG8:$img/filter-job.png"

echo "== bench"
t_bench=$work/bench.txt
: > "$t_bench"
shot "$t_bench" "imgclient bench --conns 150 --dir samples --duration $duration --plot $out/bench-latency.svg"
[ "$shot_rc" -eq 0 ] || fail "imgclient bench failed (exit $shot_rc)"
grep -q '^requests: .* ok, 0 errors' "$work/cmd.out" || fail "the bench had errors"
render_term "$work/bench-term.png" "imgclient bench: 150 connections" "$t_bench"
rsvg-convert -b white -w 900 "$out/bench-latency.svg" -o "$work/bench-plot.png"
"${IM[@]}" -background "$BG" "$work/bench-term.png" \
  '(' "$work/bench-plot.png" -bordercolor "$BG" -border 16x16 ')' \
  '(' -font "$SANS" -pointsize 14 -fill "$FG" \
      label:"$(im_text "$out/bench-latency.svg, drawn by --plot (converted to PNG with rsvg-convert)")" ')' \
  -gravity center -append -gravity South -splice 0x16 \
  -depth 8 -strip -define png:compression-level=9 "$img/bench.png"

echo "== graceful shutdown"
t_stop=$work/shutdown.txt
: > "$t_stop"
kill -0 "$server_pid" 2>/dev/null || fail "the server stopped before the shutdown step"
log_lines=$(wc -l < "$log")
pids=$(IFS=,; echo "$server_pid,${worker_pids[*]}")
stopping_pid=$server_pid
shot "$t_stop" "cat $state/imgserver.pid"
shot "$t_stop" "kill -TERM $stopping_pid"
shot "$t_stop" "wait $stopping_pid; echo \"imgserver exited with status \$?\""
server_pid=""
grep -q 'exited with status 0' "$work/cmd.out" || fail "imgserver did not exit with status 0"
shot "$t_stop" "tail -n +$((log_lines + 1)) $log"
shot "$t_stop" "ps -o pid,args -p $pids || echo 'none of master and workers ($pids) is running'"
shot "$t_stop" "ls -A $state; test -e $state/imgserver.pid || echo 'imgserver.pid: removed'"
shot "$t_stop" "ls -A /dev/shm | diff $work/shm-before.txt - && echo '/dev/shm: unchanged since before the start'"
render_term "$img/shutdown.png" "imgserver: graceful shutdown (SIGTERM)" "$t_stop"

echo
for f in server-startup filter-job bench shutdown; do
  mv -f "$img/$f.png" "$shots/$f.png"
  printf '%-40s %s, %s bytes\n' "$shots/$f.png" \
    "$("${IM[@]}" "$shots/$f.png" -format '%wx%h' info:)" "$(stat -c %s "$shots/$f.png")"
done
