#!/usr/bin/env python3
"""service: the end-to-end measurements through imgserver (python3 stdlib; called by run.sh).

Starts imgserver on a free loopback port with a throwaway state directory and a bench user,
pins its key, then drives `imgclient bench` (closed loop, encrypted):
  - each job (blur2, resize50, gray) at --conns connections over the image set;
  - PING at --conns connections;
  - a no-op job on a tiny image and PING, one connection each (their p50 difference);
and stops the server (SIGTERM, then SIGKILL), also on errors and Ctrl-C. Then the sandbox
cost (sandbox_cost): two more servers side by side, the default (workers under the seccomp
allow-list and Landlock) and `--sandbox none`, same flags otherwise, and blur2 over the image
set and the no-op job on the tiny image at --conns connections, alternated on, off, on, off
for --sandbox-pairs pairs.

resize50 is sent as `scale:50`, which resizes every image to exactly half of each side
(rounded down) with Lanczos3: the same pixels as the per-image `resize:WxH:exact:lanczos3`
the in-process runs use (imgfilters tests this), so one run covers the whole mixed set like
every other job. Should a job need one spec per image, it runs once per spec ("group", a
directory of symlinks) and report.py combines the groups with every image weighted equally.

Every run writes RESULTS/service-*.json (the sandbox runs: RESULTS/sandbox-*.json):
imgclient's JSON ("bench"), what was run, and the CPU time of the client, of the server
(master + workers) and of everything else meanwhile.
"""

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import measure

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# run.sh's private copy of the build (BENCH_BIN), else target/release.
REL = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release")
PASSWORD = "bench-password"


def log(msg):
    sys.stderr.write("service: %s\n" % msg)
    sys.stderr.flush()


class Server:
    """imgserver on 127.0.0.1:0 in its own state directory; stop() is idempotent."""

    def __init__(self, workdir, logpath, extra=()):
        os.makedirs(workdir, exist_ok=True)
        self.state = os.path.join(workdir, "state")
        subprocess.run([os.path.join(REL, "imgserver"), "user", "add", "bench",
                        "--state-dir", self.state], input=PASSWORD + "\n", text=True,
                       check=True, capture_output=True, timeout=60)
        self.log = open(logpath, "w")
        # --request-rate 0: the PING rows measure the protocol path, not the flood limit
        # (1000 a second per connection by default; README.md, "End to end").
        # --conn-rate-per-addr 0: every row opens 150 connections from 127.0.0.1 within a
        # second or two of the last, which the per-address connection rate (64 a second after a
        # burst of 256) would refuse and the run would count as errors.
        self.proc = subprocess.Popen(
            [os.path.join(REL, "imgserver"), "--listen", "127.0.0.1:0", "--state-dir",
             self.state, "--request-rate", "0", "--conn-rate-per-addr", "0"] + list(extra),
            stdout=subprocess.PIPE,
            stderr=self.log, text=True)
        # `listening on ADDR` is the first stdout line once connections are accepted.
        line = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not line.startswith("listening on"):
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
        if not line.startswith("listening on"):
            self.stop()
            raise RuntimeError("imgserver did not start (log: %s)" % logpath)
        self.addr = line.split()[2]
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

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


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


def adjacent(a, job, when):
    """The project's own in-process throughput for `job` on every core, measured right before
    and right after the job's service runs: on a shared VM the machine's speed drifts by tens
    of percent over the minutes between the in-process section and the service section, so the
    service-vs-own ratio uses these neighbours as its baseline."""
    if a.smoke:
        return
    out = os.path.join(a.results, "adjacent-imgfilters-%s-%s.json" % (job, when))
    cmd = [sys.executable, os.path.join(HERE, "measure.py"), "--out", out, "--timeout", "600",
           "--", os.path.join(REL, "imgbench"), "run", "--job", job, "--procs",
           str(os.cpu_count()), "--images", a.images, "--repeat", "2", "--min-time", "3"]
    log("in-process %s, %s the service runs" % (job, when))
    subprocess.run(cmd, check=True, capture_output=True, timeout=700)


def groups_for(manifest, job):
    """{spec: [image rows]} for a job's specs over the manifest, in a stable order."""
    groups = {}
    for img in manifest["images"]:
        groups.setdefault(img["specs"][job], []).append(img)
    return groups


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
    set_mp = sum(i["mp"] for i in manifest["images"])
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
            inproc = os.path.join(a.results, "inproc-imgfilters-%s-p%d.json"
                                  % (job, os.cpu_count()))
            rate_mp = 0.0
            if os.path.exists(inproc):
                with open(inproc) as f:
                    rate_mp = json.load(f)["mp_per_s"]
            adjacent(a, job, "before")
            groups = groups_for(manifest, job)
            if job == "resize50":
                groups = {"scale:50": manifest["images"]}
            if len(groups) == 1:
                groups = {next(iter(groups)): manifest["images"]}
            for gi, (spec, imgs) in enumerate(sorted(groups.items())):
                gmp = sum(i["mp"] for i in imgs)
                if len(groups) == 1:
                    d, name = a.images, "service-%s.json" % job
                else:
                    d = os.path.join(work, "group-%d" % gi)
                    os.makedirs(d)
                    for i in imgs:
                        os.symlink(os.path.abspath(os.path.join(a.images, i["file"])),
                                   os.path.join(d, i["file"]))
                    name = "service-%s-g%02d.json" % (job, gi)
                if a.smoke:
                    load = ["--duration", "1s"]
                    expect = 1
                else:
                    share = a.seconds * gmp / set_mp
                    r = requests_for(len(imgs), gmp / len(imgs), rate_mp, share, a.conns)
                    load = ["--requests", str(r)]
                    expect = r * (gmp / len(imgs)) / rate_mp if rate_mp else 60
                meta = {"job": job, "spec": spec, "images": [i["file"] for i in imgs],
                        "group_mp": gmp, "set_images": n, "set_mp": set_mp,
                        "conns": a.conns, "groups": len(groups)}
                # In a closed loop of 150 a job waits for the ~149 queued before it: the
                # client's per-answer timeout (default 10 s) must outlast that queue.
                budget = 120 + 10 * expect
                bench(server, os.path.join(a.results, name), meta,
                      ["--conns", str(a.conns), "--dir", d, "--op", spec,
                       "--timeout", "%ds" % min(600, budget)] + load,
                      timeout=budget + 60)
            adjacent(a, job, "after")

        lat = "%gs" % (1 if a.smoke else a.latency_seconds)
        pings = "%gs" % (1 if a.smoke else a.ping_seconds)
        bench(server, os.path.join(a.results, "service-ping-c%d.json" % a.conns),
              {"job": "ping", "conns": a.conns},
              ["--conns", str(a.conns), "--op", "ping", "--duration", pings], timeout=120)
        # Alternate the one-connection probes so a burst of outside load hits both alike.
        for k in range(1 if a.smoke else 2):
            for job, op in (("noop", "noop"), ("ping", "ping")):
                bench(server, os.path.join(a.results, "service-%s-c1-%d.json" % (job, k)),
                      {"job": job, "conns": 1},
                      ["--conns", "1", "--dir", a.tiny, "--op", op, "--duration", lat],
                      timeout=120)

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
