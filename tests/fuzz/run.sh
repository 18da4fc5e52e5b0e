#!/usr/bin/env bash
# The CI fuzz step, reproducible: the same tree gives the same result on every run.
# For each cargo-fuzz target:
#   1. replay every checked-in input once: the seed corpus (tests/fuzz/corpus/<target>/)
#      and the saved crashes (tests/fuzz/regressions/<target>/);
#   2. a short mutation run with a fixed seed (FUZZ_SEED, default 1) and a fixed number
#      of executions (FUZZ_RUNS, default 20000), from a fresh copy of the seeds, so
#      what it explores depends on neither the clock, the machine's speed nor an
#      earlier run's corpus.
# Random, longer fuzzing is tests/fuzz/explore.sh; it is never part of a landing.
# A crash fails the run; its input is left in tests/fuzz/artifacts/<target>/: fix the
# bug, then copy the input into tests/fuzz/regressions/<target>/ so tests/fuzz_replay.rs
# keeps checking it in every `cargo test`.
# Stable toolchain: cargo-fuzz's -Z flags are enabled with RUSTC_BOOTSTRAP; no sanitizer
# (the Rust code is safe; panics, hangs and memory blow-ups are what is hunted).
set -euo pipefail
cd "$(dirname "$0")/../.."

seed="${FUZZ_SEED:-1}"
runs="${FUZZ_RUNS:-20000}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
flags=(--fuzz-dir tests/fuzz -O -a --sanitizer none --target-dir target/fuzz)
limits=(-timeout=10 -rss_limit_mb=2048 -max_len=65536)

# Runs one libFuzzer invocation; prints its summary, and on failure its tail and exits.
fuzz() {
  local target="$1" log="$2"
  shift 2
  local status=0
  "${norandom[@]}" cargo fuzz run "${flags[@]}" "$target" "$@" >"$log" 2>&1 || status=$?
  grep -E '^(Done |stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY)|panicked' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: $target failed (exit $status); the input is in tests/fuzz/artifacts/$target"
    exit 1
  fi
}

# The fixed-seed run is reproducible only if the target is deterministic. Address-space
# randomisation is off for it (setarch -R; skipped where the kernel refuses it): libFuzzer
# traces compared values, pointers among them, and uses them as mutations. The rest is in
# fixed_random.rs (hash seeds), checks.rs (no deadline) and process::pipeline (no clock
# in the trace under cfg(fuzzing)); -reload=0 stops the timed re-reads of the corpus dir.
norandom=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
  norandom=(setarch "$(uname -m)" -R)
fi

cargo fuzz build "${flags[@]}"
for target in $(cargo fuzz list --fuzz-dir tests/fuzz); do
  inputs=()
  for dir in "tests/fuzz/corpus/$target" "tests/fuzz/regressions/$target"; do
    [ -d "$dir" ] && inputs+=("$dir")
  done
  echo "fuzz: $target: replaying ${inputs[*]}"
  fuzz "$target" "target/fuzz/$target.replay.log" "${inputs[@]}" -- "${limits[@]}" -runs=0

  # A fresh work corpus each time: libFuzzer adds new inputs to the first directory.
  work="target/fuzz/ci-corpus/$target"
  rm -rf "$work" && mkdir -p "$work"
  echo "fuzz: $target: $runs runs, seed $seed"
  fuzz "$target" "target/fuzz/$target.log" "$work" "${inputs[@]}" -- \
    "${limits[@]}" -seed="$seed" -runs="$runs" -reload=0 -print_final_stats=1
done
