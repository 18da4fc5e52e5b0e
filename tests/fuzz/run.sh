#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS each, default 60) from
# the checked-in seed corpus. A crash fails the run; its input is left in
# tests/fuzz/artifacts/<target>/ — fix the bug, then copy the input into
# tests/fuzz/regressions/<target>/ so tests/fuzz_replay.rs keeps checking it.
# Stable toolchain: cargo-fuzz's -Z flags are enabled with RUSTC_BOOTSTRAP; no sanitizer
# (the Rust code is safe; panics, hangs and memory blow-ups are what is hunted).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
flags=(--fuzz-dir tests/fuzz -O -a --sanitizer none --target-dir target/fuzz)

cargo fuzz build "${flags[@]}"
for target in $(cargo fuzz list --fuzz-dir tests/fuzz); do
  work="target/fuzz/corpus/$target"   # grows during the run; the seeds stay untouched
  mkdir -p "$work"
  echo "fuzz: $target for ${seconds}s"
  log="target/fuzz/$target.log"
  status=0
  cargo fuzz run "${flags[@]}" "$target" "$work" "tests/fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(Done |stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY)|panicked' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: $target failed (exit $status); the input is in tests/fuzz/artifacts/$target"
    exit 1
  fi
done
