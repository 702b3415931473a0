#!/usr/bin/env python3
"""bench/formats.py: lossy WebP and AVIF output, imgfilters against sharp, in-process.

Every image of the set is resized to 800 px wide (lanczos3, aspect kept) and encoded as
WebP quality 80 and AVIF quality 60 by both: imgfilters through `imgbench run --job fit800
--format webp:80|avif:60`, sharp through `sharp_bench.js --job fit800 --format webp|avif
--quality Q`. Reported per image: output bytes (imgfilters / sharp); per set: the median
encode milliseconds per image (imgbench's encode phase; sharp's encode of the resized pixels,
timed on its own) and their ratio. One thread each (--procs 1). The quality scales are each
library's own (libwebp's for both WebPs; ravif's and libaom's for AVIF), so the AVIF row
compares two encoders at their "quality 60", not at equal fidelity.

    bench/formats.py --results DIR [--images DIR] [--bin DIR] [--node-path DIR]
                     [--repeat K] [--min-time S]

Writes DIR/formats.json; a missing sharp (bench/setup.sh not run) leaves its columns null.
By hand: `python3 bench/formats.py --results /tmp/fmt` runs on samples/ with target/release.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# (format, quality): the settings compared.
CASES = [("webp", 80), ("avif", 60)]
# Each run's wall-clock bound (an AVIF pass over the full set at one thread is the slowest).
TIMEOUT_S = 900


def run_json(cmd, env=None):
    """Runs a runner, returns the one JSON document it prints, or raises."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-400:]}")
    return json.loads(p.stdout)


def sizes(directory):
    return {n: os.path.getsize(os.path.join(directory, n)) for n in sorted(os.listdir(directory))}


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def measure(args, work):
    """One row per case: per-image bytes and the encode ms of each implementation."""
    node_env = dict(os.environ, NODE_PATH=args.node_path)
    have_sharp = shutil.which("node") is not None and os.path.isdir(
        os.path.join(args.node_path, "sharp"))
    rows = []
    for fmt, q in CASES:
        common = ["--job", "fit800", "--procs", "1", "--images", args.images,
                  "--repeat", str(args.repeat), "--min-time", str(args.min_time)]
        ours_dir = os.path.join(work, f"imgfilters-{fmt}")
        ours = run_json([os.path.join(args.bin, "imgbench"), "run", *common,
                         "--format", f"{fmt}:{q}", "--save", ours_dir])
        row = {"format": fmt, "quality": q,
               "imgfilters": {"bytes": sizes(ours_dir),
                              "encode_ms": ours["phase_ms"]["encode"],
                              "ms_per_image": ours["ms_per_image"]},
               "sharp": None}
        if have_sharp:
            sharp_dir = os.path.join(work, f"sharp-{fmt}")
            theirs = run_json(["node", os.path.join(HERE, "runners", "sharp_bench.js"), *common,
                               "--format", fmt, "--quality", str(q), "--save", sharp_dir],
                              env=node_env)
            row["sharp"] = {"bytes": sizes(sharp_dir),
                            "encode_ms": theirs["encode_ms_per_image"],
                            "ms_per_image": theirs["ms_per_image"],
                            "versions": theirs["versions"]}
            mine, other = row["imgfilters"], row["sharp"]
            row["bytes_ratio"] = {n: ratio(b, other["bytes"].get(n))
                                  for n, b in mine["bytes"].items()}
            row["bytes_ratio_total"] = ratio(sum(mine["bytes"].values()),
                                             sum(other["bytes"].values()))
            row["encode_ms_ratio"] = ratio(mine["encode_ms"], other["encode_ms"])
        rows.append(row)
        print(summary_line(row), file=sys.stderr)
    return rows


def summary_line(row):
    mine, other = row["imgfilters"], row["sharp"]
    total = sum(mine["bytes"].values())
    n = max(1, len(mine["bytes"]))
    text = (f"{row['format']} q{row['quality']}: imgfilters {total / n / 1024:.1f} KiB/image, "
            f"encode {mine['encode_ms']:.1f} ms/image")
    if other:
        text += (f"; sharp {sum(other['bytes'].values()) / n / 1024:.1f} KiB/image, "
                 f"encode {other['encode_ms']:.1f} ms; bytes x{row['bytes_ratio_total']}, "
                 f"encode ms x{row['encode_ms_ratio']}")
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", required=True, help="directory for formats.json")
    ap.add_argument("--images", default=os.path.join(ROOT, "samples"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release"),
                    help="where imgbench is")
    ap.add_argument("--node-path", default=os.path.join(HERE, ".deps", "node", "node_modules"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=0)
    args = ap.parse_args()
    os.makedirs(args.results, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as work:
        rows = measure(args, work)
    doc = {"width": 800, "procs": 1, "images": args.images, "cases": rows,
           "load_avg": os.getloadavg()[0]}
    path = os.path.join(args.results, "formats.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"formats: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
