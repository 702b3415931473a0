#!/usr/bin/env python3
"""memory: what connections and a large image cost the imgserver master (python3 stdlib).

Starts imgserver on a free loopback port with a throwaway state directory and a user, the
per-address admission caps lifted (--conn-rate-per-addr 0, --max-unauth-per-addr 0,
--max-unauth-conns 0) and long handshake and idle timeouts, then reads the master's
VmRSS/VmHWM/RssAnon/RssShmem from /proc/PID/status:
  - at rest;
  - with --pre connections open and not logged in (plain TCP connects, nothing sent);
  - after those close;
  - with --conns connections logged in and idle (np_client_connect from libnetproto.so
    through ctypes: TCP, handshake and login, then nothing);
  - after those close (does the memory come back?);
and passes one image of --megapixels through the server (`imgclient run --ops noop`, a PNG
generated here, larger than a ring slot so it travels in per-job memfds both ways) on a fresh
server, reporting the master's VmHWM growth divided by the image's size.

Writes the figures as JSON to RESULTS/memory.json (--json to change it; RESULTS is --results,
by default run.sh's bench/.cache/results), the goal rows of issue #15 as
RESULTS/goals-memory.json (the shared goals convention, which report.py appends to RESULTS.md),
and prints a short summary.
"""

import argparse
import ctypes
import json
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import harness
from harness import HERE, REL, ROOT  # noqa: F401
PASSWORD = "memory-password"
USER = "mem"

# Issue #15's targets.
IDLE_GOAL_BYTES = 3 * 1024
IMAGE_GOAL_RATIO = 1.2


def log(msg):
    sys.stderr.write("memory: %s\n" % msg)
    sys.stderr.flush()


def status(pid):
    """The master's memory lines of /proc/PID/status, in KiB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(rest.split()[0])
    return out


def settle(pid, seconds=4.0):
    """Lets the master's once-a-second housekeeping (buffer give-back, heap trimming) run
    twice, then reads its status once two readings of VmRSS agree (at most `seconds`)."""
    deadline = time.monotonic() + seconds
    time.sleep(2.1)
    last = status(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = status(pid)
        if now["VmRSS"] == last["VmRSS"]:
            return now
        last = now
    return last


class Server(harness.Server):
    """harness.Server with one worker, long timeouts and every per-address admission cap
    lifted: ten thousand connections from 127.0.0.1 are the point here, not abuse."""

    def __init__(self, workdir, extra=()):
        os.makedirs(workdir, exist_ok=True)
        super().__init__(workdir, os.path.join(workdir, "server.log"), USER, PASSWORD,
                         ["--conn-rate-per-addr", "0", "--max-unauth-per-addr", "0",
                          "--max-unauth-conns", "0", "--handshake-timeout", "10m",
                          "--hello-timeout", "0", "--idle-timeout", "10m", "--workers", "1"]
                         + list(extra))


class NetProto:
    """The few libnetproto calls a blocking, logged-in client needs."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.np_client_config_new.argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                                                  ctypes.c_size_t,
                                                  ctypes.POINTER(ctypes.c_void_p)]
        self.lib.np_client_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p,
                                               ctypes.c_char_p, ctypes.c_uint32,
                                               ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
        self.lib.np_client_close.argtypes = [ctypes.c_void_p]
        self.lib.np_client_config_free.argtypes = [ctypes.c_void_p]
        cfg = ctypes.c_void_p()
        pw = PASSWORD.encode()
        rc = self.lib.np_client_config_new(USER.encode(), pw, len(pw), ctypes.byref(cfg))
        if rc != 0:
            raise RuntimeError("np_client_config_new: status %d" % rc)
        self.cfg = cfg

    def connect(self, addr):
        client = ctypes.c_void_p()
        rc = self.lib.np_client_connect(addr.encode(), self.cfg, None, 30000,
                                        ctypes.byref(client), None)
        if rc != 0:
            raise RuntimeError("np_client_connect: status %d" % rc)
        return client

    def close(self, client):
        self.lib.np_client_close(client)


def wait_stat(server, name, want, timeout=60):
    """Waits until the server's counter `name` reaches `want` (via `imgserver stats --json`)."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        r = subprocess.run([os.path.join(REL, "imgserver"), "stats", "--json", "--state-dir",
                            server.state], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            got = find_counter(json.loads(r.stdout), name)
            if got == want:
                return
        time.sleep(0.1)
    raise RuntimeError("counter %s is %s, want %s" % (name, got, want))


def find_counter(doc, name):
    if isinstance(doc, dict):
        if name in doc and isinstance(doc[name], int):
            return doc[name]
        for v in doc.values():
            got = find_counter(v, name)
            if got is not None:
                return got
    return None


def png(path, width, height, noisy):
    """A width x height RGB PNG: `noisy` random bytes at the start of every row, the rest
    black, so its size is about noisy x height whatever the pixel count."""
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c))

    z = zlib.compressobj(1)
    parts = []
    blank = bytes(width * 3 - noisy)
    for _ in range(height):
        parts.append(z.compress(b"\x00" + os.urandom(noisy) + blank))
    parts.append(z.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(parts)))
        f.write(chunk(b"IEND", b""))
    return os.path.getsize(path)


def measure_conns(server, np, n_pre, n_login):
    out = {"rest": settle(server.pid)}
    # Not logged in: a TCP connect the server has accepted, nothing sent.
    host, port = server.addr.rsplit(":", 1)
    socks = []
    for _ in range(n_pre):
        socks.append(socket.create_connection((host, int(port))))
    wait_stat(server, "connections_open", n_pre)
    out["pre_login_open"] = settle(server.pid)
    for s in socks:
        s.close()
    wait_stat(server, "connections_open", 0)
    out["pre_login_closed"] = settle(server.pid)
    # Logged in and idle.
    clients = []
    t0 = time.monotonic()
    for i in range(n_login):
        clients.append(np.connect(server.addr))
        if i and i % 2000 == 0:
            log("  %d logged in (%.0f s)" % (i, time.monotonic() - t0))
    wait_stat(server, "connections_open", n_login)
    out["logged_in_open"] = settle(server.pid)
    for c in clients:
        np.close(c)
    wait_stat(server, "connections_open", 0)
    out["logged_in_closed"] = settle(server.pid)
    return out


def measure_image(server, workdir, megapixels):
    width = 8192
    height = max(1, int(megapixels * 1e6) // width)
    image = os.path.join(workdir, "big.png")
    size = png(image, width, height, noisy=1600)
    known = os.path.join(workdir, "known_servers")
    env = dict(os.environ, IMGCLIENT_SERVER=server.addr, IMGCLIENT_USER=USER,
               IMGCLIENT_PASSWORD=PASSWORD, IMGCLIENT_KNOWN_SERVERS=known)
    before = status(server.pid)
    result = os.path.join(workdir, "out.png")
    r = subprocess.run([os.path.join(REL, "imgclient"), "--timeout", "120s", "run", "--ops",
                        "noop", image, "-o", result], env=env, capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        raise RuntimeError("imgclient run failed: %s%s" % (r.stdout, r.stderr))
    after = status(server.pid)
    growth = (after["VmHWM"] - before["VmHWM"]) * 1024
    return {"width": width, "height": height, "input_bytes": size,
            "output_bytes": os.path.getsize(result), "before": before, "after": after,
            "hwm_growth_bytes": growth, "ratio": growth / size}


def goal(target, measured, goal_text, met):
    return {"target": target, "measured": measured, "spread": "", "goal": goal_text,
            "status": "met" if met else "missed", "cpu_normalised": ""}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=10000, help="idle logged-in connections")
    ap.add_argument("--pre", type=int, default=10000, help="connections before login")
    ap.add_argument("--megapixels", type=float, default=50.0)
    ap.add_argument("--results", default=os.path.join(HERE, ".cache", "results"),
                    help="results directory (run.sh's: bench/.cache/results)")
    ap.add_argument("--json", help="output file (default RESULTS/memory.json)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    a = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(a.conns, a.pre) + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    os.makedirs(a.results, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="imgserver-memory-")
    # The soname: bench/run.sh's private copy of the build holds only that file.
    np = NetProto(os.path.join(REL, "libnetproto.so.1"))
    # Enough connections for both phases; the master's own fd limit is raised by itself.
    try:
        server = Server(os.path.join(workdir, "conns"),
                        extra=["--max-conns", str(max(a.conns, a.pre) + 16)])
        try:
            log("%d connections before login, %d logged in" % (a.pre, a.conns))
            conns = measure_conns(server, np, a.pre, a.conns)
        finally:
            server.stop()
        # A fresh server, so the peak is the image's and not the connections' (the default
        # 4 MiB slot: a 50 MP image and its result each travel in a per-job memfd).
        server = Server(os.path.join(workdir, "image"))
        try:
            log("a %.0f MP image" % a.megapixels)
            image = measure_image(server, os.path.join(workdir, "image"), a.megapixels)
        finally:
            server.stop()
    finally:
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    rest = conns["rest"]["VmRSS"]
    kib = 1024

    def per_conn(phase, n):
        return (conns[phase]["VmRSS"] - rest) * kib / max(n, 1)

    summary = {
        "pre_login_bytes_per_conn": per_conn("pre_login_open", a.pre),
        "logged_in_bytes_per_conn": per_conn("logged_in_open", a.conns),
        "after_close_kib_over_rest": conns["logged_in_closed"]["VmRSS"] - rest,
        "image_hwm_ratio": image["ratio"],
    }
    doc = {"conns": a.conns, "pre": a.pre, "status_kib": conns, "image": image,
           "summary": summary}
    path = a.json or os.path.join(a.results, "memory.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    s = summary
    goals = [
        goal("idle logged-in connection, master memory", "%.0f B" % s["logged_in_bytes_per_conn"],
             "<= 3 KiB", s["logged_in_bytes_per_conn"] <= IDLE_GOAL_BYTES),
        goal("memory back after %d connections close" % a.conns,
             "%.1f MB over rest" % (s["after_close_kib_over_rest"] / 1024),
             "<= 3 MB over rest", s["after_close_kib_over_rest"] <= 3 * 1024),
        goal("%.0f MP image, master VmHWM growth / size" % a.megapixels,
             "%.2fx" % s["image_hwm_ratio"], "<= %.1fx" % IMAGE_GOAL_RATIO,
             s["image_hwm_ratio"] <= IMAGE_GOAL_RATIO),
    ]
    with open(os.path.join(a.results, "goals-memory.json"), "w") as f:
        json.dump(goals, f, indent=1)
    print("master at rest: %d KiB RSS" % rest)
    print("%d connections before login: %.0f B each (RSS %d KiB), %d KiB after close" % (
        a.pre, s["pre_login_bytes_per_conn"], conns["pre_login_open"]["VmRSS"],
        conns["pre_login_closed"]["VmRSS"]))
    print("%d idle logged-in connections: %.0f B each (RSS %d KiB), %d KiB after close" % (
        a.conns, s["logged_in_bytes_per_conn"], conns["logged_in_open"]["VmRSS"],
        conns["logged_in_closed"]["VmRSS"]))
    print("%dx%d PNG of %.1f MB (result %.1f MB): VmHWM %d -> %d KiB, growth %.2fx its size" % (
        image["width"], image["height"], image["input_bytes"] / 1e6,
        image["output_bytes"] / 1e6, image["before"]["VmHWM"], image["after"]["VmHWM"],
        image["ratio"]))
    print("wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
