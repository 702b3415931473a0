#!/usr/bin/env python3
"""variants: what one decode for many outputs is worth (python3 stdlib).

N variants of one upload sent as one multi-output job (`imgclient bench --variants
'A;B;C'`: one upload, one decode per decode plan, N outputs) against the same N specs sent as
N separate jobs (`--op A --op B --op C`, round-robin: every image gets each spec). --pairs
interleaved pairs (A B, B A, ...), each run on a fresh server with the cache off. Per pair:
the wall-time ratio A/B per output (outputs per second, inverted) and the CPU ratio A/B per
output (server and client CPU-seconds per output); reported as the median with the min-max
spread over the pairs. Below 1.0 the multi-output job is cheaper.

Writes RESULTS/variants.json and RESULTS/goals-variants.json (the goals convention report.py
appends to RESULTS.md; RESULTS is --results, by default run.sh's bench/.cache/results), and
prints a summary. Every process it starts is stopped on exit.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

import harness  # noqa: E402
from harness import HERE, ROOT  # noqa: E402
sys.path.insert(0, HERE)
import measure  # noqa: E402

USER, PASSWORD = "bench", "variants-password"
# Goal: the shared upload and decode should save at least a tenth of the work per output.
GOAL = 0.9
DEFAULT = "thumbnail:320,format:webp;thumbnail:640,format:webp;thumbnail:1280,format:jpeg:80"


def log(msg):
    sys.stderr.write("variants: %s\n" % msg)
    sys.stderr.flush()


class Server(harness.Server):
    def __init__(self, work, name, workers):
        workdir = os.path.join(work, name)
        flags = ["--workers", str(workers), "--request-rate", "0", "--conn-rate-per-addr", "0",
                 "--cache-size", "0"]
        super().__init__(workdir, os.path.join(workdir, "server.log"), USER, PASSWORD, flags)

    def pids(self):
        return [self.proc.pid] + measure.children_of(self.proc.pid)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=os.path.join(HERE, ".cache", "results"))
    ap.add_argument("--images", default=os.path.join(ROOT, "samples"))
    ap.add_argument("--variants", default=DEFAULT, help="the variant list (';'-separated specs)")
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    os.makedirs(a.results, exist_ok=True)
    specs = a.variants.split(";")
    n_out = len(specs)

    work = tempfile.mkdtemp(prefix="imgbench-variants-")
    known = os.path.join(work, "known_servers")
    common = ["--conns", str(a.conns), "--duration", "%gs" % a.seconds, "--dir", a.images]
    sides = {"multi": common + ["--variants", a.variants],
             "separate": common + sum((["--op", s] for s in specs), [])}
    timeout = a.seconds * 4 + 60
    runs = []
    try:
        n = 0
        for k in range(a.pairs):
            order = ("multi", "separate") if k % 2 == 0 else ("separate", "multi")
            pair = {"pair": k}
            for side in order:
                n += 1
                srv = Server(work, "run%d-%s" % (n, side), a.workers)
                try:
                    res, info = harness.bench(srv.addr, known, USER, PASSWORD, sides[side],
                                              srv.pids(), timeout)
                finally:
                    srv.stop()
                outputs = res["ok"] * (n_out if side == "multi" else 1)
                cpu = info["self_cpu_s"] + info["watched_cpu_s"]
                pair[side] = {"bench": res, "env": info, "outputs": outputs,
                              "outputs_per_s": outputs / max(res["elapsed_s"], 1e-9),
                              "cpu_per_output_ms": 1000 * cpu / max(outputs, 1)}
            m, s = pair["multi"], pair["separate"]
            pair["wall_ratio"] = s["outputs_per_s"] / max(m["outputs_per_s"], 1e-9)
            pair["cpu_ratio"] = m["cpu_per_output_ms"] / max(s["cpu_per_output_ms"], 1e-9)
            runs.append(pair)
            log("pair %d: multi %.0f outputs/s %.2f CPU-ms each, separate %.0f outputs/s %.2f "
                "CPU-ms each" % (k, m["outputs_per_s"], m["cpu_per_output_ms"],
                                 s["outputs_per_s"], s["cpu_per_output_ms"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    wall = [r["wall_ratio"] for r in runs]
    cpu = [r["cpu_ratio"] for r in runs]
    summary = {"wall_ratio": statistics.median(wall), "wall_ratios": wall,
               "cpu_ratio": statistics.median(cpu), "cpu_ratios": cpu}
    with open(os.path.join(a.results, "variants.json"), "w") as f:
        json.dump({"variants": a.variants, "conns": a.conns, "seconds": a.seconds,
                   "workers": a.workers, "cores": os.cpu_count(), "runs": runs,
                   "summary": summary}, f, indent=1)
    x = lambda v: "%.2fx" % v  # noqa: E731
    what = "%d variants (%s) over %s, %d conns, %d workers" % (
        n_out, a.variants, os.path.basename(os.path.normpath(a.images)), a.conns, a.workers)
    goals = [
        {"target": "one multi-output job vs separate jobs, wall time per output: %s" % what,
         "measured": x(summary["wall_ratio"]), "spread": harness.spread(wall, x),
         "cpu_normalised": "", "goal": "<= %.1fx" % GOAL,
         "status": harness.goal_status(wall, GOAL, False), "pairs": len(runs)},
        {"target": "one multi-output job vs separate jobs, CPU per output (server + client)",
         "measured": x(summary["cpu_ratio"]), "spread": harness.spread(cpu, x),
         "cpu_normalised": x(summary["cpu_ratio"]), "goal": "<= %.1fx" % GOAL,
         "status": harness.goal_status(cpu, GOAL, False), "pairs": len(runs)},
    ]
    with open(os.path.join(a.results, "goals-variants.json"), "w") as f:
        json.dump(goals, f, indent=1)
    print("multi-output / separate on %s: %.2fx wall time per output (spread %s), %.2fx CPU "
          "per output (spread %s)" % (what, summary["wall_ratio"],
                                      harness.spread(wall, x) or "one pair",
                                      summary["cpu_ratio"], harness.spread(cpu, x) or "one pair"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
