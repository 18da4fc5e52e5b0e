#!/usr/bin/env python3
"""Upper bound of what resampling in linear light could win at equal DSSIM (issue 20).

For every photo and fit box: the independent reference of `bench.py rd` (Pillow decode +
ICC -> sRGB, LANCZOS in linear light) is encoded at q80 (WebP method 2 / JPEG optimised,
with Pillow's libwebp / libjpeg-turbo); a gamma-space LANCZOS resize of the same source (what
imgedge, thumbor and sharp do) is encoded over a quality ladder; the script prints the bytes
the gamma-space resize needs to reach the linear one's DSSIM, as a ratio (> 1: linear light
would save that much). An upper bound: imgedge's own linear-light resize would not be the
reference itself.

  /tmp/imgedge-peers/venv-quality/bin/python benches/peers/linear_estimate.py
"""
import io
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from PIL import Image  # noqa: E402

import quality  # noqa: E402
import rd  # noqa: E402

PEERS_ROOT = os.environ.get("PEERS_ROOT", "/tmp/imgedge-peers")
DSSIM = os.path.join(PEERS_ROOT, "dssim", "bin", "dssim")
PHOTOS = os.path.join(PEERS_ROOT, "data", "photos")
LADDER = [60, 70, 80, 90, 95]


def encode(img, q, fmt):
    b = io.BytesIO()
    if fmt == "webp":
        img.save(b, "WEBP", quality=q, method=2)
    else:
        img.save(b, "JPEG", quality=q, optimize=True)
    return b.getvalue()


def dssim(ref_png, body, work):
    p = os.path.join(work, "out.png")
    Image.open(io.BytesIO(body)).convert("RGB").save(p)
    return float(subprocess.run([DSSIM, ref_png, p], capture_output=True, text=True).stdout.split()[0])


def bytes_at(points, target):
    """log-bytes interpolated at `target` DSSIM on (dssim, bytes) points; None outside."""
    pts = sorted(points)
    for (d0, b0), (d1, b1) in zip(pts, pts[1:]):
        if d0 <= target <= d1:
            t = (target - d0) / (d1 - d0) if d1 > d0 else 0.0
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return None


def main():
    photos = sorted(f for f in os.listdir(PHOTOS) if f.endswith(".jpg"))
    with tempfile.TemporaryDirectory() as work:
        for fmt in ("jpeg", "webp"):
            for box in (400, 1000):
                ratios = []
                for name in photos:
                    with Image.open(os.path.join(PHOTOS, name)) as im:
                        im.load()
                        src = quality.to_srgb_on_white(im, None, [])
                    w, h = rd.fit_inside(src.size, box)
                    ref = rd.linear_resize(src, w, h)
                    ref_png = os.path.join(work, "ref.png")
                    ref.save(ref_png)
                    gamma = src.resize((w, h), Image.Resampling.LANCZOS)
                    linear80 = encode(ref, 80, fmt)
                    target = dssim(ref_png, linear80, work)
                    points = []
                    for q in LADDER:
                        body = encode(gamma, q, fmt)
                        points.append((dssim(ref_png, body, work), len(body)))
                    need = bytes_at(points, target)
                    ratio = need / len(linear80) if need else None
                    ratios.append(ratio)
                    print(f"{fmt} {box} {name}: linear q80 {len(linear80)} B, DSSIM {target:.5f}, "
                          f"gamma-space needs {ratio and round(ratio, 3)}x", flush=True)
                rs = [r for r in ratios if r]
                print(f"== {fmt} fit {box}: geometric mean {math.exp(sum(map(math.log, rs)) / len(rs)):.3f} "
                      f"(n={len(rs)}; 1.000 where the source is not larger than the box)", flush=True)


if __name__ == "__main__":
    main()
