#!/usr/bin/env python3
"""growth: how the cost grows with the work (python3 stdlib; called by run.sh after service.py).

Trust boundary: none; it drives the project's own binaries on loopback with images it makes
itself. Three curves, each written to RESULTS/growth-*.json for report.py:

  - size: ms per job against megapixels. One photograph of the set (the largest JPEG) is
    resized with imgfilters itself (`imgclient resize --local --mode exact`, Lanczos3, same
    aspect) to each of --sizes megapixels and cached under CACHE/growth/ (keyed by the source
    file's hash and the size); imgbench then runs blur2 and resize50 on each image alone, on
    one thread (RESULTS/growth-mp-JOB-SIZE.json). report.py fits a least-squares line and names
    the points more than 20% off it.
  - conns: one server with its per-address caps lifted (--max-unauth-per-addr 0,
    --conn-rate-per-addr 0: every connection comes from 127.0.0.1, and `imgclient bench` has no
    way to spread source addresses) and a ring slot for every connection (--slots), blur2
    on the curve's smallest image at each of --conns connections in a closed loop
    (RESULTS/growth-conns-C.json): throughput and p99.
  - workers: two servers side by side, `--workers 1` and `--workers 2`, blur2 over the image set
    at --worker-conns connections (enough to keep two workers busy; more would only queue),
    the same request count for both, alternated 1, 2, 1, 2 for --pairs pairs
    (RESULTS/growth-workers-W-pK.json).

Every server gets a long --job-timeout and the client a long --timeout: at 1,000 connections
(or with one worker) a closed loop queues for many seconds, and the curve is about
throughput, not about the deadlines.
"""

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

import service

HERE = os.path.dirname(os.path.abspath(__file__))
REL = service.REL
JOBS = ("blur2", "resize50")
# Lifted for the connection curve: 1,000 connections from one address at once, each with a
# job in flight (the default 256 ring slots would answer the rest BUSY; the curve's image is
# ~20 KB, so 1 MiB slots hold it, and slot memory is only committed when touched).
OPEN_CAPS = ["--max-unauth-per-addr", "0", "--max-unauth-conns", "0", "--job-timeout", "600s",
             "--slot-size", "1MiB"]


def log(msg):
    sys.stderr.write("growth: %s\n" % msg)
    sys.stderr.flush()


def source_image(images_dir, manifest):
    """The largest JPEG of the set (a photograph in the full set), else the largest image."""
    imgs = sorted(manifest["images"], key=lambda i: (i["format"] != "jpeg", -i["mp"]))
    return os.path.join(images_dir, imgs[0]["file"]), imgs[0]


def dims(mp, src):
    """Width x height of about `mp` megapixels with the source's aspect ratio, never above
    imgfilters' 50-megapixel default limit."""
    aspect = src["width"] / src["height"]
    h = max(1, int(round(math.sqrt(mp * 1e6 / aspect))))
    w = max(1, int(mp * 1e6 / h))
    while w * h > 50_000_000:
        w -= 1
    return w, h


def make_images(a, manifest):
    """{size: directory holding the one image of that size}, generated once and cached."""
    path, src = source_image(a.images, manifest)
    with open(path, "rb") as f:
        key = hashlib.sha256(f.read()).hexdigest()[:16]
    ext = os.path.splitext(path)[1]
    out = {}
    rows = []
    for mp in a.sizes:
        w, h = dims(mp, src)
        d = os.path.join(a.cache, "growth", "%s-%gmp" % (key, mp))
        f = os.path.join(d, "growth-%gmp%s" % (mp, ext))
        if not os.path.exists(f):
            os.makedirs(d, exist_ok=True)
            # Written beside the directory, not in it: imgbench loads every image in it, and an
            # interrupted run must not leave a half-written one there.
            tmp = d + ".part" + ext
            log("making %s (%dx%d) from %s" % (os.path.basename(f), w, h, src["file"]))
            subprocess.run([os.path.join(REL, "imgclient"), "resize", "--local", "--mode",
                            "exact", "--width", str(w), "--height", str(h), path, "-o", tmp],
                           check=True, capture_output=True, timeout=300)
            os.replace(tmp, f)
        out[mp] = d
        rows.append({"mp_nominal": mp, "width": w, "height": h, "mp": w * h / 1e6,
                     "bytes": os.path.getsize(f), "file": os.path.basename(f)})
    with open(os.path.join(a.results, "growth-images.json"), "w") as fh:
        json.dump({"source": src["file"], "source_sha256": key, "images": rows}, fh, indent=1)
    return out


def size_curve(a, dirs):
    """imgbench on one thread, each size alone, per job (medians over its passes)."""
    for job in JOBS:
        for mp, d in sorted(dirs.items()):
            out = os.path.join(a.results, "growth-mp-%s-%g.json" % (job, mp))
            log("imgbench %s on %g MP, one thread" % (job, mp))
            subprocess.run([sys.executable, os.path.join(HERE, "measure.py"), "--out", out,
                            "--timeout", "600", "--", os.path.join(REL, "imgbench"), "run",
                            "--job", job, "--procs", "1", "--images", d, "--repeat",
                            str(a.repeat), "--min-time", "%g" % a.min_time],
                           check=True, capture_output=True, timeout=700)


def conns_curve(a, work, image_dir):
    """Throughput and p99 of blur2 on one small image at each connection count."""
    # 1,000 connections and the client's and server's own descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(c for c in a.conns) * 2 + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    server = service.Server(os.path.join(work, "conns"),
                            os.path.join(a.results, "server-growth-conns.log"),
                            OPEN_CAPS + ["--slots", str(max(a.conns) + 64)])
    try:
        service.warm_up(server, image_dir, 1)
        for c in a.conns:
            # By duration: the client stops sending at the end and waits for what is in
            # flight, so even 1,000 connections each answer at least once.
            load = ["--duration", "%gs" % a.seconds]
            meta = {"job": "blur2", "curve": "conns", "conns": c,
                    "images": os.listdir(image_dir)}
            service.bench(server, os.path.join(a.results, "growth-conns-%d.json" % c), meta,
                          ["--conns", str(c), "--dir", image_dir, "--op", "blur:2",
                           "--timeout", "600s"] + load,
                          timeout=a.seconds + 700, kind="growth")
    finally:
        server.stop()


def workers_curve(a, work, manifest):
    """blur2 over the image set at --worker-conns connections with 1 and with 2 workers,
    alternated. The same request count for both sides: about --seconds of one core's work at
    imgbench's one-thread rate, and at least four rounds of the connections, so that the
    closed loop's last in-flight jobs (drained after the last send) weigh little."""
    n = len(manifest["images"])
    set_mp = sum(i["mp"] for i in manifest["images"])
    rate_mp = 0.0
    base = os.path.join(a.results, "inproc-imgfilters-blur2-p1.json")
    if os.path.exists(base):
        with open(base) as f:
            rate_mp = json.load(f)["mp_per_s"]
    if a.smoke:
        load, expect = ["--duration", "%gs" % a.seconds], 1
    else:
        r = service.requests_for(n, set_mp / n, rate_mp, a.seconds, 4 * a.worker_conns)
        load, expect = ["--requests", str(r)], (r * set_mp / n / rate_mp if rate_mp else 60)
    servers = {}
    try:
        for w in (1, 2):
            servers[w] = service.Server(
                os.path.join(work, "workers-%d" % w),
                os.path.join(a.results, "server-growth-workers-%d.log" % w),
                ["--workers", str(w), "--job-timeout", "600s"])
            service.warm_up(servers[w], a.images, n)
        for k in range(a.pairs):
            for w in (1, 2):
                meta = {"job": "blur2", "curve": "workers", "workers": w, "pair": k,
                        "conns": a.worker_conns}
                service.bench(servers[w], os.path.join(
                    a.results, "growth-workers-%d-p%d.json" % (w, k)), meta,
                    ["--conns", str(a.worker_conns), "--dir", a.images, "--op", "blur:2",
                     "--timeout", "600s"] + load,
                    timeout=10 * expect + 700, kind="growth")
    finally:
        for s in servers.values():
            s.stop()


def _interrupt(*_):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="the bench image set")
    ap.add_argument("--manifest", required=True, help="imgbench list output for --images")
    ap.add_argument("--results", required=True)
    ap.add_argument("--cache", required=True, help="where the generated images are kept")
    ap.add_argument("--sizes", default="0.1,0.5,1,2,5,10,20,50",
                    help="megapixels of the size curve")
    ap.add_argument("--repeat", type=int, default=3, help="imgbench passes (at least)")
    ap.add_argument("--min-time", type=float, default=2, help="imgbench seconds (at least)")
    ap.add_argument("--conns", default="1,10,150,1000", help="connection counts")
    ap.add_argument("--seconds", type=float, default=10, help="length of one service run")
    ap.add_argument("--pairs", type=int, default=3, help="1-worker / 2-worker pairs")
    ap.add_argument("--worker-conns", type=int, default=16)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    a.sizes = [float(x) for x in a.sizes.split(",")]
    a.conns = [int(x) for x in a.conns.split(",")]
    with open(a.manifest) as f:
        manifest = json.load(f)
    signal.signal(signal.SIGTERM, _interrupt)
    work = tempfile.mkdtemp(prefix="imgbench-growth-")
    try:
        dirs = make_images(a, manifest)
        size_curve(a, dirs)
        conns_curve(a, work, dirs[min(dirs)])
        if a.pairs > 0:
            workers_curve(a, work, manifest)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
