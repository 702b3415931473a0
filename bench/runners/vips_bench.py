#!/usr/bin/env python3
"""vips_bench: the bench jobs in pyvips (libvips), in-process, one libvips thread per process.

    vips_bench.py --job blur2|resize50|gray --procs N --images DIR --repeat K [--save DIR]
                  [--quality 85] [--subsampling 444|420] [--png-level L] [--png-filter F]

VIPS_CONCURRENCY=1 (set before libvips starts) and N processes, as the issue asks; the
operation cache is off (pyvips.cache_set_max(0)) so repeated passes over the same bytes
recompute everything. Decode from memory with sequential access (libvips' streaming mode),
blur = gaussblur(2), resize = resize() to exactly w/2 x h/2 with lanczos3, gray =
colourspace('b-w'); output in the input's format, no metadata.
"""

import os

os.environ["VIPS_CONCURRENCY"] = "1"

import common  # noqa: E402

pyvips = None
_save_opts = {}


def init(args):
    global pyvips
    import pyvips as _pyvips

    pyvips = _pyvips
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.cache_set_max_files(0)
    # libvips 8.15 replaced `strip` by `keep`; both mean "write no metadata".
    new = (pyvips.version(0), pyvips.version(1)) >= (8, 15)
    nometa = {"keep": 0} if new else {"strip": True}
    _save_opts["jpeg"] = dict(nometa, Q=args.quality, optimize_coding=False, interlace=False,
                              subsample_mode="off" if args.subsampling == "444" else "on")
    # VipsForeignPngFilter flags: NONE = 0x08, ALL = 0xF8 (adaptive, per row).
    _save_opts["png"] = dict(nometa, compression=args.png_level,
                             filter=0xF8 if args.png_filter == "adaptive" else 0x08)


def process(data, fmt, w, h, job, args):
    im = pyvips.Image.new_from_buffer(data, "", access="sequential")
    if job == "blur2":
        im = im.gaussblur(2)
    elif job == "resize50":
        tw, th = common.half(w, h)
        im = im.resize(tw / im.width, vscale=th / im.height, kernel="lanczos3")
    elif job == "gray":
        im = im.colourspace("b-w")
    if fmt == "jpeg":
        return im.jpegsave_buffer(**_save_opts["jpeg"])
    return im.pngsave_buffer(**_save_opts["png"])


def versions():
    import pyvips as v

    return {"pyvips": v.__version__,
            "libvips": "%d.%d.%d" % (v.version(0), v.version(1), v.version(2))}


def settings(args):
    sub = {"444": "4:4:4 (subsample_mode off)", "420": "4:2:0 (subsample_mode on)",
           "422": "4:2:0 (subsample_mode on; libvips has no 4:2:2)"}[args.subsampling]
    return {
        "jpeg": "Q=%d, %s, optimize_coding off, baseline, no metadata" % (args.quality, sub),
        "png": "compression=%d, filter=%s, no metadata" % (
            args.png_level, "all (adaptive)" if args.png_filter == "adaptive" else "none"),
        "threads": "VIPS_CONCURRENCY=1 per process",
        "cache": "off",
    }


if __name__ == "__main__":
    common.run("vips_bench", "pyvips")
