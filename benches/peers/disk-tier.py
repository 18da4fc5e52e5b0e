#!/usr/bin/env python3
"""Disk-tier cell (issue 17 item 6): hits from a working set 4x the memory tier.

Three servers, same data, same run, same wrk settings, alternating rounds:

  imgedge-l1    imgedge with a small memory cache (--cache-size L1) and no disk tier:
                what does not fit in memory goes back to the (folder) origin.
  imgedge-mem   (reference, not in the default targets) the same with the whole working
                set in memory (--cache-size 2 x the working set).
  imgedge-l2    the same plus --disk-cache DIR --disk-cache-size SIZE: misses in memory are
                served from disk (X-Cache: HIT TCP_HIT).
  nginx-disk    nginx proxy_cache with its cache zone on disk (max_size large enough for
                the working set) in front of a plain file backend in the same instance.
  nginx-disk-nosendfile  (reference, not in the default targets) the same with
                `sendfile off`: bodies copied through user space, as imgedge's are.

The working set is N objects of realistic rendition size (400/640 px JPEG q80 thumbnails
of the peer photos, copied to N distinct keys), N chosen so the bytes are RATIO x L1. Every
server is warmed by GETting every object (twice), then wrk (-t2 -c32 on CPU 0, the server
pinned to CPU 1, as bench.py's hot cell) sends a uniform random list over the working set
(wrk/diverse.lua, time-bounded). CPU per request is the server process tree's
utime+stime from /proc, before/after each run, as bench.py does.

  IMGEDGE_BIN=/path/to/imgedge python3 benches/peers/disk-tier.py run
  python3 benches/peers/disk-tier.py restart --entries 10000,100000   # restart-to-first-hit

Knobs: --l1-mib (16), --ratio (4), --duration (5), --rounds (3), --targets.
Output: a markdown table on stdout and results.json in the results folder.
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS_ROOT = os.environ.get("PEERS_ROOT", "/tmp/imgedge-peers")
CLK_TCK = os.sysconf("SC_CLK_TCK")
TTL_RULE = "ext:jpg,jpeg,png,webp:86400"


def log(msg):
    print(f"[disk-tier {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ /proc
def proc_tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(root):
    total = 0
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total / CLK_TCK


def rss_mb(root):
    total = 0
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# ------------------------------------------------------------------------------ data
def make_data(dest, l1_bytes, ratio, src_dir):
    """N distinct keys whose bodies total ratio x l1_bytes (thumbnails of the photos)."""
    thumbs = os.path.join(dest, "_thumbs")
    objects = os.path.join(dest, "objects")
    want = ratio * l1_bytes
    stamp = os.path.join(dest, f"ready-{want}")
    if os.path.exists(stamp):
        with open(stamp) as f:
            return objects, json.load(f)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(thumbs)
    os.makedirs(objects)
    for name in sorted(os.listdir(src_dir)):
        if not name.endswith(".jpg"):
            continue
        for size in (400, 640):
            out = os.path.join(thumbs, f"{os.path.splitext(name)[0]}_{size}.jpg")
            subprocess.run(["vipsthumbnail", os.path.join(src_dir, name), "--size", f"{size}x{size}>",
                            "-o", f"{out}[Q=80,strip]"], check=True)
    pool = [open(os.path.join(thumbs, t), "rb").read() for t in sorted(os.listdir(thumbs))]
    keys, total, i = [], 0, 0
    while total < want:
        body = pool[i % len(pool)]
        key = f"o{i:06d}.jpg"
        with open(os.path.join(objects, key), "wb") as f:
            f.write(body)
        keys.append(key)
        total += len(body)
        i += 1
    info = {"objects": len(keys), "bytes": total, "mean_bytes": round(total / len(keys))}
    with open(stamp, "w") as f:
        json.dump(info, f)
    return objects, info


# ------------------------------------------------------------------------------ servers
NGINX_CONF = """
worker_processes {workers};
daemon off;
master_process on;
error_log {rd}/error.log warn;
pid {rd}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    sendfile {sendfile};
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {rd}/tmp/body;
    proxy_temp_path {rd}/tmp/proxy;
    fastcgi_temp_path {rd}/tmp/fastcgi;
    uwsgi_temp_path {rd}/tmp/uwsgi;
    scgi_temp_path {rd}/tmp/scgi;
    proxy_cache_path {rd}/cache levels=1:2 keys_zone=disk:64m max_size={max_size} inactive=7d use_temp_path=off;
    upstream files {{ server unix:{rd}/backend.sock; keepalive 32; }}
    server {{
        listen unix:{rd}/backend.sock;
        root {data};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://files;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache disk;
            proxy_cache_key $uri;
            proxy_cache_valid 200 7d;
            proxy_cache_lock on;
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


class Server:
    def __init__(self, name, argv, port, admin_port=None, env=None, logf=None):
        self.name, self.argv, self.port, self.admin_port = name, argv, port, admin_port
        self.env, self.logf, self.proc = env, logf, None

    def start(self, cpus="1"):
        log(f"start {self.name}: {' '.join(self.argv)}")
        env = dict(os.environ, **(self.env or {}))
        with open(self.logf, "ab") as lf:
            self.proc = subprocess.Popen(["taskset", "-c", cpus] + self.argv, stdout=lf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.started = time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited (rc={self.proc.returncode}); see {self.logf}")
            try:
                http_get(f"http://127.0.0.1:{self.port}/__ping", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return
        for p in reversed(proc_tree(self.proc.pid)):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            for p in reversed(proc_tree(self.proc.pid)):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=5)
        self.proc = None


def http_get(url, timeout=30):
    """(status, headers with lower-case names, body)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def imgedge_server(name, binary, port, data, l1, disk_dir, disk_size, logdir):
    argv = [binary, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{port + 1000}",
            "--origin", data, "--cache-size", f"{l1 >> 20}MiB", "--max-cacheable-size", "4MiB", "--workers", "1",
            "--no-access-log", "--ttl-rule", TTL_RULE]
    if disk_dir:
        argv += ["--disk-cache", disk_dir, "--disk-cache-size", disk_size]
    return Server(name, argv, port, admin_port=port + 1000, env={"RUST_LOG": "warn"},
                  logf=os.path.join(logdir, f"{name}.log"))


def nginx_server(port, data, max_size, rundir, logdir, sendfile=True):
    name = "nginx-disk" if sendfile else "nginx-disk-nosendfile"
    rd = os.path.join(rundir, f"{name}-{port}")
    shutil.rmtree(rd, ignore_errors=True)
    for d in ("cache", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        os.makedirs(os.path.join(rd, d))
    conf = os.path.join(rd, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(workers=os.environ.get("NGINX_WORKERS", "2"), rd=rd, port=port, data=data,
                                  max_size=max_size, sendfile="on" if sendfile else "off"))
    argv = ["nginx", "-c", conf, "-p", rd, "-e", os.path.join(rd, "error.log")]
    return Server(name, argv, port, logf=os.path.join(logdir, f"{name}.log"))


# ------------------------------------------------------------------------------ load
def warm(port, keys, passes=2, conns=8):
    """GETs every key `passes` times (curl --parallel, one process)."""
    listf = os.path.join(PEERS_ROOT, "tmp", f"warm-{port}.txt")
    os.makedirs(os.path.dirname(listf), exist_ok=True)
    with open(listf, "w") as f:
        for k in keys:
            f.write(f'url = "http://127.0.0.1:{port}/{k}"\noutput = "/dev/null"\n')
    for _ in range(passes):
        subprocess.run(["curl", "-s", "--parallel", "--parallel-max", str(conns), "-K", listf], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def x_cache_sample(port, keys, n=200, seed=7):
    rng = random.Random(seed)
    counts = {}
    for k in rng.sample(keys, min(n, len(keys))):
        _, h, _ = http_get(f"http://127.0.0.1:{port}/{k}")
        tag = h.get("x-cache") or h.get("x-cache-status") or "-"
        counts[tag] = counts.get(tag, 0) + 1
    return counts


def run_wrk(port, paths_file, duration, threads=2, conns=32):
    script = os.path.join(HERE, "wrk", "diverse.lua")
    cmd = ["taskset", "-c", "0", "wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--timeout", "10s",
           "-s", script, f"http://127.0.0.1:{port}", "--", paths_file, str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    for line in p.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise RuntimeError(f"wrk failed: {p.stderr[:300]}")


def machine_busy(seconds=1.0):
    def busy():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v[:3]) + sum(v[5:8]), sum(v)
    b0, t0 = busy()
    time.sleep(seconds)
    b1, t1 = busy()
    return (b1 - b0) / max(t1 - t0, 1)


def cmd_run(args):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(PEERS_ROOT, "results", f"disk-tier-{stamp}")
    os.makedirs(outdir)
    l1 = args.l1_mib << 20
    data, info = make_data(os.path.join(PEERS_ROOT, "disk-tier-data"), l1, args.ratio,
                           os.path.join(PEERS_ROOT, "data", "photos"))
    keys = sorted(k for k in os.listdir(data) if k.endswith(".jpg"))
    log(f"working set: {info['objects']} objects, {info['bytes'] / 2**20:.1f} MiB "
        f"(mean {info['mean_bytes']} B) = {info['bytes'] / l1:.1f} x L1 {args.l1_mib} MiB")
    rng = random.Random(args.seed)
    paths_file = os.path.join(outdir, "paths.txt")
    with open(paths_file, "w") as f:
        for _ in range(args.list_len):
            f.write(f"/{rng.choice(keys)}\n")
    disk_dir = os.path.join(PEERS_ROOT, "run", "disk-tier-l2")
    shutil.rmtree(disk_dir, ignore_errors=True)
    os.makedirs(disk_dir)
    binary = os.environ.get("IMGEDGE_BIN", "target/release/imgedge")
    l1_bin = os.environ.get("IMGEDGE_L1_BIN", binary)
    rundir = os.path.join(PEERS_ROOT, "run")
    servers = {
        "imgedge-l1": imgedge_server("imgedge-l1", l1_bin, args.port, data, l1, None, None, outdir),
        "imgedge-l2": imgedge_server("imgedge-l2", binary, args.port + 1, data, l1, disk_dir, args.disk_size, outdir),
        # Reference row: the whole working set fits in the memory tier.
        "imgedge-mem": imgedge_server("imgedge-mem", l1_bin, args.port + 3, data, int(2 * args.ratio * l1), None, None,
                                      outdir),
        "nginx-disk": nginx_server(args.port + 2, data, args.disk_size.replace("GiB", "g").replace("MiB", "m"), rundir,
                                   outdir),
        # Reference row: the same nginx copying bodies through user space (read + write),
        # as imgedge must: sendfile is what separates the two (BENCHMARKS.md).
        "nginx-disk-nosendfile": nginx_server(args.port + 4, data,
                                              args.disk_size.replace("GiB", "g").replace("MiB", "m"), rundir, outdir,
                                              sendfile=False),
    }
    servers = {n: s for n, s in servers.items() if n in args.targets.split(",")}
    results = {n: [] for n in servers}
    extra = {}
    try:
        for name, s in servers.items():
            s.start()
            warm(s.port, keys)
            extra[name] = {"x_cache_after_warm": x_cache_sample(s.port, keys)}
            log(f"{name} warmed; X-Cache of 200 random keys: {extra[name]['x_cache_after_warm']}")
        for r in range(args.rounds):
            for name, s in servers.items():
                busy = machine_busy(0.5)
                c0 = cpu_seconds(s.proc.pid)
                res = run_wrk(s.port, paths_file, args.duration)
                cpu = cpu_seconds(s.proc.pid) - c0
                ok = res["requests"] - res["err_status"]
                dur = res["duration_us"] / 1e6
                row = {"round": r, "rps": ok / dur, "cpu_ms_per_req": 1000 * cpu / max(ok, 1),
                       "p50_ms": res["lat_p50_us"] / 1000, "p99_ms": res["lat_p99_us"] / 1000,
                       "errors": res["err_connect"] + res["err_read"] + res["err_write"] + res["err_status"]
                       + res["err_timeout"], "requests": res["requests"], "capped": res["capped_threads"],
                       "busy_before": round(busy, 2), "rss_mb": round(rss_mb(s.proc.pid), 1)}
                results[name].append(row)
                log(f"round {r} {name}: {row['rps']:.0f} req/s, {row['cpu_ms_per_req']:.3f} ms CPU/req, "
                    f"p99 {row['p99_ms']:.2f} ms, errors {row['errors']}, machine busy before {busy:.0%}")
        for name, s in servers.items():
            if s.admin_port:
                try:
                    _, _, body = http_get(f"http://127.0.0.1:{s.admin_port}/metrics", timeout=5)
                    lines = [ln for ln in body.decode().splitlines()
                             if ("requests_total" in ln or "disk" in ln or "tier" in ln) and not ln.startswith("#")]
                    extra[name]["metrics"] = lines[:40]
                except OSError:
                    pass
    finally:
        for s in servers.values():
            s.stop()
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"info": info, "args": vars(args), "results": results, "extra": extra}, f, indent=1)
    print_table(info, args, results, outdir)


def print_table(info, args, results, outdir):
    med = {n: {k: statistics.median(r[k] for r in rows) for k in ("rps", "cpu_ms_per_req", "p50_ms", "p99_ms")}
           for n, rows in results.items() if rows}
    print(f"\nDisk-tier cell: {info['objects']} objects, {info['bytes'] / 2**20:.1f} MiB "
          f"(mean {info['mean_bytes']} B), {info['bytes'] / (args.l1_mib << 20):.1f} x the {args.l1_mib} MiB memory tier; "
          f"wrk -t2 -c32, {args.rounds} rounds x {args.duration} s, medians; results in {outdir}\n")
    base = med.get("nginx-disk")
    print("| target | req/s | CPU ms/req | p50 ms | p99 ms | req/s vs nginx | CPU/req vs nginx | p99 vs nginx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, m in med.items():
        ratios = ("", "", "")
        if base:
            ratios = (f"{m['rps'] / base['rps']:.2f}x", f"{m['cpu_ms_per_req'] / base['cpu_ms_per_req']:.2f}x",
                      f"{m['p99_ms'] / base['p99_ms']:.2f}x")
        print(f"| {n} | {m['rps']:.0f} | {m['cpu_ms_per_req']:.3f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
              f"{ratios[0]} | {ratios[1]} | {ratios[2]} |")
    print("\nPer round (req/s): " + "; ".join(
        f"{n} " + " / ".join(f"{r['rps']:.0f}" for r in rows) for n, rows in results.items()))


# ------------------------------------------------------------------------------ restart
def cmd_restart(args):
    """Fills N small entries into the disk tier, stops (SIGTERM or SIGKILL), restarts and
    times process start -> first 200 with X-Cache TCP_HIT for a cached URL."""
    binary = os.environ.get("IMGEDGE_BIN", "target/release/imgedge")
    outdir = os.path.join(PEERS_ROOT, "results", f"disk-restart-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(outdir)
    data = os.path.join(PEERS_ROOT, "disk-restart-data")
    os.makedirs(data, exist_ok=True)
    rows = []
    for n in [int(x) for x in args.entries.split(",")]:
        have = len(os.listdir(data))
        for i in range(have, n):
            with open(os.path.join(data, f"s{i:07d}.txt"), "wb") as f:
                f.write(os.urandom(512).hex().encode())
        keys = [f"s{i:07d}.txt" for i in range(n)]
        disk_dir = os.path.join(PEERS_ROOT, "run", f"disk-restart-{n}")
        shutil.rmtree(disk_dir, ignore_errors=True)
        os.makedirs(disk_dir)
        s = imgedge_server(f"restart-{n}", binary, args.port, data, 16 << 20, disk_dir, args.disk_size, outdir)
        s.argv[s.argv.index("--ttl-rule") + 1] = "ext:txt:86400"
        s.start()
        t0 = time.monotonic()
        warm(s.port, keys, passes=1, conns=16)
        fill_s = time.monotonic() - t0
        time.sleep(2)  # let the disk tier flush what it buffers
        s.stop(signal.SIGKILL if args.kill else signal.SIGTERM)
        s.start()
        t_start = s.started
        first, seen, probes = None, {}, iter(keys)
        # A different cached key per probe: a miss during recovery refills L1, and the
        # same key would then answer from memory.
        while time.monotonic() - t_start < 60:
            probe = next(probes, None)
            if probe is None:
                break
            _, h, _ = http_get(f"http://127.0.0.1:{s.port}/{probe}", timeout=5)
            tag = h.get("x-cache") or "-"
            seen[tag] = seen.get(tag, 0) + 1
            if "TCP_HIT" in tag:
                first = time.monotonic() - t_start
                break
            time.sleep(0.002)
        log(f"probes before the first disk hit: {seen}")
        hits = sum("TCP_HIT" in (http_get(f"http://127.0.0.1:{s.port}/{k}")[1].get("x-cache") or "")
                   for k in random.Random(1).sample(keys, min(200, n)))
        s.stop()
        rows.append({"entries": n, "fill_s": round(fill_s, 1), "first_disk_hit_s": first, "sample_disk_hits": hits})
        log(f"{n} entries: filled in {fill_s:.1f}s, first disk hit {first}s after start, {hits}/200 sampled keys from disk")
    with open(os.path.join(outdir, "restart.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("| entries on disk | stop | process start -> first disk hit | sampled keys served from disk |")
    print("|---:|---|---:|---:|")
    for r in rows:
        first = f"{r['first_disk_hit_s'] * 1000:.0f} ms" if r["first_disk_hit_s"] is not None else "none in 60 s"
        print(f"| {r['entries']:,} | {'SIGKILL' if args.kill else 'SIGTERM'} | {first} | {r['sample_disk_hits']}/200 |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--targets", default="imgedge-l1,imgedge-l2,nginx-disk")
    run.add_argument("--l1-mib", type=int, default=16)
    run.add_argument("--ratio", type=float, default=4.0)
    run.add_argument("--disk-size", default="1GiB")
    run.add_argument("--duration", type=int, default=5)
    run.add_argument("--rounds", type=int, default=3)
    run.add_argument("--list-len", type=int, default=600000)
    run.add_argument("--seed", type=int, default=17)
    run.add_argument("--port", type=int, default=19700)
    rs = sub.add_parser("restart")
    rs.add_argument("--entries", default="10000,100000")
    rs.add_argument("--disk-size", default="2GiB")
    rs.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")
    rs.add_argument("--port", type=int, default=19710)
    args = ap.parse_args()
    {"run": cmd_run, "restart": cmd_restart}[args.cmd](args)


if __name__ == "__main__":
    main()
