#!/usr/bin/env bash
# bench/images.sh full|smoke DEST: builds the bench image set in DEST (called by run.sh).
#   full:  samples/*.png|jpg plus the large images of bench/photos.list, fetched from Debian
#          (apt-get download + dpkg-deb into bench/.cache/debs, only the listed files kept)
#   smoke: two small samples, no network
# Also writes DEST/../tiny/tiny.png (8x8, the no-op round-trip probe), made from a sample
# with imgclient's in-process thumbnail ($BENCH_BIN or target/release).
set -euo pipefail
mode=$1 dest=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache=$here/.cache
log() { echo "images: $*" >&2; }

rm -rf "$dest"
mkdir -p "$dest"
if [ "$mode" = smoke ]; then
  cp "$root/samples/cat.png" "$dest/sample-cat.png"
  cp "$root/samples/rocket.jpg" "$dest/sample-rocket.jpg"
else
  for f in "$root"/samples/*.png "$root"/samples/*.jpg; do
    cp "$f" "$dest/sample-$(basename "$f")"
  done
  mkdir -p "$cache/debs" "$cache/extract"
  pkgs=$(awk '!/^#/ && NF {print $1}' "$here/photos.list" | sort -u)
  for p in $pkgs; do
    if ! ls "$cache/debs/${p}"_*.deb >/dev/null 2>&1; then
      log "apt-get download $p"
      # apt-get download writes into the current directory; a stale package list is
      # refreshed once if the first try fails.
      (cd "$cache/debs" && { timeout 600 apt-get download "$p" >&2 2>/dev/null ||
        { log "apt-get update"; SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo;
          $SUDO apt-get update -qq >&2 && timeout 600 apt-get download "$p" >&2; }; })
    fi
  done
  while read -r pkg path name size; do
    case "$pkg" in ''|'#'*) continue ;; esac
    src="$cache/extract/$path"
    if [ ! -f "$src" ]; then
      deb=$(ls "$cache/debs/${pkg}"_*.deb | head -n1)
      dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$cache/extract" "./$path"
    fi
    cp "$src" "$dest/$name"
    # Same pixels for everyone: right size, no EXIF rotation, no ICC profile.
    python3 -c '
import sys; sys.path.insert(0, sys.argv[1])
import imgmeta
m = imgmeta.info(sys.argv[2])
size = "%dx%d" % (m["width"], m["height"])
ok = size == sys.argv[3] and m["exif_orientation"] in (None, 1) and not m["icc"]
sys.exit(0 if ok else "images: %s: %s, orientation %s, icc %s (expected %s, no rotation, no ICC)"
         % (sys.argv[2], size, m["exif_orientation"], m["icc"], sys.argv[3]))
' "$here" "$dest/$name" "$size"
  done <"$here/photos.list"
fi

# Bound the set: a wrong list entry must not turn a bench into an hour.
total=$(du -sb "$dest" | cut -f1)
[ "$total" -le $((64 * 1024 * 1024)) ] || { log "image set is $total bytes (> 64 MiB)"; exit 1; }

tiny=$(dirname "$dest")/tiny
mkdir -p "$tiny"
msg=$("${BENCH_BIN:-$root/target/release}/imgclient" thumbnail --local --size 8 \
  "$root/samples/chelsea_64x64.png" -o "$tiny/tiny.png" 2>&1) || { log "$msg"; exit 1; }
log "$(ls "$dest" | wc -l) images, $((total / 1024)) KiB in $dest"
