#!/usr/bin/env python3
"""cache: what the result cache and collapsed requests are worth (python3 stdlib).

(a) A repeat-heavy workload: `imgclient bench --zipf S` draws each request's image from the
image set by popularity (Zipf, seeded: both sides get the same request stream). --pairs
interleaved pairs (A B, B A, A B ...), each run on a fresh server so that every run starts with
an empty cache: A has the result cache on (--cache-size, default the server's default), B off
(--cache-size 0). Per pair: the throughput ratio A/B, the p99 ratio A/B, the same throughput
ratio CPU-normalised (requests per CPU-second of server and client together), and A's hit
ratio (hits / (hits + misses + collapsed)) from the server's counters. Reported as the median
with the min-max spread over the pairs.

(b) --conns connections asking for the same image at once (one request each, on a fresh
cache-on server): the number of jobs the workers ran (the goal is 1), and how the others were
answered (collapsed onto it while it ran, or hits after).

Writes RESULTS/cache.json and RESULTS/goals-cache.json (the goals convention report.py
appends to RESULTS.md; RESULTS is --results, by default run.sh's bench/.cache/results), and
prints a summary. Every process it starts is stopped on exit.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import harness  # noqa: E402
from harness import HERE, REL, ROOT  # noqa: E402,F401
sys.path.insert(0, HERE)
import measure  # noqa: E402

USER, PASSWORD = "bench", "cache-password"
# Goals: on a workload where most requests repeat, answering from memory should at least
# double throughput and halve the tail; one identical burst should cost one worker run.
THROUGHPUT_GOAL = 2.0
P99_GOAL = 0.5


def log(msg):
    sys.stderr.write("cache: %s\n" % msg)
    sys.stderr.flush()


class Server(harness.Server):
    def __init__(self, work, name, workers, cache):
        workdir = os.path.join(work, name)
        flags = ["--workers", str(workers),
                 # As service.py: --conns connections from 127.0.0.1 a run.
                 "--request-rate", "0", "--conn-rate-per-addr", "0",
                 "--cache-size", cache]
        super().__init__(workdir, os.path.join(workdir, "server.log"), USER, PASSWORD, flags)

    def pids(self):
        return [self.proc.pid] + measure.children_of(self.proc.pid)

    def counters(self):
        r = subprocess.run([os.path.join(REL, "imgserver"), "stats", "--json", "--state-dir",
                            self.state], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("imgserver stats failed: %s" % r.stderr.strip())
        flat = {}

        def walk(d):
            for k, v in d.items():
                if isinstance(v, dict):
                    walk(v)
                elif isinstance(v, int) and not isinstance(v, bool):
                    flat.setdefault(k, v)
        walk(json.loads(r.stdout))
        return flat


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=os.path.join(HERE, ".cache", "results"))
    ap.add_argument("--images", default=os.path.join(ROOT, "samples"))
    ap.add_argument("--op", default="thumbnail:256")
    ap.add_argument("--zipf", default="1.1", help="Zipf exponent of the repeat-heavy workload")
    ap.add_argument("--cache-size", default="64MiB", help="the cache-on side's --cache-size")
    ap.add_argument("--conns", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    os.makedirs(a.results, exist_ok=True)

    work = tempfile.mkdtemp(prefix="imgbench-cache-")
    known = os.path.join(work, "known_servers")
    # A closed loop of 150 connections on 2 workers queues each cache-off answer for seconds
    # (~4 s here): the per-answer timeout (imgclient's default 10 s) must outlast that queue
    # on a slower machine too, or queueing is counted as errors.
    timeout = a.seconds * 4 + 60
    args = ["--conns", str(a.conns), "--duration", "%gs" % a.seconds, "--op", a.op,
            "--dir", a.images, "--zipf", a.zipf, "--seed", "1", "--timeout", "%ds" % timeout]
    runs, burst = [], None
    try:
        n = 0
        for k in range(a.pairs):
            # A B, then B A, ...: neither side always runs first.
            order = ("on", "off") if k % 2 == 0 else ("off", "on")
            pair = {"pair": k}
            for side in order:
                n += 1
                srv = Server(work, "run%d-%s" % (n, side), a.workers,
                             a.cache_size if side == "on" else "0")
                try:
                    res, info = harness.bench(srv.addr, known, USER, PASSWORD, args,
                                              srv.pids(), timeout)
                    pair[side] = {"bench": res, "env": info, "counters": srv.counters()}
                finally:
                    srv.stop()
            c = pair["on"]["counters"]
            looked = c.get("cache_hits", 0) + c.get("cache_misses", 0) + \
                c.get("cache_collapsed", 0)
            pair["hit_ratio"] = c.get("cache_hits", 0) / max(1, looked)
            runs.append(pair)
            log("pair %d: cache on %.0f req/s p99 %.1f ms (hit ratio %.1f%%), off %.0f req/s "
                "p99 %.1f ms" % (k, pair["on"]["bench"]["throughput_rps"],
                                 pair["on"]["bench"]["latency_ms"].get("p99", 0),
                                 100 * pair["hit_ratio"],
                                 pair["off"]["bench"]["throughput_rps"],
                                 pair["off"]["bench"]["latency_ms"].get("p99", 0)))

        # (b) one image, --conns connections, one request each, all at once.
        one = os.path.join(work, "one")
        os.makedirs(one)
        first = sorted(f for f in os.listdir(a.images) if f.endswith((".jpg", ".png")))[0]
        shutil.copy(os.path.join(a.images, first), one)
        srv = Server(work, "burst", a.workers, a.cache_size)
        try:
            res, _ = harness.bench(srv.addr, known, USER, PASSWORD, ["--conns", str(a.conns), "--requests", str(a.conns),
                                        "--op", a.op, "--dir", one], srv.pids(), timeout)
            c = srv.counters()
        finally:
            srv.stop()
        burst = {"image": first, "requests": a.conns, "ok": res["ok"],
                 "worker_jobs": c.get("worker_jobs_total"),
                 "collapsed": c.get("cache_collapsed", 0), "hits": c.get("cache_hits", 0)}
        log("burst: %d requests for %s: %d ok, %s worker jobs, %d collapsed, %d hits" % (
            a.conns, first, res["ok"], burst["worker_jobs"], burst["collapsed"], burst["hits"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    tput, p99, cpu, hits = [], [], [], []
    for r in runs:
        A, B = r["on"], r["off"]
        tput.append(A["bench"]["throughput_rps"] / max(B["bench"]["throughput_rps"], 1e-9))
        p99.append(A["bench"]["latency_ms"].get("p99", 0) /
                   max(B["bench"]["latency_ms"].get("p99", 0), 1e-9))
        cpu_a = A["env"]["self_cpu_s"] + A["env"]["watched_cpu_s"]
        cpu_b = B["env"]["self_cpu_s"] + B["env"]["watched_cpu_s"]
        cpu.append((A["bench"]["ok"] / max(cpu_a, 1e-9)) /
                   max(B["bench"]["ok"] / max(cpu_b, 1e-9), 1e-9))
        hits.append(r["hit_ratio"])
    summary = {"throughput_ratio": statistics.median(tput), "throughput_ratios": tput,
               "p99_ratio": statistics.median(p99), "p99_ratios": p99,
               "cpu_normalised_ratio": statistics.median(cpu), "cpu_ratios": cpu,
               "hit_ratio": statistics.median(hits), "hit_ratios": hits, "burst": burst}
    with open(os.path.join(a.results, "cache.json"), "w") as f:
        json.dump({"op": a.op, "zipf": a.zipf, "conns": a.conns, "seconds": a.seconds,
                   "workers": a.workers, "cache_size": a.cache_size, "cores": os.cpu_count(),
                   "runs": runs, "summary": summary}, f, indent=1)

    x = lambda v: "%.2fx" % v  # noqa: E731
    pct = lambda v: "%.1f%%" % (100 * v)  # noqa: E731
    what = "Zipf(%s) over %s, %s, %d conns, %d workers" % (
        a.zipf, os.path.basename(os.path.normpath(a.images)), a.op, a.conns, a.workers)
    goals = [
        {"target": "cache on vs off, throughput: %s; hit ratio %s" % (
            what, pct(summary["hit_ratio"])),
         "measured": x(summary["throughput_ratio"]), "spread": harness.spread(tput, x),
         "cpu_normalised": "%s (%s)" % (x(summary["cpu_normalised_ratio"]),
                                        harness.spread(cpu, x) or "one pair"),
         "goal": ">= %.1fx" % THROUGHPUT_GOAL,
         "status": harness.goal_status(tput, THROUGHPUT_GOAL, True), "pairs": len(runs)},
        {"target": "cache on vs off, p99 latency: same workload",
         "measured": x(summary["p99_ratio"]), "spread": harness.spread(p99, x), "cpu_normalised": "",
         "goal": "<= %.1fx" % P99_GOAL, "status": harness.goal_status(p99, P99_GOAL, False),
         "pairs": len(runs)},
        {"target": "%d connections, the same image at once: worker jobs run (%d collapsed, "
                   "%d hits, %d ok)" % (a.conns, burst["collapsed"], burst["hits"], burst["ok"]),
         "measured": str(burst["worker_jobs"]), "spread": "", "cpu_normalised": "",
         "goal": "1", "status": "met" if burst["worker_jobs"] == 1 and
         burst["ok"] == a.conns else "missed", "pairs": 1},
    ]
    with open(os.path.join(a.results, "goals-cache.json"), "w") as f:
        json.dump(goals, f, indent=1)
    print("cache on / off on %s: %.2fx throughput (spread %s), %.2fx p99, %.2fx "
          "CPU-normalised, hit ratio %.1f%%; burst of %d: %s worker job(s)" % (
              what, summary["throughput_ratio"], harness.spread(tput, x) or "one pair",
              summary["p99_ratio"], summary["cpu_normalised_ratio"],
              100 * summary["hit_ratio"], a.conns, burst["worker_jobs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
