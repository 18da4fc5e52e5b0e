#!/usr/bin/env python3
"""Side-by-side load benchmark for image servers. Python standard library + wrk.

  bench.py run   --targets thumbor,sharp,nginx,vips [--cells jpeg,webp,png,hot,stampede] ...
  bench.py check --targets ...        # one request per source per cell; status, size, dims
  bench.py floor [--src FILE]         # vipsthumbnail CPU/wall on one file (VIPS_CONCURRENCY=1)
  bench.py list                       # targets known from targets.tsv
  bench.py quality --targets ...      # (imgedge addition) DSSIM/SSIMULACRA2 of the 400x400 outputs

Targets come from targets.tsv (beside this file) plus --define NAME.FIELD=VALUE. For HTTP
targets with a `start` command, bench.py starts a fresh server for every cell (empty caches),
pins it with taskset, measures its process tree, and stops it by PID. A target with a `pid`
field is an already-running server that bench.py only measures. Cells:
  jpeg, webp, png  diverse load: every URL differs (w, h each 300..500, source varies): misses
  hot              one URL repeated (cache-hit path)
  stampede         N identical concurrent requests for one cold URL
  srcset           (imgedge addition) responsive-images pages: every original at 4 widths x
                   JPEG/WebP, grouped per page of 4 originals (see cell_http_srcset)
See README.md in the shared harness (shared/peers) for the full description, and README.md beside
this file (benches/peers in the imgedge repo) for the additions marked "imgedge addition".
"""
import argparse
import atexit
import datetime
import glob
import http.client
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS_ROOT = os.environ.get("PEERS_ROOT", "/tmp/imgedge-peers")
CLK_TCK = os.sysconf("SC_CLK_TCK")
DIVERSE_CELLS = ("jpeg", "webp", "png")
# srcset (imgedge addition): responsive-images page workload, see srcset_plan().
ALL_CELLS = DIVERSE_CELLS + ("hot", "stampede", "srcset")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- targets

def load_targets(path, defines):
    targets = {}
    order = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t", 2)
            if len(parts) != 3:
                raise SystemExit(f"{path}: bad line (need NAME<TAB>FIELD<TAB>VALUE): {line!r}")
            name, field, value = parts
            if name not in targets:
                targets[name] = {"name": name}
                order.append(name)
            targets[name][field] = value
    for d in defines or []:
        m = re.match(r"^([^.=]+)\.([a-z_]+)=(.*)$", d, re.S)
        if not m:
            raise SystemExit(f"--define wants NAME.FIELD=VALUE, got {d!r}")
        name, field, value = m.groups()
        if name not in targets:
            targets[name] = {"name": name}
            order.append(name)
        targets[name][field] = value
    return targets, order


def template(target, cell):
    """URL (or command) template for a cell, or None if unsupported."""
    t = target.get(cell)
    if t is None and cell in ("hot", "stampede"):
        t = target.get("jpeg")
    if t is None or t.strip() in ("", "-"):
        return None
    return t


def srcset_templates(target):
    """(imgedge addition) The srcset cell requests JPEG and WebP variants, so it uses the target's
    jpeg and webp templates; (jpeg, webp), or None if either is missing (nginx: no webp)."""
    j, w = template(target, "jpeg"), template(target, "webp")
    return (j, w) if j and w else None


def cell_template(target, cell):
    """Whether (and how) a target supports a cell: the srcset template pair or the cell template."""
    return srcset_templates(target) if cell == "srcset" else template(target, cell)


def fill(tpl, **kw):
    out = tpl
    for k, v in kw.items():
        out = out.replace("{" + k + "}", str(v))
    return out


def shell_cmd(tpl, **kw):
    """A CLI template filled in and quoted so it can be pasted into a shell."""
    return " ".join(shlex.quote(a) for a in shlex.split(fill(tpl, **kw)))


def is_cli(target):
    return target.get("kind", "http") == "cli"


# ----------------------------------------------------------------------------- /proc

def proc_children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def proc_tree(root):
    kids = proc_children_map()
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
            todo.extend(kids.get(p, []))
    return out


def cpu_seconds(root):
    """utime+stime of every live process in the tree, plus reaped children's (cutime+cstime)."""
    total = 0
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        # fields[0] is state (field 3); utime is field 14 -> index 11
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def vm_hwm_kb(root):
    """(max, sum) of VmHWM over the tree, in kB."""
    vals = []
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        vals.append(int(line.split()[1]))
        except OSError:
            pass
    return (max(vals) if vals else 0, sum(vals))


def reset_hwm(root):
    ok = True
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            ok = False
    return ok


def wait_idle(root, max_s=15.0, step=0.25, eps=0.01):
    """Wait until the server tree stops burning CPU (in-flight work after wrk exits)."""
    t_end = time.time() + max_s
    last = cpu_seconds(root)
    quiet = 0
    while time.time() < t_end:
        time.sleep(step)
        cur = cpu_seconds(root)
        quiet = quiet + 1 if cur - last <= eps else 0
        last = cur
        if quiet >= 2:
            break
    return last


def cpu_busy_jiffies(cpus=None, split=False):
    """Busy time (s) from /proc/stat for all CPUs or the listed ones. With split=True returns
    (process-context time: user+nice+system, irq+softirq+steal)."""
    want = None if cpus is None else {f"cpu{c}" for c in parse_cpulist(cpus)}
    proc_t = irq_t = 0
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            parts = line.split()
            name = parts[0]
            if (want is None and name == "cpu") or (want is not None and name in want):
                v = [int(x) for x in parts[1:9]]
                proc_t += v[0] + v[1] + v[2]
                irq_t += v[5] + v[6] + v[7]
    if split:
        return proc_t / CLK_TCK, irq_t / CLK_TCK
    return (proc_t + irq_t) / CLK_TCK


def wait_quiet(max_wait, threshold=0.15):
    """Before a cell: wait (up to max_wait s) until the whole machine is below threshold CPU use."""
    ncpu = os.cpu_count() or 1
    t_end = time.time() + max_wait
    warned = False
    while True:
        b0 = cpu_busy_jiffies()
        time.sleep(1.0)
        busy = (cpu_busy_jiffies() - b0) / ncpu
        if busy < threshold:
            return busy
        if time.time() >= t_end:
            log(f"  machine still {100 * busy:.0f}% busy after waiting {max_wait}s; measuring anyway (noisy)")
            return busy
        if not warned:
            log(f"  machine {100 * busy:.0f}% busy (other processes); waiting up to {max_wait}s for quiet")
            warned = True


def children_cpu():
    """CPU seconds of this script's reaped children (wrk, vipsthumbnail)."""
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return b.ru_utime + b.ru_stime


class Interference:
    """What else ran on the server's CPU(s) during a cell, from /proc/stat:
    other = process-context time (user+nice+system) on the server CPUs minus the server's own
            CPU time (other users' builds or benchmarks, per-CPU kernel threads), % of the run;
    irq   = irq+softirq+steal on the server CPUs (mostly loopback networking), % of the run.
    Needs a pinned server (None otherwise)."""

    def __init__(self, server_cpus):
        self.cpus = server_cpus
        self.irq = None
        if server_cpus:
            self.p0, self.i0 = cpu_busy_jiffies(server_cpus, split=True)
            self.c0 = children_cpu()
            self.t0 = time.time()

    def pct(self, server_cpu_s, server_is_child=False):
        """server_is_child: the server work ran as reaped children of this script (CLI targets)."""
        if not self.cpus:
            return None
        dt = max(time.time() - self.t0, 1e-6)
        p1, i1 = cpu_busy_jiffies(self.cpus, split=True)
        srv = children_cpu() - self.c0 if server_is_child else (server_cpu_s or 0.0)
        self.irq = round(100 * (i1 - self.i0) / dt, 1)
        return round(100 * max(p1 - self.p0 - srv, 0.0) / dt, 1)


def pin_tree(root, cpus):
    for p in proc_tree(root):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(p)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


# ----------------------------------------------------------------------------- image sniffing

def image_info(b):
    """(format, width, height) from the header bytes, or (None, None, None)."""
    try:
        if b[:8] == b"\x89PNG\r\n\x1a\n":
            w, h = struct.unpack(">II", b[16:24])
            return "png", w, h
        if b[:2] == b"\xff\xd8":
            i = 2
            while i + 9 < len(b):
                if b[i] != 0xFF:
                    i += 1
                    continue
                m = b[i + 1]
                if m in (0xD8, 0x01) or 0xD0 <= m <= 0xD7 or m == 0xFF:
                    i += 1 if m == 0xFF else 2
                    continue
                ln = struct.unpack(">H", b[i + 2:i + 4])[0]
                if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", b[i + 5:i + 9])
                    return "jpeg", w, h
                i += 2 + ln
            return "jpeg", None, None
        if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
            c = b[12:16]
            if c == b"VP8 ":
                w, h = struct.unpack("<HH", b[26:30])
                return "webp", w & 0x3FFF, h & 0x3FFF
            if c == b"VP8L":
                v = struct.unpack("<I", b[21:25])[0]
                return "webp", (v & 0x3FFF) + 1, ((v >> 14) & 0x3FFF) + 1
            if c == b"VP8X":
                w = int.from_bytes(b[24:27], "little") + 1
                h = int.from_bytes(b[27:30], "little") + 1
                return "webp", w, h
            return "webp", None, None
    except (struct.error, IndexError):
        pass
    return None, None, None


# ----------------------------------------------------------------------------- HTTP helpers

def http_get(url, timeout=60.0, headers=None):
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    t0 = time.perf_counter()
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, dict(r.getheaders()), body, time.perf_counter() - t0
    finally:
        c.close()


def wait_port(port, timeout=30.0, proc=None):
    t_end = time.time() + timeout
    while time.time() < t_end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


# ----------------------------------------------------------------------------- servers

class Server:
    """A server process owned (started/stopped) by bench.py, or an external PID."""

    def __init__(self, target, port, origin, server_cpus, logdir, nice=0):
        self.t = target
        self.nice = nice
        self.port = port
        self.origin = origin
        self.cpus = server_cpus
        self.logdir = logdir
        self.proc = None
        self.external_pid = int(target["pid"]) if target.get("pid") else None
        self.pid = self.external_pid
        self.owned = False
        self.tmp = None

    def start(self):
        if self.external_pid is not None:
            self.pid = self.external_pid
            if self.cpus:
                pin_tree(self.pid, self.cpus)
            return
        cmd = self.t.get("start")
        if not cmd:
            return  # nothing to start (URL-only target): no CPU/RSS numbers
        self.tmp = tempfile.mkdtemp(prefix=f"{self.t['name']}-", dir=os.path.join(PEERS_ROOT, "tmp"))
        # {admin_port} (imgedge addition): a second port per target, for imgedge's admin listener
        cmd = fill(cmd, port=self.port, admin_port=self.port + 1000, origin=self.origin, tmp=self.tmp, peers=HERE)
        argv = ["bash", "-c", "exec " + cmd]
        if self.nice:
            argv = ["nice", "-n", str(self.nice)] + argv
        if self.cpus:
            argv = ["taskset", "-c", self.cpus] + argv
        logf = open(os.path.join(self.logdir, f"server-{self.t['name']}.log"), "ab")
        logf.write(f"\n=== {datetime.datetime.now().isoformat()} {' '.join(argv)}\n".encode())
        logf.flush()
        self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        self.pid = self.proc.pid
        self.owned = True
        if self.nice:
            set_autogroup_nice(self.pid, self.nice)  # its own session = its own autogroup
        if not wait_port(self.port, 60, self.proc):
            self.stop()
            raise RuntimeError(f"{self.t['name']}: server did not open port {self.port} "
                               f"(see {self.logdir}/server-{self.t['name']}.log)")

    def stop(self):
        if not self.owned or self.proc is None:
            return
        tree = proc_tree(self.pid)
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log(f"{self.t['name']}: pid {self.pid} ignored SIGTERM for 10 s, sending SIGKILL")
        for p in tree:  # leftovers (children that outlived the parent)
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        self.pid = None
        self.owned = False
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        # wait for the port to be free for the next start
        t_end = time.time() + 10
        while time.time() < t_end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                time.sleep(0.1)
            except OSError:
                break

    def measurable(self):
        return self.pid is not None


# ----------------------------------------------------------------------------- workloads

def sources(origin, pattern):
    files = sorted(glob.glob(os.path.join(origin, pattern)))
    keys = [os.path.relpath(f, origin) for f in files if os.path.isfile(f)]
    if not keys:
        raise SystemExit(f"no source files match {pattern!r} under {origin}")
    return keys


def diverse_pool(keys, n, seed, wmin=300, wmax=500):
    """n distinct (key, w, h) triples, w and h in [wmin, wmax], never (400, 400)."""
    rnd = random.Random(seed)
    space = len(keys) * (wmax - wmin + 1) ** 2 - len(keys)
    n = min(n, space)
    seen, out = set(), []
    while len(out) < n:
        t = (rnd.choice(keys), rnd.randint(wmin, wmax), rnd.randint(wmin, wmax))
        if t[1] == 400 and t[2] == 400:
            continue
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def split_url(url):
    u = urllib.parse.urlsplit(url)
    base = f"{u.scheme}://{u.netloc}/"
    path = u.path + ("?" + u.query if u.query else "")
    return base, path


def parse_benchjson(out):
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    return None


def run_wrk(args, base, script, script_args, threads, conns, duration, rawlog):
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s",
           "--timeout", f"{args.wrk_timeout}s", "-s", script, base, "--"] + [str(a) for a in script_args]
    log("  " + " ".join(shlex.quote(c) for c in cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + args.wrk_timeout + 30)
    with open(rawlog, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n" + p.stdout + p.stderr + "\n")
    res = parse_benchjson(p.stdout)
    if res is None:
        raise RuntimeError(f"wrk failed (rc={p.returncode}): {p.stderr.strip()[:500]}")
    res["wrk_cmd"] = " ".join(shlex.quote(c) for c in cmd)
    return res


def summarize_wrk(res, cpu, hwm, extra):
    dur = res["duration_us"] / 1e6
    errors = res["err_connect"] + res["err_read"] + res["err_write"] + res["err_status"] + res["err_timeout"]
    ok = max(res["requests"] - res["err_status"], 0)
    out = {
        "requests": res["requests"],
        "ok": ok,
        "errors": errors,
        "errors_detail": {k[4:]: res[k] for k in res if k.startswith("err_") and res[k]},
        "duration_s": round(dur, 3),
        "rps": round(ok / dur, 2) if dur else None,
        "p50_ms": round(res["lat_p50_us"] / 1000, 3),
        "p90_ms": round(res["lat_p90_us"] / 1000, 3),
        "p99_ms": round(res["lat_p99_us"] / 1000, 3),
        "max_ms": round(res["lat_max_us"] / 1000, 3),
        "bytes_per_resp": round(res["bytes"] / res["requests"]) if res["requests"] else None,
        "count_capped": bool(res.get("capped_threads")),
        "wrk_cmd": res.get("wrk_cmd"),
    }
    if cpu is not None:
        out["cpu_s"] = round(cpu, 3)
        out["cpu_ms_per_req"] = round(1000 * cpu / ok, 3) if ok else None
        out["server_cpu_util_pct"] = round(100 * cpu / dur, 1) if dur else None
    if hwm is not None:
        out["peak_rss_mb"] = round(hwm[0] / 1024, 1)
        out["peak_rss_tree_sum_mb"] = round(hwm[1] / 1024, 1)
    out.update(extra)
    return out


def warm(url_list, timeout=120):
    for u in url_list:
        try:
            http_get(u, timeout=timeout)
        except OSError as e:
            log(f"  warmup {u}: {e}")


def measured_wrk(args, srv, base, script, script_args, conns, duration, rundir, extra):
    """Runs wrk against a started server and charges it the CPU of the wrk window only:
    work on requests still queued when wrk stops (up to `conns` of them) is excluded and
    reported separately as cpu_tail_s. Peak RSS is reset first, so it covers this load."""
    measurable = srv.measurable()
    if measurable:
        wait_idle(srv.pid, max_s=5)
        reset_hwm(srv.pid)
        c0 = cpu_seconds(srv.pid)
    intf = Interference(srv.cpus)
    res = run_wrk(args, base, os.path.join(HERE, "wrk", script), script_args,
                  args.threads, conns, duration, os.path.join(rundir, "wrk-raw.log"))
    cpu = hwm = other = tail = None
    if measurable:
        cpu = cpu_seconds(srv.pid) - c0
        other = intf.pct(cpu)
        tail = wait_idle(srv.pid) - c0 - cpu
        hwm = vm_hwm_kb(srv.pid)
    return summarize_wrk(res, cpu, hwm, {
        "other_on_server_cpu_pct": other, "irq_on_server_cpu_pct": intf.irq,
        "cpu_tail_s": None if tail is None else round(tail, 3),
        "conns": conns, "threads": args.threads, **extra})


def cell_http_diverse(args, target, cell, srv, keys, rundir):
    tpl = template(target, cell)
    pool = diverse_pool(keys, args.diverse_cap, args.seed)
    urls = [fill(tpl, port=srv.port, key=k, w=w, h=h, q=args.quality) for k, w, h in pool]
    base, _ = split_url(urls[0])
    pfile = os.path.join(rundir, f"paths-{target['name']}-{cell}.txt")
    with open(pfile, "w") as f:
        for u in urls:
            f.write(split_url(u)[1] + "\n")
    # warm-up: every source once at sizes outside the measured range (no cache overlap)
    warm([fill(tpl, port=srv.port, key=k, w=250 + i, h=250 + i, q=args.quality) for i, k in enumerate(keys)])
    return measured_wrk(args, srv, base, "diverse.lua", [pfile, args.threads], args.diverse_conns,
                        args.duration, rundir,
                        {"unique_urls": len(urls), "sources": len(keys), "example_url": urls[0]})


def srcset_plan(keys, seed, widths, page_size, cap):
    """The srcset URL list, as (key, fmt, w) with fmt "jpeg" or "webp", fit within w x w.

    Every original (a distinct file under srcset/) is requested at every width in `widths`
    in both formats: 4 x 2 = 8 distinct URLs per original, so nothing repeats. The originals
    are shuffled (seeded) and cut into pages of `page_size`; the page_size * 8 URLs of one
    page are shuffled (seeded) and the pages follow one another. So requests for one original
    come close together (as a browser fetching one page's <img srcset> / <picture> variants),
    and a server that keeps the decoded source can reuse it; no original comes back later."""
    rnd = random.Random(seed)
    originals = list(keys)
    rnd.shuffle(originals)
    out = []
    for i in range(0, len(originals), page_size):
        page = [(k, fmt, w) for k in originals[i:i + page_size] for w in widths for fmt in ("jpeg", "webp")]
        rnd.shuffle(page)
        out.extend(page)
    return out[:cap]


def cell_http_srcset(args, target, srv, keys, rundir):
    """Like the diverse cells (wrk -t T -c C, diverse.lua, each URL sent once, same columns),
    over the srcset_plan() list. The jpeg/webp templates are used per URL with w = h = width."""
    tpl_jpeg, tpl_webp = srcset_templates(target)
    tpls = {"jpeg": tpl_jpeg, "webp": tpl_webp}
    plan = srcset_plan(keys, args.seed, args.srcset_widths, args.srcset_page, args.diverse_cap)
    urls = [fill(tpls[f], port=srv.port, key=k, w=w, h=w, q=args.quality) for k, f, w in plan]
    base, _ = split_url(urls[0])
    pfile = os.path.join(rundir, f"paths-{target['name']}-srcset.txt")
    with open(pfile, "w") as f:
        for u in urls:
            f.write(split_url(u)[1] + "\n")
    # warm-up on OTHER originals (photos/, not srcset/) at sizes that are not srcset widths, in
    # both formats: loads the code paths without touching any measured original
    warm_keys = sources(srv.origin, args.jpeg_src)
    warm([fill(tpls[fm], port=srv.port, key=k, w=250 + i, h=250 + i, q=args.quality)
          for i, k in enumerate(warm_keys) for fm in ("jpeg", "webp")])
    return measured_wrk(args, srv, base, "diverse.lua", [pfile, args.threads], args.diverse_conns,
                        args.duration, rundir,
                        {"unique_urls": len(urls), "sources": len(keys), "srcset_widths": args.srcset_widths,
                         "srcset_page": args.srcset_page, "example_url": urls[0]})


def cell_http_hot(args, target, srv, rundir):
    tpl = template(target, "hot")
    url = fill(tpl, port=srv.port, key=args.hot_key, w=400, h=400, q=args.quality)
    base, path = split_url(url)
    st, _, body, _ = http_get(url)  # prime (first request fills a cache, if any)
    http_get(url)
    if st != 200:
        log(f"  hot URL returned {st}: {body[:200]!r}")
    per_thread_cap = max(1, args.hot_cap // args.threads)
    return measured_wrk(args, srv, base, "hot.lua", [path, per_thread_cap], args.hot_conns,
                        args.hot_duration, rundir, {"example_url": url})


# Response headers that say how a cache answered (recorded per stampede response).
CACHE_HEADERS = ("x-cache-status", "x-cache", "cf-cache-status", "x-imgedge-cache", "age")


def cache_header_summary(hdr):
    return "|".join(f"{h}={hdr[h]}" for h in CACHE_HEADERS if h in hdr and h != "age")


def curl_burst(url, n, timeout):
    """n identical GETs of `url` started together by one curl process (C, one event loop,
    a connection each): [(status, seconds, body bytes, cache headers)]. curl reads the 50
    responses as they arrive, so the slowest one measures the server, not the client."""
    fmt = "\t".join(["%{http_code}", "%{time_total}", "%{size_download}"]
                     + [f"%header{{{h}}}" for h in CACHE_HEADERS]) + "\n"
    argv = ["curl", "-s", "--parallel", "--parallel-immediate", "--parallel-max", str(n),
            "--max-time", str(timeout), "-w", fmt]
    for _ in range(n):
        argv += [url, "-o", "/dev/null"]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout + 10)
    out = []
    for line in p.stdout.decode(errors="replace").splitlines():
        f = line.split("\t")
        if len(f) < 3:
            continue
        hdr = {h: v for h, v in zip(CACHE_HEADERS, f[3:]) if v}
        status = int(f[0]) if f[0] != "000" else "ERR:curl"
        out.append((status, float(f[1]), int(f[2]), cache_header_summary(hdr)))
    out += [("ERR:missing", float(timeout), 0, "")] * (n - len(out))
    return out


def python_burst(url, n, timeout):
    """The same burst from n Python threads behind a barrier (connections opened first).
    Kept for comparison: the threads read their responses one at a time under the GIL,
    which adds ~10 ms to the slowest one even when the server answers from cache."""
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    conns = []
    for _ in range(n):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        c.connect()
        conns.append(c)
    barrier = threading.Barrier(n + 1)
    results = [None] * n

    def worker(i):
        c = conns[i]
        barrier.wait()
        t0 = time.perf_counter()
        try:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            hdr = {k.lower(): v for k, v in r.getheaders()}
            results[i] = (r.status, time.perf_counter() - t0, len(body), cache_header_summary(hdr))
        except Exception as e:  # noqa: BLE001 - any failure is an error for the report
            results[i] = ("ERR:" + type(e).__name__, time.perf_counter() - t0, 0, "")
        finally:
            c.close()

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in ths:
        t.start()
    barrier.wait()
    for t in ths:
        t.join(timeout + 10)
    return [r if r else ("ERR:timeout", float(timeout), 0, "") for r in results]


STAMPEDE_CLIENTS = {"curl": curl_burst, "python": python_burst}


def cell_http_stampede(args, target, srv, rundir):
    tpl = template(target, "stampede")
    key = args.stampede_key
    burst = STAMPEDE_CLIENTS[args.stampede_client]
    url = fill(tpl, port=srv.port, key=key, w=400, h=400, q=args.quality)
    warm([fill(tpl, port=srv.port, key=key, w=250, h=250, q=args.quality)])
    measurable = srv.measurable()
    cpu_single = None
    if measurable:
        wait_idle(srv.pid, max_s=5)
        c0 = cpu_seconds(srv.pid)
    # one encode's cost: 3 sequential cold requests of the same source (399, 398, 397 px),
    # each a burst of one from the same client, so both sides of the ratio pay its overhead
    singles = [burst(fill(tpl, port=srv.port, key=key, w=399 - i, h=399 - i, q=args.quality), 1,
                     args.stampede_timeout)[0] for i in range(3)]
    st = singles[0][0]
    t_single = statistics.median(x[1] for x in singles)
    if measurable:
        cpu_single = (wait_idle(srv.pid) - c0) / len(singles)
        reset_hwm(srv.pid)
        c0 = cpu_seconds(srv.pid)

    n = args.stampede_n
    intf = Interference(srv.cpus)
    results = burst(url, n, args.stampede_timeout)
    # every transfer starts at once, so the slowest one is the burst's wall time
    wall = max(r[1] for r in results)
    cpu = hwm = other = None
    if measurable:
        other = intf.pct(cpu_seconds(srv.pid) - c0)  # over the burst only
        cpu = wait_idle(srv.pid) - c0
        hwm = vm_hwm_kb(srv.pid)
    lat = sorted(r[1] for r in results if r)
    statuses = {}
    cachestat = {}
    for r in results:
        if r:
            statuses[str(r[0])] = statuses.get(str(r[0]), 0) + 1
            if r[3]:
                cachestat[r[3]] = cachestat.get(r[3], 0) + 1
    ok = statuses.get("200", 0)
    out = {
        "n": n, "ok": ok, "errors": n - ok, "statuses": statuses, "cache_headers": cachestat,
        "wall_s": round(wall, 3),
        "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
        "max_ms": round(1000 * lat[-1], 1) if lat else None,
        "single_cold_ms": round(1000 * t_single, 1), "single_status": st,
        "example_url": url, "client": args.stampede_client,
    }
    if measurable:
        out["cpu_single_s"] = round(cpu_single, 3)
        out["cpu_burst_s"] = round(cpu, 3)
        out["encode_equiv"] = round(cpu / cpu_single, 2) if cpu_single and cpu_single > 0.005 else None
        out["other_on_server_cpu_pct"] = other
        out["irq_on_server_cpu_pct"] = intf.irq
        out["peak_rss_mb"] = round(hwm[0] / 1024, 1)
        out["peak_rss_tree_sum_mb"] = round(hwm[1] / 1024, 1)
    return out


# --- CLI targets (vipsthumbnail): one process per image, sequential, pinned

def run_cli_once(cmd_tpl, src, w, h, q, outdir, cpus, idx, env):
    out = os.path.join(outdir, f"o{idx}")
    argv = shlex.split(fill(cmd_tpl, src=shlex.quote(src), out=out, w=w, h=h, q=q))
    if cpus:
        argv = ["taskset", "-c", cpus] + argv
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace").strip()
    p.stderr.close()
    produced = [f for f in os.listdir(outdir) if f.startswith(f"o{idx}.")]
    size = 0
    for f in produced:
        size += os.path.getsize(os.path.join(outdir, f))
        os.unlink(os.path.join(outdir, f))
    return p.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, size, err


def cli_env():
    env = dict(os.environ)
    env.setdefault("VIPS_CONCURRENCY", "1")
    return env


def pct(vals, p):
    if not vals:
        return None
    s = sorted(vals)
    k = min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def cell_cli(args, target, cell, keys, origin, cpus):
    if cell == "stampede":
        return None
    # items are (key, w, h, template); srcset (imgedge addition) mixes the jpeg and webp templates
    if cell == "srcset":
        tpls = dict(zip(("jpeg", "webp"), srcset_templates(target)))
        items = [(k, w, w, tpls[f]) for k, f, w in
                 srcset_plan(keys, args.seed, args.srcset_widths, args.srcset_page, args.diverse_cap)]
        duration = args.duration
    else:
        tpl = template(target, "jpeg" if cell == "hot" else cell)
        if cell == "hot":
            items = [(args.hot_key, 400, 400, tpl)] * args.diverse_cap
            duration = args.hot_duration
        else:
            items = [(k, w, h, tpl) for k, w, h in diverse_pool(keys, args.diverse_cap, args.seed)]
            duration = args.duration
    env = cli_env()
    outdir = tempfile.mkdtemp(prefix="cli-", dir=os.path.join(PEERS_ROOT, "tmp"))
    walls, cpus_used, rss, sizes, errors = [], [], [], [], 0
    first_err = ""
    try:
        run_cli_once(items[0][3], os.path.join(origin, items[0][0]), 250, 250, args.quality, outdir, cpus, 0, env)  # warm
        intf = Interference(cpus)
        t_start = time.perf_counter()
        for i, (k, w, h, tpl) in enumerate(items):
            if time.perf_counter() - t_start >= duration:
                break
            rc, wall, cpu, maxrss, size, err = run_cli_once(
                tpl, os.path.join(origin, k), w, h, args.quality, outdir, cpus, i + 1, env)
            if rc != 0 or size == 0:
                errors += 1
                first_err = first_err or err[:200]
                continue
            walls.append(wall)
            cpus_used.append(cpu)
            rss.append(maxrss)
            sizes.append(size)
        total = time.perf_counter() - t_start
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
    n = len(walls)
    return {
        "requests": n + errors, "ok": n, "errors": errors, "duration_s": round(total, 3),
        "rps": round(n / total, 2) if total else None,
        "p50_ms": round(1000 * statistics.median(walls), 3) if walls else None,
        "p99_ms": round(1000 * pct(walls, 99), 3) if walls else None,
        "max_ms": round(1000 * max(walls), 3) if walls else None,
        "cpu_s": round(sum(cpus_used), 3),
        "cpu_ms_per_req": round(1000 * sum(cpus_used) / n, 3) if n else None,
        "peak_rss_mb": round(max(rss) / 1024, 1) if rss else None,
        "bytes_per_resp": round(sum(sizes) / n) if n else None,
        "conns": 1, "sources": len(set(it[0] for it in items)),
        "other_on_server_cpu_pct": intf.pct(None, server_is_child=True),
        "irq_on_server_cpu_pct": intf.irq,
        "example_cmd": shell_cmd(items[0][3], src=os.path.join(origin, items[0][0]), out="OUT", w=items[0][1], h=items[0][2], q=args.quality),
        "first_error": first_err,
    }


# ----------------------------------------------------------------------------- check

def check_target(args, target, srv, origin):
    rows = []
    for cell in DIVERSE_CELLS:
        tpl = template(target, cell)
        if tpl is None:
            continue
        keys = sources(origin, args.png_src if cell == "png" else args.jpeg_src)
        for k in keys:
            if is_cli(target):
                outdir = tempfile.mkdtemp(prefix="chk-", dir=os.path.join(PEERS_ROOT, "tmp"))
                try:
                    out = os.path.join(outdir, "o")
                    argv = shlex.split(fill(tpl, src=shlex.quote(os.path.join(origin, k)), out=out, w=400, h=400, q=args.quality))
                    t0 = time.perf_counter()
                    p = subprocess.run(argv, capture_output=True, env=cli_env())
                    dt = time.perf_counter() - t0
                    files = os.listdir(outdir)
                    body = open(os.path.join(outdir, files[0]), "rb").read() if files else b""
                    st = 200 if p.returncode == 0 and body else f"rc={p.returncode}"
                finally:
                    shutil.rmtree(outdir, ignore_errors=True)
            else:
                url = fill(tpl, port=srv.port, key=k, w=400, h=400, q=args.quality)
                try:
                    st, _, body, dt = http_get(url)
                except OSError as e:
                    st, body, dt = f"ERR {e}", b"", 0.0
            fmt, w, h = image_info(body) if st == 200 else (None, None, None)
            row = {"target": target["name"], "cell": cell, "key": k, "status": st, "bytes": len(body),
                   "format": fmt, "w": w, "h": h, "ms": round(1000 * dt, 1)}
            if args.repeat > 0 and st == 200:
                # median of N sequential misses (distinct sizes 399, 398, ...): per-source latency
                times = []
                for i in range(1, args.repeat + 1):
                    if is_cli(target):
                        outdir = tempfile.mkdtemp(prefix="chk-", dir=os.path.join(PEERS_ROOT, "tmp"))
                        try:
                            _, wall, _, _, _, _ = run_cli_once(tpl, os.path.join(origin, k), 400 - i, 400 - i,
                                                               args.quality, outdir, srv.cpus, i, cli_env())
                        finally:
                            shutil.rmtree(outdir, ignore_errors=True)
                        times.append(wall)
                    else:
                        times.append(http_get(fill(tpl, port=srv.port, key=k, w=400 - i, h=400 - i, q=args.quality))[3])
                row["median_ms"] = round(1000 * statistics.median(times), 1)
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- reporting

def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def compare_tables(results, compare):
    """(imgedge addition) For every cell: each compared target (imgedge, imgedge-nodc) against
    every other target, as req/s ratio and CPU-ms-per-request ratio (compared / peer)."""
    names = []
    for r in results:
        if r["target"] not in names:
            names.append(r["target"])
    if compare:
        mine = [n for n in compare.split(",") if n in names]
    else:
        mine = [n for n in names if n.startswith("imgedge")]
    peers = [n for n in names if n not in mine]
    if not mine or not peers:
        return []
    by = {(r["target"], r["cell"]): r for r in results if not r.get("skipped")}
    L = ["", "### " + " / ".join(f"`{m}`" for m in mine) + " vs each peer",
         "",
         "Per cell: the compared target's req/s divided by the peer's (> 1 = faster) and its CPU ms per "
         "request divided by the peer's (< 1 = cheaper). Same run, same machine, one server core each.",
         ""]
    for c in [c for c in ALL_CELLS if c != "stampede" and any(r["cell"] == c for r in results)]:
        own = [f"`{m}` {fmt(by[(m, c)].get('rps'))} req/s, {fmt(by[(m, c)].get('cpu_ms_per_req'), 2)} CPU ms/req"
               for m in mine if (m, c) in by]
        L.append(f"**{c}**: " + ("; ".join(own) if own else "no result for " + ", ".join(mine)))
        L.append("")
        L.append("| peer | peer req/s | peer CPU ms/req | " +
                 " | ".join(f"{m} req/s ratio | {m} CPU ratio" for m in mine) + " |")
        L.append("|---|---:|---:|" + "---:|---:|" * len(mine))
        for pn in peers:
            b = by.get((pn, c))
            if not b or not b.get("rps"):
                L.append(f"| {pn} | n/a | | " + " | ".join("- | -" for _ in mine) + " |")
                continue
            row = [pn, fmt(b.get("rps")), fmt(b.get("cpu_ms_per_req"), 2)]
            for m in mine:
                a = by.get((m, c))
                row.append(f"{a['rps'] / b['rps']:.3g}x" if a and a.get("rps") else "-")
                row.append(f"{a['cpu_ms_per_req'] / b['cpu_ms_per_req']:.3g}"
                           if a and a.get("cpu_ms_per_req") and b.get("cpu_ms_per_req") else "-")
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    return L


def markdown(results, checks, meta, baseline, compare=None):
    L = []
    L.append(f"Run {meta['started']} on {meta['host']}; server CPUs `{meta['server_cpus'] or 'unpinned'}`, "
             f"load CPUs `{meta['load_cpus'] or 'unpinned'}`, nice {meta.get('nice', 0)}; origin `{meta['origin']}`.")
    L.append("")
    L.append("### Load cells (jpeg/webp/png = diverse, every URL a miss; hot = one URL repeated; "
             "srcset = responsive-image pages, every URL distinct)")
    L.append("")
    sr = [r for r in results if r["cell"] == "srcset" and not r.get("skipped")]
    if sr:
        L.append(f"srcset: {sr[0].get('sources')} distinct originals, each at widths "
                 f"{', '.join(map(str, sr[0].get('srcset_widths') or []))} (fit within w x w) in JPEG and WebP "
                 f"q80 = {sr[0].get('unique_urls')} URLs; pages of {sr[0].get('srcset_page')} originals, "
                 "URLs shuffled within a page (seeded), pages in sequence; each URL sent once.")
        L.append("")
    L.append("`other %` = CPU time on the server's CPU used by anything but the server (other users' processes, "
             "per-CPU kernel threads), % of the run: more than a few % means the cell was disturbed. "
             "`irq %` = irq+softirq+steal on the server CPU (mostly loopback networking).")
    L.append("")
    L.append("| target | cell | req/s | p50 ms | p99 ms | max ms | errors | CPU ms/req | server CPU % | peak RSS MB | bytes/resp | requests | conns | other % | irq % |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r["cell"] == "stampede":
            continue
        if r.get("skipped"):
            L.append(f"| {r['target']} | {r['cell']} | n/a{' (' + r['failed'][:60] + ')' if r.get('failed') else ''} | | | | | | | | | | | | |")
            continue
        rss = fmt(r.get("peak_rss_mb"))
        if r.get("peak_rss_tree_sum_mb") and r.get("peak_rss_tree_sum_mb") != r.get("peak_rss_mb"):
            rss += f" (tree {fmt(r['peak_rss_tree_sum_mb'])})"
        flag = " (count cap hit)" if r.get("count_capped") else ""
        L.append(f"| {r['target']} | {r['cell']} | {fmt(r.get('rps'))}{flag} | {fmt(r.get('p50_ms'), 2)} | "
                 f"{fmt(r.get('p99_ms'), 2)} | {fmt(r.get('max_ms'), 1)} | {r.get('errors')} | "
                 f"{fmt(r.get('cpu_ms_per_req'), 2)} | {fmt(r.get('server_cpu_util_pct'))} | {rss} | {fmt(r.get('bytes_per_resp'))} | "
                 f"{r.get('requests')} | {r.get('conns')} | {fmt(r.get('other_on_server_cpu_pct'))} | "
                 f"{fmt(r.get('irq_on_server_cpu_pct'))} |")
    st = [r for r in results if r["cell"] == "stampede" and not r.get("skipped")]
    if st:
        L.append("")
        L.append(f"### Stampede ({st[0]['n']} identical concurrent cold requests, "
                 f"sent by {st[0].get('client', 'python')})")
        L.append("")
        L.append("| target | ok | errors | all done s | p50 ms | max ms | single cold ms | CPU s burst | CPU s single | encode-equivalents | peak RSS MB | cache headers | other % |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        for r in st:
            ch = ", ".join(f"{k}: {v}" for k, v in sorted(r.get("cache_headers", {}).items())) or "-"
            L.append(f"| {r['target']} | {r['ok']} | {r['errors']} | {fmt(r['wall_s'], 2)} | {fmt(r['p50_ms'])} | "
                     f"{fmt(r['max_ms'])} | {fmt(r['single_cold_ms'])} | {fmt(r.get('cpu_burst_s'), 2)} | "
                     f"{fmt(r.get('cpu_single_s'), 3)} | {fmt(r.get('encode_equiv'))} | {fmt(r.get('peak_rss_mb'))} | {ch} | "
                     f"{fmt(r.get('other_on_server_cpu_pct'))} |")
    # ratios
    names = []
    for r in results:
        if r["target"] not in names:
            names.append(r["target"])
    if baseline and baseline in names and len(names) > 1:
        cells = [c for c in ALL_CELLS if c != "stampede" and any(r["cell"] == c for r in results)]
        by = {(r["target"], r["cell"]): r for r in results if not r.get("skipped")}
        L.append("")
        L.append(f"### Ratios vs `{baseline}` (req/s ratio; in brackets CPU-per-request ratio, lower is better)")
        L.append("")
        L.append("| target | " + " | ".join(cells) + " |")
        L.append("|---|" + "---:|" * len(cells))
        for n in names:
            row = []
            for c in cells:
                a, b = by.get((n, c)), by.get((baseline, c))
                if not a or not b or not a.get("rps") or not b.get("rps"):
                    row.append("-")
                    continue
                s = f"{a['rps'] / b['rps']:.3g}x"
                if a.get("cpu_ms_per_req") and b.get("cpu_ms_per_req"):
                    s += f" [{a['cpu_ms_per_req'] / b['cpu_ms_per_req']:.3g}]"
                row.append(s)
            L.append(f"| {n} | " + " | ".join(row) + " |")
    L.extend(compare_tables(results, compare))
    if checks:
        L.append("")
        L.append("### Output check (w=h=400, q as configured): status, format WxH, bytes "
                 "(with --repeat N: median wall ms of N sequential misses)")
        L.append("")
        tnames = []
        for c in checks:
            if c["target"] not in tnames:
                tnames.append(c["target"])
        keys = []
        for c in checks:
            if (c["cell"], c["key"]) not in keys:
                keys.append((c["cell"], c["key"]))
        by = {(c["target"], c["cell"], c["key"]): c for c in checks}
        L.append("| cell | source | " + " | ".join(tnames) + " |")
        L.append("|---|---|" + "---|" * len(tnames))
        for cell, key in keys:
            row = []
            for t in tnames:
                c = by.get((t, cell, key))
                if not c:
                    row.append("-")
                elif c["status"] == 200:
                    row.append(f"{c['format']} {c['w']}x{c['h']} {c['bytes']}"
                               + (f" ({c['median_ms']} ms)" if c.get("median_ms") is not None else ""))
                else:
                    row.append(f"**{c['status']}**")
            L.append(f"| {cell} | {os.path.basename(key)} | " + " | ".join(row) + " |")
    return "\n".join(L) + "\n"


# ----------------------------------------------------------------------------- commands

def set_autogroup_nice(pid, nice):
    """With sched_autogroup on (Debian's default), nice only ranks processes inside one session's
    autogroup; between sessions (another user's build vs our server) it is the autogroup's
    own nice that counts. Set it for the autogroup of `pid` (best effort)."""
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass


def setup_nice(args):
    """Renice this script (so wrk, the stampede client and vips children inherit it). The
    autogroup is shared with the calling shell's session, so its nice is restored at exit."""
    if not args.nice:
        return
    os.nice(args.nice)
    try:
        with open("/proc/self/autogroup") as f:
            old = int(f.read().split()[-1])  # "/autogroup-24 nice 0"
    except (OSError, ValueError):
        return
    set_autogroup_nice(os.getpid(), args.nice)
    atexit.register(set_autogroup_nice, os.getpid(), old)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers


def setup_affinity(args):
    ncpu = os.cpu_count() or 1
    if args.no_pin or ncpu < 2:
        return None, None
    server = args.server_cpus or str(ncpu - 1)
    load = args.load_cpus or ",".join(str(i) for i in range(ncpu - 1))
    os.sched_setaffinity(0, {int(x) for x in parse_cpulist(load)})
    return server, load


def parse_cpulist(s):
    out = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def resolve_targets(args):
    targets, order = load_targets(args.targets_file, args.define)
    names = [n.strip() for n in args.targets.split(",") if n.strip()] if args.targets else []
    for n in names:
        if n not in targets:
            raise SystemExit(f"unknown target {n!r}; known: {', '.join(order)}")
    return targets, names


def cell_src(args, cell):
    """The source glob of a cell."""
    return {"png": args.png_src, "srcset": args.srcset_src}.get(cell, args.jpeg_src)


def cmd_run(args, only_check=False):
    targets, names = resolve_targets(args)
    if not names:
        raise SystemExit("--targets is required")
    origin = os.path.abspath(args.origin)
    if not os.path.isdir(origin):
        raise SystemExit(f"origin {origin} missing (run ./prepare-data.sh)")
    os.makedirs(os.path.join(PEERS_ROOT, "tmp"), exist_ok=True)
    if shutil.which("wrk") is None and not only_check:
        raise SystemExit("wrk not found (./install.sh tools)")
    server_cpus, load_cpus = setup_affinity(args)
    setup_nice(args)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    rundir = args.out or os.path.join(PEERS_ROOT, "results", stamp)
    os.makedirs(rundir, exist_ok=True)
    meta = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "host": socket.gethostname(),
            "server_cpus": server_cpus, "load_cpus": load_cpus, "nice": args.nice, "origin": origin, "argv": sys.argv,
            "nproc": os.cpu_count()}
    with open(os.path.join(rundir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    for c in cells:
        if c not in ALL_CELLS:
            raise SystemExit(f"unknown cell {c!r} (cells: {', '.join(ALL_CELLS)})")
    log(f"results -> {rundir}; server CPUs {server_cpus}, load CPUs {load_cpus}")
    results, checks = [], []
    jsonl = open(os.path.join(rundir, "results.jsonl"), "a")
    for idx, name in enumerate(names):
        t = targets[name]
        port = args.base_port + idx
        srv = Server(t, port, origin, server_cpus, rundir, args.nice)
        start_failed = None
        if not args.no_check or only_check:
            log(f"{name}: output check")
            try:
                if not is_cli(t):
                    srv.start()
                checks.extend(check_target(args, t, srv, origin))
            except Exception as e:  # noqa: BLE001 - a target that cannot start must not end the run
                start_failed = str(e)
                log(f"{name}: FAILED: {e}")
            finally:
                srv.stop()
        if only_check:
            continue
        for cell in cells:
            tpl = cell_template(t, cell)
            rec = {"target": name, "cell": cell, "notes": t.get("notes", "")}
            if start_failed:
                rec.update(skipped=True, failed=start_failed)
                results.append(rec)
                jsonl.write(json.dumps(rec) + "\n")
                continue
            if tpl is None or (is_cli(t) and cell == "stampede"):
                rec["skipped"] = True
                log(f"{name}/{cell}: not supported, skipped")
                results.append(rec)
                jsonl.write(json.dumps(rec) + "\n")
                continue
            best = None
            for attempt in range(1 + max(args.retries, 0)):
                log(f"{name}/{cell}" + (f" (attempt {attempt + 1}: previous run disturbed)" if attempt else ""))
                r = dict(rec)
                if args.quiet_wait > 0:
                    r["machine_busy_before_pct"] = round(100 * wait_quiet(args.quiet_wait), 1)
                try:
                    if is_cli(t):
                        keys = sources(origin, cell_src(args, cell))
                        r.update(cell_cli(args, t, cell, keys, origin, server_cpus))
                    else:
                        srv.start()
                        if cell in DIVERSE_CELLS:
                            keys = sources(origin, args.png_src if cell == "png" else args.jpeg_src)
                            r.update(cell_http_diverse(args, t, cell, srv, keys, rundir))
                        elif cell == "srcset":
                            r.update(cell_http_srcset(args, t, srv, sources(origin, args.srcset_src), rundir))
                        elif cell == "hot":
                            r.update(cell_http_hot(args, t, srv, rundir))
                        else:
                            r.update(cell_http_stampede(args, t, srv, rundir))
                except Exception as e:  # noqa: BLE001 - record and go on with the next cell
                    log(f"{name}/{cell}: FAILED: {e}")
                    r["failed"] = str(e)
                    r["skipped"] = True
                finally:
                    srv.stop()
                other = r.get("other_on_server_cpu_pct")
                r["attempt"] = attempt + 1
                if best is None or (other is not None and (best.get("other_on_server_cpu_pct") is None
                                                           or other < best["other_on_server_cpu_pct"])):
                    best = r
                # stampede: the server idles while requests are coalesced, so others fill the CPU
                if r.get("failed") or other is None or other <= args.max_other or cell == "stampede":
                    break
                log(f"  other processes used {other}% of the server CPU during the cell (limit {args.max_other}%)")
            rec = best
            results.append(rec)
            jsonl.write(json.dumps(rec) + "\n")
            jsonl.flush()
            if not rec.get("skipped"):
                if cell == "stampede":
                    log(f"  ok={rec['ok']}/{rec['n']} all-done={rec['wall_s']}s p50={rec['p50_ms']}ms "
                        f"encode-equiv={rec.get('encode_equiv')} cache={rec.get('cache_headers')}")
                else:
                    log(f"  {rec.get('rps')} req/s p50={rec.get('p50_ms')}ms p99={rec.get('p99_ms')}ms "
                        f"errors={rec.get('errors')} cpu/req={rec.get('cpu_ms_per_req')}ms rss={rec.get('peak_rss_mb')}MB")
    jsonl.close()
    with open(os.path.join(rundir, "checks.json"), "w") as f:
        json.dump(checks, f, indent=1)
    md = markdown(results, checks, meta, args.baseline or (names[0] if names else None), args.compare)
    with open(os.path.join(rundir, "summary.md"), "w") as f:
        f.write(md)
    print(md)
    log(f"wrote {rundir}/summary.md, results.jsonl, checks.json")


def cmd_floor(args):
    """vipsthumbnail on one file, VIPS_CONCURRENCY=1, pinned: median wall and CPU of N runs."""
    src = os.path.abspath(args.src)
    cpus = None
    ncpu = os.cpu_count() or 1
    if not args.no_pin and ncpu >= 2:
        cpus = args.server_cpus or str(ncpu - 1)
    env = cli_env()
    setup_nice(args)
    os.makedirs(os.path.join(PEERS_ROOT, "tmp"), exist_ok=True)
    outdir = tempfile.mkdtemp(prefix="floor-", dir=os.path.join(PEERS_ROOT, "tmp"))
    rows = []
    variants = [(f"webp q{args.quality} {args.size}px", f"vipsthumbnail {{src}} --size {args.size}x{args.size}> -o {{out}}.webp[Q={args.quality},strip]"),
                (f"jpeg q{args.quality} {args.size}px", f"vipsthumbnail {{src}} --size {args.size}x{args.size}> -o {{out}}.jpg[Q={args.quality},strip]")]
    if args.quiet_wait > 0:
        wait_quiet(args.quiet_wait)
    try:
        for name, tpl in variants:
            intf = Interference(cpus)
            for i in range(args.warmup):
                run_cli_once(tpl, src, args.size, args.size, args.quality, outdir, cpus, i, env)
            walls, cpu_list, rss, size = [], [], [], 0
            for i in range(args.runs):
                rc, wall, cpu, maxrss, sz, err = run_cli_once(tpl, src, args.size, args.size, args.quality, outdir, cpus, i, env)
                if rc != 0:
                    raise SystemExit(f"vipsthumbnail failed: {err}")
                walls.append(wall)
                cpu_list.append(cpu)
                rss.append(maxrss)
                size = sz
            rows.append({"format": name, "runs": args.runs, "wall_median_ms": round(1000 * statistics.median(walls), 1),
                         "wall_min_ms": round(1000 * min(walls), 1), "wall_max_ms": round(1000 * max(walls), 1),
                         "cpu_median_ms": round(1000 * statistics.median(cpu_list), 1),
                         "max_rss_mb": round(max(rss) / 1024, 1), "bytes": size,
                         "other_on_server_cpu_pct": intf.pct(None, server_is_child=True),
                         "cmd": "VIPS_CONCURRENCY=%s %s%s" % (env["VIPS_CONCURRENCY"], f"taskset -c {cpus} " if cpus else "",
                                                              shell_cmd(tpl, src=src, out="/tmp/out"))})
        # process start + libvips init: the same commands on a 16x16 JPEG
        tiny = os.path.join(outdir, "tiny16.jpg")
        subprocess.run(["vips", "black", tiny, "16", "16"], check=True)
        for name, tpl in variants:
            walls, cpu_list = [], []
            for i in range(args.runs):
                rc, wall, cpu, _, _, err = run_cli_once(tpl, tiny, args.size, args.size, args.quality, outdir, cpus, i, env)
                walls.append(wall)
                cpu_list.append(cpu)
            rows.append({"format": name + " from a 16x16 input (process start + init)", "runs": args.runs,
                         "wall_median_ms": round(1000 * statistics.median(walls), 1),
                         "wall_min_ms": round(1000 * min(walls), 1), "wall_max_ms": round(1000 * max(walls), 1),
                         "cpu_median_ms": round(1000 * statistics.median(cpu_list), 1), "max_rss_mb": None,
                         "bytes": None, "cmd": shell_cmd(tpl, src=tiny, out="/tmp/out")})
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
    ver = subprocess.run(["vips", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{ver}; source {src}; {args.runs} runs after {args.warmup} warm-up; pinned to CPU {cpus or 'none'}")
    print("| output | wall median ms | wall min..max ms | CPU (user+sys) median ms | max RSS MB | bytes | other % |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['format']} | {r['wall_median_ms']} | {r['wall_min_ms']}..{r['wall_max_ms']} | "
              f"{r['cpu_median_ms']} | {fmt(r['max_rss_mb'])} | {fmt(r['bytes'])} | {fmt(r.get('other_on_server_cpu_pct'))} |")
    for r in rows:
        print(f"    {r['cmd']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


# ----------------------------------------------------------------------------- quality (imgedge addition)

QUALITY_MARK_BEGIN = "<!-- quality: begin (bench.py quality) -->"
QUALITY_MARK_END = "<!-- quality: end -->"
EXT_OF = {"jpeg": "jpg", "webp": "webp", "png": "png"}


def quality_fetch(args, target, srv, origin, qdir, cells):
    """Every source of every cell at fit-in size x size, saved under qdir/TARGET/CELL/."""
    rows = []
    for cell in cells:
        tpl = template(target, cell)
        if tpl is None:
            continue
        odir = os.path.join(qdir, target["name"], cell)
        os.makedirs(odir, exist_ok=True)
        for k in sources(origin, cell_src(args, cell)):
            stem = os.path.splitext(os.path.basename(k))[0]
            if is_cli(target):
                tmpd = tempfile.mkdtemp(prefix="q-", dir=os.path.join(PEERS_ROOT, "tmp"))
                try:
                    argv = shlex.split(fill(tpl, src=shlex.quote(os.path.join(origin, k)), out=os.path.join(tmpd, "o"),
                                            w=args.size, h=args.size, q=args.quality))
                    p = subprocess.run(argv, capture_output=True, env=cli_env())
                    files = os.listdir(tmpd)
                    body = open(os.path.join(tmpd, files[0]), "rb").read() if files else b""
                    st = 200 if p.returncode == 0 and body else f"rc={p.returncode}"
                finally:
                    shutil.rmtree(tmpd, ignore_errors=True)
            else:
                try:
                    st, _, body, _ = http_get(fill(tpl, port=srv.port, key=k, w=args.size, h=args.size, q=args.quality))
                except OSError as e:
                    st, body = f"ERR {e}", b""
            fmt_, w, h = image_info(body) if st == 200 else (None, None, None)
            row = {"target": target["name"], "cell": cell, "key": k, "status": st, "bytes": len(body),
                   "format": fmt_, "w": w, "h": h}
            if st == 200 and fmt_:
                row["file"] = os.path.join(odir, f"{stem}.{EXT_OF[fmt_]}")
                with open(row["file"], "wb") as f:
                    f.write(body)
            rows.append(row)
    return rows


def quality_markdown(rows, names, compare, size, vers, cmyk_fallback):
    """Per cell: each target's mean DSSIM / SSIMULACRA2 / bytes, and ratios against the best
    peer (the non-compared target with the lowest mean DSSIM over all sources)."""
    mine = [n for n in (compare.split(",") if compare else [n for n in names if n.startswith("imgedge")]) if n in names]
    L = [QUALITY_MARK_BEGIN, "", f"### Quality: fit within {size}x{size}, every source, DSSIM and SSIMULACRA2", "",
         "Reference = the original rendered as a colour-managed viewer shows it (EXIF orientation, embedded "
         "ICC to sRGB, CMYK through its embedded profile, else "
         + ("libvips' built-in CMYK profile" if cmyk_fallback == "libvips" else "Pillow's naive CMYK->RGB") +
         ", alpha over white), resized with Pillow LANCZOS to the output's own WxH. The output is rendered the "
         "same way (a profile that does not match the pixels' colour space is ignored, as browsers do). "
         "thumbor resizes with Pillow too, so its PNG outputs match the reference almost exactly. "
         "DSSIM (`dssim` CLI): 0 = identical, lower is better. SSIMULACRA2 (Python port): 100 = identical, "
         "higher is better (70 high quality, 90 visually lossless). Means are over the sources a target "
         "answered (n). `vs best peer` divides by the peer with the lowest mean DSSIM in that cell.",
         "", "Tools: " + ", ".join(f"{k} {v}" for k, v in vers.items()), ""]
    cells = []
    for r in rows:
        if r["cell"] not in cells:
            cells.append(r["cell"])
    for c in cells:
        agg = {}
        for n in names:
            rs = [r for r in rows if r["target"] == n and r["cell"] == c and r.get("dssim") is not None]
            if not rs:
                continue
            worst = max(rs, key=lambda r: r["dssim"])
            s2 = [r["ssimulacra2"] for r in rs if r.get("ssimulacra2") is not None]
            agg[n] = {"n": len(rs), "dssim": statistics.mean(r["dssim"] for r in rs),
                      "dssim_med": statistics.median(r["dssim"] for r in rs),
                      "dssim_max": worst["dssim"], "worst": os.path.basename(worst["key"]),
                      "s2": statistics.mean(s2) if s2 else None, "s2_min": min(s2) if s2 else None,
                      "bytes": statistics.mean(r["bytes"] for r in rs)}
        total = len({r["key"] for r in rows if r["cell"] == c})
        peers = [n for n in agg if n not in mine and agg[n]["n"] == total]
        best = min(peers, key=lambda n: agg[n]["dssim"]) if peers else None
        L.append(f"**{c}** ({total} sources; best peer: `{best or '-'}`)")
        L.append("")
        L.append("| target | n | mean DSSIM | median DSSIM | max DSSIM (source) | mean SSIMULACRA2 | min SSIMULACRA2 | "
                 "mean bytes | DSSIM vs best peer | bytes vs best peer |")
        L.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        for n in names:
            a = agg.get(n)
            if a is None:
                L.append(f"| {n} | 0 | n/a | | | | | | | |")
                continue
            b = agg.get(best) if best else None
            # a ratio to 0 (the best peer identical to the reference) is left out as "-"
            d_ratio = f"{a['dssim'] / b['dssim']:.3g}" if b and b["dssim"] > 0 else "-"
            b_ratio = f"{a['bytes'] / b['bytes']:.3g}" if b and b["bytes"] else "-"
            L.append(f"| {n} | {a['n']} | {a['dssim']:.5f} | {a['dssim_med']:.5f} | {a['dssim_max']:.5f} ({a['worst']}) | "
                     f"{fmt(a['s2'], 2)} | {fmt(a['s2_min'], 2)} | {a['bytes']:.0f} | {d_ratio} | {b_ratio} |")
        L.append("")
    L.append(QUALITY_MARK_END)
    return "\n".join(L) + "\n"


def quality_detail_markdown(rows, names):
    """Per source: DSSIM / SSIMULACRA2 / bytes / WxH for every target (quality.md only)."""
    L = ["### Quality per source: DSSIM / SSIMULACRA2 / bytes / WxH", "",
         "| cell | source | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    keys = []
    for r in rows:
        if (r["cell"], r["key"]) not in keys:
            keys.append((r["cell"], r["key"]))
    by = {(r["target"], r["cell"], r["key"]): r for r in rows}
    notes = {}
    for cell, key in keys:
        row = []
        for n in names:
            r = by.get((n, cell, key))
            if not r:
                row.append("-")
            elif r.get("dssim") is None:
                row.append(f"**{r.get('status')}** {r.get('error', '')[:60]}")
            else:
                row.append(f"{r['dssim']:.5f} / {fmt(r.get('ssimulacra2'), 1)} / {r['bytes']} / {r['w']}x{r['h']}")
                for note in r.get("notes", []):
                    notes.setdefault(note, set()).add(f"{n} {cell} {os.path.basename(key)}")
        L.append(f"| {cell} | {os.path.basename(key)} | " + " | ".join(row) + " |")
    if notes:
        L += ["", "Notes:", ""]
        for note, where in sorted(notes.items()):
            L.append(f"- {note}: {', '.join(sorted(where))}")
    return "\n".join(L) + "\n"


def quality_python():
    return os.environ.get("QUALITY_PYTHON") or os.path.join(PEERS_ROOT, "venv-quality", "bin", "python")


def cmd_quality(args):
    """(imgedge addition) Fetch every source's fit-in output from every target (fresh server each),
    score it against a lossless reference (quality.py) and write quality.md/quality.json; the
    per-cell table also goes into summary.md of the same --out folder."""
    try:
        sys.path.insert(0, HERE)
        import quality  # noqa: PLC0415 - needs Pillow: only this subcommand
    except ImportError:
        py = quality_python()
        if os.environ.get("BENCH_QUALITY_REEXEC") or not os.path.exists(py):
            raise SystemExit(f"bench.py quality needs Pillow (./install.sh quality; looked for {py})")
        os.environ["BENCH_QUALITY_REEXEC"] = "1"  # run this same command under the quality venv
        os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])
    dssim = args.dssim or shutil.which("dssim") or os.path.join(PEERS_ROOT, "dssim", "bin", "dssim")
    if not os.path.exists(dssim):
        raise SystemExit(f"dssim not found ({dssim}; ./install.sh quality)")
    targets, names = resolve_targets(args)
    origin = os.path.abspath(args.origin)
    out = args.out or os.path.join(PEERS_ROOT, "results", "quality-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    qdir = os.path.join(out, "quality")
    os.makedirs(qdir, exist_ok=True)
    os.makedirs(os.path.join(PEERS_ROOT, "tmp"), exist_ok=True)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    for c in cells:
        if c not in DIVERSE_CELLS:
            raise SystemExit(f"quality cells are {', '.join(DIVERSE_CELLS)}, not {c!r}")
    rows = []
    for idx, name in enumerate(names):
        t = targets[name]
        srv = Server(t, args.base_port + idx, origin, None, out)  # unpinned: nothing is timed here
        log(f"{name}: fetching {args.size}x{args.size} outputs")
        try:
            if not is_cli(t):
                srv.start()
            rows.extend(quality_fetch(args, t, srv, origin, qdir, cells))
        except Exception as e:  # noqa: BLE001 - a target that cannot start must not end the run
            log(f"{name}: FAILED: {e}")
        finally:
            srv.stop()
    scorer = quality.Scorer(dssim, qdir, args.cmyk_fallback)
    log(f"scoring {sum(1 for r in rows if r.get('file'))} outputs (dssim {dssim})")
    for r in rows:
        if not r.get("file"):
            continue
        try:
            r.update(scorer.score(os.path.join(origin, r["key"]), r["file"]))
        except Exception as e:  # noqa: BLE001 - an undecodable output is a result, not a crash
            r["error"] = str(e)[:300]
            log(f"  {r['target']}/{r['cell']}/{r['key']}: {e}")
    vers = quality.versions()
    h = subprocess.run([dssim, "-h"], capture_output=True, text=True)  # dssim has no --version
    vers["dssim"] = (re.findall(r"Version ([0-9.]+)", h.stdout + h.stderr) or ["?"])[0]
    with open(os.path.join(out, "quality.json"), "w") as f:
        json.dump({"size": args.size, "quality": args.quality, "versions": vers, "rows": rows}, f, indent=1)
    table = quality_markdown(rows, names, args.compare, args.size, vers, args.cmyk_fallback)
    with open(os.path.join(out, "quality.md"), "w") as f:
        f.write(table + "\n" + quality_detail_markdown(rows, names))
    summary = os.path.join(out, "summary.md")
    old = open(summary).read() if os.path.exists(summary) else ""
    if QUALITY_MARK_BEGIN in old:  # re-run: replace the previous quality section
        old = old[:old.index(QUALITY_MARK_BEGIN)] + old[old.index(QUALITY_MARK_END) + len(QUALITY_MARK_END) + 1:]
    with open(summary, "w") as f:
        f.write(old + ("\n" if old else "") + table)
    print(table)
    log(f"wrote {out}/quality.md, quality.json and the quality section of summary.md")


def cmd_rd(args):
    """(imgedge addition, issue 20) Bytes each peer needs at imgedge's quality: rd.py."""
    try:
        sys.path.insert(0, HERE)
        import rd  # noqa: PLC0415 - needs Pillow and numpy: only this subcommand
    except ImportError:
        py = quality_python()
        if os.environ.get("BENCH_QUALITY_REEXEC") or not os.path.exists(py):
            raise SystemExit(f"bench.py rd needs Pillow and numpy (./install.sh quality; looked for {py})")
        os.environ["BENCH_QUALITY_REEXEC"] = "1"
        os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])
    os.makedirs(args.out, exist_ok=True)
    rd.run(sys.modules[__name__], args)


def cmd_list(args):
    targets, order = load_targets(args.targets_file, args.define)
    for n in order:
        t = targets[n]
        print(f"{n:15s} {t.get('kind', 'http'):5s} {t.get('notes', '')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--targets-file", default=os.path.join(HERE, "targets.tsv"))
        p.add_argument("--define", action="append", metavar="NAME.FIELD=VALUE",
                       help="add or override a target field (start, jpeg, webp, png, hot, stampede, pid, kind, notes)")
        p.add_argument("--server-cpus", help="CPU list for the server (default: last CPU)")
        p.add_argument("--load-cpus", help="CPU list for wrk / this script (default: the other CPUs)")
        p.add_argument("--no-pin", action="store_true", help="do not use CPU affinity")
        p.add_argument("--quality", type=int, default=80)
        p.add_argument("--nice", type=int, default=0,
                       help="nice value for the servers, wrk and this script (negative = priority over "
                            "other work on a shared box; needs root)")

    for name in ("run", "check"):
        p = sub.add_parser(name)
        common(p)
        p.add_argument("--targets", required=True, help="comma-separated target names")
        p.add_argument("--cells", default=",".join(ALL_CELLS))
        p.add_argument("--origin", default=os.path.join(PEERS_ROOT, "data"))
        p.add_argument("--jpeg-src", default="photos/*.jpg", help="glob under origin for jpeg/webp cells")
        p.add_argument("--png-src", default="png/*.png", help="glob under origin for the png cell")
        p.add_argument("--srcset-src", default="srcset/*.jpg",
                       help="glob under origin for the srcset cell (distinct originals; prepare-data.sh)")
        p.add_argument("--srcset-widths", type=lambda s: [int(x) for x in s.split(",")], default=[160, 320, 480, 640],
                       help="srcset cell: widths, each requested as fit within w x w, in JPEG and WebP")
        p.add_argument("--srcset-page", type=int, default=4, help="srcset cell: originals per page")
        p.add_argument("--compare", default=None,
                       help="targets compared against each other target in the 'vs each peer' tables "
                            "(default: every target whose name starts with imgedge)")
        p.add_argument("--hot-key", default="photos/friends_by_Aitzol_Berasategi_portrait.jpg")
        p.add_argument("--stampede-key", default="photos/seeding_by_Clements_Engelhardt_16mp_progressive.jpg")
        p.add_argument("--duration", type=int, default=15, help="seconds per diverse cell")
        p.add_argument("--hot-duration", type=int, default=10)
        p.add_argument("--diverse-conns", type=int, default=4)
        p.add_argument("--hot-conns", type=int, default=32)
        p.add_argument("--threads", type=int, default=2, help="wrk threads")
        p.add_argument("--diverse-cap", type=int, default=20000, help="max requests (= unique URLs) per diverse cell")
        p.add_argument("--hot-cap", type=int, default=3000000, help="max requests per hot cell")
        p.add_argument("--stampede-n", type=int, default=50)
        p.add_argument("--stampede-timeout", type=float, default=60.0)
        p.add_argument("--stampede-client", choices=sorted(STAMPEDE_CLIENTS), default="curl",
                       help="what sends the burst: curl (one C event loop) or python (one thread each)")
        p.add_argument("--wrk-timeout", type=int, default=30, help="wrk per-request timeout, s")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--base-port", type=int, default=18100)
        p.add_argument("--baseline", help="target the ratio table divides by (default: first target)")
        p.add_argument("--no-check", action="store_true", help="skip the output check")
        p.add_argument("--repeat", type=int, default=0,
                       help="output check: also time N sequential misses per source (median ms)")
        p.add_argument("--max-other", type=float, default=10.0,
                       help="re-run a cell if anything else used more than this %% of the server CPU during it")
        p.add_argument("--retries", type=int, default=2, help="re-runs of a disturbed cell (the least disturbed is kept)")
        p.add_argument("--quiet-wait", type=int, default=120,
                       help="before each cell wait up to this many s for the machine to be <15%% busy (0: off)")
        p.add_argument("--out", help="results dir (default $PEERS_ROOT/results/<timestamp>)")
    p = sub.add_parser("floor")
    common(p)
    p.add_argument("--src", default=os.path.join(PEERS_ROOT, "data", "photos",
                                                 "seeding_by_Clements_Engelhardt_16mp_progressive.jpg"))
    p.add_argument("--size", type=int, default=400)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--quiet-wait", type=int, default=120)
    # quality (imgedge addition): see cmd_quality
    p = sub.add_parser("quality")
    common(p)
    p.add_argument("--targets", required=True, help="comma-separated target names")
    p.add_argument("--cells", default=",".join(DIVERSE_CELLS))
    p.add_argument("--origin", default=os.path.join(PEERS_ROOT, "data"))
    p.add_argument("--jpeg-src", default="photos/*.jpg")
    p.add_argument("--png-src", default="png/*.png")
    p.add_argument("--srcset-src", default="srcset/*.jpg")
    p.add_argument("--size", type=int, default=400, help="fit within size x size")
    p.add_argument("--base-port", type=int, default=18100)
    p.add_argument("--compare", default=None, help="targets left out of the 'best peer' choice (default: imgedge*)")
    p.add_argument("--dssim", help="dssim binary (default: PATH, then $PEERS_ROOT/dssim/bin/dssim)")
    p.add_argument("--cmyk-fallback", choices=("naive", "libvips"), default="naive",
                   help="reference for CMYK without an ICC profile (see quality.py)")
    p.add_argument("--out", help="results dir; its summary.md gets the quality table")
    # imgedge addition (issue 20): bytes at equal quality over a quality ladder (rd.py)
    p = sub.add_parser("rd")
    common(p)
    p.add_argument("--targets", default="imgedge,thumbor,sharp", help="comma-separated target names")
    p.add_argument("--me", default="imgedge", help="the target the others are compared with")
    p.add_argument("--cells", default="jpeg,webp")
    p.add_argument("--sizes", default="400,1000", help="fit within size x size, each")
    p.add_argument("--ladder", default="50,60,70,80,90,95", help="quality ladder")
    p.add_argument("--anchor", type=int, default=80, help="imgedge's quality the peers are compared at")
    p.add_argument("--me-ladder", default=None, help="qualities fetched from --me (default: the anchor only)")
    p.add_argument("--score-cache", default=None,
                   help="scores by output hash, shared between runs (default: OUT/rd-cache.json). Peers' "
                        "outputs do not change, so a re-run after an imgedge change scores only imgedge's")
    p.add_argument("--origin", default=os.path.join(PEERS_ROOT, "data"))
    p.add_argument("--jpeg-src", default="photos/*.jpg")
    p.add_argument("--base-port", type=int, default=18200)
    p.add_argument("--dssim", help="dssim binary (default: PATH, then $PEERS_ROOT/dssim/bin/dssim)")
    p.add_argument("--out", default=os.path.join(PEERS_ROOT, "results", "rd"),
                   help="results dir (rd.md, rd.json; rd-cache.json keeps scores by output hash)")
    p = sub.add_parser("list")
    common(p)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    if args.cmd == "run":
        cmd_run(args)
    elif args.cmd == "check":
        cmd_run(args, only_check=True)
    elif args.cmd == "floor":
        cmd_floor(args)
    elif args.cmd == "rd":
        cmd_rd(args)
    elif args.cmd == "quality":
        cmd_quality(args)
    else:
        cmd_list(args)


if __name__ == "__main__":
    main()
