#!/usr/bin/env bash
# Alternating hot-path A/B: req/s and server CPU µs per request of servers already
# running, each given as NAME|URL|PGREP-PATTERN (the pattern finds the server's PIDs,
# whose utime+stime is read from /proc before and after each wrk run).
#
#   R=3 D=5 bash benches/peers/hot-ab.sh \
#     "nginx|http://127.0.0.1:19200/c/400x400/q80/photos/a.jpg|nginx: worker" \
#     "new|http://127.0.0.1:19300/photos/a.jpg?x-oss-process=...|listen 127.0.0.1:19300"
#
# Start the servers pinned (taskset -c 1) and warm each URL first; wrk runs on CPU 0
# with the hot cell's settings (-t2 -c32). R rounds of D seconds, servers alternating.
set -euo pipefail
rounds=${R:-3}
seconds=${D:-5}
ticks_per_s=$(getconf CLK_TCK)

cpu_ticks() { # pattern -> utime+stime of every matching process, in clock ticks
  local total=0 pid fields
  for pid in $(pgrep -f "$1"); do
    read -r -a fields < <(cut -d' ' -f14,15 "/proc/$pid/stat")
    total=$((total + fields[0] + fields[1]))
  done
  echo "$total"
}

for _ in $(seq "$rounds"); do
  for spec in "$@"; do
    IFS='|' read -r name url pattern <<< "$spec"
    before=$(cpu_ticks "$pattern")
    out=$(taskset -c 0 wrk -t2 -c32 -d"${seconds}s" "$url")
    after=$(cpu_ticks "$pattern")
    requests=$(awk '/requests in/ {print $1}' <<< "$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
    us=$(python3 -c "print(round(($after - $before) / $ticks_per_s * 1e6 / $requests, 2))")
    echo "$name req/s=$rps cpu_us_per_request=$us"
  done
done
