#!/usr/bin/env bash
# Idempotent installer for the benchmark peers.
#   ./install.sh            # everything
#   ./install.sh tools thumbor sharp nginx vips quality data
# Debian packages go in as system packages; thumbor (venv) and sharp (npm prefix)
# go under $PEERS_ROOT (default /tmp/imgedge-peers). Re-running skips what is there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_tools() {
  # wrk = load generator; taskset (util-linux) = pinning; python3 = bench.py; hyperfine optional.
  ensure_debs wrk util-linux python3 curl
  # The allocator trial (targets imgedge-jemalloc / imgedge-mimalloc) preloads these.
  ensure_debs libjemalloc2 libmimalloc2.0
}

install_vips() {
  ensure_debs libvips-tools
}

install_nginx() {
  ensure_debs nginx libnginx-mod-http-image-filter
  # ngx_cache_purge (Debian: libnginx-mod-http-cache-purge) is optional.
  if ! have_debs libnginx-mod-http-cache-purge; then
    if apt-cache show libnginx-mod-http-cache-purge >/dev/null 2>&1; then
      ensure_debs libnginx-mod-http-cache-purge
    else
      log "libnginx-mod-http-cache-purge not available: nginx peer runs without PURGE"
    fi
  fi
}

install_thumbor() {
  # pycurl needs libcurl headers if no wheel fits; thumbor's Pillow ships wheels.
  ensure_debs libcurl4-openssl-dev libssl-dev python3-venv python3-dev build-essential
  local py=/usr/bin/python3
  [[ -x $py ]] || py=$(command -v python3)
  if [[ ! -x $THUMBOR_VENV/bin/python ]]; then
    log "creating venv $THUMBOR_VENV with $py"
    "$py" -m venv "$THUMBOR_VENV"
  fi
  if "$THUMBOR_VENV/bin/python" -c "import thumbor, sys; sys.exit(0 if thumbor.__version__ == '$THUMBOR_VERSION' else 1)" 2>/dev/null; then
    log "thumbor $THUMBOR_VERSION already installed"
  else
    log "pip install thumbor==$THUMBOR_VERSION"
    "$THUMBOR_VENV/bin/pip" install -q --upgrade pip >&2
    "$THUMBOR_VENV/bin/pip" install -q "thumbor==$THUMBOR_VERSION" pycurl >&2
  fi
  "$THUMBOR_VENV/bin/python" -c "import thumbor, PIL; print('thumbor', thumbor.__version__, 'Pillow', PIL.__version__)"
}

install_sharp() {
  command -v node >/dev/null || ensure_debs nodejs npm
  command -v npm >/dev/null || ensure_debs npm
  mkdir -p "$SHARP_PREFIX"
  if [[ -f $SHARP_PREFIX/node_modules/sharp/package.json ]] &&
     [[ $(node -p "JSON.parse(require('fs').readFileSync('$SHARP_PREFIX/node_modules/sharp/package.json')).version") == "$SHARP_VERSION" ]]; then
    log "sharp $SHARP_VERSION already installed"
  else
    log "npm install sharp@$SHARP_VERSION into $SHARP_PREFIX"
    [[ -f $SHARP_PREFIX/package.json ]] || echo '{"name":"imgedge-peer-sharp","private":true}' > "$SHARP_PREFIX/package.json"
    (cd "$SHARP_PREFIX" && npm install --no-audit --no-fund --loglevel=error "sharp@$SHARP_VERSION" >&2)
  fi
  NODE_PATH="$SHARP_PREFIX/node_modules" node -e \
    "const s=require('sharp'); console.log('sharp', s.versions.sharp, 'libvips', s.versions.vips)"
}

# Quality step (added for imgedge): a venv with Pillow for the references (plus the ssimulacra2
# Python port, which brings numpy and scipy), and the dssim CLI
# built from crates.io with cargo (outside the repo, under $PEERS_ROOT). Needs cargo on PATH
# (the machine builds imgedge with it anyway).
install_quality() {
  ensure_debs python3-venv
  local py=/usr/bin/python3
  [[ -x $py ]] || py=$(command -v python3)
  if [[ ! -x $QUALITY_VENV/bin/python ]]; then
    log "creating venv $QUALITY_VENV with $py"
    "$py" -m venv "$QUALITY_VENV"
  fi
  if "$QUALITY_VENV/bin/python" -c "import PIL, sys, ssimulacra2; from PIL import ImageCms; sys.exit(0 if (PIL.__version__, ssimulacra2.__version__) == ('$QUALITY_PILLOW_VERSION', '$SSIMULACRA2_PY_VERSION') else 1)" 2>/dev/null; then
    log "Pillow $QUALITY_PILLOW_VERSION and ssimulacra2 $SSIMULACRA2_PY_VERSION already installed in $QUALITY_VENV"
  else
    log "pip install Pillow==$QUALITY_PILLOW_VERSION ssimulacra2==$SSIMULACRA2_PY_VERSION into $QUALITY_VENV"
    "$QUALITY_VENV/bin/pip" install -q --upgrade pip >&2
    "$QUALITY_VENV/bin/pip" install -q "Pillow==$QUALITY_PILLOW_VERSION" "ssimulacra2==$SSIMULACRA2_PY_VERSION" >&2
  fi
  "$QUALITY_VENV/bin/python" -c "import PIL, numpy, scipy, ssimulacra2; from PIL import ImageCms; print('Pillow', PIL.__version__, 'littleCMS', ImageCms.core.littlecms_version, 'ssimulacra2 (py)', ssimulacra2.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
  # dssim has no --version; its -h text ends with "Version X.Y.Z".
  if [[ -x $DSSIM_ROOT/bin/dssim ]] && { "$DSSIM_ROOT/bin/dssim" -h 2>&1 || true; } | grep -q "Version $DSSIM_VERSION"; then
    log "dssim $DSSIM_VERSION already installed"
  else
    command -v cargo >/dev/null || die "cargo not found: needed to build dssim (rustup / the Rust toolchain)"
    log "cargo install dssim@$DSSIM_VERSION --locked --root $DSSIM_ROOT (a few minutes)"
    # Built in a scratch dir so no project's .cargo/config applies.
    (cd "$PEERS_ROOT" && nice -n 10 cargo install "dssim@$DSSIM_VERSION" --locked --root "$DSSIM_ROOT" >&2) \
      || die "cargo install dssim failed"
  fi
  { "$DSSIM_ROOT/bin/dssim" -h 2>&1 || true; } | grep -o "Version [0-9.]*" | sed 's/^/dssim /'
}

install_data() {
  "$PEERS_DIR/prepare-data.sh"
}

main() {
  local what=("$@")
  [[ ${#what[@]} -gt 0 ]] || what=(tools vips nginx thumbor sharp quality data)
  mkdir -p "$PEERS_ROOT"
  local w
  for w in "${what[@]}"; do
    case $w in
      tools | vips | nginx | thumbor | sharp | quality | data) "install_$w" ;;
      *) die "unknown component '$w' (tools vips nginx thumbor sharp quality data)" ;;
    esac
  done
}

main "$@"
