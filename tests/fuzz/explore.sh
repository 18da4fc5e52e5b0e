#!/usr/bin/env bash
# Random, open-ended fuzzing (not part of CI): each target (or those named as
# arguments) for FUZZ_SECONDS (default 300) with a random seed, growing a corpus kept
# across runs in target/fuzz/corpus/<target>/. Report what it finds; a crash leaves its
# input in tests/fuzz/artifacts/<target>/: fix it, then copy the input into
# tests/fuzz/regressions/<target>/ so the CI step (tests/fuzz/run.sh) replays it.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${FUZZ_SECONDS:-300}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
flags=(--fuzz-dir tests/fuzz -O -a --sanitizer none --target-dir target/fuzz)

cargo fuzz build "${flags[@]}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list --fuzz-dir tests/fuzz)
failed=0
for target in "${targets[@]}"; do
  work="target/fuzz/corpus/$target"
  mkdir -p "$work"
  inputs=()
  for dir in "tests/fuzz/corpus/$target" "tests/fuzz/regressions/$target"; do
    [ -d "$dir" ] && inputs+=("$dir")
  done
  echo "explore: $target for ${seconds}s"
  log="target/fuzz/$target.explore.log"
  status=0
  cargo fuzz run "${flags[@]}" "$target" "$work" "${inputs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(INFO: Seed|Done |stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY)|panicked' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    echo "explore: $target found a failure (exit $status); input in tests/fuzz/artifacts/$target"
    failed=1
  fi
done
exit "$failed"
