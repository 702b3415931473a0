#!/usr/bin/env python3
"""report: bench/RESULTS.md and bench/results.svg from one run's JSON results (stdlib only).

    python3 bench/report.py --collect-meta RESULTS/meta.json --mode M --images DIR
    python3 bench/report.py --results RESULTS --md OUT.md --svg OUT.svg [--seconds S]

The first form records the machine and the versions of everything before the measurements;
the second reads every RESULTS/*.json written by run.sh, measure.py and service.py, and
writes the report: the machine, versions, the image set, the goals (ratios from interleaved
pairs, report_goals.py), the tables, the growth curves (report_growth.py),
where the time goes, and how each implementation was configured (with what its output files
actually contain, read back with imgmeta.py).
"""

import argparse
import glob
import hashlib
import html
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import harness  # noqa: E402
import imgmeta  # noqa: E402
import report_goals  # noqa: E402
import report_growth  # noqa: E402
import report_anchors  # noqa: E402

JOBS = [("blur2", "blur σ2"), ("resize50", "resize 50% (Lanczos3)"), ("gray", "grayscale")]
# The resize again with each implementation at its defaults (shrink-on-load on for imgfilters
# and sharp); only an in-process row, next to the same-work rows of JOBS.
DEFAULTS_JOB = ("resize50d", "resize 50% (Lanczos3), each at its defaults")
IMPLS = [("imgfilters", "imgfilters (own, in-process)"), ("sharp", "sharp"),
         ("pyvips", "pyvips"), ("pillow", "Pillow")]
BUSY_CORES = 0.25  # other processes' average busy cores above which a figure is flagged


# --- collecting -----------------------------------------------------------------------------

def sh(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT)
        return (r.stdout or r.stderr).strip().splitlines()[0] if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def read_first(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    sep = ":" if ":" in line else "="
                    return line.split(sep, 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def collect_meta(out, mode, images):
    mem_kb = read_first("/proc/meminfo", "MemTotal") or "0 kB"
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    m = re.search(r'name = "image"\nversion = "([^"]+)"', lock)
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"])
    debs = {}
    for deb in sorted(glob.glob(os.path.join(HERE, ".cache", "debs", "*.deb"))):
        v = sh(["dpkg-deb", "-f", deb, "Version"])
        debs[os.path.basename(deb).split("_")[0]] = v
    imgs = []
    for name in sorted(os.listdir(images)):
        with open(os.path.join(images, name), "rb") as f:
            imgs.append({"file": name, "sha256": hashlib.sha256(f.read()).hexdigest()[:16]})
    meta = {
        "mode": mode,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {
            "cpu": read_first("/proc/cpuinfo", "model name") or platform.processor(),
            "cores": os.cpu_count(),
            "memory_gib": round(int(mem_kb.split()[0]) / 1024 / 1024, 1),
            "kernel": platform.release(),
            "os": read_first("/etc/os-release", "PRETTY_NAME") or "",
            "loadavg_start": open("/proc/loadavg").read().split()[:3],
        },
        "versions": {
            "imgserver commit": (sh(["git", "rev-parse", "--short=12", "HEAD"]) or "?")
            + (" + uncommitted changes" if dirty else ""),
            "rustc": sh(["rustc", "--version"]),
            "image crate": m.group(1) if m else None,
            "node": sh(["node", "--version"]),
            "python": platform.python_version(),
            "redis-server": sh(["redis-server", "--version"]),
            "redis-benchmark": sh(["redis-benchmark", "--version"]),
            "perf": sh(["perf", "--version"]),
        },
        "image_packages": debs,
        "image_hashes": imgs,
    }
    with open(out, "w") as f:
        json.dump(meta, f, indent=1)


# --- loading ----------------------------------------------------------------------------------

load = harness.load_json


class Results:
    def __init__(self, d):
        self.dir = d
        self.meta = load(os.path.join(d, "meta.json")) or {}
        self.manifest = load(os.path.join(d, "manifest.json")) or {"images": []}
        self.encoder = load(os.path.join(d, "encoder.json"))
        self.cores = self.meta.get("machine", {}).get("cores") or os.cpu_count()
        self.inproc = {}
        for p in glob.glob(os.path.join(d, "inproc-*-p*.json")):
            m = re.match(r"inproc-(\w+)-(\w+)-p(\d+)\.json$", os.path.basename(p))
            if m:
                self.inproc[(m.group(1), m.group(2), int(m.group(3)))] = load(p)
        self.noop_tiny = load(os.path.join(d, "inproc-imgfilters-noop-tiny.json"))
        # The interleaved pairs (service.py): per job {pair: service run}, and per in-process
        # side {(impl, job): {pair: measure.py record}}.
        self.service_pairs = {job: pairs_of(d, "service-%s-p*.json" % job) for job, _ in JOBS}
        self.pairs = {}
        for p in glob.glob(os.path.join(d, "pair-*-p*.json")):
            m = re.match(r"pair-(\w+)-(\w+)-p(\d+)\.json$", os.path.basename(p))
            if m and load(p):
                self.pairs.setdefault((m.group(1), m.group(2)), {})[int(m.group(3))] = load(p)
        # The tables below the goals show one run per job: the pair with the median
        # throughput (every pair is in the goals' spread).
        self.service = {}
        for job, _ in JOBS:
            run = median_run(self.service_pairs[job].values())
            if run:
                self.service[job] = combine_service([run], self.manifest)
        self.ping150_pairs = pairs_of(d, "service-ping-c150-p*.json")
        self.ping150 = median_run(self.ping150_pairs.values())
        self.noop1 = [load(p) for p in sorted(glob.glob(os.path.join(d, "service-noop-c1-*.json")))]
        self.ping1 = [load(p) for p in sorted(glob.glob(os.path.join(d, "service-ping-c1-*.json")))]
        self.redis_pairs = pairs_of(d, "redis-ping-c150-p*.json")
        self.redis = median_run(self.redis_pairs.values(), redis_rps)
        # Extra goal rows other bench scripts write (goals-NAME.json: a list of rows).
        self.extra_goals = []
        for p in sorted(glob.glob(os.path.join(d, "goals-*.json"))):
            rows = load(p)
            if isinstance(rows, list):
                self.extra_goals += [r for r in rows if isinstance(r, dict) and "target" in r]
        self.growth = report_growth.load_growth(d)
        # The sandbox on/off pairs (service.py sandbox_cost): {job: {pair: {side: record}}}.
        self.sandbox = {}
        for p in glob.glob(os.path.join(d, "sandbox-*.json")):
            r = load(p)
            if r and r.get("kind") == "sandbox":
                self.sandbox.setdefault(r["job"], {}).setdefault(r["pair"], {})[r["side"]] = r

    def ip(self, impl, job, procs):
        return self.inproc.get((impl, job, procs))


def pairs_of(d, pattern):
    """{pair number: record} of the files matching RESULTS/pattern (…-pK.json)."""
    out = {}
    for p in glob.glob(os.path.join(d, pattern)):
        m = re.search(r"-p(\d+)\.json$", p)
        r = load(p)
        if m and r:
            out[int(m.group(1))] = r
    return out


def redis_rps(r):
    t = r["tests"]
    return (t.get("PING_MBULK") or t.get("PING_INLINE") or {}).get("rps") or 0


def median_run(runs, key=lambda r: r["bench"]["throughput_rps"] or 0):
    """The run with the median `key` (the lower middle one of an even count), or None."""
    runs = sorted(runs, key=key)
    return runs[(len(runs) - 1) // 2] if runs else None


def combine_service(runs, manifest):
    """One job's service figures from its runs (one, or one per image size for resize):
    every image weighted equally, as in the in-process passes."""
    n = len(manifest["images"]) or runs[0].get("set_images", 1)
    set_mp = sum(i["mp"] for i in manifest["images"]) or runs[0].get("set_mp", 0)
    t_set = 0.0  # seconds to serve every image of the set once
    phases = {k: 0.0 for k in ("queue", "decode", "filter", "encode")}
    client = server = other = 0.0
    ok = errors = 0
    p50s, p99s = [], []
    kinds = {}
    for r in runs:
        b = r["bench"]
        k = len(r["images"])
        rate = b["ok"] / b["elapsed_s"] if b["elapsed_s"] else 0
        t_set += k / rate if rate else float("inf")
        for ph in phases:
            phases[ph] += k / n * b["server_phases_ms"][ph]["mean"]
        client += k / n * r["env"]["client_cpu_s"] / max(1, b["ok"])
        server += k / n * r["env"]["server_cpu_s"] / max(1, b["ok"])
        other = max(other, r["env"]["other_cores"])
        ok += b["ok"]
        errors += b["errors"]
        for kind, count in b.get("errors_by_type", {}).items():
            kinds[kind] = kinds.get(kind, 0) + int(count)
        p50s.append(b["latency_ms"]["p50"])
        p99s.append(b["latency_ms"]["p99"])
    return {
        "runs": runs, "images_per_s": n / t_set if t_set else 0.0,
        "mp_per_s": set_mp / t_set if t_set else 0.0, "phases_ms": phases,
        "client_cpu_ms": 1e3 * client, "server_cpu_ms": 1e3 * server, "other_cores": other,
        "ok": ok, "errors": errors, "error_kinds": kinds, "p50": (min(p50s), max(p50s)), "p99": (min(p99s), max(p99s)),
    }


# --- formatting -------------------------------------------------------------------------------

f = harness.num


def rng(pair, unit=""):
    lo, hi = pair
    return "%s%s" % (f(lo), unit) if abs(hi - lo) < 1e-9 else "%s–%s%s" % (f(lo), f(hi), unit)


def cpu_per_image_ms(r):
    """CPU milliseconds per image of an in-process run (measure.py's CPU of the whole process
    tree over every job it ran, warm-up included; start-up and image loading are in it too,
    a few percent on full-length runs)."""
    if not r or "env" not in r:
        return None
    if "cpu_ms_per_image" in r:
        return r["cpu_ms_per_image"]
    jobs = sum(p["jobs"] for p in r["passes"]) + r["procs"]
    return 1e3 * r["env"]["self_cpu_s"] / jobs


def p50_us(records):
    v = [r["bench"]["latency_ms"]["p50"] * 1e3 for r in records if r]
    return statistics.median(v) if v else None


def output_facts(outdir):
    """What one implementation's output files are, read back from the files."""
    jpg = [imgmeta.info(p) for p in sorted(glob.glob(os.path.join(outdir, "*.jpg")))]
    png = [imgmeta.info(p) for p in sorted(glob.glob(os.path.join(outdir, "*.png")))]
    facts = []
    if jpg:
        sub = sorted({j.get("subsampling", "?") for j in jpg})
        marks = sorted({m for j in jpg for m in j.get("markers", [])})
        facts.append("JPEG %s, %s, markers: %s" % (
            "/".join(sub), "progressive" if any(j.get("progressive") for j in jpg) else "baseline",
            ", ".join(marks) or "none"))
    if png:
        lv = sorted({str(p.get("zlib_flevel")) for p in png})
        filt = sorted({x for p in png for x in (p.get("row_filters") or [])})
        chunks = sorted({c for p in png for c in p["chunks"]} - {"IHDR", "IDAT", "IEND"})
        facts.append("PNG zlib FLEVEL %s, row filters %s, extra chunks: %s" % (
            "/".join(lv), filt, ", ".join(chunks) or "none"))
    return "; ".join(facts)


# --- the report -------------------------------------------------------------------------------

def write_md(R, path, seconds):
    N = R.cores
    meta, mach, ver = R.meta, R.meta.get("machine", {}), dict(R.meta.get("versions", {}))
    # Versions the runners reported from inside the libraries they loaded.
    for impl in ("sharp", "pyvips", "pillow"):
        for (i, _, _), r in R.inproc.items():
            if i == impl and r:
                for k, v in r.get("versions", {}).items():
                    label = "libvips (in %s)" % impl if k == "libvips" else k
                    if impl == "pillow" and k in ("libjpeg", "zlib"):
                        label = "%s (in Pillow)" % k
                    ver.setdefault(label, v)
    others = [r["env"]["other_cores"] for r in R.inproc.values() if r and "env" in r]
    others += [r["env"]["other_cores"] for runs in R.service_pairs.values()
               for r in runs.values()]
    others += [r["env"]["other_cores"] for runs in R.pairs.values() for r in runs.values()
               if "env" in r]
    others += [r["env"]["other_cores"] for pairs in R.sandbox.values()
               for sides in pairs.values() for r in sides.values()]
    load0 = [float(x) for x in mach.get("loadavg_start", [0])]
    # The load average at the start counts the harness's own build just before, so it only
    # decides when no measurement recorded the other processes' CPU.
    busy = max(others) > BUSY_CORES if others else load0[0] > 0.5
    L = []
    w = L.append
    w("# imgserver benchmark results")
    w("")
    w("Generated by `bench/run.sh`%s on %s%s; do not edit by hand (rerun `make bench`). "
      "What is measured and how: [bench/README.md](README.md)." % (
          "" if meta.get("mode") == "full" else " --" + meta.get("mode", "?"),
          meta.get("date", "?"), " in %d s" % seconds if seconds else ""))
    w("")
    if busy:
        w("> **Taken on a busy machine.** Load average at the start: %s; other processes kept "
          "on average %.2f cores busy during the measurements (up to %.2f, per measurement in "
          "the *other load* columns) on a %d-core machine. Absolute figures are noisy; ratios "
          "between measurements taken close together are less so, but still compare runs that "
          "saw similar load." % (" ".join(mach.get("loadavg_start", [])),
                                 statistics.mean(others) if others else 0,
                                 max(others) if others else 0, N))
        w("")

    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    for k, label in (("cpu", "CPU"), ("cores", "cores"), ("memory_gib", "memory (GiB)"),
                     ("kernel", "kernel"), ("os", "OS")):
        w("| %s | %s |" % (label, mach.get(k, "?")))
    w("| load average at start | %s |" % " ".join(mach.get("loadavg_start", [])))
    w("")
    w("## Versions")
    w("")
    w("| component | version |")
    w("|---|---|")
    for k, v in ver.items():
        if v:
            w("| %s | %s |" % (k, v))
    w("")

    imgs = R.manifest["images"]
    set_mp = sum(i["mp"] for i in imgs)
    w("## Image set")
    w("")
    hashes = {h["file"]: h["sha256"] for h in meta.get("image_hashes", [])}
    pk = meta.get("image_packages", {})
    w("%d images, %.1f megapixels, %.1f MB; every implementation processes exactly these bytes. "
      "`sample-*` are the repository's samples/, `photo-*` and `render-*` come from Debian's %s "
      "(fetched by bench/images.sh, see bench/photos.list)." % (
          len(imgs), set_mp, sum(i["bytes"] for i in imgs) / 1e6,
          ", ".join("`%s` %s" % kv for kv in pk.items()) or "packages"))
    w("")
    w("| file | format | size | MP | KiB | sha256 (16) |")
    w("|---|---|---|---|---|---|")
    for i in imgs:
        w("| %s | %s | %dx%d | %.2f | %d | `%s` |" % (i["file"], i["format"], i["width"],
                                                    i["height"], i["mp"], i["bytes"] // 1024,
                                                    hashes.get(i["file"], "?")))
    w("")

    # ---- goals
    noop, ping = p50_us(R.noop1), p50_us(R.ping1)
    report_goals.write_goals(R, w)

    # ---- in-process
    w("## In-process throughput")
    w("")
    w("Decode + op + encode from bytes in memory to bytes in memory, output in the input's "
      "format (JPEG quality 85). A pass gives every worker the whole set once, largest image "
      "first; figures are medians over passes. *ms/img* is the mean time of one job inside a "
      "worker; *scaling* = all-core images/s ÷ 1-core images/s; *output* = bytes written for "
      "the set once; *other load* = cores other processes kept busy meanwhile. Same work: "
      "shrink-on-load (decoding a JPEG smaller by DCT scaling before a downscale) is off "
      "everywhere in these rows (sharp: `fastShrinkOnLoad: false`); the row *%s* is the "
      "resize with imgfilters and sharp each at its defaults (both shrink a JPEG on load)."
      % DEFAULTS_JOB[1])
    w("")
    w("| job | implementation | 1 core img/s | 1 core MP/s | ms/img | %d cores img/s | %d cores MP/s | scaling | output MB | other load |" % (N, N))
    w("|---|---|---|---|---|---|---|---|---|---|")
    for job, label in JOBS + [DEFAULTS_JOB]:
        for impl, name in IMPLS:
            a, b = R.ip(impl, job, 1), R.ip(impl, job, N)
            if not a and not b:
                continue
            oth = max(x["env"]["other_cores"] for x in (a, b) if x)
            w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                label, name, f(a and a["images_per_s"]), f(a and a["mp_per_s"]),
                f(a and a["ms_per_image"]), f(b and b["images_per_s"]), f(b and b["mp_per_s"]),
                f(b["images_per_s"] / a["images_per_s"], 2) + "×" if a and b else "n/a",
                f((a or b)["out_bytes"] / 1e6), f(oth, 2)))
    w("")

    # ---- service
    w("## End to end through imgserver")
    w("")
    w("`imgclient bench --conns 150`, closed loop (each connection keeps one job in flight), "
      "encrypted, loopback, client and server on the same %d cores; imgserver with its default "
      "%d filter workers. resize 50%% is sent as `scale:50` (half of each side, rounded "
      "down, Lanczos3: the same pixels as the in-process runs' per-image exact resize). "
      "Latency in a closed loop of 150 is mostly queueing (≈ 150 ÷ throughput)." % (N, N))
    w("")
    w("The run shown per job is the pair with the median throughput; the ratios are the "
      "medians over the interleaved pairs (see *Goals*), imgfilters' resize at its defaults "
      "like the server's.")
    w("")
    w("| job | img/s | MP/s | vs own in-process (%d cores) | vs sharp (%d cores) | latency p50 | latency p99 | ok | errors | other load |" % (N, N))
    w("|---|---|---|---|---|---|---|---|---|---|")
    for job, label in JOBS:
        s = R.service.get(job)
        if not s:
            continue
        own = report_goals.median_of(report_goals.pair_ratios(
            R, job, *report_goals.OWN_SIDE[job]), 0)
        shp = report_goals.median_of(report_goals.pair_ratios(R, job, "sharp", job), 0)
        errs = str(s["errors"])
        if s["error_kinds"]:
            errs += " (%s)" % ", ".join("%s: %d" % kv for kv in sorted(s["error_kinds"].items()))
        w("| %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |" % (
            label, f(s["images_per_s"]), f(s["mp_per_s"]),
            f(own, 2) + "×" if own else "n/a",
            f(shp, 2) + "×" if shp else "n/a",
            rng(s["p50"], " ms"), rng(s["p99"], " ms"), s["ok"], errs,
            f(s["other_cores"], 2)))
    w("")
    kinds = {k for s in R.service.values() for k in s["error_kinds"]}
    if kinds:
        notes = ["Errors count against throughput (only answered jobs count)."]
        if "BUSY" in kinds:
            notes.append("`BUSY`: the server refused a job because its large-job budget "
                         "(`--large-job-budget`, an eighth of RAM by default, for uploads larger than a "
                         "4 MiB ring slot) was taken: 150 connections each uploading a "
                         "multi-megabyte image exceed it, so for the largest images that "
                         "budget, not the CPU, limits the service (default configuration "
                         "here; the client backs off and retries within its budget).")
        if any(k.startswith("TIMEOUT") for k in kinds):
            notes.append("`TIMEOUT`: the server failed a job that had waited in its queue "
                         "longer than the per-job deadline (`--job-timeout`, 30 s by default): "
                         "150 connections of the largest images queue for longer than that.")
        if any(k.startswith("no answer") for k in kinds):
            notes.append("`no answer within`: the client's per-answer timeout expired while "
                         "the job was still queued.")
        w(" ".join(notes))
        w("")
    # ---- ping and noop
    w("## PING and the no-op job")
    w("")
    w("| measurement | requests/s | p50 | p99 |")
    w("|---|---|---|---|")
    for k in sorted(set(R.ping150_pairs) | set(R.redis_pairs)):
        if k in R.ping150_pairs:
            b = R.ping150_pairs[k]["bench"]
            w("| pair %d: imgserver PING, 150 connections (imgclient bench, encrypted) | %s | "
              "%s ms | %s ms |" % (k + 1, f(b["throughput_rps"]), f(b["latency_ms"]["p50"], 3),
                                   f(b["latency_ms"]["p99"], 3)))
        for name, t in R.redis_pairs.get(k, {}).get("tests", {}).items():
            w("| pair %d: redis %s, 150 connections (redis-benchmark, plaintext) | %s | %s ms | "
              "%s ms |" % (k + 1, name, f(t.get("rps")), f(t.get("p50_latency_ms"), 3),
                           f(t.get("p99_latency_ms"), 3)))
    for recs, label in ((R.ping1, "imgserver PING, 1 connection"),
                        (R.noop1, "imgserver no-op job (8x8 PNG), 1 connection")):
        for r in recs:
            if r:
                b = r["bench"]
                w("| %s | %s | %s µs | %s µs |" % (label, f(b["throughput_rps"]),
                                                  f(b["latency_ms"]["p50"] * 1e3),
                                                  f(b["latency_ms"]["p99"] * 1e3)))
    w("")
    if noop is not None and ping is not None:
        tiny_us = R.noop_tiny["ms_per_image"] * 1e3 if R.noop_tiny else None
        w("The no-op job's round trip is **%.0f µs** above PING's at p50 (medians of the runs "
          "above: %.0f µs vs %.0f µs). Of that, decoding and re-encoding the 8x8 PNG costs "
          "%s µs in-process (imgbench, same code); the rest, ~%s µs, is the job path itself: "
          "upload framing and decryption of the image, the ring slot, the hand-off to a "
          "worker and back over the SEQPACKET socket, and the result's encryption." % (
              noop - ping, noop, ping, f(tiny_us), f(noop - ping - tiny_us) if tiny_us else "?"))
        w("")

    write_sandbox(R, w)
    report_growth.write_md(R, w)
    report_anchors.write_anchors(R.dir, w)
    write_formats(R, w)

    # ---- where the time goes
    w("## Where the time goes")
    w("")
    w("Per job, mean milliseconds per image. *Service* phases are what the server reports for "
      "each job (queue = waiting for a worker, the closed loop's backlog); *in-process* are the "
      "same stages measured by imgbench on %d threads. CPU per image: the client's and the "
      "server's (master + workers) CPU time during the service run divided by the jobs, "
      "against imgbench's CPU per image; the difference is what the service costs on top of "
      "the image work, and on %d shared cores it comes straight out of throughput. *Cores "
      "busy*: average cores used during the service runs by the server, the client and every "
      "other process on the machine (the %d cores are the ceiling)." % (N, N, N))
    w("")
    w("| job | service decode | filter | encode | queue | in-process decode | filter | encode | CPU/img in-process | CPU/img server | CPU/img client | cores busy: server / client / others |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for job, label in JOBS:
        s, own = R.service.get(job), R.ip("imgfilters", job, N)
        if not s:
            continue
        ph = s["phases_ms"]
        ipm = own.get("phase_ms", {}) if own else {}
        cpu_in = None
        if own:
            jobs_done = sum(p["jobs"] for p in own["passes"]) + own["procs"]
            cpu_in = 1e3 * own["env"]["self_cpu_s"] / jobs_done
        wall = sum(r["env"]["wall_s"] for r in s["runs"])
        cores = " / ".join(f(sum(r["env"][k] for r in s["runs"]) / wall, 2)
                           for k in ("server_cpu_s", "client_cpu_s")) if wall else "n/a"
        oth = sum(r["env"]["other_cores"] * r["env"]["wall_s"] for r in s["runs"]) / wall if wall else 0
        w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |" % (
            label, f(ph["decode"]), f(ph["filter"]), f(ph["encode"]), f(ph["queue"]),
            f(ipm.get("decode")), f(ipm.get("filter")), f(ipm.get("encode")), f(cpu_in),
            f(s["server_cpu_ms"]), f(s["client_cpu_ms"]), cores, f(oth, 2)))
    w("")
    shares = []
    for job, label in JOBS:
        own = R.ip("imgfilters", job, 1)
        ph = own.get("phase_ms") if own else None
        if ph and sum(ph.values()) > 0:
            tot = sum(ph.values())
            shares.append("%s: decode %.0f%%, op %.0f%%, encode %.0f%%" % (
                label, 100 * ph["decode"] / tot, 100 * ph["filter"] / tot,
                100 * ph["encode"] / tot))
    if shares:
        w("In-process (imgbench, one thread) the job's time splits as " + "; ".join(shares)
          + ".")
        w("")
    stage = []
    for job, label in JOBS:
        s, own = R.service.get(job), R.ip("imgfilters", job, N)
        if s and own and own.get("phase_ms"):
            a = sum(s["phases_ms"][k] for k in ("decode", "filter", "encode"))
            b = sum(own["phase_ms"].values())
            if b:
                stage.append("%s %.2f×" % (label, a / b))
    if stage:
        w("The service's workers' decode + op + encode time per image relative to imgbench's "
          "on %d threads: %s (about 1× means the workers do the same work at the same speed; "
          "what the service adds on top is the master's and the client's CPU, on the same "
          "cores)." % (N, ", ".join(stage)))
        w("")
    missed = []
    for job, label in JOBS:
        s, own, shp = R.service.get(job), R.ip("imgfilters", job, N), R.ip("sharp", job, N)
        if s and shp and own and s["images_per_s"] < shp["images_per_s"]:
            a, b = s["images_per_s"] / shp["images_per_s"], own["images_per_s"] / shp["images_per_s"]
            why = ("imgfilters itself is slower than sharp in-process, so the kernels and "
                   "codecs set part of the gap and the service's own cost the rest"
                   if b < 1 else "imgfilters itself beats sharp in-process, so the gap is the "
                   "service's own cost")
            missed.append("%s: service at %.2f× sharp, imgfilters in-process at %.2f× sharp (%s)"
                          % (label, a, b, why))
    if missed:
        w("Against sharp: " + "; ".join(missed) + ".")
        w("")
    for name, title in (("profile-inproc-blur2.txt", "imgbench blur σ2, one thread"),
                        ("profile-inproc-resize50.txt", "imgbench resize 50%, one thread"),
                        ("profile-inproc-gray.txt", "imgbench grayscale, one thread"),
                        ("profile-service-blur2.txt", "system-wide during a 150-connection blur run")):
        text = profile_excerpt(os.path.join(R.dir, name))
        if text:
            w("<details><summary>perf profile (cpu-clock): %s</summary>" % title)
            w("")
            w("```")
            w(text)
            w("```")
            w("")
            w("</details>")
            w("")

    # ---- configuration
    w("## How each implementation was configured")
    w("")
    if R.encoder:
        w("The third-party encoders copy what imgfilters' own output shows (read back from its "
          "files by bench/imgmeta.py): JPEG chroma subsampling **%s**, PNG zlib level **%s**, "
          "row filters **%s**. Everyone writes JPEG at quality 85, baseline, without Huffman "
          "optimisation and without metadata." % (
              R.encoder["subsampling"], R.encoder["png_level"], R.encoder["png_filter"]))
        w("")
    w("| implementation | parallelism | JPEG | PNG | what its output files contain |")
    w("|---|---|---|---|---|")
    outputs = os.path.join(os.path.dirname(R.dir), "outputs")
    for impl, name in IMPLS:
        r = R.ip(impl, "blur2", N) or R.ip(impl, "blur2", 1)
        if not r:
            continue
        st = r.get("settings", {})
        par = "%s (the %d-core runs)" % (st.get("threads", ""), r["procs"])
        if impl == "imgfilters":
            par = "N threads in one process, one job each (like N filter workers)"
        w("| %s | %s | %s | %s | %s |" % (name, par, st.get("jpeg", ""), st.get("png", ""),
                                         output_facts(os.path.join(outputs, impl, "blur2"))))
    w("")
    w("Ops: blur σ2 is a Gaussian everywhere except Pillow (`GaussianBlur` approximates it with "
      "box blurs); resize is Lanczos3 to exactly w/2 × h/2 (sharp with `fastShrinkOnLoad: "
      "false`, so no JPEG shrink-on-load); grayscale writes one channel (luma weights differ "
      "slightly between libraries). Output sizes differ with each library's DEFLATE and JPEG "
      "quantisation; the *output MB* column shows by how much.")
    w("")
    w("## Caveats")
    w("")
    w("- Client and server share the machine's %d cores: the service's figures include the "
      "load generator's CPU (encryption, framing, 150 connections on one event-loop thread per core), the in-process ones do not." % N)
    w("- One run, medians over ≥ 3 passes (≥ 5 s) in the in-process section; service runs are "
      "sized to ~%s s of work each. Figures drift between runs on a shared VM: the goals' "
      "ratios come from interleaved pairs for that reason, and their spread says how far the "
      "noise moved them." % ("12" if meta.get("mode") == "full" else "a few"))
    w("- The CPU-normalised in-process figures count the whole process: start-up, loading the "
      "image set and one warm-up job per thread are in them (a few percent of a pair's short "
      "in-process run), which favours the service's side of a CPU-normalised ratio slightly.")
    w("- redis-benchmark is one single-threaded C client speaking plaintext RESP; imgclient "
      "bench uses one event-loop thread per core and encrypts every frame.")
    w("")
    with open(path, "w") as fh:
        fh.write("\n".join(L))


SANDBOX_JOBS = [("blur2", "blur σ2 over the image set"),
                ("noop-tiny", "no-op job on the 8x8 PNG")]


def sandbox_run(r):
    """(req/s, server CPU ms per request, client CPU ms per request, other cores) of one run."""
    b, e = r["bench"], r["env"]
    ok = max(1, b["ok"])
    return (b["throughput_rps"], 1e3 * e["server_cpu_s"] / ok, 1e3 * e["client_cpu_s"] / ok,
            e["other_cores"])


def write_sandbox(R, w):
    """The workers' sandbox cost: per job, the on/off figures and the per-pair ratios."""
    if not R.sandbox:
        return
    w("## Worker sandbox cost")
    w("")
    any_run = next(r for pairs in R.sandbox.values() for sides in pairs.values()
                   for r in sides.values())
    layers = {}
    for pairs in R.sandbox.values():
        for sides in pairs.values():
            for side, r in sides.items():
                layers.setdefault(side, r.get("sandbox", "?"))
    w("Compared: the same imgserver binary with the same flags, its filter workers under the "
      "seccomp-bpf allow-list and the Landlock domain (the default) against `--sandbox none` "
      "(neither layer), as two servers side by side, each run of `imgclient bench --conns %d` "
      "alternated between them (on, off, on, off, ...; each job's runs alike: the same request "
      "count for blur, the same duration for the no-op). The servers' own account "
      "(`imgserver stats`): on = *%s*, off = *%s*." % (
          any_run.get("conns", 150), layers.get("on", "?"), layers.get("off", "?")))
    w("")
    w("Ratios are *on ÷ off* per pair (runs next to each other), then the median over the pairs "
      "with the min–max spread: a req/s ratio below 1 and a CPU ratio above 1 are what the "
      "sandbox costs. *Server CPU per request* is master + workers CPU time during the run "
      "divided by the answered requests: it does not depend on how much CPU other processes "
      "left the run, so it is the CPU-normalised figure.")
    w("")
    flagged = []
    for job, label in SANDBOX_JOBS:
        pairs = R.sandbox.get(job)
        full = [p for _, p in sorted((pairs or {}).items()) if "on" in p and "off" in p]
        if not full:
            continue
        on = [sandbox_run(p["on"]) for p in full]
        off = [sandbox_run(p["off"]) for p in full]
        args = " ".join(full[0]["on"]["args"])
        errors = sum(p[s]["bench"]["errors"] for p in full for s in ("on", "off"))
        w("### %s" % label)
        w("")
        w("%d pair%s; each run `%s`%s." % (
            len(full), "" if len(full) == 1 else "s",
            re.sub(r"--dir \S+/", "--dir …/", args),
            "; %d errors in all" % errors if errors else ", no errors"))
        w("")
        w("| figure | sandbox on (median) | off (median) | on ÷ off, median of pairs | min–max over pairs |")
        w("|---|---|---|---|---|")
        for k, name, digits in ((0, "requests/s", None), (1, "server CPU per request (ms)", 3),
                                (2, "client CPU per request (ms)", 3)):
            ratios = [a[k] / b[k] for a, b in zip(on, off) if b[k]]
            w("| %s | %s | %s | %s | %s |" % (
                name, f(statistics.median(x[k] for x in on), digits),
                f(statistics.median(x[k] for x in off), digits),
                "%.3f×" % statistics.median(ratios) if ratios else "n/a",
                ("%.3f–%.3f×" % (min(ratios), max(ratios)) if len(ratios) > 1 else
                 "(one pair)") if ratios else "n/a"))
        w("| other processes' busy cores | %s (max %s) | %s (max %s) | | |" % (
            f(statistics.median(x[3] for x in on), 2), f(max(x[3] for x in on), 2),
            f(statistics.median(x[3] for x in off), 2), f(max(x[3] for x in off), 2)))
        w("")
        w("<details><summary>every run, in the order run</summary>")
        w("")
        w("| pair | side | req/s | server CPU ms/req | client CPU ms/req | answered | errors | other cores |")
        w("|---|---|---|---|---|---|---|---|")
        for i, p in enumerate(full):
            for side in ("on", "off"):
                x, b = sandbox_run(p[side]), p[side]["bench"]
                w("| %d | %s | %s | %s | %s | %d | %d | %s |" % (
                    i + 1, side, f(x[0]), f(x[1], 3), f(x[2], 3), b["ok"], b["errors"],
                    f(x[3], 2)))
        w("")
        w("</details>")
        w("")
        if max(x[3] for x in on + off) > BUSY_CORES:
            flagged.append(label)
    if flagged:
        w("Other processes kept more than %.2f cores busy during some of these runs (%s): the "
          "req/s ratios carry that noise; the CPU-per-request ratios much less." % (
              BUSY_CORES, ", ".join(flagged)))
        w("")


def write_formats(R, w):
    """Lossy WebP and AVIF output against sharp (bench/formats.py's formats.json)."""
    doc = load(os.path.join(R.dir, "formats.json"))
    if not doc or not doc.get("cases"):
        return
    w("## Web output formats: lossy WebP and AVIF against sharp")
    w("")
    w("Every image resized to %d px wide (lanczos3), then encoded by each at the same quality "
      "number, one thread (bench/formats.py). Bytes: imgfilters ÷ sharp (< 1: imgfilters "
      "smaller); encode: median ms per image of the encode alone, and imgfilters ÷ sharp. The "
      "AVIF quality scales are each encoder's own (ravif/rav1e speed 6, 4:4:4, 10-bit against "
      "sharp's libaom effort 4, 4:4:4, 8-bit), so that row compares settings, not equal "
      "fidelity." % doc.get("width", 800))
    w("")
    w("| format | imgfilters KiB/image | sharp KiB/image | bytes ratio (all / per image min–max) "
      "| imgfilters encode ms | sharp encode ms | encode ratio |")
    w("|---|---|---|---|---|---|---|")
    for c in doc["cases"]:
        mine, other = c["imgfilters"], c.get("sharp")
        n = max(1, len(mine["bytes"]))
        kib = lambda d: f(sum(d["bytes"].values()) / n / 1024, 1)
        if other:
            per = [v for v in c.get("bytes_ratio", {}).values() if v is not None]
            spread = "%s–%s" % (f(min(per), 2), f(max(per), 2)) if per else ""
            w("| %s q%d | %s | %s | %s× (%s) | %s | %s | %s× |" % (
                c["format"], c["quality"], kib(mine), kib(other),
                f(c.get("bytes_ratio_total"), 2), spread, f(mine["encode_ms"], 1),
                f(other["encode_ms"], 1), f(c.get("encode_ms_ratio"), 2)))
        else:
            w("| %s q%d | %s | (sharp not run) | | %s | | |" % (
                c["format"], c["quality"], kib(mine), f(mine["encode_ms"], 1)))
    w("")


def profile_excerpt(path, lines=28):
    if not os.path.exists(path):
        return None
    out = []
    for line in open(path, errors="replace"):
        line = line.rstrip()
        if not line or line.startswith("#") and not line.startswith("## perf"):
            continue
        out.append(re.sub(r"(\s+-)+\s*$", "", line)[:150])
    return "\n".join(out[: lines * 2]) if out else None


# --- the plot ---------------------------------------------------------------------------------

def write_svg(R, path):
    """Grouped bars: images/s per implementation per job (all cores), plus the service."""
    N = R.cores
    series = [("imgfilters 1 core", lambda j: R.ip("imgfilters", j, 1), "#9ecae1")]
    series += [("%s %d cores" % (name.split(" (")[0], N), (lambda j, i=impl: R.ip(i, j, N)), col)
               for (impl, name), col in zip(IMPLS, ("#3182bd", "#e6550d", "#fd8d3c", "#31a354"))]
    series.append(("imgserver, 150 conns", lambda j: R.service.get(j), "#756bb1"))
    series = [s for s in series if any(s[1](j) for j, _ in JOBS)]
    vals = {(si, j): (s[1](j) or {}).get("images_per_s") for si, s in enumerate(series) for j, _ in JOBS}
    vmax = max([v for v in vals.values() if v] or [1])
    W, H, left, top, bottom = 860, 420, 60, 50, 90
    plot_h = H - top - bottom
    # The growth curves' panels go below the bars (report_growth.py).
    growth, growth_h = report_growth.svg_panels(R, H, W)
    group_w = (W - left - 20) / len(JOBS)
    bar_w = min(28, (group_w - 30) / max(1, len(series)))
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">' % (
             W, H + growth_h, W, H + growth_h),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="14" font-weight="bold">Images/s per implementation '
         'and job (same %d images, %s)</text>' % (left, len(R.manifest["images"]),
                                                  html.escape(R.meta.get("date", "")))]
    # Axis and grid.
    step = nice_step(vmax)
    v = 0.0
    while v <= vmax * 1.05:
        y = top + plot_h - plot_h * v / (vmax * 1.1)
        o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (left, W - 20, y, y))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (left - 6, y + 4, v))
        v += step
    for gi, (job, label) in enumerate(JOBS):
        x0 = left + gi * group_w + (group_w - bar_w * len(series)) / 2
        for si, s in enumerate(series):
            val = vals[(si, job)]
            if not val:
                continue
            h = plot_h * val / (vmax * 1.1)
            x = x0 + si * bar_w
            o.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: '
                     '%s images/s</title></rect>' % (x, top + plot_h - h, bar_w - 3, h, s[2],
                                                     html.escape(s[0]), html.escape(label), f(val)))
            o.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%s</text>' % (
                x + (bar_w - 3) / 2, top + plot_h - h - 3, f(val)))
        o.append('<text x="%.1f" y="%d" text-anchor="middle" font-size="12">%s</text>' % (
            left + gi * group_w + group_w / 2, top + plot_h + 18, html.escape(label)))
    # Legend.
    lx, ly = left, H - 45
    for s in series:
        o.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (lx, ly, s[2]))
        o.append('<text x="%d" y="%d">%s</text>' % (lx + 16, ly + 10, html.escape(s[0])))
        lx += 22 + 7 * len(s[0])
        if lx > W - 150:
            lx, ly = left, ly + 18
    o += growth
    o.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(o) + "\n")


def nice_step(vmax):
    raw = vmax / 5 or 1
    mag = 10 ** int(("%e" % raw).split("e")[1])
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collect-meta")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--images")
    ap.add_argument("--results")
    ap.add_argument("--md")
    ap.add_argument("--svg")
    ap.add_argument("--seconds", type=int, default=0)
    a = ap.parse_args()
    if a.collect_meta:
        collect_meta(a.collect_meta, a.mode, a.images)
        return 0
    R = Results(a.results)
    write_md(R, a.md, a.seconds)
    write_svg(R, a.svg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
