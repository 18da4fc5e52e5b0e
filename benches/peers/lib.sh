# Shared helpers for the peer scripts. Source it; do not run it.
# shellcheck shell=bash

PEERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS_ROOT="${PEERS_ROOT:-/tmp/imgedge-peers}"     # installs, run dirs, data, results
# The corpus lives in the steering checkout next to this repo (../shared/corpus from the repo
# root, like benches/engine.rs); CORPUS_DIR overrides it.
REPO_DIR="$(cd "$PEERS_DIR/../.." && pwd)"
CORPUS_DIR="${CORPUS_DIR:-$(cd "$REPO_DIR/../shared/corpus" 2>/dev/null && pwd)}"

# Pinned versions (change here, then re-run install.sh).
THUMBOR_VERSION="${THUMBOR_VERSION:-7.8.0}"
SHARP_VERSION="${SHARP_VERSION:-0.35.5}"
# Quality step (added for imgedge): Pillow (ImageCms = littleCMS) builds the references,
# the dssim CLI scores them; the ssimulacra2 Python port (PyPI, numpy/scipy) is a second score.
QUALITY_PILLOW_VERSION="${QUALITY_PILLOW_VERSION:-12.3.0}"
SSIMULACRA2_PY_VERSION="${SSIMULACRA2_PY_VERSION:-0.3.0}"
DSSIM_VERSION="${DSSIM_VERSION:-3.5.1}"

THUMBOR_VENV="$PEERS_ROOT/venv-thumbor"
SHARP_PREFIX="$PEERS_ROOT/sharp"
QUALITY_VENV="$PEERS_ROOT/venv-quality"
DSSIM_ROOT="$PEERS_ROOT/dssim"            # cargo install --root: the binary is $DSSIM_ROOT/bin/dssim

APT_GET=(apt-get -o DPkg::Lock::Timeout=600)

log() { printf '[peers] %s\n' "$*" >&2; }
die() { printf '[peers] ERROR: %s\n' "$*" >&2; exit 1; }

# True if every named Debian package is installed.
have_debs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
}

# Install Debian packages if missing (runs apt-get update once per shell).
ensure_debs() {
  have_debs "$@" && return 0
  if [[ -z "${_PEERS_APT_UPDATED:-}" ]]; then
    log "apt-get update"
    "${APT_GET[@]}" update -q >&2 || die "apt-get update failed"
    _PEERS_APT_UPDATED=1
  fi
  log "apt-get install $*"
  # policy-rc.d (present on this image) keeps Debian's nginx service from starting.
  DEBIAN_FRONTEND=noninteractive "${APT_GET[@]}" install -y -q --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
}

# Wait until something accepts TCP connections on 127.0.0.1:$1 (timeout $2 s).
wait_port() {
  local port=$1 t=${2:-30} i
  for ((i = 0; i < t * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# run dir for one peer instance
run_dir() { printf '%s/run/%s-%s' "$PEERS_ROOT" "$1" "$2"; }

# Stop the process whose PID is in $1 (TERM, then KILL after $2 s).
stop_pidfile() {
  local pidfile=$1 grace=${2:-10} pid i
  [[ -f $pidfile ]] || { log "no pidfile $pidfile (not running?)"; return 0; }
  pid=$(cat "$pidfile")
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not exit after ${grace}s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}
