#!/usr/bin/env python3
"""pillow_bench: the bench jobs in Pillow, in-process, N worker processes for N cores.

    pillow_bench.py --job blur2|resize50|gray --procs N --images DIR --repeat K [--save DIR]
                    [--quality 85] [--subsampling 444|420] [--png-level L] [--png-filter F]

Pillow runs each operation on one thread, so parallelism is processes. Decode from memory,
blur = GaussianBlur(2) (Pillow's approximation by repeated box blurs), resize = resize() to
exactly w/2 x h/2 with LANCZOS, gray = convert('L') ('LA' with alpha); output in the input's
format, no metadata (no EXIF or ICC handed to the encoder).
"""

import io

import common

Image = ImageFilter = None


def init(args):
    global Image, ImageFilter
    from PIL import Image as _Image, ImageFilter as _ImageFilter

    Image, ImageFilter = _Image, _ImageFilter


def process(data, fmt, w, h, job, args):
    im = Image.open(io.BytesIO(data))
    im.load()
    if job == "blur2":
        im = im.filter(ImageFilter.GaussianBlur(2))
    elif job == "resize50":
        im = im.resize(common.half(w, h), Image.Resampling.LANCZOS)
    elif job == "gray":
        im = im.convert("LA" if "A" in im.getbands() else "L")
    out = io.BytesIO()
    if fmt == "jpeg":
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        sub = {"444": 0, "422": 1, "420": 2}[args.subsampling]
        # comment=b"": JPEG save would otherwise copy the input's COM marker from im.info.
        im.save(out, "JPEG", quality=args.quality, subsampling=sub, optimize=False,
                progressive=False, comment=b"")
    else:
        # icc_profile=None: PNG save would otherwise copy the input's profile from im.info.
        im.save(out, "PNG", compress_level=args.png_level, optimize=False, icc_profile=None)
    return out.getvalue()


def versions():
    import PIL
    from PIL import features

    return {"Pillow": PIL.__version__, "libjpeg": features.version("jpg") or "?",
            "zlib": features.version("zlib") or "?"}


def settings(args):
    sub = {"444": "4:4:4", "422": "4:2:2", "420": "4:2:0"}[args.subsampling]
    return {
        "jpeg": "quality=%d, subsampling %s, optimize off, baseline, no metadata"
                % (args.quality, sub),
        "png": "compress_level=%d, Pillow's own adaptive row filters (not settable), no metadata"
               % args.png_level,
        "threads": "one per process",
    }


if __name__ == "__main__":
    common.run("pillow_bench", "Pillow")
