"""Independent reference for imgedge's image engine: Pillow does the same operation.

Usage: reference.py <op> <input> <output.png> [args...]
  fit <w>          EXIF-orient, then Lanczos resize to width w (height rounded half up)
  fill <w> <h>     EXIF-orient, Lanczos resize covering w x h, centre crop
                   (offset (mfit - box) // 2, as the spec says)
  rotate90         EXIF-orient, rotate 90 degrees clockwise
Embedded ICC profiles are converted to sRGB with littleCMS (Pillow ImageCms) first, as
imgedge converts them with moxcms. Writes an 8-bit RGB PNG. Used by
src/process/reference_tests.rs.
"""
import io
import sys

from PIL import Image, ImageCms, ImageOps


def round_div(a, b, c):
    # round(a * b / c) half up, as in the spec
    return (2 * a * b + c) // (2 * c)


def to_srgb(im):
    icc = im.info.get("icc_profile")
    if icc and im.mode in ("RGB", "L"):
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    return im.convert("RGB")


def main():
    op, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
    args = [int(a) for a in sys.argv[4:]]
    im = Image.open(src)
    im = to_srgb(ImageOps.exif_transpose(im) if im.getexif().get(0x0112) else im)
    W, H = im.size
    if op == "fit":
        (w,) = args
        im = im.resize((w, max(1, round_div(H, w, W))), Image.LANCZOS)
    elif op == "fill":
        w, h = args
        if w * H >= h * W:
            mw, mh = w, max(1, round_div(H, w, W))
        else:
            mw, mh = max(1, round_div(W, h, H)), h
        im = im.resize((mw, mh), Image.LANCZOS)
        x, y = (mw - w) // 2, (mh - h) // 2
        im = im.crop((x, y, x + w, y + h))
    elif op == "rotate90":
        im = im.transpose(Image.ROTATE_270)
    else:
        sys.exit("unknown op " + op)
    im.save(dst, "PNG")


if __name__ == "__main__":
    main()
