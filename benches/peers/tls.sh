#!/usr/bin/env bash
# HTTPS at the edge (issue 19 item 6): imgedge's TLS listener against nginx terminating
# TLS, same run, same ECDSA P-256 certificate, same object (imgedge's cached rendition,
# written to nginx's root as a file). Both servers are pinned to CPU 1, wrk to CPU 0.
#
#   bash benches/peers/tls.sh            # R rounds (default 3) of D seconds (default 5)
#
# Two cells, per server: keep-alive hits (wrk -t2 -c32: req/s, p99, server CPU µs per
# request from /proc utime+stime) and new handshakes (wrk -H 'Connection: close': every
# request a new TCP connection and a full TLS 1.3 handshake, wrk does not resume
# sessions: connections/s, p99, CPU µs per handshake). Prints one table.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
rounds=${R:-3}
seconds=${D:-5}
bin=${IMGEDGE_BIN:-$repo/target/release/imgedge}
ticks_per_s=$(getconf CLK_TCK)
work=$(mktemp -d /tmp/imgedge-tls-bench.XXXXXX)
imgedge_port=${IMGEDGE_PORT:-19443}
nginx_port=${NGINX_PORT:-19444}
path='/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_400/quality,q_80'

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx and wrk" >&2; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

taskset -c 1 "$bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --origin "$repo/fixtures" \
  --tls-listen "127.0.0.1:$imgedge_port" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  --no-access-log >"$work/imgedge.log" 2>&1 &
pids+=($!)
imgedge_pid=$!

mkdir -p "$work/root" "$work/nginx-tmp"
# nginx workers run as an unprivileged user: they must read the root.
chmod 755 "$work" "$work/root"
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 10;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx-tmp; proxy_temp_path $work/nginx-tmp;
  fastcgi_temp_path $work/nginx-tmp; uwsgi_temp_path $work/nginx-tmp; scgi_temp_path $work/nginx-tmp;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    http2 on;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $work/root;
    location / { default_type image/jpeg; }
  }
}
CONF
# nginx 1.22 has no "http2 on;": put it on the listen line instead.
if ! nginx -t -c "$work/nginx.conf" -p "$work" >/dev/null 2>&1; then
  sed -i 's/    http2 on;//; s/ssl;$/ssl http2;/' "$work/nginx.conf"
fi
taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)

for port in "$imgedge_port" "$nginx_port"; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done
# Warm imgedge's cache and give nginx the same bytes.
curl -sk -o "$work/root/obj.jpg" "https://127.0.0.1:$imgedge_port$path"
curl -sk -o /dev/null -w '%{http_code}\n' "https://127.0.0.1:$imgedge_port$path" | grep -q 200
chmod 644 "$work/root/obj.jpg"
cmp -s "$work/root/obj.jpg" <(curl -sk "https://127.0.0.1:$nginx_port/obj.jpg")
chmod 644 "$work/root/obj.jpg"
echo "object: $(stat -c %s "$work/root/obj.jpg") bytes" >&2

cpu_ticks() { # pids -> utime+stime in clock ticks
  local total=0 pid fields
  for pid in "$@"; do
    read -r -a fields < <(cut -d' ' -f14,15 "/proc/$pid/stat")
    total=$((total + fields[0] + fields[1]))
  done
  echo "$total"
}
server_pids() { # name -> pids
  case $1 in
    imgedge) echo "$imgedge_pid" ;;
    nginx) pgrep -f "nginx: worker process" | tr '\n' ' '; cat "$work/nginx.pid" ;;
  esac
}
p99_ms() { # wrk --latency output -> 99th percentile in ms
  awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.2f", v }'
}

declare -A sum_rps sum_us sum_p99
for _ in $(seq "$rounds"); do
  for cell in keepalive handshake; do
    for name in imgedge nginx; do
      case $name in
        imgedge) url="https://127.0.0.1:$imgedge_port$path" ;;
        nginx) url="https://127.0.0.1:$nginx_port/obj.jpg" ;;
      esac
      extra=()
      [[ $cell == handshake ]] && extra=(-H 'Connection: close')
      read -r -a ps <<< "$(server_pids $name)"
      before=$(cpu_ticks "${ps[@]}")
      out=$(taskset -c 0 wrk -t2 -c32 -d"${seconds}s" --latency "${extra[@]}" "$url")
      after=$(cpu_ticks "${ps[@]}")
      requests=$(awk '/requests in/ {print $1}' <<< "$out")
      rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
      errors=$(awk '/Non-2xx|Socket errors/' <<< "$out")
      p99=$(p99_ms <<< "$out")
      us=$(python3 -c "print(round(($after - $before) / $ticks_per_s * 1e6 / $requests, 1))")
      echo "$cell $name req/s=$rps p99_ms=$p99 cpu_us_per_request=$us ${errors:+($errors)}" >&2
      k="$cell $name"
      sum_rps[$k]=$(python3 -c "print(${sum_rps[$k]:-0} + $rps)")
      sum_us[$k]=$(python3 -c "print(${sum_us[$k]:-0} + $us)")
      sum_p99[$k]=$(python3 -c "print(${sum_p99[$k]:-0} + $p99)")
    done
  done
done

echo
echo "| cell | server | req/s | p99 ms | server CPU µs/request |"
echo "|---|---|---:|---:|---:|"
for cell in keepalive handshake; do
  for name in imgedge nginx; do
    k="$cell $name"
    python3 -c "print('| $cell | $name | %.0f | %.2f | %.1f |' % (${sum_rps[$k]}/$rounds, ${sum_p99[$k]}/$rounds, ${sum_us[$k]}/$rounds))"
  done
done
echo "(means of $rounds rounds of ${seconds}s; wrk -t2 -c32 on CPU 0, servers on CPU 1; ECDSA P-256, TLS 1.3)"
