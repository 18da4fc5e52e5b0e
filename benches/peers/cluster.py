#!/usr/bin/env python3
"""Cluster cell (issue 18 item 7): forward overhead of a non-owner hit, and a diverse
workload on 3 clustered nodes against 1 node (and 3 independent nodes), same run.

Every imgedge is the release binary (IMGEDGE_BIN, default target/release/imgedge) with a
folder origin (the peer photos, /tmp/imgedge-peers/data/photos, or fixtures/), --workers 1,
pinned to CPU 1; wrk runs on CPU 0 with `Host: img.test` (the cache key and the ring
owner include the host, so every node must see the same one). A redis-server runs on a
free loopback port for membership and the purge stream. CPU per request is utime+stime
of every imgedge process (from /proc, before/after the run) over the requests answered.

  a. forward: nodes n1..n3 on one Redis; n1 has IMGEDGE_CLUSTER_HOT_COPY_TTL_SECS=0, so
     every request it does not own is forwarded (no hot copy). A set of renditions is
     warmed; the ones n2 owns are sent with wrk (a) to n2 directly: owner hits, (b) to n1:
     forwarded hits. Same URLs, same bodies; the difference is the forward's cost.
  b. diverse (cold lists are sent by Python client threads, since wrk runs to -d): U distinct rendition URLs (photos x widths x formats), each requested 3
     times in a shuffled stream cut into 3 lists, one wrk per list. "1 node": the three
     wrk all hit one node; "cluster-3": one wrk per clustered node; "independent-3": one
     wrk per node of 3 unclustered nodes (what a round-robin load balancer in front of
     independent nodes does). Cold: the lists are sent once (every URL is new: origin
     read + decode + encode); warm: then time-bounded over the same URLs.
     origin GETs and encodes are read from each node's /metrics.

The machine the figures in BENCHMARKS.md come from has 2 cores: 3 nodes share one core,
so "cluster-3" cannot show more throughput than "1 node"; what it shows is the work per
distinct URL (1 origin GET and 1 encode for the cluster, up to 3 for independent nodes)
and what the extra hop costs.

  IMGEDGE_BIN=/path/to/imgedge python3 benches/peers/cluster.py
Knobs: --duration (4), --rounds (2), --port (19800). Output: markdown on stdout,
results.json in the results folder.
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
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PEERS_ROOT = os.environ.get("PEERS_ROOT", "/tmp/imgedge-peers")
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "img.test"
SECRET = "bench-cluster-secret-0123456789"
WIDTHS = (160, 320, 640)
FORMATS = ("jpg", "webp")


def log(msg):
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return 0.0


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, host=HOST, timeout=30):
    req = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", "1", "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                subprocess.run(["redis-cli", "-p", str(self.port), "PING"], check=True, capture_output=True)
                return
            except subprocess.CalledProcessError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Node:
    def __init__(self, name, binary, origin, logdir, cluster=None, env=None):
        self.name, self.port, self.admin = name, free_port(), free_port()
        self.argv = [binary, "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin}",
                     "--origin", origin, "--cache-size", "256MiB", "--workers", "1", "--no-access-log"]
        self.cluster, self.env, self.logf, self.proc = cluster, env or {}, os.path.join(logdir, f"{name}.log"), None

    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, redis=None, peers=None):
        argv = list(self.argv)
        if self.cluster:
            argv += ["--node-id", self.name, "--cluster-advertise", self.url(), "--cluster-secret", SECRET]
            if redis:
                argv += ["--cluster", redis]
            if peers:
                argv += ["--peers", peers]
        env = dict(os.environ, RUST_LOG="warn", **self.env)
        with open(self.logf, "ab") as lf:
            self.proc = subprocess.Popen(["taskset", "-c", "1"] + argv, stdout=lf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited (rc={self.proc.returncode}); see {self.logf}")
            try:
                http_get(f"http://127.0.0.1:{self.admin}/metrics", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen")

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def metric(self, prefix):
        _, _, body = http_get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5)
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(prefix):
                try:
                    total += float(line.rsplit(" ", 1)[1])
                except ValueError:
                    pass
        return total

    def counts(self):
        return {"origin": self.metric("imgedge_origin_requests_total"),
                "encodes": self.metric('imgedge_process_stage_seconds_count{stage="encode"}'),
                "forwards": self.metric("imgedge_cluster_forwards_total")}


def wait_members(nodes, redis_port, n):
    """Bounded wait until every node has heart-beaten (the ring is read every second)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = subprocess.run(["redis-cli", "-p", str(redis_port), "--scan", "--pattern", "imgedge:*"],
                             capture_output=True, text=True).stdout.split()
        if len([k for k in out if "member" in k or "node" in k]) >= n:
            time.sleep(1.5)  # one more ring refresh on every node
            return
        time.sleep(0.1)
    time.sleep(3)


def run_wrk(url, paths_file, duration, threads=1, conns=8):
    script = os.path.join(HERE, "wrk", "diverse.lua")
    cmd = ["taskset", "-c", "0", "wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--timeout", "20s",
           "-H", f"Host: {HOST}", "-s", script, url, "--", paths_file, str(threads)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wrk_result(p):
    out, err = p.communicate(timeout=300)
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise RuntimeError(f"wrk failed: {err[:300]}")


def measure(nodes, jobs, duration):
    """Runs one wrk per (node, paths file) at once; CPU summed over every node."""
    c0 = sum(cpu_seconds(n.proc.pid) for n in nodes)
    t0 = time.monotonic()
    procs = [run_wrk(n.url(), f, duration, threads=t, conns=c) for n, f, t, c in jobs]
    res = [wrk_result(p) for p in procs]
    wall = time.monotonic() - t0
    cpu = sum(cpu_seconds(n.proc.pid) for n in nodes) - c0
    ok = sum(r["requests"] - r["err_status"] for r in res)
    dur = max(r["duration_us"] for r in res) / 1e6
    errors = sum(r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + r["err_timeout"] for r in res)
    return {"rps": ok / dur, "requests": ok, "seconds": round(dur, 2), "wall": round(wall, 2),
            "cpu_ms_per_req": 1000 * cpu / max(ok, 1), "p50_ms": max(r["lat_p50_us"] for r in res) / 1000,
            "p99_ms": max(r["lat_p99_us"] for r in res) / 1000, "errors": errors}


def cold_run(nodes, jobs, conns=4):
    """Sends each cold list once (wrk's diverse.lua would then idle until -d ends):
    `conns` client threads per list, all lists at once; wall time, CPU over every node."""
    from concurrent.futures import ThreadPoolExecutor
    c0 = sum(cpu_seconds(n.proc.pid) for n in nodes)
    t0 = time.monotonic()
    work = [(n, u.strip()) for n, f in jobs for u in open(f)]
    with ThreadPoolExecutor(conns * len(jobs)) as pool:
        statuses = list(pool.map(lambda nu: http_get(nu[0].url() + nu[1], timeout=60)[0], work))
    wall = time.monotonic() - t0
    cpu = sum(cpu_seconds(n.proc.pid) for n in nodes) - c0
    ok = sum(s == 200 for s in statuses)
    return {"rps": ok / wall, "requests": ok, "seconds": round(wall, 2), "cpu_ms_per_req": 1000 * cpu / max(ok, 1),
            "errors": len(statuses) - ok}


def write_list(path, lines):
    with open(path, "w") as f:
        f.write("".join(f"{ln}\n" for ln in lines))
    return path


def renditions(photos):
    return [f"/{p}?x-oss-process=image/resize,w_{w}/format,{fmt}" for p in photos for w in WIDTHS for fmt in FORMATS]


# ------------------------------------------------------------------------------ a. forward
def cell_forward(args, binary, origin, photos, outdir):
    redis = Redis(outdir)
    nodes = [Node(f"n{i}", binary, origin, outdir, cluster=True,
                  env={"IMGEDGE_CLUSTER_HOT_COPY_TTL_SECS": "0"} if i == 1 else {}) for i in (1, 2, 3)]
    try:
        for n in nodes:
            n.start(redis=redis.url())
        wait_members(nodes, redis.port, 3)
        n1, n2 = nodes[0], nodes[1]
        # Which URLs does n2 own? Ask n2 itself: a GET of a URL it does not own bumps its
        # forward counter. Warming this way also leaves every URL cached on its owner.
        owned = []
        for u in renditions(photos):
            before = n2.metric("imgedge_cluster_forwards_total")
            status, _, _ = http_get(n2.url() + u)
            assert status == 200, (u, status)
            if n2.metric("imgedge_cluster_forwards_total") == before:
                owned.append(u)
        # n2 kept hot copies of what it forwarded; only its own keys are used below.
        for u in owned:
            http_get(n1.url() + u)
            http_get(n2.url() + u)
        log(f"forward cell: n2 owns {len(owned)} of {len(renditions(photos))} renditions")
        paths = write_list(os.path.join(outdir, "owned.txt"), owned * 20000)
        rows = {"owner hit (wrk -> n2)": [], "forwarded hit (wrk -> n1 -> n2)": []}
        for r in range(args.rounds):
            for name, target in (("owner hit (wrk -> n2)", n2), ("forwarded hit (wrk -> n1 -> n2)", n1)):
                f0 = n1.metric("imgedge_cluster_forwards_total")
                row = measure(nodes, [(target, paths, 1, 16)], args.duration)
                row["forwards"] = n1.metric("imgedge_cluster_forwards_total") - f0
                rows[name].append(row)
                log(f"round {r} {name}: {row['rps']:.0f} req/s, CPU {row['cpu_ms_per_req']:.3f} ms/req, "
                    f"p50 {row['p50_ms']:.2f} p99 {row['p99_ms']:.2f} ms, forwards {row['forwards']:.0f}, "
                    f"errors {row['errors']}")
        return {"owned": len(owned), "rows": rows}
    finally:
        for n in nodes:
            n.stop()
        redis.stop()


# ------------------------------------------------------------------------------ b. diverse
def cell_diverse(args, binary, origin, photos, outdir):
    urls = renditions(photos)
    rng = random.Random(18)
    stream = urls * 3
    rng.shuffle(stream)
    cold = [write_list(os.path.join(outdir, f"cold{i}.txt"), stream[i::3]) for i in range(3)]
    warm_stream = urls * 3000
    rng.shuffle(warm_stream)
    warm = [write_list(os.path.join(outdir, f"warm{i}.txt"), warm_stream[i::3]) for i in range(3)]
    out = {}
    for setup in ("1 node", "cluster-3", "independent-3"):
        redis = Redis(outdir) if setup == "cluster-3" else None
        count = 1 if setup == "1 node" else 3
        nodes = [Node(f"{setup[0]}{i}", binary, origin, outdir, cluster=setup == "cluster-3") for i in range(count)]
        try:
            for n in nodes:
                n.start(redis=redis.url() if redis else None)
            if redis:
                wait_members(nodes, redis.port, 3)
            targets = [nodes[i % count] for i in range(3)]
            c = cold_run(nodes, [(t, f) for t, f in zip(targets, cold)])
            c.update({k: sum(n.counts()[k] for n in nodes) for k in ("origin", "encodes", "forwards")})
            w = [measure(nodes, [(t, f, 1, 8) for t, f in zip(targets, warm)], args.duration)
                 for _ in range(args.rounds)]
            out[setup] = {"cold": c, "warm": w}
            log(f"{setup}: cold {c['rps']:.1f} req/s ({c['requests']} requests in {c['seconds']} s), "
                f"origin GETs {c['origin']:.0f}, encodes {c['encodes']:.0f}, forwards {c['forwards']:.0f}; "
                "warm " + " / ".join(f"{x['rps']:.0f}" for x in w) + " req/s")
        finally:
            for n in nodes:
                n.stop()
            if redis:
                redis.stop()
    return {"distinct": len(urls), "photos": len(photos), "results": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cells", default="forward,diverse")
    args = ap.parse_args()
    binary = os.path.abspath(os.environ.get("IMGEDGE_BIN", os.path.join(REPO, "target/release/imgedge")))
    origin = os.path.join(PEERS_ROOT, "data", "photos")
    if not os.path.isdir(origin):
        origin = os.path.join(REPO, "fixtures")
    photos = sorted(p for p in os.listdir(origin) if p.endswith((".jpg", ".webp", ".png")))[:8]
    outdir = os.path.join(PEERS_ROOT, "results", f"cluster-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(outdir, exist_ok=True)
    log(f"binary {binary}, origin {origin} ({len(photos)} photos), results in {outdir}")
    results = {}
    if "forward" in args.cells:
        results["forward"] = cell_forward(args, binary, origin, photos, outdir)
    if "diverse" in args.cells:
        results["diverse"] = cell_diverse(args, binary, origin, photos, outdir)
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print_tables(results, args, outdir)


def med(rows, k):
    return statistics.median(r[k] for r in rows)


def print_tables(results, args, outdir):
    print(f"\nResults in {outdir}; wrk on CPU 0, every imgedge (and redis) on CPU 1, --workers 1; "
          f"{args.rounds} rounds x {args.duration} s, medians.\n")
    if "forward" in results:
        fw = results["forward"]
        print(f"Forward overhead: {fw['owned']} renditions owned by n2, warm; wrk -t1 -c16, Host: {HOST}.\n")
        print("| path | req/s | p50 ms | p99 ms | CPU ms/req (all nodes) | forwards |")
        print("|---|---:|---:|---:|---:|---:|")
        meds = {}
        for name, rows in fw["rows"].items():
            m = {k: med(rows, k) for k in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_req", "forwards")}
            meds[name] = m
            print(f"| {name} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['cpu_ms_per_req']:.3f} | "
                  f"{m['forwards']:.0f} |")
        a, b = list(meds.values())
        print(f"\nForward overhead per request: +{b['cpu_ms_per_req'] - a['cpu_ms_per_req']:.3f} ms CPU "
              f"({b['cpu_ms_per_req'] / a['cpu_ms_per_req']:.2f}x), p50 +{b['p50_ms'] - a['p50_ms']:.2f} ms, "
              f"p99 +{b['p99_ms'] - a['p99_ms']:.2f} ms (at 16 connections, both closed-loop).\n")
    if "diverse" in results:
        dv = results["diverse"]
        print(f"Diverse workload: {dv['distinct']} distinct renditions ({dv['photos']} photos x {len(WIDTHS)} widths "
              f"x {len(FORMATS)} formats), each requested 3 times cold (3 lists, 4 Python client threads per list), then warm "
              f"(-t1 -c8 each, {args.duration} s).\n")
        print("| setup | cold req/s | cold s | origin GETs | encodes | forwards | encodes per distinct URL | "
              "warm req/s | warm CPU ms/req | warm p99 ms |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for setup, r in dv["results"].items():
            c, w = r["cold"], r["warm"]
            print(f"| {setup} | {c['rps']:.1f} | {c['seconds']} | {c['origin']:.0f} | {c['encodes']:.0f} | "
                  f"{c['forwards']:.0f} | {c['encodes'] / dv['distinct']:.2f} | {med(w, 'rps'):.0f} | "
                  f"{med(w, 'cpu_ms_per_req'):.3f} | {med(w, 'p99_ms'):.2f} |")


if __name__ == "__main__":
    main()
