#!/usr/bin/env python3
"""changes: what a change moved, measured back to back: two builds of imgserver, before and
after, serving the same jobs in interleaved runs (python3 stdlib).

    python3 bench/changes.py --before DIR --after DIR --name NAME --dir IMAGES
                             [--jobs blur:2,grayscale,scale:50] [--conns 150] [--requests N]
                             [--pairs 3] [--memory] [--results DIR]

DIR is a build's target/release (imgserver, imgclient, libnetproto.so). Both servers run at
once on loopback, each with its own state directory; every job is sent by the *after* build's
`imgclient bench` (one client for both sides, so only the server differs), in pairs ordered
A B, B A, A B … (drift on a shared machine falls on both sides alike). Per run: requests per
second, p50 and p99, and the server's CPU per request (master and workers, from /proc), which
is what a change of the server's own work moves even when other load steals wall time. The
ratio after ÷ before is given as the median over pairs with its spread. With --memory,
bench/memory.py runs against each build too (idle connections before and after login, RSS
after they close, a large image's peak growth).

Writes RESULTS/changes-NAME.json and prints a Markdown table. Trust boundary: none; it runs
the project's own binaries on loopback.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import harness
import measure
import service


def log(msg):
    sys.stderr.write("changes: %s\n" % msg)
    sys.stderr.flush()


def run(server, client_rel, job, a, out):
    """One bench run of `job` against `server`; the record of service.bench."""
    meta = {"job": job, "conns": a.conns}
    args = ["--conns", str(a.conns), "--dir", a.dir, "--op", job, "--requests",
            str(a.requests), "--timeout", "600s"]
    saved = service.REL
    service.REL = client_rel
    try:
        return service.bench(server, out, meta, args, timeout=900, kind="changes")
    finally:
        service.REL = saved


def figures(rec):
    b, e = rec["bench"], rec["env"]
    ok = max(b["ok"], 1)
    return {"rps": b["throughput_rps"], "p50_ms": b["latency_ms"].get("p50"),
            "p99_ms": b["latency_ms"].get("p99"), "ok": b["ok"], "errors": b["errors"],
            "server_cpu_ms": 1e3 * e["server_cpu_s"] / ok, "other_cores": e.get("other_cores")}


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def memory(rel, results, name, side):
    """bench/memory.py against the build in `rel` (its own libnetproto.so and imgclient)."""
    out = os.path.join(results, "changes-%s-memory-%s.json" % (name, side))
    env = dict(os.environ, BENCH_BIN=rel)
    cmd = [sys.executable, os.path.join(harness.HERE, "memory.py"), "--results",
           tempfile.mkdtemp(prefix="changes-mem-"), "--json", out, "--conns", "2000",
           "--pre", "2000", "--megapixels", "20"]
    log("memory.py against %s" % rel)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        return None
    return harness.load_json(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the earlier build's target/release")
    ap.add_argument("--after", required=True, help="the later build's target/release")
    ap.add_argument("--name", required=True, help="what changed, for the file name")
    ap.add_argument("--dir", required=True, help="images every job is run on")
    ap.add_argument("--jobs", default="blur:2,grayscale,scale:50")
    ap.add_argument("--conns", type=int, default=150)
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--memory", action="store_true", help="also run memory.py on both")
    ap.add_argument("--before-label", default="before", help="what the earlier build is")
    ap.add_argument("--after-label", default="after", help="what the later build is")
    ap.add_argument("--md", help="Markdown file whose section NAME gets the table "
                    "(replaced if there, else appended)")
    ap.add_argument("--results", default=os.path.join(harness.HERE, ".cache", "results"))
    a = ap.parse_args()
    os.makedirs(a.results, exist_ok=True)
    work = tempfile.mkdtemp(prefix="imgbench-changes-")
    sides = {"before": os.path.abspath(a.before), "after": os.path.abspath(a.after)}
    servers = {}
    doc = {"name": a.name, "builds": sides, "conns": a.conns, "requests": a.requests,
           "dir": a.dir, "jobs": {}, "pairs": a.pairs,
           "labels": {"before": a.before_label, "after": a.after_label},
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        for side, rel in sides.items():
            servers[side] = service.Server(os.path.join(work, side),
                                           os.path.join(work, side + ".log"), rel=rel)
        for job in a.jobs.split(","):
            runs = {"before": [], "after": []}
            for k in range(a.pairs):
                order = ("before", "after") if k % 2 == 0 else ("after", "before")
                for side in order:
                    out = os.path.join(work, "%s-%s-%d.json" % (side, job.replace(":", "_"), k))
                    runs[side].append(figures(run(servers[side], sides["after"], job, a, out)))
            pairs = list(zip(runs["before"], runs["after"]))
            doc["jobs"][job] = {
                "runs": runs,
                "rps_ratio": spread([b2["rps"] / b1["rps"] for b1, b2 in pairs if b1["rps"]]),
                "cpu_ratio": spread([b2["server_cpu_ms"] / b1["server_cpu_ms"]
                                     for b1, b2 in pairs if b1["server_cpu_ms"]]),
                "p99_ratio": spread([b2["p99_ms"] / b1["p99_ms"] for b1, b2 in pairs
                                     if b1["p99_ms"] and b2["p99_ms"]]),
            }
    finally:
        for s in servers.values():
            s.stop()
    if a.memory:
        doc["memory"] = {side: memory(rel, a.results, a.name, side)
                         for side, rel in sides.items()}
    out = os.path.join(a.results, "changes-%s.json" % a.name)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(table(doc))
    log("wrote %s" % out)
    if a.md:
        write_section(a.md, doc)
        log("section %s of %s updated" % (a.name, a.md))
    shutil.rmtree(work, ignore_errors=True)


def table(doc):
    n = harness.num
    lines = ["| job | req/s before → after | server CPU ms/req before → after | after ÷ before "
             "req/s | CPU/req | p99 | errors | other load |",
             "|---|---|---|---|---|---|---|---|"]

    def x(s):
        if not s:
            return "n/a"
        return "%.2f× (%.2f–%.2f)" % (s["median"], s["min"], s["max"])

    for job, j in doc["jobs"].items():
        med = lambda side, k: statistics.median(r[k] for r in j["runs"][side])
        lines.append("| `%s` | %s → %s | %s → %s | %s | %s | %s | %d | %s cores |" % (
            job, n(med("before", "rps")), n(med("after", "rps")),
            n(med("before", "server_cpu_ms")), n(med("after", "server_cpu_ms")),
            x(j["rps_ratio"]), x(j["cpu_ratio"]), x(j["p99_ratio"]),
            sum(r["errors"] for s in j["runs"].values() for r in s),
            n(max(r["other_cores"] or 0 for s in j["runs"].values() for r in s), 2)))
    mem = doc.get("memory") or {}
    if mem.get("before") and mem.get("after"):
        b, a = mem["before"]["summary"], mem["after"]["summary"]
        lines += ["", "| master memory | before | after |", "|---|---|---|"]
        for key, label, unit in (
                ("pre_login_bytes_per_conn", "per idle connection, before login", " B"),
                ("logged_in_bytes_per_conn", "per idle connection, logged in", " B"),
                ("after_close_kib_over_rest", "RSS over rest once they closed", " KiB"),
                ("image_hwm_ratio", "large image: peak growth ÷ its size", "×")):
            lines.append("| %s | %s%s | %s%s |" % (label, n(b.get(key)), unit,
                                                  n(a.get(key)), unit))
    return "\n".join(lines)


def write_section(path, doc):
    """Replaces (or appends) the `## NAME` section of the Markdown file at `path`."""
    images = sorted(os.listdir(doc["dir"]))
    body = ["## %s" % doc["name"], "",
            "Before: %s. After: %s. Measured %s, %d interleaved pairs per job, %d requests per "
            "run at %d connections over %d images (%s)." % (
                doc["labels"]["before"], doc["labels"]["after"], doc["date"], doc["pairs"],
                doc["requests"], doc["conns"], len(images), os.path.basename(doc["dir"])),
            "", table(doc), ""]
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        text = ""
    head = "## %s\n" % doc["name"]
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:start] + "\n".join(body) + text[end:]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + "\n".join(body)
    with open(path, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    main()
