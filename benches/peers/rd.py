"""Rate-distortion comparison at equal quality (issue 20 item 1): `bench.py rd`.

For each target and cell (JPEG and WebP output, fit within 400 and 1000, every photo of
`--jpeg-src`), fetch a quality ladder (default q 50,60,70,80,90,95) from a fresh server
per target, and score every output against a reference built independently of imgedge's
resampler:

* reference: the original decoded with Pillow, EXIF orientation applied, its ICC profile
  converted to sRGB with ImageCms (quality.to_srgb_on_white), then resized **in linear
  light** (sRGB -> linear float, Pillow LANCZOS per channel in mode F, -> sRGB) to the
  output's own WxH;
* scores: SSIMULACRA2 (Python port; higher is better) and DSSIM (`dssim` CLI; lower is
  better), butteraugli if a `butteraugli` binary is on PATH;
* bytes: the image payload only. JPEG: everything but APPn and COM segments; WebP: the
  RIFF header plus the VP8/VP8L/ALPH/ANIM/ANMF chunks (VP8X, ICCP, EXIF, XMP are
  metadata). Metadata bytes are reported separately.
* excluded (and listed): outputs that are not the fit-inside size of the source (no
  enlargement, +-1 px), and outputs whose bytes equal the original's (passed through).

Then per (peer, cell, photo): the bytes the peer needs to reach imgedge's score at
imgedge's default quality (`--anchor`, 80 = the bench's q) are interpolated on the peer's
RD curve (log bytes, linear in the score, between the two ladder points around it; not
extrapolated: a peer whose whole ladder stays below or above is reported as such and
left out of the mean). ratio = peer bytes / imgedge bytes (> 1 = imgedge smaller); the
geometric mean per cell is the headline; DSSIM gives a second ratio the same way.

Scores are cached by output hash in OUT/rd-cache.json (or `--score-cache FILE`, shared
between runs), so a re-run after an encoder change only scores what changed: peers' outputs
are byte-identical from run to run, so they are fetched again (~10 s for thumbor and sharp)
but never re-scored. A re-run with every output cached takes ~15 s; each new imgedge output
costs one SSIMULACRA2 + DSSIM scoring (~0.3 s at fit 400, ~1.5 s at fit 1000 on an idle
core). A setting can be compared without a code change: `--define
'imgedge-m6.start=env IMGEDGE_LIMITS_WEBP_METHOD=6 ...' --me imgedge-m6`.
"""
import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
from PIL import Image

import quality

BUTTERAUGLI = None


def payload_bytes(b):
    """(payload, metadata) byte counts of a JPEG or WebP file."""
    if b[:2] == b"\xff\xd8":
        meta = 0
        i = 2
        while i + 4 <= len(b):
            if b[i] != 0xFF:
                break
            m = b[i + 1]
            if m == 0xDA:  # start of scan: entropy-coded data follows, no more APPn worth counting
                break
            ln = int.from_bytes(b[i + 2:i + 4], "big")
            if 0xE0 <= m <= 0xEF or m == 0xFE:
                meta += 2 + ln
            i += 2 + ln
        return len(b) - meta, meta
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        meta = 0
        i = 12
        while i + 8 <= len(b):
            cid = b[i:i + 4]
            ln = int.from_bytes(b[i + 4:i + 8], "little")
            total = 8 + ln + (ln & 1)
            if cid not in (b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF"):
                meta += total
            i += total
        return len(b) - meta, meta
    return len(b), 0


def fit_inside(src_wh, box):
    """Fit-inside size without enlargement (what every target is asked for)."""
    w, h = src_wh
    if w <= box and h <= box:
        return w, h
    s = min(box / w, box / h)
    return max(1, round(w * s)), max(1, round(h * s))


def _to_linear(a):
    a = a / 255.0
    return np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)


def _to_srgb8(a):
    a = np.clip(a, 0.0, 1.0)
    s = np.where(a <= 0.0031308, a * 12.92, 1.055 * np.power(a, 1 / 2.4) - 0.055)
    return np.clip(np.round(s * 255.0), 0, 255).astype(np.uint8)


def linear_resize(rgb, w, h):
    """Pillow LANCZOS on linear-light float channels."""
    lin = _to_linear(np.asarray(rgb, dtype=np.float64))
    chans = []
    for c in range(3):
        im = Image.fromarray(lin[:, :, c].astype(np.float32), mode="F")
        chans.append(np.asarray(im.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float64))
    return Image.fromarray(_to_srgb8(np.stack(chans, axis=2)), "RGB")


class RdScorer:
    def __init__(self, dssim_bin, work, cache_path):
        self.dssim = dssim_bin
        self.work = work
        self.src = {}
        self.refs = {}
        self.cache_path = cache_path
        self.cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}
        os.makedirs(os.path.join(work, "refs"), exist_ok=True)

    def save(self):
        with open(self.cache_path, "w") as f:
            json.dump(self.cache, f)

    def source(self, path):
        if path not in self.src:
            with Image.open(path) as im:
                im.load()
                self.src[path] = quality.to_srgb_on_white(im, None, [])
        return self.src[path]

    def reference(self, path, w, h):
        key = (path, w, h)
        if key not in self.refs:
            ref = linear_resize(self.source(path), w, h)
            out = os.path.join(self.work, "refs", f"{os.path.splitext(os.path.basename(path))[0]}_{w}x{h}.png")
            ref.save(out)
            self.refs[key] = out
        return self.refs[key]

    def score(self, src_path, body, out_file):
        h = hashlib.sha256(body).hexdigest() + ":" + os.path.basename(src_path)
        if h in self.cache:
            return self.cache[h]
        with Image.open(out_file) as im:
            im.load()
            rgb = quality.to_srgb_on_white(im, None, [])
        out_png = os.path.splitext(out_file)[0] + ".render.png"
        rgb.save(out_png)
        ref = self.reference(src_path, rgb.width, rgb.height)
        p = subprocess.run([self.dssim, ref, out_png], capture_output=True, text=True)
        d = float(p.stdout.split()[0])
        s2 = float(quality._ssimulacra2.compute_ssimulacra2(ref, out_png))
        r = {"dssim": d, "ssimulacra2": s2}
        if BUTTERAUGLI:
            p = subprocess.run([BUTTERAUGLI, ref, out_png], capture_output=True, text=True)
            try:
                r["butteraugli"] = float(p.stdout.split()[0])
            except (ValueError, IndexError):
                pass
        self.cache[h] = r
        return r


def interp_bytes(points, target, key, higher_better):
    """log-bytes at `target` score on a curve of (score, payload) points; None outside."""
    pts = sorted((p[key], p["payload"]) for p in points if p.get(key) is not None)
    if not higher_better:
        pts = [(-s, b) for s, b in pts]
        target = -target
        pts.sort()
    if len(pts) < 2 or target < pts[0][0]:
        return None, "below"
    if target > pts[-1][0]:
        return None, "above"
    for (s0, b0), (s1, b1) in zip(pts, pts[1:]):
        if s0 <= target <= s1:
            if s1 == s0:
                return float(min(b0, b1)), None
            t = (target - s0) / (s1 - s0)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0))), None
    return None, "gap"


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def analyse(rows, me, peers, anchor):
    """Per-photo and per-cell tables as markdown, plus the raw comparison rows."""
    by = {}
    for r in rows:
        if r.get("excluded") or r.get("ssimulacra2") is None:
            continue
        by.setdefault((r["target"], r["cell"], r["size"], r["key"]), []).append(r)
    comps = []
    for (t, cell, size, key), pts in sorted(by.items()):
        if t != me:
            continue
        mine = [p for p in pts if p["q"] == anchor]
        if not mine:
            continue
        m = mine[0]
        for peer in peers:
            ppts = by.get((peer, cell, size, key))
            if not ppts:
                continue
            c = {"peer": peer, "cell": cell, "size": size, "key": key, "me_bytes": m["payload"],
                 "me_s2": m["ssimulacra2"], "me_dssim": m["dssim"]}
            for metric, hb in (("ssimulacra2", True), ("dssim", False)):
                b, why = interp_bytes(ppts, m[metric], metric, hb)
                c[metric + "_bytes"] = b
                c[metric + "_ratio"] = b / m["payload"] if b else None
                c[metric + "_why"] = why
            comps.append(c)
    L = [f"### Bytes at equal quality: peer payload bytes / imgedge payload bytes (imgedge at q{anchor})", "",
         "Geometric mean over the photos where the peer's quality ladder brackets imgedge's score "
         "(> 1.00 = imgedge smaller). Reference: Pillow decode + ICC->sRGB (ImageCms), LANCZOS in linear light.", "",
         "| cell | peer | n (SSIMULACRA2) | bytes ratio @ equal SSIMULACRA2 | n (DSSIM) | bytes ratio @ equal DSSIM | min / max (S2) |",
         "|---|---|---|---|---|---|---|"]
    for cell in sorted({(c["cell"], c["size"]) for c in comps}):
        for peer in peers:
            cs = [c for c in comps if (c["cell"], c["size"]) == cell and c["peer"] == peer]
            s2 = [c["ssimulacra2_ratio"] for c in cs if c["ssimulacra2_ratio"]]
            ds = [c["dssim_ratio"] for c in cs if c["dssim_ratio"]]
            if not cs:
                continue
            L.append(f"| {cell[0]} fit {cell[1]} | {peer} | {len(s2)}/{len(cs)} | **{geomean(s2):.3f}** | "
                     f"{len(ds)}/{len(cs)} | {geomean(ds):.3f} | "
                     f"{min(s2, default=float('nan')):.2f} / {max(s2, default=float('nan')):.2f} |")
    L += ["", "Per photo (ratio @ equal SSIMULACRA2 / @ equal DSSIM; 'above' = the peer's best ladder point "
          "stays below imgedge's quality, 'below' = its worst is already better):", "",
          "| cell | photo | imgedge bytes | imgedge S2 | imgedge DSSIM | " + " | ".join(peers) + " |",
          "|---|---|---|---|---|" + "---|" * len(peers)]
    keys = sorted({(c["cell"], c["size"], c["key"]) for c in comps})
    for cell, size, key in keys:
        cs = {c["peer"]: c for c in comps if (c["cell"], c["size"], c["key"]) == (cell, size, key)}
        any_c = next(iter(cs.values()))
        cells = []
        for p in peers:
            c = cs.get(p)
            if not c:
                cells.append("n/a")
                continue
            a = f"{c['ssimulacra2_ratio']:.2f}" if c["ssimulacra2_ratio"] else c["ssimulacra2_why"]
            b = f"{c['dssim_ratio']:.2f}" if c["dssim_ratio"] else c["dssim_why"]
            cells.append(f"{a} / {b}")
        L.append(f"| {cell} {size} | {os.path.basename(key)} | {any_c['me_bytes']} | {any_c['me_s2']:.1f} | "
                 f"{any_c['me_dssim']:.5f} | " + " | ".join(cells) + " |")
    ex = [r for r in rows if r.get("excluded")]
    if ex:
        L += ["", "Left out (not the fit-inside size, or the original passed through):", ""]
        for r in ex:
            L.append(f"- {r['target']} {r['cell']} {r['size']} q{r['q']} {os.path.basename(r['key'])}: {r['excluded']}")
    return "\n".join(L) + "\n", comps


def run(bench, args):
    """Called by `bench.py rd` (under the quality venv)."""
    global BUTTERAUGLI
    import shutil
    BUTTERAUGLI = shutil.which("butteraugli")
    targets, names = bench.resolve_targets(args)
    origin = os.path.abspath(args.origin)
    out = args.out
    qdir = os.path.join(out, "rd")
    os.makedirs(qdir, exist_ok=True)
    os.makedirs(os.path.join(bench.PEERS_ROOT, "tmp"), exist_ok=True)
    dssim = args.dssim or shutil.which("dssim") or os.path.join(bench.PEERS_ROOT, "dssim", "bin", "dssim")
    ladder = [int(x) for x in args.ladder.split(",")]
    me_ladder = [int(x) for x in args.me_ladder.split(",")] if args.me_ladder else [args.anchor]
    sizes = [int(x) for x in args.sizes.split(",")]
    cells = [c for c in args.cells.split(",") if c]
    keys = bench.sources(origin, args.jpeg_src)
    scorer = RdScorer(dssim, qdir, args.score_cache or os.path.join(out, "rd-cache.json"))
    rows = []
    for idx, name in enumerate(names):
        t = targets[name]
        srv = bench.Server(t, args.base_port + idx, origin, None, out)
        bench.log(f"{name}: fetching {len(cells)} cells x {len(sizes)} sizes x {len(keys)} photos x {len(ladder)} q")
        try:
            srv.start()
            for cell in cells:
                tpl = bench.template(t, cell)
                if tpl is None:
                    continue
                for size in sizes:
                    for k in keys:
                        src_path = os.path.join(origin, k)
                        with Image.open(src_path) as im:
                            from PIL import ImageOps
                            sw, sh = ImageOps.exif_transpose(im).size
                        want = fit_inside((sw, sh), size)
                        orig = open(src_path, "rb").read()
                        for q in (me_ladder if name == args.me else ladder):
                            st, _, body, _ = bench.http_get(bench.fill(tpl, port=srv.port, key=k, w=size, h=size, q=q))
                            fmt_, w, h = bench.image_info(body) if st == 200 else (None, None, None)
                            row = {"target": name, "cell": cell, "size": size, "key": k, "q": q, "status": st,
                                   "bytes": len(body)}
                            if st != 200 or not fmt_:
                                row["excluded"] = f"status {st}"
                            elif body == orig:
                                row["excluded"] = "original passed through"
                            elif abs(w - want[0]) > 1 or abs(h - want[1]) > 1:
                                row["excluded"] = f"{w}x{h}, fit-inside is {want[0]}x{want[1]}"
                            else:
                                f = os.path.join(qdir, name, f"{cell}{size}", f"{os.path.splitext(os.path.basename(k))[0]}_q{q}.{bench.EXT_OF[fmt_]}")
                                os.makedirs(os.path.dirname(f), exist_ok=True)
                                with open(f, "wb") as fh:
                                    fh.write(body)
                                row["payload"], row["metadata"] = payload_bytes(body)
                                row.update(scorer.score(src_path, body, f))
                            rows.append(row)
                        scorer.save()
        finally:
            srv.stop()
    me = args.me
    peers = [n for n in names if n != me]
    md, comps = analyse(rows, me, peers, args.anchor)
    with open(os.path.join(out, "rd.json"), "w") as f:
        json.dump({"rows": rows, "comparisons": comps, "ladder": ladder, "sizes": sizes}, f, indent=1)
    with open(os.path.join(out, "rd.md"), "w") as f:
        f.write(md)
    print(md)
    bench.log(f"wrote {out}/rd.md and rd.json")


if __name__ == "__main__":
    sys.exit("run through bench.py rd")
