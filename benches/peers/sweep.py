"""Encoder-settings sweep for issue 20 (run with the quality venv's python):

    python sweep.py IMGEDGE_BIN OUT_DIR BASELINE SETTINGS LADDER [SIZES]

Fetches imgedge's lossless PNG resize of every photo (fit 400 and 1000), encodes each with
every setting over the quality ladder (`cargo run --release --example encode_sweep`, source benches/encode_sweep.rs),
scores the results against rd.py's linear-light reference, and prints per setting: the
geometric mean of (bytes needed to reach the baseline's q80 SSIMULACRA2) / (baseline q80
bytes), the same at equal DSSIM, and the median encode time. < 1 = fewer bytes.
"""
import glob
import os
import statistics
import subprocess
import sys
import time
import urllib.request

import bench
import rd

HERE_DIR = os.path.dirname(os.path.abspath(__file__))

binary, out, baseline, settings, ladder = sys.argv[1:6]
sizes = [int(s) for s in (sys.argv[6] if len(sys.argv) > 6 else "400,1000").split(",")]
origin = os.path.join(bench.PEERS_ROOT, "data")
keys = bench.sources(origin, "photos/*.jpg")
os.makedirs(out, exist_ok=True)
port = 18390
srv = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{port + 1000}",
                        "--origin", origin, "--no-access-log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    bench.wait_port(port, 30, srv)
    pngs = []
    for size in sizes:
        for k in keys:
            stem = os.path.splitext(os.path.basename(k))[0]
            p = os.path.join(out, f"{stem}_{size}.png")
            if not os.path.exists(p):
                url = f"http://127.0.0.1:{port}/{k}?x-oss-process=image/resize,m_lfit,w_{size},h_{size}/format,png"
                with urllib.request.urlopen(url) as r, open(p, "wb") as f:
                    f.write(r.read())
            pngs.append((k, size, p))
finally:
    srv.terminate()
    srv.wait()

scorer = rd.RdScorer(os.path.join(bench.PEERS_ROOT, "dssim", "bin", "dssim"), out, os.path.join(out, "cache.json"))
allset = [baseline] + [s for s in settings.split(",") if s != baseline]
res = {}  # (setting, key, size) -> list of points
times = {}
for k, size, png in pngs:
    d = os.path.join(out, f"{os.path.basename(png)[:-4]}")
    p = subprocess.run([os.environ.get("SWEEP_BIN", os.path.join(os.path.dirname(os.path.dirname(HERE_DIR)), "target", "release", "examples", "encode_sweep")), png, d, ",".join(allset),
                        ladder], capture_output=True, text=True, check=True)
    for line in p.stdout.split("\n"):
        if not line.strip():
            continue
        s, q, b, ms = line.split()
        ext = s[:4].replace("jpeg", "jpg")
        f = os.path.join(d, f"{s}_q{q}.{ext}")
        body = open(f, "rb").read()
        pt = {"q": int(q), "payload": rd.payload_bytes(body)[0]}
        pt.update(scorer.score(os.path.join(origin, k), body, f))
        res.setdefault((s, k, size), []).append(pt)
        times.setdefault((s, size), []).append(float(ms))
    scorer.save()

print(f"| setting | size | bytes @ equal SSIMULACRA2 vs {baseline} q80 | @ equal DSSIM | median encode ms |")
print("|---|---|---|---|---|")
for size in sizes:
    for s in allset:
        r2, rd_ = [], []
        for k in keys:
            base = [p for p in res[(baseline, k, size)] if p["q"] == 80][0]
            pts = res[(s, k, size)]
            b, _ = rd.interp_bytes(pts, base["ssimulacra2"], "ssimulacra2", True)
            if b:
                r2.append(b / base["payload"])
            b, _ = rd.interp_bytes(pts, base["dssim"], "dssim", False)
            if b:
                rd_.append(b / base["payload"])
        print(f"| {s} | {size} | {rd.geomean(r2):.3f} (n={len(r2)}) | {rd.geomean(rd_):.3f} (n={len(rd_)}) | "
              f"{statistics.median(times[(s, size)]):.2f} |")
