#!/usr/bin/env python3
"""cluster: throughput of two imgservers behind HAProxy against one server directly (stdlib).

Starts three servers on loopback with one shared key and users file (--key-file,
--users-file): two behind HAProxy (configured from dist/haproxy.cfg, as scripts/cluster.sh
does: PROBE health check, PROXY v2, agent-check), the third alone. Then --pairs interleaved
pairs (A B A B ...): A is `imgclient bench` through HAProxy, B the same bench against the lone
server, each --seconds long at --conns connections. Per pair: the throughput ratio A/B, the
same ratio CPU-normalised (requests per CPU-second of everything the run used: servers,
client, and on the A side HAProxy), and HAProxy's own CPU per request (its utime + stime from
/proc over the A run, divided by the requests answered), also as a share of the servers' CPU
per request. Reported as the median with the min-max spread over the pairs.

Writes RESULTS/cluster.json (every run) and RESULTS/goals-cluster.json (the goals convention
report.py appends to RESULTS.md; RESULTS is --results, by default run.sh's
bench/.cache/results), and prints a summary. Every process it starts is stopped on exit.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import harness  # noqa: E402
from harness import HERE, REL, ROOT  # noqa: E402,F401
sys.path.insert(0, HERE)
import measure  # noqa: E402

USER, PASSWORD = "bench", "cluster-password"
# Goals: two servers with a core each should come close to twice one; the balancer should
# cost little next to the servers' own work.
SCALE_GOAL = 1.6
OVERHEAD_GOAL = 0.10


def log(msg):
    sys.stderr.write("cluster: %s\n" % msg)
    sys.stderr.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server(harness.Server):
    """harness.Server with the shared key and users file (no user of its own); with
    `proxied`, PROXY v2 from HAProxy and an agent-check port, read from its log."""

    def __init__(self, work, name, shared, workers, proxied):
        workdir = os.path.join(work, name)
        flags = ["--workers", str(workers),
                 "--key-file", os.path.join(shared, "server.key"),
                 "--users-file", os.path.join(shared, "users"),
                 # As service.py: 150 connections from 127.0.0.1 a run, and PING unthrottled.
                 "--request-rate", "0", "--conn-rate-per-addr", "0"]
        if proxied:
            flags += ["--proxy-protocol", "--agent-listen", "127.0.0.1:0"]
        os.makedirs(workdir, exist_ok=True)
        super().__init__(workdir, os.path.join(workdir, "server.log"), None, None, flags)
        self.logpath = self.log_path
        self.agent_port = None
        deadline = time.monotonic() + 20
        if proxied:
            while time.monotonic() < deadline and self.agent_port is None:
                with open(self.logpath) as f:
                    for l in f:
                        if "agent-check listening on " in l:
                            self.agent_port = int(l.split("agent-check listening on ")[1]
                                                  .split()[0].rsplit(":", 1)[1])
                time.sleep(0.05)
            if self.agent_port is None:
                self.stop()
                raise RuntimeError("no agent-check port in %s" % self.logpath)

    def pids(self):
        return [self.proc.pid] + measure.children_of(self.proc.pid)


def render(template, servers):
    """dist/haproxy.cfg with its one server line repeated per (name, addr, agent port)."""
    out, block, pattern = [], False, None
    for line in template.splitlines():
        t = line.strip()
        if t.startswith("# servers: begin"):
            block = True
        elif t.startswith("# servers: end"):
            indent = pattern[:len(pattern) - len(pattern.lstrip())]
            for name, addr, aport in servers:
                w = pattern.split()
                w[1], w[2] = name, addr
                w[w.index("agent-port") + 1] = str(aport)
                out.append(indent + " ".join(w))
            block = False
        elif block and t.startswith("server "):
            pattern = pattern or line
            continue
        out.append(line)
    return "\n".join(out) + "\n"


class Haproxy:
    def __init__(self, work, servers):
        with open(os.path.join(ROOT, "dist", "haproxy.cfg")) as f:
            cfg = render(f.read(), [("s%d" % (i + 1), s.addr, s.agent_port)
                                    for i, s in enumerate(servers)])
        path = os.path.join(work, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        self.addr = "127.0.0.1:%d" % free_port()
        self.sock = os.path.join(work, "haproxy.sock")
        env = dict(os.environ, IMGCLUSTER_BIND=self.addr, IMGCLUSTER_STATS_SOCKET=self.sock)
        subprocess.run(["haproxy", "-c", "-q", "-f", path], env=env, check=True, timeout=30)
        self.log = open(os.path.join(work, "haproxy.log"), "w")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", path], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = self.states()
            if len(st) == len(servers) and all(v == "UP" for v in st.values()):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("HAProxy never had every server UP: %s" % self.states())

    def states(self):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(self.sock)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
        except OSError:
            return {}
        lines = data.decode().splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        head = lines[0][2:].split(",")
        px, sv, st = head.index("pxname"), head.index("svname"), head.index("status")
        return {f[sv]: f[st] for f in (l.split(",") for l in lines[1:])
                if len(f) > st and f[px] == "imgservers" and f[sv] != "BACKEND"}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=os.path.join(HERE, ".cache", "results"))
    ap.add_argument("--images", default=os.path.join(ROOT, "samples"))
    ap.add_argument("--op", default="thumbnail:64")
    ap.add_argument("--conns", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="workers per server")
    a = ap.parse_args(argv)
    os.makedirs(a.results, exist_ok=True)
    if subprocess.run(["sh", "-c", "command -v haproxy"], capture_output=True).returncode:
        log("haproxy is missing (scripts/install-deps.sh installs it); no scale-out figures")
        return 1

    work = tempfile.mkdtemp(prefix="imgbench-cluster-")
    shared = os.path.join(work, "shared")
    os.makedirs(shared, mode=0o700)
    subprocess.run([os.path.join(REL, "imgserver"), "user", "add", USER, "--users-file",
                    os.path.join(shared, "users")], input=PASSWORD + "\n", text=True,
                   check=True, capture_output=True, timeout=60)
    started = []
    try:
        backs = [Server(work, "s%d" % i, shared, a.workers, True) for i in (1, 2)]
        started += backs
        alone = Server(work, "alone", shared, a.workers, False)
        started.append(alone)
        lb = Haproxy(work, backs)
        started.append(lb)
        known = os.path.join(work, "known_servers")
        # The lone server has one worker behind 150 closed-loop connections: each answer
        # queues for seconds (6.5 s at 23 req/s), so the per-answer timeout (imgclient's
        # default 10 s) must outlast that queue, or queueing is counted as errors.
        timeout = a.seconds * 4 + 60
        args = ["--conns", str(a.conns), "--duration", "%gs" % a.seconds, "--op", a.op,
                "--dir", a.images, "--timeout", "%ds" % timeout]
        runs = []
        for k in range(a.pairs):
            # A: through HAProxy; its CPU over the run apart from the servers'.
            lb0 = measure.proc_cpu(lb.proc.pid)
            srv_pids = [p for s in backs for p in s.pids()]
            ra, ia = harness.bench(lb.addr, known, USER, PASSWORD, args,
                                   srv_pids + [lb.proc.pid], timeout)
            lb_cpu = measure.proc_cpu(lb.proc.pid) - lb0
            # B: the lone server directly.
            rb, ib = harness.bench(alone.addr, known, USER, PASSWORD, args,
                                   alone.pids(), timeout)
            run = {"pair": k,
                   "a": {"bench": ra, "env": ia, "haproxy_cpu_s": lb_cpu},
                   "b": {"bench": rb, "env": ib}}
            runs.append(run)
            log("pair %d: HAProxy + 2 servers %.0f req/s, 1 server %.0f req/s, HAProxy %.1f "
                "CPU-µs per request" % (k, ra["throughput_rps"], rb["throughput_rps"],
                                        1e6 * lb_cpu / max(1, ra["ok"])))
    finally:
        for p in reversed(started):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)

    ratios, cpu_ratios, lb_us, lb_share = [], [], [], []
    for r in runs:
        A, B = r["a"], r["b"]
        ratios.append(A["bench"]["throughput_rps"] / max(B["bench"]["throughput_rps"], 1e-9))
        # Requests per CPU-second of everything the run used (watched: servers and HAProxy).
        cpu_a = A["env"]["self_cpu_s"] + A["env"]["watched_cpu_s"]
        cpu_b = B["env"]["self_cpu_s"] + B["env"]["watched_cpu_s"]
        cpu_ratios.append((A["bench"]["ok"] / max(cpu_a, 1e-9)) /
                          max(B["bench"]["ok"] / max(cpu_b, 1e-9), 1e-9))
        ok = max(1, A["bench"]["ok"])
        lb_us.append(1e6 * A["haproxy_cpu_s"] / ok)
        srv_cpu = A["env"]["watched_cpu_s"] - A["haproxy_cpu_s"]
        lb_share.append(A["haproxy_cpu_s"] / max(srv_cpu, 1e-9))
    summary = {
        "throughput_ratio": statistics.median(ratios), "throughput_ratios": ratios,
        "cpu_normalised_ratio": statistics.median(cpu_ratios), "cpu_ratios": cpu_ratios,
        "haproxy_cpu_us_per_request": statistics.median(lb_us), "haproxy_us": lb_us,
        "haproxy_share_of_server_cpu": statistics.median(lb_share), "haproxy_shares": lb_share,
    }
    with open(os.path.join(a.results, "cluster.json"), "w") as f:
        json.dump({"op": a.op, "conns": a.conns, "seconds": a.seconds, "workers": a.workers,
                   "cores": os.cpu_count(), "runs": runs, "summary": summary}, f, indent=1)

    x = lambda v: "%.2fx" % v  # noqa: E731
    pct = lambda v: "%.1f%%" % (100 * v)  # noqa: E731
    goals = [
        {"target": "2 servers behind HAProxy vs 1 server direct, %s, %d conns, %d worker%s each"
                   % (a.op, a.conns, a.workers, "" if a.workers == 1 else "s"),
         "measured": x(summary["throughput_ratio"]), "spread": harness.spread(ratios, x),
         "cpu_normalised": "%s (%s)" % (x(summary["cpu_normalised_ratio"]),
                                        harness.spread(cpu_ratios, x) or "one pair"),
         "goal": ">= %.1fx, wall (needs a free core per worker: %d cores here)"
                 % (SCALE_GOAL, os.cpu_count()),
         "status": harness.goal_status(ratios, SCALE_GOAL, True), "pairs": len(runs)},
        {"target": "HAProxy's CPU per request (µs), share of the servers' CPU per request",
         "measured": "%.1f µs, %s" % (summary["haproxy_cpu_us_per_request"],
                                      pct(summary["haproxy_share_of_server_cpu"])),
         "spread": harness.spread(lb_share, pct), "cpu_normalised": "",
         "goal": "<= %s of the servers' CPU" % pct(OVERHEAD_GOAL),
         "status": harness.goal_status(lb_share, OVERHEAD_GOAL, False), "pairs": len(runs)},
    ]
    with open(os.path.join(a.results, "goals-cluster.json"), "w") as f:
        json.dump(goals, f, indent=1)
    print("2 servers behind HAProxy / 1 server direct: %.2fx throughput (spread %s), %.2fx "
          "CPU-normalised; HAProxy %.1f CPU-µs per request (%.1f%% of the servers' CPU)" % (
              summary["throughput_ratio"], harness.spread(ratios, x) or "one pair",
              summary["cpu_normalised_ratio"], summary["haproxy_cpu_us_per_request"],
              100 * summary["haproxy_share_of_server_cpu"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
