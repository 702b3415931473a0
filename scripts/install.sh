#!/usr/bin/env bash
# make install / make uninstall: installs the release build like a system library and its
# tools, or removes exactly what an install put. Usage:
#   scripts/install.sh install   [REL_DIR]   (REL_DIR: the build, default target/release)
#   scripts/install.sh uninstall
# PREFIX (default /usr/local) and DESTDIR (default empty: staging root for packagers) come
# from the environment. Needs no root when $DESTDIR$PREFIX is writable. Layout (README,
# "Installing"):
#   bin/imgserver, bin/imgclient          (RUNPATH $ORIGIN/../lib finds lib/ without ldconfig)
#   lib/libnetproto.so.1.0.0              the library; libnetproto.so.1 (soname) and
#                                         libnetproto.so (for -lnetproto) link to it
#   include/netproto.h, lib/pkgconfig/netproto.pc
#   share/man/man1/*.1                    both binaries and each subcommand (--generate man)
#   share/bash-completion/completions/BIN, share/zsh/site-functions/_BIN,
#   share/fish/vendor_completions.d/BIN.fish
#   lib/systemd/system/imgserver.service  ExecStart pointing at PREFIX/bin/imgserver
#   share/imgserver/{imgserver.toml,haproxy.cfg}  examples to copy to /etc
#   share/imgserver/install-manifest      every file, link and new directory installed,
#                                         what uninstall removes
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
root=$DESTDIR$PREFIX
manifest_rel=share/imgserver/install-manifest
manifest=$root/$manifest_rel
LIBVERSION=1.0.0   # the file's version; its major, 1, is the soname (docs/DESIGN.md says when it changes)

fail() { echo "install: $*" >&2; exit 1; }

# Records paths relative to $root: `f PATH` a file or link, `d PATH` a directory this install
# created (removed by uninstall only when empty).
entries=()
mkdirs() {  # mkdirs DIR: create DIR and its missing parents under $root, recording new ones
  local rel=$1 parts="" p
  IFS=/ read -ra comps <<<"$rel"
  for p in "${comps[@]}"; do
    parts=${parts:+$parts/}$p
    if [ ! -d "$root/$parts" ]; then
      mkdir -p "$root/$parts"
      entries+=("d $parts")
    fi
  done
}
put() {  # put MODE SOURCE DEST_REL
  mkdirs "$(dirname "$3")"
  install -m "$1" "$2" "$root/$3"
  entries+=("f $3")
  echo "install: $root/$3"
}
link() {  # link TARGET DEST_REL
  mkdirs "$(dirname "$2")"
  ln -sfn "$1" "$root/$2"
  entries+=("f $2")
  echo "install: $root/$2 -> $1"
}

install_all() {
  local rel=${1:-target/release}
  for f in imgserver imgclient libnetproto.so; do
    [ -e "$rel/$f" ] || fail "$rel/$f missing: run make build first"
  done
  [ -e "$manifest" ] && uninstall_all >/dev/null
  mkdir -p "$root"
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  local version; version=$("$rel/imgserver" --version | awk '{print $2}')

  put 755 "$rel/imgserver" bin/imgserver
  put 755 "$rel/imgclient" bin/imgclient
  put 755 "$rel/libnetproto.so" "lib/libnetproto.so.$LIBVERSION"
  link "libnetproto.so.$LIBVERSION" lib/libnetproto.so.1
  link libnetproto.so.1 lib/libnetproto.so
  put 644 libnetproto/include/netproto.h include/netproto.h
  sed -e "s|@PREFIX@|$PREFIX|" -e "s|@VERSION@|$version|" dist/netproto.pc.in >"$tmp/netproto.pc"
  put 644 "$tmp/netproto.pc" lib/pkgconfig/netproto.pc

  for bin in imgserver imgclient; do
    mkdir -p "$tmp/man-$bin"
    "$rel/$bin" --generate man "$tmp/man-$bin"
    for page in "$tmp/man-$bin"/*.1; do
      put 644 "$page" "share/man/man1/$(basename "$page")"
    done
    "$rel/$bin" --generate complete-bash >"$tmp/$bin.bash"
    "$rel/$bin" --generate complete-zsh >"$tmp/_$bin"
    "$rel/$bin" --generate complete-fish >"$tmp/$bin.fish"
    put 644 "$tmp/$bin.bash" "share/bash-completion/completions/$bin"
    put 644 "$tmp/_$bin" "share/zsh/site-functions/_$bin"
    put 644 "$tmp/$bin.fish" "share/fish/vendor_completions.d/$bin.fish"
  done

  grep -q '^ExecStart=/usr/local/bin/imgserver ' dist/imgserver.service || fail "dist/imgserver.service: ExecStart is not /usr/local/bin/imgserver"
  sed "s|^ExecStart=/usr/local/bin/imgserver |ExecStart=$PREFIX/bin/imgserver |" dist/imgserver.service >"$tmp/imgserver.service"
  put 644 "$tmp/imgserver.service" lib/systemd/system/imgserver.service
  put 644 dist/imgserver.toml share/imgserver/imgserver.toml
  put 644 dist/haproxy.cfg share/imgserver/haproxy.cfg

  mkdirs "$(dirname "$manifest_rel")"
  entries+=("f $manifest_rel")
  printf '%s\n' "${entries[@]}" >"$manifest"
  echo "install: $manifest ($(grep -c '^f ' "$manifest") files and links; make uninstall removes them)"
}

uninstall_all() {
  [ -f "$manifest" ] || fail "$manifest missing: nothing installed under $root by make install"
  local rel n=0 files dirs
  mapfile -t files < <(sed -n 's/^f //p' "$manifest")
  mapfile -t dirs < <(sed -n 's/^d //p' "$manifest" | sort -r)
  # Files (the manifest among them) first, then the directories the install created,
  # deepest first, if left empty.
  for rel in "${files[@]}"; do
    rm -f "$root/$rel"; n=$((n + 1))
  done
  for rel in "${dirs[@]}"; do
    rmdir "$root/$rel" 2>/dev/null || true
  done
  echo "uninstall: removed $n files and links from $root"
}

case ${1:-} in
  install) install_all "${2:-}" ;;
  uninstall) uninstall_all ;;
  *) echo "usage: scripts/install.sh install [REL_DIR] | uninstall" >&2; exit 2 ;;
esac
