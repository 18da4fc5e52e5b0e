"""Quality scoring for `bench.py quality` (imgedge addition to the shared peer harness).

Needs Pillow with ImageCms (littleCMS) and, for the second score, the `ssimulacra2` Python
port; both live in $PEERS_ROOT/venv-quality (./install.sh quality). bench.py fetches the
outputs (standard library only) and calls score() here.

For every output image of a target (one source, fit within 400x400):

* **render** the output as a colour-managed viewer shows it: EXIF orientation applied, an
  embedded ICC profile converted to sRGB (untagged = sRGB; a profile whose colour space does
  not match the pixels is ignored, as browsers do), CMYK through its embedded profile, alpha
  flattened over white;
* build the **reference** from the original the same way (orientation, ICC to sRGB, CMYK,
  alpha over white), then resize it with Pillow LANCZOS (exact, no reducing_gap) to the
  output's own WxH, so a one-pixel difference in rounding between servers costs nothing;
* score the pair with the `dssim` CLI (1/SSIM - 1 over a multi-scale L*a*b* SSIM; 0 =
  identical, lower is better) and, if importable, SSIMULACRA2 (Python port; 100 =
  identical, higher is better; about 70 = high quality, 90 = visually lossless).

CMYK without an embedded profile has no single right answer. The default (`naive`) is
Pillow's conversion R = (255-C)(255-K)/255 etc.: the corpus' CMYK photo was made from
giunchedi_srgb_icc.jpg by that formula (thumbor), and converting it back this way lands
within DSSIM 0.00003 of the sRGB original, while libvips' built-in CMYK profile (what
sharp and vipsthumbnail apply) lands 0.037 away. `libvips` selects that profile instead.

Flattening before the resize equals a premultiplied-alpha resize followed by flattening
(both steps are linear), so RGBA sources need no special care.
"""
import io
import os
import subprocess

from PIL import Image, ImageCms, ImageOps

Image.MAX_IMAGE_PIXELS = None  # the corpus is trusted; the 16 MP photo is fine anyway

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC  # libvips' default intent for icc_import
SPACE_OF_MODE = {"L": "GRAY", "RGB": "RGB", "CMYK": "CMYK"}

try:
    import ssimulacra2 as _ssimulacra2
except ImportError:  # optional second score
    _ssimulacra2 = None


def versions():
    out = {"Pillow": Image.__version__, "littleCMS": ImageCms.core.littlecms_version}
    if _ssimulacra2 is not None:
        out["ssimulacra2 (py)"] = _ssimulacra2.__version__
    return out


def libvips_cmyk_profile(cache_dir):
    """libvips' built-in "cmyk" profile as a file, extracted once with `vips icc_export`
    (libvips-tools is a peer install anyway). None if vips is missing."""
    path = os.path.join(cache_dir, "libvips-cmyk.icc")
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        tmp_v = os.path.join(cache_dir, "black.v")
        tmp_srgb = os.path.join(cache_dir, "black-srgb.v")
        tmp_tif = os.path.join(cache_dir, "cmyk.tif")
        try:
            subprocess.run(["vips", "black", tmp_v, "8", "8", "--bands", "3"], check=True, capture_output=True)
            subprocess.run(["vips", "copy", tmp_v, tmp_srgb, "--interpretation", "srgb"], check=True, capture_output=True)
            subprocess.run(["vips", "icc_export", tmp_srgb, tmp_tif, "--output-profile", "cmyk"],
                           check=True, capture_output=True)
            with Image.open(tmp_tif) as im:
                icc = im.info.get("icc_profile")
        except (OSError, subprocess.CalledProcessError):
            return None
        finally:
            for f in (tmp_v, tmp_srgb, tmp_tif):
                if os.path.exists(f):
                    os.unlink(f)
        if not icc:
            return None
        with open(path, "wb") as f:
            f.write(icc)
    return ImageCms.ImageCmsProfile(path)


def to_srgb_on_white(im, cmyk_fallback, notes):
    """Decoded image -> RGB as displayed: orientation, ICC -> sRGB, alpha over white."""
    icc = im.info.get("icc_profile")  # read before exif_transpose, which returns a new image
    im = ImageOps.exif_transpose(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    elif im.mode == "1" or im.mode.startswith("I"):
        im = im.convert("L")
    alpha = None
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        im = im.convert("RGBA" if im.mode.startswith("RGB") else "LA")
        alpha = im.getchannel("A")
        im = im.convert("RGB" if im.mode == "RGBA" else "L")
    if im.mode not in SPACE_OF_MODE:
        im = im.convert("RGB")
    prof = None
    if icc:
        try:
            prof = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            space = prof.profile.xcolor_space.strip()
            if space != SPACE_OF_MODE[im.mode]:
                notes.append(f"ICC is {space} but pixels are {im.mode}: profile ignored")
                prof = None
        except (OSError, ImageCms.PyCMSError) as e:
            notes.append(f"unreadable ICC ({e}): ignored")
            prof = None
    if prof is None and im.mode == "CMYK":
        prof = cmyk_fallback
        notes.append("CMYK without ICC: libvips' built-in CMYK profile" if prof
                     else "CMYK without ICC: Pillow's naive CMYK->RGB")
    if prof is not None:
        rgb = ImageCms.profileToProfile(im, prof, SRGB, renderingIntent=INTENT, outputMode="RGB")
    else:
        rgb = im.convert("RGB")
    if alpha is not None:
        white = Image.new("RGB", rgb.size, (255, 255, 255))
        white.paste(rgb, (0, 0), alpha)
        rgb = white
    return rgb


class Scorer:
    def __init__(self, dssim_bin, work_dir, cmyk_fallback="naive"):
        self.dssim = dssim_bin
        self.work = work_dir
        self.cmyk = None  # naive
        if cmyk_fallback == "libvips":
            self.cmyk = libvips_cmyk_profile(os.path.join(work_dir, "profiles"))
            if self.cmyk is None:
                raise RuntimeError("could not extract libvips' CMYK profile (is vips installed?)")
        self._src = {}  # source path -> (RGB on white, notes)
        self._ref = {}  # (source path, w, h) -> reference PNG path
        os.makedirs(os.path.join(work_dir, "refs"), exist_ok=True)

    def _source(self, src):
        if src not in self._src:
            notes = []
            with Image.open(src) as im:
                im.load()
                self._src[src] = (to_srgb_on_white(im, self.cmyk, notes), notes)
        return self._src[src]

    def reference(self, src, w, h):
        key = (src, w, h)
        if key not in self._ref:
            rgb, _ = self._source(src)
            ref = rgb.resize((w, h), Image.Resampling.LANCZOS)
            path = os.path.join(self.work, "refs", f"{os.path.splitext(os.path.basename(src))[0]}_{w}x{h}.png")
            ref.save(path)
            self._ref[key] = path
        return self._ref[key]

    def score(self, src, out_file):
        """dict(dssim, ssimulacra2, w, h, notes) for one output file against its source."""
        notes = []
        with Image.open(out_file) as im:
            im.load()
            rgb = to_srgb_on_white(im, self.cmyk, notes)
        out_png = os.path.splitext(out_file)[0] + ".render.png"
        rgb.save(out_png)
        ref = self.reference(src, rgb.width, rgb.height)
        notes = [f"source: {n}" for n in self._source(src)[1]] + [f"output: {n}" for n in notes]
        p = subprocess.run([self.dssim, ref, out_png], capture_output=True, text=True)
        if p.returncode != 0 or not p.stdout.strip():
            raise RuntimeError(f"dssim failed: {p.stderr.strip()[:200]}")
        d = float(p.stdout.split()[0])
        s2 = None
        if _ssimulacra2 is not None:
            s2 = float(_ssimulacra2.compute_ssimulacra2(ref, out_png))
        return {"dssim": d, "ssimulacra2": s2, "w": rgb.width, "h": rgb.height,
                "ref_png": ref, "out_png": out_png, "notes": notes}
