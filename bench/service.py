#!/usr/bin/env python3
"""service: the end-to-end measurements through imgserver (python3 stdlib; called by run.sh).

Starts imgserver on a free loopback port with a throwaway state directory and a bench user,
pins its key, then drives `imgclient bench` (closed loop, encrypted), every comparison as
--pairs interleaved pairs (A B A B ...: drift and bursts of outside load on a shared machine
fall on both sides of a pair alike, and report.py takes each ratio per pair, then the median
and the min-max spread over the pairs):
  - per job (blur2, resize50, gray): the job at --conns connections over the image set, then
    its in-process sides on every core (PAIR_SIDES: imgfilters, and sharp with --sharp),
    round after round;
  - PING at --conns connections, then redis-benchmark's PING (with --redis), round after round;
  - a no-op job on a tiny image, then PING, one connection each (their p50 difference);
and stops the server (SIGTERM, then SIGKILL), also on errors and Ctrl-C. Then the sandbox
cost (sandbox_cost): two more servers side by side, the default (workers under the seccomp
allow-list and Landlock) and `--sandbox none`, same flags otherwise, and blur2 over the image
set and the no-op job on the tiny image at --conns connections, alternated on, off, on, off
for --sandbox-pairs pairs.

resize50 is sent as `scale:50`, which resizes every image to exactly half of each side
(rounded down) with Lanczos3: the same pixels as the per-image `resize:WxH:exact:lanczos3`
the in-process runs use (imgfilters tests this), so one run covers the whole mixed set like
every other job.

Every run writes a JSON file to RESULTS: service-JOB-pK.json, service-ping-cC-pK.json,
service-{noop,ping}-c1-K.json (imgclient's JSON "bench", what was run, and the CPU time of
the client, of the server (master + workers) and of everything else meanwhile),
pair-IMPL-JOB-pK.json (the in-process sides, measure.py's shape), redis-ping-cC-pK.json and
sandbox-*.json.
"""

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import harness
import measure

from harness import HERE, REL, ROOT  # noqa: F401 (other scripts take them from here)
PASSWORD = "bench-password"


def log(msg):
    sys.stderr.write("service: %s\n" % msg)
    sys.stderr.flush()


class Server(harness.Server):
    """The service under test: harness.Server with the bench's user and the admission limits
    that would count a load generator's connections as abuse lifted."""

    def __init__(self, workdir, logpath, extra=(), rel=None):
        # --request-rate 0: the PING rows measure the protocol path, not the flood limit
        # (1000 a second per connection by default; README.md, "End to end").
        # --conn-rate-per-addr 0: every row opens 150 connections from 127.0.0.1 within a
        # second or two of the last, which the per-address connection rate (64 a second after a
        # burst of 256) would refuse and the run would count as errors.
        super().__init__(workdir, logpath, "bench", PASSWORD,
                         ["--request-rate", "0", "--conn-rate-per-addr", "0"] + list(extra),
                         rel=rel)
        self.env = dict(os.environ, IMGSERVER_ADDR=self.addr, IMGCLIENT_USER="bench",
                        IMGCLIENT_PASSWORD=PASSWORD,
                        IMGCLIENT_KNOWN_SERVERS=os.path.join(workdir, "known_servers"))

    def sandbox(self):
        """The server's own account of its workers' confinement (`imgserver stats`)."""
        r = subprocess.run([os.path.join(REL, "imgserver"), "stats", "--state-dir", self.state],
                           capture_output=True, text=True, timeout=30)
        for line in r.stdout.splitlines():
            if line.startswith("worker sandbox:"):
                return line.split(":", 1)[1].strip()
        return "unknown (imgserver stats exited %s)" % r.returncode

    def pids(self):
        return [self.proc.pid] + measure.children_of(self.proc.pid)


def bench(server, out_path, meta, args, timeout, kind="service"):
    """One `imgclient bench` run, measured; writes out_path; returns the record."""
    raw = out_path + ".raw"
    cmd = [os.path.join(REL, "imgclient"), "bench", "--json", raw] + args
    log(" ".join(cmd[2:]))
    pids = server.pids()
    rc, out, err, env = measure.run_self_cpu(cmd, timeout, server.env, watch=pids)
    if rc != 0 or not os.path.exists(raw):
        sys.stderr.write(out + err)
        raise RuntimeError("imgclient bench failed (exit %s)" % rc)
    with open(raw) as f:
        result = json.load(f)
    os.remove(raw)
    env["client_cpu_s"] = env.pop("self_cpu_s")
    env["server_cpu_s"] = env.pop("watched_cpu_s")
    record = dict(meta, kind=kind, args=args, bench=result, env=env, summary=out)
    with open(out_path, "w") as f:
        json.dump(record, f, indent=1)
    b = result
    log("  %d ok, %d errors, %.1f req/s, p50 %.3f ms" % (
        b["ok"], b["errors"], b["throughput_rps"], b["latency_ms"].get("p50", 0)))
    return record


def requests_for(n_images, mp_each, rate_mp, seconds, conns):
    """Requests for about `seconds` of work at the in-process rate, at least one per
    connection, a whole number of rounds over the images (each sent equally often)."""
    want = rate_mp * seconds / max(mp_each, 1e-9) if rate_mp > 0 else conns
    want = max(conns, want)
    return int(math.ceil(want / n_images) * n_images)


def _interrupt(*_):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--tiny", required=True, help="directory with the no-op probe image")
    ap.add_argument("--manifest", required=True, help="imgbench list output")
    ap.add_argument("--results", required=True)
    ap.add_argument("--conns", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=20, help="target length of a job run")
    ap.add_argument("--smoke", action="store_true",
                    help="short runs by duration (1 s; the sandbox runs: --sandbox-seconds)")
    ap.add_argument("--latency-seconds", type=float, default=5,
                    help="length of each one-connection probe run")
    ap.add_argument("--ping-seconds", type=float, default=10,
                    help="length of the PING run at --conns connections")
    ap.add_argument("--perf", action="store_true",
                    help="also profile a blur run system-wide with perf")
    ap.add_argument("--jobs", default="blur2,resize50,gray")
    ap.add_argument("--pairs", type=int, default=3,
                    help="interleaved service / in-process (and PING / redis, no-op / PING) "
                    "pairs per job")
    ap.add_argument("--inproc-repeat", type=int, default=2,
                    help="passes of each in-process side of a pair (at least)")
    ap.add_argument("--inproc-min-time", type=float, default=3,
                    help="seconds of passes of each in-process side of a pair (at least)")
    ap.add_argument("--sharp", default="",
                    help="command line (shell words) of the sharp runner with its encoder "
                    "settings; empty: no sharp pairs")
    ap.add_argument("--redis", default="",
                    help="HOST:PORT of a redis-server for the PING pairs; empty: none")
    ap.add_argument("--redis-n", type=int, default=100000,
                    help="requests of each redis-benchmark run")
    ap.add_argument("--sandbox-pairs", type=int, default=5,
                    help="sandbox cost: on/off pairs per job (0: skip the step)")
    ap.add_argument("--sandbox-seconds", type=float, default=10,
                    help="sandbox cost: target length of one blur run")
    ap.add_argument("--sandbox-noop-seconds", type=float, default=5,
                    help="sandbox cost: length of one no-op run")
    a = ap.parse_args()

    with open(a.manifest) as f:
        manifest = json.load(f)
    n = len(manifest["images"])
    work = tempfile.mkdtemp(prefix="imgbench-svc-")
    server = None
    # SIGTERM (timeout, the harness' trap) unwinds like Ctrl-C, through the finally below.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server = Server(work, os.path.join(a.results, "server.log"))
        log("imgserver %s, workers %s" % (server.addr, server.pids()[1:]))
        # Untimed warm-up, as imgbench's figures are medians over passes after its own: the
        # fresh workers see every image once (allocator arenas, first page faults of large
        # buffers) before anything is measured.
        log("warm-up: one untimed pass of the image set")
        warm_up(server, a.images, n)
        for job in a.jobs.split(","):
            job_pairs(server, a, manifest, job)
        ping_pairs(server, a)

        if a.perf and shutil.which("perf"):
            profile_service(server, a, n)
        # The sandbox comparison runs on two fresh servers of its own; this one idles out.
        server.stop()
        if a.sandbox_pairs > 0:
            sandbox_cost(a, manifest, work)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def inproc(a, impl, job, out):
    """One in-process run of `job` on every core, measured (measure.py): imgfilters (imgbench)
    or sharp (the --sharp command). The other side of a service-vs-X pair."""
    if impl == "imgfilters":
        cmd = [os.path.join(REL, "imgbench"), "run"]
    else:
        cmd = shlex.split(a.sharp)
    cmd += ["--job", job, "--procs", str(os.cpu_count()), "--images", a.images,
            "--repeat", str(a.inproc_repeat), "--min-time", "%g" % a.inproc_min_time]
    log("in-process %s %s -> %s" % (impl, job, os.path.basename(out)))
    subprocess.run([sys.executable, os.path.join(HERE, "measure.py"), "--out", out,
                    "--timeout", "600", "--"] + cmd, check=True, capture_output=True,
                   timeout=700)


# The in-process sides of each job's pairs: (impl, in-process job). The service always runs
# imgfilters' defaults (shrink-on-load on), so its resize is held against imgfilters' own
# resize50d, and against sharp both at the same work as the other implementations (resize50,
# no shrink-on-load) and at sharp's defaults (resize50d).
PAIR_SIDES = {
    "blur2": [("imgfilters", "blur2"), ("sharp", "blur2")],
    "resize50": [("imgfilters", "resize50d"), ("sharp", "resize50"), ("sharp", "resize50d")],
    "gray": [("imgfilters", "gray"), ("sharp", "gray")],
}


def service_load(a, rate_mp, set_mp, n):
    """(imgclient load arguments, expected seconds) of one service run over the set."""
    if a.smoke:
        return ["--duration", "1s"], 1
    r = requests_for(n, set_mp / n, rate_mp, a.seconds, a.conns)
    return ["--requests", str(r)], (r * (set_mp / n) / rate_mp if rate_mp else 60)


def job_pairs(server, a, manifest, job):
    """`a.pairs` rounds of: the job through the service, then each of its in-process sides
    (PAIR_SIDES), so every service-vs-X ratio comes from runs next to each other and drift or
    a burst of outside load falls on both sides of a pair alike. Writes
    RESULTS/service-JOB-pK.json and RESULTS/pair-IMPL-INJOB-pK.json."""
    n = len(manifest["images"])
    set_mp = sum(i["mp"] for i in manifest["images"])
    specs = {i["specs"][job] for i in manifest["images"]}
    # resize50 is one spec per image size in-process; `scale:50` is the same pixels in one
    # run over the whole set (imgfilters tests this). Every other job has one spec.
    if job == "resize50":
        specs = {"scale:50"}
    if len(specs) != 1:
        raise RuntimeError("%s: more than one op spec over the set" % job)
    spec = specs.pop()
    rate_mp = 0.0
    base = os.path.join(a.results, "inproc-imgfilters-%s-p%d.json" % (job, os.cpu_count()))
    if os.path.exists(base):
        with open(base) as f:
            rate_mp = json.load(f)["mp_per_s"]
    load, expect = service_load(a, rate_mp, set_mp, n)
    # In a closed loop of 150 a job waits for the ~149 queued before it: the client's
    # per-answer timeout (default 10 s) must outlast that queue.
    budget = 120 + 10 * expect
    sides = [s for s in PAIR_SIDES.get(job, [("imgfilters", job)])
             if s[0] != "sharp" or a.sharp]
    for k in range(a.pairs):
        meta = {"job": job, "spec": spec, "images": [i["file"] for i in manifest["images"]],
                "group_mp": set_mp, "set_images": n, "set_mp": set_mp, "conns": a.conns,
                "pair": k}
        bench(server, os.path.join(a.results, "service-%s-p%d.json" % (job, k)), meta,
              ["--conns", str(a.conns), "--dir", a.images, "--op", spec,
               "--timeout", "%ds" % min(600, budget)] + load, timeout=budget + 60)
        for impl, injob in sides:
            inproc(a, impl, injob, os.path.join(
                a.results, "pair-%s-%s-p%d.json" % (impl, injob, k)))


def ping_pairs(server, a):
    """PING at --conns connections against redis-benchmark's (with --redis), and the no-op job
    against PING at one connection, each as `a.pairs` interleaved pairs (A B A B ...)."""
    pings = "%gs" % (1 if a.smoke else a.ping_seconds)
    lat = "%gs" % (1 if a.smoke else a.latency_seconds)
    for k in range(a.pairs):
        bench(server, os.path.join(a.results, "service-ping-c%d-p%d.json" % (a.conns, k)),
              {"job": "ping", "conns": a.conns, "pair": k},
              ["--conns", str(a.conns), "--op", "ping", "--duration", pings], timeout=120)
        if a.redis:
            redis_bench(a, os.path.join(a.results, "redis-ping-c%d-p%d.json" % (a.conns, k)))
    for k in range(a.pairs):
        for job, op in (("noop", "noop"), ("ping", "ping")):
            bench(server, os.path.join(a.results, "service-%s-c1-%d.json" % (job, k)),
                  {"job": job, "conns": 1, "pair": k},
                  ["--conns", "1", "--dir", a.tiny, "--op", op, "--duration", lat],
                  timeout=120)


def redis_bench(a, out):
    """One redis-benchmark PING run at --conns connections against run.sh's redis-server."""
    host, port = a.redis.rsplit(":", 1)
    cmd = ["redis-benchmark", "-h", host, "-p", port, "-t", "ping", "-c", str(a.conns),
           "-n", str(a.redis_n), "--csv"]
    log(" ".join(cmd))
    rc, text, err, env = measure.run_self_cpu(cmd, 600)
    if rc != 0:
        sys.stderr.write(text + err)
        raise RuntimeError("redis-benchmark failed (exit %s)" % rc)
    result = measure.redis_csv(text)
    result["env"] = env
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


def warm_up(server, images, n):
    subprocess.run([os.path.join(REL, "imgclient"), "ping"], env=server.env, check=True,
                   capture_output=True, timeout=30)
    subprocess.run([os.path.join(REL, "imgclient"), "bench", "--conns", "2", "--dir", images,
                    "--op", "noop", "--requests", str(2 * n)],
                   env=server.env, check=True, capture_output=True, timeout=600)


# The two sides of the sandbox comparison: the default, and the same server without either layer.
SANDBOX_SIDES = (("on", []), ("off", ["--sandbox", "none"]))


def sandbox_cost(a, manifest, work):
    """What the workers' sandbox (seccomp allow-list + Landlock) costs: two servers from the same
    binary with the same flags, side by side, one default and one with `--sandbox none`, and
    the same runs alternated between them, on then off, pair after pair, so that drift and
    bursts of outside load fall on both alike. Per pair and job: req/s and server CPU per
    request of each side (RESULTS/sandbox-JOB-PAIR-SIDE.json); report.py takes the ratios."""
    n = len(manifest["images"])
    set_mp = sum(i["mp"] for i in manifest["images"])
    rate_mp = 0.0
    inproc = os.path.join(a.results, "inproc-imgfilters-blur2-p%d.json" % os.cpu_count())
    if os.path.exists(inproc):
        with open(inproc) as f:
            rate_mp = json.load(f)["mp_per_s"]
    specs = {i["specs"]["blur2"] for i in manifest["images"]}
    if a.smoke:  # by duration, like the smoke run's other service runs
        blur_load, blur_expect = ["--duration", "%gs" % a.sandbox_seconds], 1
        noop_load = ["--duration", "%gs" % a.sandbox_noop_seconds]
    else:
        r = requests_for(n, set_mp / n, rate_mp, a.sandbox_seconds, a.conns)
        blur_load = ["--requests", str(r)]
        blur_expect = r * (set_mp / n) / rate_mp if rate_mp else 60
        noop_load = ["--duration", "%gs" % a.sandbox_noop_seconds]
    budget = 120 + 10 * blur_expect
    # (job, what the runs send, timeout): every run of a job is the same command.
    jobs = [("blur2", ["--dir", a.images, "--op", specs.pop() if len(specs) == 1 else "blur:2",
                       "--timeout", "%ds" % min(600, budget)] + blur_load, budget + 60),
            ("noop-tiny", ["--dir", a.tiny, "--op", "noop"] + noop_load, 120)]
    servers = {}
    try:
        for side, extra in SANDBOX_SIDES:
            servers[side] = Server(os.path.join(work, "sandbox-" + side),
                                   os.path.join(a.results, "server-sandbox-%s.log" % side),
                                   extra)
        for side, _ in SANDBOX_SIDES:
            warm_up(servers[side], a.images, n)
        layers = {side: s.sandbox() for side, s in servers.items()}
        log("sandbox cost: %d pairs, on = %s (%s), off = %s (%s)" % (
            a.sandbox_pairs, servers["on"].addr, layers["on"], servers["off"].addr,
            layers["off"]))
        order = 0
        for pair in range(a.sandbox_pairs):
            for job, args, timeout in jobs:
                for side, extra in SANDBOX_SIDES:
                    meta = {"job": job, "pair": pair, "side": side, "order": order,
                            "server_flags": extra, "sandbox": layers[side],
                            "conns": a.conns, "set_images": n, "set_mp": set_mp}
                    bench(servers[side], os.path.join(
                        a.results, "sandbox-%s-%d-%s.json" % (job, pair, side)), meta,
                        ["--conns", str(a.conns)] + args, timeout=timeout, kind="sandbox")
                    order += 1
    finally:
        for s in servers.values():
            s.stop()


def profile_service(server, a, n):
    """System-wide cpu-clock profile of a short blur run: which process and which code the
    cores spend the service's time in (client, master, workers, kernel)."""
    data = os.path.join(a.results, "perf-service.data")
    cmd = ["perf", "record", "-a", "-e", "cpu-clock", "-F", "499", "-o", data, "--",
           os.path.join(REL, "imgclient"), "bench", "--conns", str(a.conns), "--dir",
           a.images, "--op", "blur:2", "--requests", str(max(a.conns, 2 * n))]
    log("perf: profiling a blur run system-wide")
    r = subprocess.run(cmd, env=server.env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        log("perf record failed: %s" % r.stderr.strip()[-300:])
        return
    out = []
    for sort in ("comm,dso", "comm,symbol"):
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", sort,
                              "--percent-limit", "1"], capture_output=True, text=True,
                             timeout=300)
        out.append("## perf report --sort %s\n%s" % (sort, rep.stdout))
    with open(os.path.join(a.results, "profile-service-blur2.txt"), "w") as f:
        f.write("\n".join(out))
    os.remove(data)


if __name__ == "__main__":
    sys.exit(main())
