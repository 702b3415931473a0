#!/usr/bin/env bash
# bench/setup.sh: installs what the full benchmark compares against, into bench/.deps/
# (git-ignored), pinned, idempotent. Called by bench/run.sh; safe to run by hand.
#   - sharp (npm, with its prebuilt libvips from the npm registry)  -> bench/.deps/node
#   - pyvips + pyvips-binary (libvips wheel), Pillow (PyPI)         -> bench/.deps/venv
#   - redis-server + redis-benchmark (Debian), system-wide via apt, as install-deps.sh does
#   - the service anchors (bench/anchors.py): thumbor (PyPI, its own Pillow) -> bench/.deps/thumbor,
#     ipx (npm, with the sharp it depends on) -> bench/.deps/ipx, wrk (Debian, system-wide)
# Only package registries are used (npm, PyPI, Debian). Nothing here runs in --smoke.
set -euo pipefail
cd "$(dirname "$0")"
deps=.deps

# Pinned versions: change them here, the report prints what was actually loaded.
SHARP_VERSION=${SHARP_VERSION:-0.35.5}
PYVIPS_VERSION=${PYVIPS_VERSION:-3.2.0}
PYVIPS_BINARY_VERSION=${PYVIPS_BINARY_VERSION:-8.18.7}
PILLOW_VERSION=${PILLOW_VERSION:-13.0.0}
THUMBOR_VERSION=${THUMBOR_VERSION:-7.8.0}
THUMBOR_PILLOW_VERSION=${THUMBOR_PILLOW_VERSION:-12.3.0} # within thumbor's own Pillow range
IPX_VERSION=${IPX_VERSION:-3.1.1}
IPX_SHARP_VERSION=${IPX_SHARP_VERSION:-0.34.5}           # within ipx's own sharp range

mkdir -p "$deps"
log() { echo "setup: $*" >&2; }

# --- sharp --------------------------------------------------------------------------------
stamp="$deps/node/.sharp-$SHARP_VERSION"
if [ ! -e "$stamp" ]; then
  command -v npm >/dev/null || { log "npm not found (Node.js >= 20.9 is needed for sharp)"; exit 1; }
  log "npm install sharp@$SHARP_VERSION into bench/$deps/node"
  mkdir -p "$deps/node"
  # --prefix keeps node_modules inside bench/.deps; no package.json of ours is touched.
  timeout 600 npm install --prefix "$deps/node" --no-audit --no-fund --loglevel=error \
    --no-save "sharp@$SHARP_VERSION" >&2
  (cd "$deps/node" && node -e "require('sharp')") || { log "sharp does not load"; exit 1; }
  touch "$stamp"
fi

# --- pyvips, Pillow -----------------------------------------------------------------------
want="pyvips==$PYVIPS_VERSION pyvips-binary==$PYVIPS_BINARY_VERSION pillow==$PILLOW_VERSION"
stamp="$deps/venv/.installed"
if [ ! -e "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "python venv in bench/$deps/venv: $want"
  if [ ! -x "$deps/venv/bin/python" ] && ! python3 -m venv "$deps/venv"; then
    # Debian's own python3 keeps venv (ensurepip) in a separate package.
    rm -rf "$deps/venv"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "apt-get install python3-venv"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >&2
    python3 -m venv "$deps/venv"
  fi
  # shellcheck disable=SC2086  # $want is a list of requirement specifiers
  timeout 600 "$deps/venv/bin/python" -m pip install --quiet --disable-pip-version-check $want >&2
  "$deps/venv/bin/python" -c "import pyvips, PIL; pyvips.version(0)" \
    || { log "pyvips or Pillow does not import"; exit 1; }
  echo "$want" >"$stamp"
fi

# --- redis --------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "apt-get install redis-server (for the PING baseline)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  # The package's postinst would start a system redis on port 6379 and leave it running; a
  # temporary policy-rc.d (Debian's switch for this) keeps it from starting. The harness
  # starts its own redis on a free loopback port and stops it.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
  fi
  rc=0
  $SUDO apt-get install -y -qq --no-install-recommends redis-server redis-tools >&2 || rc=$?
  [ -z "$policy" ] || $SUDO rm -f "$policy"
  [ "$rc" -eq 0 ] || { log "apt-get install redis-server failed"; exit 1; }
fi
# --- service anchors: thumbor, ipx, wrk -------------------------------------------------------
# thumbor gets a venv of its own: it requires a Pillow range of its own, which must not move
# the Pillow above.
want="thumbor==$THUMBOR_VERSION pillow==$THUMBOR_PILLOW_VERSION"
stamp="$deps/thumbor/.installed"
if [ ! -e "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "python venv in bench/$deps/thumbor: $want"
  [ -x "$deps/thumbor/bin/python" ] || python3 -m venv "$deps/thumbor"
  # shellcheck disable=SC2086  # $want is a list of requirement specifiers
  timeout 600 "$deps/thumbor/bin/python" -m pip install --quiet --disable-pip-version-check \
    $want >&2
  "$deps/thumbor/bin/python" -c "import thumbor, PIL" || { log "thumbor does not import"; exit 1; }
  echo "$want" >"$stamp"
fi
# ipx in its own prefix, with a sharp of its own range (not the sharp above).
stamp="$deps/ipx/.ipx-$IPX_VERSION-sharp-$IPX_SHARP_VERSION"
if [ ! -e "$stamp" ]; then
  log "npm install ipx@$IPX_VERSION sharp@$IPX_SHARP_VERSION into bench/$deps/ipx"
  mkdir -p "$deps/ipx"
  timeout 600 npm install --prefix "$deps/ipx" --no-audit --no-fund --loglevel=error \
    --no-save "ipx@$IPX_VERSION" "sharp@$IPX_SHARP_VERSION" >&2
  (cd "$deps/ipx" && node -e "require('ipx'); require('sharp')") ||
    { log "ipx or its sharp does not load"; exit 1; }
  rm -f "$deps"/ipx/.ipx-*
  touch "$stamp"
fi
if ! command -v wrk >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "apt-get install wrk (HTTP load for the service anchors)"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk >&2
fi
log "ready"
