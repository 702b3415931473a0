#!/usr/bin/env bash
# bench/changes.sh BEFORE AFTER NAME [changes.py flags...]: what the commits between BEFORE and
# AFTER moved, measured back to back. Builds both commits (release: imgserver, imgclient,
# libnetproto.so) from their own git worktrees into bench/.cache/builds/COMMIT (one shared
# cargo target directory, so dependencies build once), then runs bench/changes.py on the two
# builds and updates section NAME of bench/BEFORE_AFTER.md. Example:
#   bench/changes.sh 04c3e4c 581a3fa jpeg-decode-shrink --dir bench/.cache/images/jpeg
# The image set: bench/images.sh full bench/.cache/images/full (what make bench uses).
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,9p' "$0"; exit 2; }
before=$1 after=$2 name=$3; shift 3
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
builds=$here/.cache/builds
mkdir -p "$builds"

build() {  # build COMMIT -> prints the directory holding its binaries
  local sha; sha=$(git -C "$root" rev-parse --short=12 "$1^{commit}")
  local out=$builds/$sha
  if [ ! -x "$out/imgserver" ]; then
    local wt=$builds/src-$sha
    [ -d "$wt" ] || git -C "$root" worktree add -q --detach "$wt" "$sha"
    echo "changes: building $sha" >&2
    # -p libnetproto too: the cdylib is put in release/ only when built as a package of its own
    # (as a dependency it stays in release/deps).
    (cd "$wt" && CARGO_TARGET_DIR=$builds/target cargo build --release -q -p libnetproto -p imgserver -p imgclient) >&2
    mkdir -p "$out"
    cp "$builds/target/release/imgserver" "$builds/target/release/imgclient" \
       "$builds/target/release/"libnetproto.so* "$out/"  # .so.1 (the soname link) where it exists
    git -C "$root" worktree remove --force "$wt"
  fi
  echo "$out"
}

b=$(build "$before")
a=$(build "$after")
label() { git -C "$root" log -1 --format='%h (%s)' "$1" | cut -c1-160; }
exec python3 "$here/changes.py" --before "$b" --after "$a" --name "$name" \
  --before-label "$(label "$before")" --after-label "$(label "$after")" \
  --md "$here/BEFORE_AFTER.md" --dir "$here/.cache/images/full" "$@"
