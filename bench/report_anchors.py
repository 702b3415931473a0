"""report_anchors: RESULTS.md's "Service anchors" section and goal rows (stdlib only).

Reads what bench/anchors.py wrote into the results directory (anchors.json and
goals-anchors.json) and renders it for bench/report.py, which calls goal_rows() inside its
targets table and write_anchors() for the section. No trust boundary: local files the harness
wrote itself; a missing or unreadable file leaves the section out.
"""

import os
import re
import statistics

import harness

SERVERS = ("imgserver", "thumbor", "ipx")
BUSY_CORES = 0.25  # as report.py: other processes' busy cores above which runs are flagged


def _load(results, name):
    return harness.load_json(os.path.join(results, name))


_f = harness.num


def _x(s):
    """A ratio spread as 'median× (min–max×)'."""
    if not s or not s.get("values"):
        return "n/a"
    if len(s["values"]) == 1:
        return "%.2f× (one pair)" % s["median"]
    return "%.2f× (%.2f–%.2f×)" % (s["median"], s["min"], s["max"])


def goal_rows(results):
    """Markdown rows for report.py's targets table (target | measured | from | goal | status |
    CPU-normalised), from goals-anchors.json."""
    rows = _load(results, "goals-anchors.json") or []
    out = []
    for r in rows:
        st = r.get("status", "")
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            r.get("target", ""), r.get("measured", ""),
            "median of interleaved pairs, spread %s" % r["spread"] if r.get("spread") else "",
            r.get("goal", ""), st if st == "met" else "**%s**" % st, r.get("cpu_normalised", "")))
    return out


def write_anchors(results, w):
    a = _load(results, "anchors.json")
    if not a:
        return
    runs = a["runs"]
    img = a["image"]
    anchors = [s for s in SERVERS[1:] if any(r["server"] == s for r in runs)]
    w("## Service anchors: thumbor and ipx")
    w("")
    w("The same image (`%s`, %s %dx%d, %s KiB) and the same op (%s, the answer in the input's "
      "format) through three services on this machine at %d connections each, closed loop: "
      "imgserver driven by `imgclient bench --conns %d` (encrypted, its own protocol), "
      "thumbor and ipx by `wrk -c %d` (plain HTTP/1.1 keep-alive, %d threads). Runs of %g s "
      "alternate imgserver, thumbor, imgserver, ipx, … for %d pair%s, and each ratio is taken "
      "between a run and the imgserver run right before it, then the median over the pairs "
      "with the min–max spread. After every run the harness waits until the server's process "
      "tree is idle again, so no run shares the cores with the last one's leftovers." % (
          img["file"], img["format"].upper(), img["width"], img["height"],
          img["bytes"] // 1024 if "bytes" in img else "?", a["op"], a["conns"], a["conns"],
          a["conns"], a["cores"], a["seconds"], a["pairs"], "" if a["pairs"] == 1 else "s"))
    w("")
    ck = a.get("checked", {})
    req = a.get("requests", {})
    w("| service | request | what it does for σ2 | checked answer |")
    w("|---|---|---|---|")
    what = {
        "imgserver": "Gaussian σ2, 11 taps (radius 5), in its filter workers",
        "thumbor": "`blur(radius, σ)`: Gaussian σ2 cut at the same radius 5; Pillow engine, "
                   "file loader, no storage, `--processes %d`" % a["cores"],
        "ipx": "sharp `blur(2)` = libvips `gaussblur` σ2 at sharp's defaults: integer weights, "
               "the kernel cut where it falls below 0.2 of its peak (about 7 taps); one Node "
               "process, libvips threads",
    }
    for s in SERVERS:
        if s in ck:
            c = ck[s]
            w("| %s | `%s` | %s | %s %dx%d, %d B |" % (s, req.get(s, ""), what[s],
                                                     c["format"], c["width"], c["height"],
                                                     c["bytes"]))
    w("")
    ver = a.get("versions", {})
    w("Versions: %s." % ", ".join("%s %s" % (k, v) for k, v in ver.items() if v))
    w("")

    w("| service | req/s (median) | p50 ms | p99 ms | connections ÷ req/s, ms | "
      "server CPU ms/req | client CPU ms/req | answered per connection | errors | other cores |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for s in SERVERS:
        rs = [r for r in runs if r["server"] == s]
        if not rs:
            continue
        med = lambda k: statistics.median(r[k] for r in rs if r.get(k) is not None)  # noqa: E731
        w("| %s | %s | %s | %s | %s | %s | %s | %s | %d | %s |" % (
            s, _f(med("rps")), _f(med("p50_ms")), _f(med("p99_ms")),
            _f(1e3 * a["conns"] / med("rps")) if med("rps") else "n/a",
            _f(med("server_cpu_ms_per_req"), 1), _f(med("client_cpu_ms_per_req"), 1),
            _f(statistics.median(r["ok"] / a["conns"] for r in rs), 1),
            sum(r["errors"] for r in rs), _f(max(r["other_cores"] for r in rs), 2)))
    w("")
    w("| imgserver vs | req/s ratio | CPU-normalised (server CPU per request, theirs ÷ ours) | "
      "their p50 ÷ our p99 | goal |")
    w("|---|---|---|---|---|")
    for s in anchors:
        r = a["ratios"].get(s)
        if r:
            w("| %s | %s | %s | %s | ≥ %g× req/s, p99 below their p50 |" % (
                s, _x(r["rps"]), _x(r["cpu"]), _x(r["p50_over_p99"]), a["goals"][s]))
    w("")
    others = [r["other_cores"] for r in runs]
    if max(others) > BUSY_CORES:
        w("Other processes kept %.2f cores busy on average (up to %.2f) of %d during these runs: "
          "each service got what the scheduler left it, so the req/s ratios carry that noise "
          "(a service with fewer runnable threads loses more of its share); the CPU-normalised "
          "ratios much less." % (statistics.mean(others), max(others), a["cores"]))
        w("")
    w("Status of a goal: *met* when every pair meets it, *met only within the spread* when "
      "some pairs do and some do not, *missed* when none does.")
    w("")
    w("*Server CPU per request* is the CPU time of the server's whole process tree (from "
      "/proc: thumbor's forked processes, node with its libvips threads, imgserver's master "
      "and workers) over the run and its tail until idle, divided by the answered requests "
      "plus, for wrk, the %d requests still in flight when it stops (wrk never reads those "
      "answers; the servers still do the work). It does not depend on what other processes "
      "left the run, so it is the CPU-normalised figure. wrk's percentiles cover only the "
      "answered requests: when a run answers only a few requests per connection the slowest "
      "are missing from them, which flatters the anchors' p50. *Connections ÷ req/s* is the "
      "mean time a request spends in a closed loop that keeps every connection busy (Little's "
      "law): where it is far above the p50, the percentiles saw only the early answers." %
      a["conns"])
    w("")
    w("<details><summary>every run, in the order run</summary>")
    w("")
    w("| # | pair | service | req/s | p50 ms | p99 ms | answered | errors | server CPU ms/req "
      "| tail after the run (s) | other cores |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        w("| %d | %d | %s | %s | %s | %s | %d | %d | %s | %s%s | %s |" % (
            r["order"] + 1, r["pair"] + 1, r["server"] + ("" if r["server"] != "imgserver"
                                                         else " (vs %s)" % r["vs"]),
            _f(r["rps"]), _f(r["p50_ms"]), _f(r["p99_ms"]), r["ok"], r["errors"],
            _f(r["server_cpu_ms_per_req"], 1), _f(r["tail_wait_s"], 1),
            "" if r.get("tail_idle", True) else " (not idle)", _f(r["other_cores"], 2)))
    w("")
    cmds = {}
    for r in runs:
        cmds.setdefault(r["server"], " ".join(r["cmd"]))
    for s, c in cmds.items():
        w("- %s: `%s`" % (s, re.sub(r"--dir \S+/", "--dir …/", c)))
    w("")
    w("</details>")
    w("")
