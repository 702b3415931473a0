"""common: what the Python runners (vips_bench.py, pillow_bench.py) share with each other and
with imgbench and sharp_bench.js: the command line, the image set, the job definitions, the
pass structure and the JSON result. Python 3 stdlib only; the image library is the runner's.

A pass gives every worker the whole image set once (procs x images jobs), largest image
first, each job handed to whichever worker is free; figures are medians over passes. With
--procs 1 the jobs run in this process; with N > 1 in N worker processes (spawned, not forked:
neither libvips nor Pillow is fork-safe once it has started threads), each holding its own
copy of the images, so only job indices and result sizes cross a pipe.
"""

import argparse
import importlib
import json
import multiprocessing
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import imgmeta  # noqa: E402  (bench/imgmeta.py)

JOBS = ("blur2", "resize50", "gray")
EXTENSIONS = (".png", ".jpg", ".jpeg")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--job", choices=JOBS, required=True)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--images", required=True)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--min-time", type=float, default=0.0)
    p.add_argument("--save", help="write each image's output (first pass) into this directory")
    p.add_argument("--quality", type=int, default=85)
    p.add_argument("--subsampling", choices=("444", "422", "420"), default="420")
    p.add_argument("--png-level", type=int, default=6)
    p.add_argument("--png-filter", choices=("adaptive", "none"), default="adaptive")
    return p.parse_args(argv)


def load_images(directory):
    """[(name, bytes, format, width, height)], sorted by name, as imgbench lists them."""
    out = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not (os.path.isfile(path) and name.lower().endswith(EXTENSIONS)):
            continue
        meta = imgmeta.info(path)
        with open(path, "rb") as f:
            out.append((name, f.read(), meta["format"], meta["width"], meta["height"]))
    if not out:
        sys.exit("no JPEG or PNG images in %s" % directory)
    return out


def half(w, h):
    """The 50% resize target, the same rounding as imgbench: w/2 x h/2 rounded down, >= 1."""
    return max(1, w // 2), max(1, h // 2)


def task_order(images, procs):
    """Every image `procs` times, largest first (ties by name order), as imgbench does."""
    by_size = sorted(range(len(images)), key=lambda i: (-images[i][3] * images[i][4], i))
    return [i for i in by_size for _ in range(procs)]


# --- worker side ---------------------------------------------------------------------------

_state = {}


def _worker_init(module, args, images):
    mod = importlib.import_module(module)
    mod.init(args)
    _state.update(mod=mod, args=args, images=images)


def _worker_job(i):
    name, data, fmt, w, h = _state["images"][i]
    t0 = time.perf_counter()
    out = _state["mod"].process(data, fmt, w, h, _state["args"].job, _state["args"])
    return i, time.perf_counter() - t0, len(out), out if _state.get("keep") else None


# --- driver --------------------------------------------------------------------------------


def run(module, impl):
    """Parses the command line, runs the passes with runner `module`, prints the JSON."""
    args = parse_args()
    images = load_images(args.images)
    procs = max(1, args.procs)
    mod = importlib.import_module(module)
    if procs == 1:
        _worker_init(module, args, images)
        pool = None
        mapper = map
    else:
        ctx = multiprocessing.get_context("spawn")
        pool = ctx.Pool(procs, initializer=_worker_init, initargs=(module, args, images))
        mapper = lambda f, xs: pool.imap_unordered(f, xs, chunksize=1)  # noqa: E731

    try:
        # Warm-up, untimed: the smallest image once per worker.
        smallest = min(range(len(images)), key=lambda i: images[i][3] * images[i][4])
        list(mapper(_worker_job, [smallest] * procs))

        passes, outputs, total = [], {}, 0.0
        while len(passes) < 10000 and (len(passes) < args.repeat or total < args.min_time):
            keep = bool(args.save) and not passes and procs == 1
            _state["keep"] = keep
            tasks = task_order(images, procs)
            t0 = time.perf_counter()
            results = list(mapper(_worker_job, tasks))
            seconds = time.perf_counter() - t0
            _state["keep"] = False
            total += seconds
            mp = sum(images[i][3] * images[i][4] for i in tasks) / 1e6
            passes.append({
                "seconds": seconds, "jobs": len(tasks), "mp": mp,
                "job_seconds": sum(r[1] for r in results),
                "out_bytes": sum(r[2] for r in results) // procs,
            })
            if keep:
                outputs = {i: out for i, _, _, out in results}
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    if args.save and outputs:
        os.makedirs(args.save, exist_ok=True)
        for i, out in outputs.items():
            with open(os.path.join(args.save, images[i][0]), "wb") as f:
                f.write(out)

    med = lambda f: statistics.median(f(p) for p in passes)  # noqa: E731
    result = {
        "impl": impl,
        "job": args.job,
        "procs": procs,
        "images": len(images),
        "set_mp": sum(w * h for _, _, _, w, h in images) / 1e6,
        "images_per_s": med(lambda p: p["jobs"] / p["seconds"]),
        "mp_per_s": med(lambda p: p["mp"] / p["seconds"]),
        "ms_per_image": med(lambda p: 1e3 * p["job_seconds"] / p["jobs"]),
        "out_bytes": passes[0]["out_bytes"],
        "passes": [{k: p[k] for k in ("seconds", "jobs", "mp")} for p in passes],
        "versions": mod.versions(),
        "settings": dict(mod.settings(args), processes=procs),
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
