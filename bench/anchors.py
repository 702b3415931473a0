#!/usr/bin/env python3
"""anchors: imgserver end to end against two image services people run, thumbor and ipx.

    python3 bench/anchors.py --results DIR [--image samples/cat.png] [--conns 150]
                             [--seconds 20] [--pairs 3] [--anchors thumbor,ipx]

Trust boundary: none of its own; it starts three local servers on loopback ports and drives
them with load generators (python3 stdlib, Linux /proc). Called by run.sh (full and --quick
runs); needs what bench/setup.sh installs into bench/.deps/, and wrk.

  - thumbor (PyPI, bench/.deps/thumbor): `--processes` = cores, the Pillow engine, the file
    loader rooted at a directory holding only the image, unsafe URLs, no storage (no cache);
    URL /unsafe/filters:blur(R,2)/IMAGE, R = the radius imgfilters' own kernel has at σ2.
  - ipx (npm, bench/.deps/ipx, sharp behind h3): its Node API on a plain node:http server,
    serving the same directory; URL /blur_2/IMAGE (sharp's blur(σ)).
  - imgserver as bench/service.py starts it (throwaway state dir, a bench user,
    `--conn-rate-per-addr 0 --request-rate 0`); `imgclient bench --op blur:2`.
Each answers with the input's format. Before anything is timed each one must return a real
image of the input's format and size (not an error page), and gets an untimed warm-up.

Then, for --pairs pairs, imgserver and each anchor alternate: imgserver, thumbor, imgserver,
ipx, ... (every ratio from runs next to each other); wrk (`-c CONNS`, a Lua `done` hook for
the percentiles) for the HTTP services and `imgclient bench --conns CONNS` for imgserver, each
run --seconds long, and after each run we wait until the server's process tree is idle again
(an HTTP server goes on working on the requests wrk left unanswered), so no run sees the last
one's tail. Every run records req/s, p50, p99 (wrk: of the answered requests), errors, the
CPU of the server's whole process tree from /proc (measure.py) during the run and during that
tail, and the load generator's (see per_request for CPU per request).

Writes DIR/anchors.json (everything), DIR/goals-anchors.json (the goal rows, the shared
goals-*.json convention) and the three verified outputs into --outputs. Every server is
stopped (its whole process group) on exit, error, SIGTERM and Ctrl-C.
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
import urllib.error
import urllib.parse
import urllib.request

import imgmeta
import measure
import service

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEPS = os.path.join(HERE, ".deps")
THUMBOR = os.path.join(DEPS, "thumbor", "bin", "thumbor")
IPX_MODULES = os.path.join(DEPS, "ipx", "node_modules")
SIGMA = 2.0
JPEG_QUALITY = 85
# Goals (issue #15): imgserver's req/s at least this many times each anchor's.
GOALS = {"thumbor": 15.0, "ipx": 6.0}

# wrk's `done` hook: the figures as one JSON line (latency in µs, of answered requests).
WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

# ipx through its Node API on node:http, listening on a socket we bound (fd passed down).
IPX_JS = r"""
const http = require("node:http");
const { createIPX, ipxFSStorage, createIPXNodeServer } = require("ipx");
const [dir, fd] = process.argv.slice(1);
const ipx = createIPX({ storage: ipxFSStorage({ dir }) });
http.createServer(createIPXNodeServer(ipx)).listen({ fd: Number(fd) }, () =>
  console.log("listening"));
"""


def log(msg):
    sys.stderr.write("anchors: %s\n" % msg)
    sys.stderr.flush()


def thumbor_radius(sigma):
    """The radius of imgfilters' Gaussian kernel at `sigma` (convolve.rs image_kernel_size:
    the `image` crate's length, about 6.6 sigma, odd), so thumbor's truncated kernel has the
    same taps; thumbor's blur(radius, sigma) takes both."""
    size = int(max(((sigma - 0.8) / 0.3 + 1.0) * 2.0 + 1.0, 3.0))
    if size % 2 == 0:
        size += 1
    return size // 2


def tree(pid):
    """pid and all its descendants (thumbor's forked processes, npm/node children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(measure.children_of(p))
    return out


def tree_cpu(pids):
    return sum(measure.proc_cpu(p) for p in pids)


def runnable(pids):
    """Threads of these processes that are running or waiting for a core (state R)."""
    n = 0
    for p in pids:
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/stat" % (p, t)) as f:
                    n += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):
                pass
    return n


def quiesce(pids, limit=300.0):
    """Waits until the process tree is idle: twice in a row, under 5% of a core over half a
    second and no thread runnable (on a crowded machine a server with work left can get
    almost no CPU for a while, but its threads stay runnable). Bounded by `limit` seconds;
    returns (seconds waited, CPU seconds it used meanwhile, idle reached)."""
    t0, c0 = time.monotonic(), tree_cpu(pids)
    last, quiet = c0, 0
    while time.monotonic() - t0 < limit:
        time.sleep(0.5)
        now = tree_cpu(pids)
        quiet = quiet + 1 if now - last < 0.025 and not runnable(pids) else 0
        last = now
        if quiet >= 2:
            break
    return time.monotonic() - t0, tree_cpu(pids) - c0, quiet >= 2


def listen_socket():
    """A listening loopback socket on a free port: ipx inherits it, so there is no window in
    which another process could take the port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    return s


class HttpAnchor:
    """One HTTP image service in its own process group; stop() is idempotent."""

    def __init__(self, name, cmd, env, url_path, logpath, sock, port):
        self.name, self.sock = name, sock
        self.port = port
        self.url = "http://127.0.0.1:%d%s" % (self.port, url_path)
        self.log = open(logpath, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     pass_fds=[sock.fileno()] if sock else [],
                                     start_new_session=True)

    def pids(self):
        return tree(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Forked workers may outlive a leader that exited: the group goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.sock:
            self.sock.close()
        self.log.close()


def start_thumbor(work, imgdir, results, image_name, quality):
    conf = os.path.join(work, "thumbor.conf")
    with open(conf, "w") as f:
        f.write("LOADER = 'thumbor.loaders.file_loader'\n"
                "FILE_LOADER_ROOT_PATH = %r\n"
                "ENGINE = 'thumbor.engines.pil'\n"
                "ALLOW_UNSAFE_URL = True\n"
                # No source-image storage and no result storage: every request does the work.
                "STORAGE = 'thumbor.storages.no_storage'\n"
                "RESULT_STORAGE = None\n"
                "QUALITY = %d\n"
                "AUTO_WEBP = False\n" % (imgdir, quality))
    # thumbor's --fd socket is added to the IOLoop before tornado forks its processes, which
    # breaks --processes > 1: it binds the port itself, a free one we picked and released
    # (a process taking it meanwhile makes thumbor exit, which verify_http reports).
    sock = listen_socket()
    port = sock.getsockname()[1]
    sock.close()
    cmd = [THUMBOR, "--ip", "127.0.0.1", "--port", str(port), "--conf", conf, "--processes",
           str(os.cpu_count()), "--log-level", "warning"]
    path = "/unsafe/filters:blur(%d,%g)/%s" % (thumbor_radius(SIGMA), SIGMA,
                                                urllib.parse.quote(image_name))
    return HttpAnchor("thumbor", cmd, dict(os.environ), path,
                      os.path.join(results, "anchors-thumbor.log"), None, port)


def start_ipx(work, imgdir, results, image_name, quality):
    sock = listen_socket()
    env = dict(os.environ, NODE_PATH=IPX_MODULES, NODE_ENV="production")
    cmd = ["node", "-e", IPX_JS, imgdir, str(sock.fileno())]
    # A JPEG answer at the quality the others use (sharp's default is 80); PNG has none.
    q = ",q_%d" % quality if quality else ""
    return HttpAnchor("ipx", cmd, env, "/blur_%g%s/%s" % (SIGMA, q, urllib.parse.quote(image_name)),
                      os.path.join(results, "anchors-ipx.log"), sock, sock.getsockname()[1])


def image_facts(data):
    """imgmeta's header facts of bytes in memory."""
    if data[:8] == imgmeta.PNG_SIG:
        return imgmeta.png_info(data)
    if data[:2] == b"\xff\xd8":
        return imgmeta.jpeg_info(data)
    return {"format": "other"}


def check_output(name, data, want, out_dir, ext):
    """The answer must be an image of the input's format and size; keeps it in out_dir."""
    got = image_facts(data)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "%s.%s" % (name, ext)), "wb") as f:
        f.write(data)
    if (got.get("format"), got.get("width"), got.get("height")) != (
            want["format"], want["width"], want["height"]):
        raise RuntimeError("%s answered %s (%d bytes), not a %s %dx%d" % (
            name, {k: got.get(k) for k in ("format", "width", "height")}, len(data),
            want["format"], want["width"], want["height"]))
    return {"format": got["format"], "width": got["width"], "height": got["height"],
            "bytes": len(data)}


def fetch(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def verify_http(anchor, want, out_dir, ext, limit=90.0):
    """Waits for the first good answer (the server may still be starting: its socket already
    accepts), bounded by `limit` seconds."""
    deadline = time.monotonic() + limit
    err = None
    while time.monotonic() < deadline:
        if anchor.proc.poll() is not None:
            raise RuntimeError("%s exited %s (log: %s)" % (anchor.name, anchor.proc.returncode,
                                                           anchor.log.name))
        try:
            status, ctype, data = fetch(anchor.url, timeout=30)
            if status == 200:
                facts = check_output(anchor.name, data, want, out_dir, ext)
                facts["content_type"] = ctype
                return facts
            err = "HTTP %d" % status
        except urllib.error.HTTPError as e:
            body = e.read()[:300]
            raise RuntimeError("%s answered HTTP %d: %r" % (anchor.name, e.code, body)) from e
        except (urllib.error.URLError, OSError) as e:
            err = str(e)
        time.sleep(0.5)
    raise RuntimeError("%s gave no image within %ds (%s)" % (anchor.name, limit, err))


def wrk_run(anchor, conns, seconds, lua, timeout):
    threads = max(1, min(os.cpu_count(), conns))
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", "%ds" % max(1, round(seconds)),
           "--timeout", "%ds" % timeout, "-s", lua, anchor.url]
    rc, out, err, env = measure.run_self_cpu(cmd, seconds + timeout + 60, watch=anchor.pids())
    lines = [x for x in out.splitlines() if x.startswith("{")]
    if rc != 0 or not lines:
        raise RuntimeError("wrk against %s failed (exit %s): %s" % (anchor.name, rc,
                                                                    (out + err)[-500:]))
    w = json.loads(lines[-1])
    errors = sum(w["errors"].values())
    ok = w["requests"] - w["errors"]["status"]
    dur = w["duration_us"] / 1e6
    return {"rps": ok / dur if dur else 0.0, "ok": ok, "errors": errors,
            "p50_ms": w["latency_us"]["p50"] / 1e3, "p99_ms": w["latency_us"]["p99"] / 1e3,
            "duration_s": dur, "wrk": w, "server_cpu_s": env["watched_cpu_s"],
            "client_cpu_s": env["self_cpu_s"], "other_cores": env["other_cores"],
            "cmd": cmd[:-3] + [cmd[-1]]}


def imgserver_run(server, imgdir, conns, seconds, out_path, timeout):
    args = ["--conns", str(conns), "--dir", imgdir, "--op", "blur:%g" % SIGMA,
            "--duration", "%gs" % seconds, "--timeout", "%ds" % timeout,
            "--max-errors", "1000000000"]
    rec = service.bench(server, out_path, {"job": "blur2", "conns": conns}, args,
                        timeout=seconds + timeout + 60, kind="anchors")
    b, e = rec["bench"], rec["env"]
    return {"rps": b["throughput_rps"], "ok": b["ok"], "errors": b["errors"],
            "p50_ms": b["latency_ms"].get("p50"), "p99_ms": b["latency_ms"].get("p99"),
            "duration_s": e["wall_s"], "server_cpu_s": e["server_cpu_s"],
            "client_cpu_s": e["client_cpu_s"], "other_cores": e["other_cores"],
            "cmd": ["imgclient", "bench"] + args}


def per_request(r, in_flight):
    """Server CPU per request. wrk stops with one request in flight on every connection and
    never reads those answers, while the server goes on with them: the figure counts the
    CPU of the run and of that tail (until the tree is idle again) over the answered
    requests plus those `in_flight` ones (0 for imgclient, which waits for every answer).
    A server that dropped abandoned requests instead would be credited with work it never
    did: the error is in the anchor's favour. The run-only figure is kept beside it."""
    ok = max(1, r["ok"])
    r["in_flight_at_end"] = in_flight
    r["server_cpu_ms_per_req"] = 1e3 * (r["server_cpu_s"] + r["tail_cpu_s"]) / (ok + in_flight)
    r["server_cpu_ms_per_answer_in_run"] = 1e3 * r["server_cpu_s"] / ok
    r["client_cpu_ms_per_req"] = 1e3 * r["client_cpu_s"] / ok
    return r


def spread(vals):
    if not vals:
        return {"median": None, "min": None, "max": None, "values": []}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "values": vals}


def ratios(runs, anchor):
    """Per pair: imgserver's run right before the anchor's against it."""
    pairs = [(a, b) for a, b in zip(runs, runs[1:])
             if a["server"] == "imgserver" and b["server"] == anchor and a["pair"] == b["pair"]]
    if not pairs:
        return None
    return {
        "pairs": len(pairs),
        # req/s: imgserver ÷ anchor.
        # (A run the anchor answered nothing in has no ratio; its errors are in the runs.)
        "rps": spread([a["rps"] / b["rps"] for a, b in pairs if b["rps"]]),
        # CPU-normalised: requests per server-CPU-second, imgserver ÷ anchor.
        "cpu": spread([b["server_cpu_ms_per_req"] / a["server_cpu_ms_per_req"]
                       for a, b in pairs if a["server_cpu_ms_per_req"]]),
        # The anchor's p50 over imgserver's p99 (> 1: imgserver's p99 is below their median).
        "p50_over_p99": spread([b["p50_ms"] / a["p99_ms"] for a, b in pairs if a["p99_ms"]]),
    }


def goal_rows(rat, label, conns, image):
    """The goal rows (the goals-*.json convention); a ratio no pair gave reads n/a, missed."""
    def x(v):
        return "%.2f×" % v if v < 100 else "%.0f×" % v

    def row(target, s, goal, ok, cpu=""):
        if not s["values"]:
            return {"target": target, "measured": "n/a (no answers)", "spread": "",
                    "goal": goal, "status": "missed", "cpu_normalised": cpu}
        st = "met" if ok(s["min"]) else "met only within the spread" if ok(s["max"]) else "missed"
        return {"target": target, "measured": x(s["median"]),
                "spread": "%s–%s" % (x(s["min"]), x(s["max"])), "goal": goal, "status": st,
                "cpu_normalised": cpu}

    rows = []
    for anchor, r in rat.items():
        if not r:
            continue
        g = GOALS[anchor]
        rows.append(row("imgserver vs %s, req/s (%s %s, %d connections)" % (
            anchor, image, label, conns), r["rps"], "≥ %g×" % g, lambda v: v >= g,
            x(r["cpu"]["median"]) if r["cpu"]["values"] else ""))
        rows.append(row("imgserver's p99 below %s's p50 (their p50 ÷ our p99)" % anchor,
                        r["p50_over_p99"], "> 1×", lambda v: v > 1))
    return rows


def versions(venv_python):
    v = {}

    def first(cmd, env=None):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
            return (r.stdout or r.stderr).strip().splitlines()[0] if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError, IndexError):
            return None

    word = lambda s, i: s.split()[i] if s and len(s.split()) > i else s  # noqa: E731
    v["thumbor"] = word(first([THUMBOR, "--version"]), 1)  # "Thumbor v7.8.0 (date)"
    v["Pillow (in thumbor)"] = first([venv_python, "-c", "import PIL; print(PIL.__version__)"])
    env = dict(os.environ, NODE_PATH=IPX_MODULES)
    try:  # its package.json is not in its exports map: read the file
        with open(os.path.join(IPX_MODULES, "ipx", "package.json")) as f:
            v["ipx"] = json.load(f).get("version")
    except (OSError, ValueError):
        v["ipx"] = None
    v["sharp (in ipx)"] = first(["node", "-e", "const s=require('sharp');"
                                 "console.log(s.versions.sharp+' (libvips '+s.versions.vips+')')"],
                                env)
    v["node"] = first(["node", "--version"])
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=30)
    v["wrk"] = word(((wrk.stdout + wrk.stderr).strip().splitlines() or [None])[0], 1)
    v["imgserver"] = word(first([os.path.join(service.REL, "imgserver"), "--version"]), 1)
    return v


def fmt2(v):
    return "n/a" if v is None else "%.2f" % v


def _interrupt(*_):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True)
    ap.add_argument("--outputs", help="where the verified answers go [RESULTS/../outputs/anchors]")
    ap.add_argument("--image", default=os.path.join(ROOT, "samples", "cat.png"))
    ap.add_argument("--conns", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=20, help="length of each timed run")
    ap.add_argument("--warmup-seconds", type=float, default=3)
    ap.add_argument("--pairs", type=int, default=3, help="imgserver/anchor pairs per anchor")
    ap.add_argument("--anchors", default="thumbor,ipx")
    ap.add_argument("--timeout", type=int, default=120,
                    help="per-request timeout of the load generators, seconds")
    a = ap.parse_args()
    anchors = [x for x in a.anchors.split(",") if x]
    for x in anchors:
        if x not in GOALS:
            ap.error("unknown anchor %s" % x)
    if a.pairs < 1 or a.conns < 1 or a.seconds <= 0:
        ap.error("--pairs, --conns and --seconds must be positive")
    missing = [what for what, ok in (
        ("thumbor (bench/setup.sh)", "thumbor" not in anchors or os.access(THUMBOR, os.X_OK)),
        ("ipx (bench/setup.sh)", "ipx" not in anchors or os.path.isdir(
            os.path.join(IPX_MODULES, "ipx"))),
        ("node", "ipx" not in anchors or shutil.which("node")),
        ("wrk (bench/setup.sh)", shutil.which("wrk"))) if not ok]
    if missing:
        log("missing: %s" % ", ".join(missing))
        return 1
    with open(a.image, "rb") as f:
        data = f.read()
    want = dict(image_facts(data), bytes=len(data))
    if want.get("format") not in ("png", "jpeg"):
        log("%s is neither PNG nor JPEG" % a.image)
        return 1
    ext = "png" if want["format"] == "png" else "jpg"
    name = os.path.basename(a.image)
    os.makedirs(a.results, exist_ok=True)
    out_dir = a.outputs or os.path.join(os.path.dirname(os.path.abspath(a.results)),
                                        "outputs", "anchors")
    shutil.rmtree(out_dir, ignore_errors=True)

    work = tempfile.mkdtemp(prefix="imgbench-anchors-")
    imgdir = os.path.join(work, "img")
    os.makedirs(imgdir)
    shutil.copy(a.image, os.path.join(imgdir, name))
    lua = os.path.join(work, "report.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    servers = {}
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        log("starting imgserver%s" % "".join(", " + x for x in anchors))
        servers["imgserver"] = service.Server(os.path.join(work, "imgserver"),
                                              os.path.join(a.results, "anchors-imgserver.log"))
        # JPEG answers at quality 85 everywhere (imgserver's default, as in the rest of the
        # bench); thumbor's setting is global, ipx takes it per URL.
        if "thumbor" in anchors:
            servers["thumbor"] = start_thumbor(work, imgdir, a.results, name, JPEG_QUALITY)
        if "ipx" in anchors:
            servers["ipx"] = start_ipx(work, imgdir, a.results, name,
                                       JPEG_QUALITY if ext == "jpg" else None)

        checked = {}
        out = os.path.join(work, "out." + ext)
        srv = servers["imgserver"]
        subprocess.run([os.path.join(service.REL, "imgclient"), "blur", "--sigma", "%g" % SIGMA,
                        os.path.join(imgdir, name), "-o", out], env=srv.env, check=True,
                       capture_output=True, timeout=120)
        with open(out, "rb") as f:
            checked["imgserver"] = check_output("imgserver", f.read(), want, out_dir, ext)
        for x in anchors:
            checked[x] = verify_http(servers[x], want, out_dir, ext)
        log("answers checked: %s" % ", ".join(
            "%s %s %dx%d %d B" % (k, v["format"], v["width"], v["height"], v["bytes"])
            for k, v in checked.items()))

        # Untimed warm-up of each: a few seconds at one connection per core.
        log("warm-up: %gs each, untimed" % a.warmup_seconds)
        subprocess.run([os.path.join(service.REL, "imgclient"), "bench", "--conns",
                        str(os.cpu_count()), "--dir", imgdir, "--op", "blur:%g" % SIGMA,
                        "--duration", "%gs" % a.warmup_seconds], env=srv.env, check=True,
                       capture_output=True, timeout=a.warmup_seconds + 120)
        for x in anchors:
            wrk_run(servers[x], os.cpu_count(), a.warmup_seconds, lua, a.timeout)
        for s in servers.values():
            quiesce(s.pids())

        runs, order = [], 0
        for pair in range(a.pairs):
            for x in anchors:
                for side in ("imgserver", x):
                    log("pair %d/%d: %s (%s), %d connections, %gs" % (
                        pair + 1, a.pairs, side, "vs " + x if side == "imgserver" else "anchor",
                        a.conns, a.seconds))
                    if side == "imgserver":
                        r = imgserver_run(srv, imgdir, a.conns, a.seconds, os.path.join(
                            a.results, "anchors-run-%02d-imgserver.json" % order), a.timeout)
                    else:
                        r = wrk_run(servers[x], a.conns, a.seconds, lua, a.timeout)
                    waited, tail, idle = quiesce(servers[side].pids())
                    if not idle:
                        log("  %s still busy %ds after the run: the next run overlaps it" % (
                            side, waited))
                    r.update(server=side, vs=x, pair=pair, order=order, tail_wait_s=waited,
                             tail_cpu_s=tail, tail_idle=idle)
                    runs.append(per_request(r, 0 if side == "imgserver" else a.conns))
                    log("  %.1f req/s, p50 %.0f ms, p99 %.0f ms, %d errors, server CPU %.1f ms/req"
                        "; idle again after %.1f s" % (
                            r["rps"], r["p50_ms"] or 0, r["p99_ms"] or 0, r["errors"],
                            r["server_cpu_ms_per_req"], waited))
                    order += 1

        rat = {x: ratios(runs, x) for x in anchors}
        label = "blur σ%g" % SIGMA
        result = {
            "image": dict(want, file=name), "op": label, "conns": a.conns,
            "seconds": a.seconds, "pairs": a.pairs, "cores": os.cpu_count(),
            "requests": {"imgserver": "imgclient bench --op blur:%g" % SIGMA,
                         **{x: servers[x].url.split(":%d" % servers[x].port, 1)[1]
                            for x in anchors}},
            "checked": checked,
            "versions": versions(os.path.join(DEPS, "thumbor", "bin", "python")),
            "runs": runs, "ratios": rat, "goals": GOALS,
        }
        with open(os.path.join(a.results, "anchors.json"), "w") as f:
            json.dump(result, f, indent=1)
        with open(os.path.join(a.results, "goals-anchors.json"), "w") as f:
            json.dump(goal_rows(rat, label, a.conns, name), f, indent=1)
        for x, r in rat.items():
            if r:
                log("imgserver vs %s: req/s %s× (%s–%s), CPU-normalised %s×, "
                    "their p50 ÷ our p99 %s×" % (
                        x, *(fmt2(v) for v in (r["rps"]["median"], r["rps"]["min"],
                                               r["rps"]["max"], r["cpu"]["median"],
                                               r["p50_over_p99"]["median"]))))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log("failed: %s" % e)
        return 1
    finally:
        for s in servers.values():
            s.stop()
        # A load generator interrupted mid-run (measure.run does not kill it): ours, by pid.
        for pid in measure.children_of(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
