"""harness: what every bench script shares (python3 stdlib): where the binaries are, an
imgserver started on a free loopback port in its own state directory, reading a results file
that may be missing, and the number format of the reports.

Trust boundary: none; it runs the project's own binaries on loopback as the local user.
"""

import json
import os
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# run.sh's private copy of the build (BENCH_BIN), else target/release.
REL = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release")


class Server:
    """imgserver (of the build in `rel`, else REL) on 127.0.0.1:0 in its own state directory
    (WORKDIR/state) with one user, the result cache off unless `flags` name --cache-size;
    `addr` is what it printed on `listening on ADDR`; stop() is idempotent (SIGTERM, then
    SIGKILL after 30 s)."""

    def __init__(self, workdir, logpath, user, password, flags=(), rel=None):
        os.makedirs(workdir, exist_ok=True)
        self.state = os.path.join(workdir, "state")
        exe = os.path.join(rel or REL, "imgserver")
        if user is not None:  # else the flags name a users file (--users-file)
            self._add_user(exe, user, password)
        self.log_path = logpath
        self.log = open(logpath, "w")
        flags = list(flags)
        # Every figure a bench reports is a cache-off figure unless it asks for the cache
        # (bench/cache.py does): a repeated input would otherwise be answered from it.
        if not any(f.startswith("--cache-size") for f in flags):
            flags += ["--cache-size", "0"]
        self.proc = subprocess.Popen(
            [exe, "--listen", "127.0.0.1:0", "--state-dir",
             self.state] + flags,
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.pid = self.proc.pid
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

    def _add_user(self, exe, user, password):
        subprocess.run([exe, "user", "add", user, "--state-dir", self.state],
                       input=password + "\n", text=True, check=True, capture_output=True,
                       timeout=60)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()


def load_json(path):
    """The JSON document at `path`, or None when it is missing or unreadable (a row that did
    not run is reported as missing, not as a crash of the report)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def num(x, digits=None):
    """A figure with as many digits as it needs (0 from 100, 1 from 10, else 2); n/a for None."""
    if x is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    return "%.*f" % (digits, x)


def bench(addr, known, user, password, args, watch, timeout):
    """One `imgclient bench` against addr, measured by measure.run_self_cpu with `watch`
    (the server's pids) counted apart: (bench JSON, measure's env info). Raises with the
    client's output when it fails."""
    import sys
    import tempfile

    import measure

    fd, raw = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    env = dict(os.environ, IMGCLIENT_SERVER=addr, IMGCLIENT_USER=user,
               IMGCLIENT_PASSWORD=password, IMGCLIENT_KNOWN_SERVERS=known)
    env.pop("IMGSERVER_ADDR", None)
    cmd = [os.path.join(REL, "imgclient"), "bench", "--json", raw] + list(args)
    rc, out, err, info = measure.run_self_cpu(cmd, timeout, env, watch=watch)
    try:
        with open(raw) as f:
            result = json.load(f)
    except (OSError, ValueError):
        result = None
    os.remove(raw)
    if rc != 0 or result is None:
        sys.stderr.write(out + err)
        raise RuntimeError("imgclient bench against %s failed (exit %s)" % (addr, rc))
    return result, info


def spread(values, fmt):
    """The min–max of a series, formatted ("" for a single value)."""
    return "%s–%s" % (fmt(min(values)), fmt(max(values))) if len(values) > 1 else ""


def goal_status(series, goal, higher):
    """A goals-table status: met when every value meets the goal, "met only within the
    spread" when only the median does, else missed."""
    import statistics

    good = [(v >= goal) if higher else (v <= goal) for v in series]
    med = statistics.median(series)
    if all(good):
        return "met"
    return "met only within the spread" if ((med >= goal) if higher else (med <= goal)) \
        else "missed"
