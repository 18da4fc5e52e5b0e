#!/usr/bin/env bash
# The whole peer benchmark in one command (issue 6):
#
#   bash benches/peers/run.sh [OUTDIR]      # default $PEERS_ROOT/results/run-<timestamp>
#
# 1. installs the peers, the quality tools and the data (install.sh: idempotent, skips what is there);
# 2. builds imgedge (`cargo build --release` in this repo) unless IMGEDGE_BIN names a binary, and
#    copies the binary into OUTDIR so a rebuild during the run cannot change what is measured;
# 3. runs every cell for imgedge and every peer (bench.py run), then
# 4. scores the outputs' quality (bench.py quality) into the same summary.md.
#
# Env overrides (for partial runs):
#   IMGEDGE_BIN=/path/imgedge   use this binary, no cargo build
#   TARGETS=imgedge,sharp       default imgedge,imgedge-nodc,thumbor,thumbor-rs,sharp,nginx,nginx-nocache,vips
#   CELLS=jpeg,srcset           default jpeg,webp,png,hot,stampede,srcset
#   QUALITY_TARGETS=...         default: TARGETS;  QUALITY_CELLS (default jpeg,webp,png)
#   BASELINE=sharp              the target the "Ratios vs" table divides by
#   BENCH_OPTS="--duration 3 --hot-duration 3"   extra `bench.py run` options
#   NICE=-20                    process + autogroup nice for servers and load (0 = off; needs root)
#   QUIET_WAIT=10               s to wait for a quiet machine before each cell
#   SKIP_INSTALL=1, SKIP_RUN=1, SKIP_QUALITY=1, SKIP_ALLOC=1   leave a step out
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out=${1:-$PEERS_ROOT/results/run-$(date +%Y%m%d-%H%M%S)}
targets=${TARGETS:-imgedge,imgedge-nodc,thumbor,thumbor-rs,sharp,nginx,nginx-nocache,vips}
cells=${CELLS:-jpeg,webp,png,hot,stampede,srcset}
quality_targets=${QUALITY_TARGETS:-$targets}
quality_cells=${QUALITY_CELLS:-jpeg,webp,png}
mkdir -p "$out"
out=$(cd "$out" && pwd)
started=$SECONDS
step() { log "[$((SECONDS - started)) s] $*"; }

if [[ -z ${SKIP_INSTALL:-} ]]; then
  step "install (log: $out/install.log)"
  "$PEERS_DIR/install.sh" > "$out/install.log" 2>&1 || { tail -20 "$out/install.log" >&2; die "install failed"; }
fi

# imgedge: a given binary, or a release build of this checkout. Either way the measured binary is
# a copy in $out (the checkout may be rebuilt while the run goes on).
if [[ ,$targets,$quality_targets, == *,imgedge* ]]; then
  if [[ -n ${IMGEDGE_BIN:-} ]]; then
    [[ -x $IMGEDGE_BIN ]] || die "IMGEDGE_BIN=$IMGEDGE_BIN is not an executable"
    src_bin=$IMGEDGE_BIN
  else
    command -v cargo >/dev/null || die "cargo not found (set IMGEDGE_BIN to a built imgedge)"
    step "cargo build --release in $REPO_DIR (log: $out/build.log)"
    (cd "$REPO_DIR" && cargo build --release) > "$out/build.log" 2>&1 \
      || { tail -30 "$out/build.log" >&2; die "cargo build failed"; }
    src_bin=$REPO_DIR/target/release/imgedge
  fi
  cp "$src_bin" "$out/imgedge"
  export IMGEDGE_BIN=$out/imgedge
  step "imgedge: $("$IMGEDGE_BIN" --version) (copied from $src_bin)"
fi

{
  echo "date: $(date -Is)"
  echo "kernel: $(uname -r); $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "memory: $(free -g | awk '/Mem:/ {print $2 " GiB"}')"
  echo "debian: $(cat /etc/debian_version)"
  if [[ -n ${IMGEDGE_BIN:-} ]]; then
    dirty=$(git -C "$REPO_DIR" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)
    echo "imgedge: $("$IMGEDGE_BIN" --version) from ${src_bin:-$IMGEDGE_BIN}; repo HEAD $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')$(
      [[ $dirty == 0 ]] || echo " + $dirty uncommitted/untracked paths in src, Cargo.*")"
  fi
  for p in thumbor sharp nginx vips; do "$PEERS_DIR/peer.sh" version "$p" 2>&1 | sed "s/^/$p: /"; done
  echo "wrk: $(dpkg-query -W -f='${Version}' wrk 2>/dev/null)"
  echo "python (bench.py): $(python3 --version 2>&1)"
  echo "targets: $targets"
  echo "cells: $cells"
  echo "quality: $quality_targets / $quality_cells"
  echo "BENCH_OPTS: ${BENCH_OPTS:-}"
} > "$out/versions.txt"

# imgedge reads assets/fonts relative to its working directory: run from the repo root.
cd "$REPO_DIR"

if [[ -z ${SKIP_RUN:-} ]]; then
  step "bench.py run --targets $targets --cells $cells (log: $out/bench.log)"
  # shellcheck disable=SC2086
  python3 "$PEERS_DIR/bench.py" run --targets "$targets" --cells "$cells" --baseline "${BASELINE:-sharp}" \
    --out "$out" --nice "${NICE:--20}" --quiet-wait "${QUIET_WAIT:-10}" ${BENCH_OPTS:-} \
    > "$out/run-stdout.md" 2> >(tee "$out/bench.log" >&2)
fi

if [[ -z ${SKIP_QUALITY:-} ]]; then
  step "bench.py quality --targets $quality_targets --cells $quality_cells (log: $out/quality.log)"
  python3 "$PEERS_DIR/bench.py" quality --targets "$quality_targets" --cells "$quality_cells" --out "$out" \
    > /dev/null 2> >(tee "$out/quality.log" >&2)
fi

# Allocator trial: the same imgedge binary with glibc malloc, jemalloc and mimalloc
# (LD_PRELOAD), on a miss cell and the hit cell; results in $out/allocators/.
if [[ -z ${SKIP_ALLOC:-} && ,$targets, == *,imgedge,* ]]; then
  step "allocator trial (log: $out/allocators/bench.log)"
  mkdir -p "$out/allocators"
  # shellcheck disable=SC2086
  python3 "$PEERS_DIR/bench.py" run --targets imgedge,imgedge-jemalloc,imgedge-mimalloc --cells jpeg,srcset,hot \
    --baseline imgedge --out "$out/allocators" --nice "${NICE:--20}" --quiet-wait "${QUIET_WAIT:-10}" --no-check \
    --duration 10 --hot-duration 8 ${BENCH_OPTS:-} > "$out/allocators/run-stdout.md" 2> "$out/allocators/bench.log"
fi

step "done"
echo "results in $out (summary: $out/summary.md)"
