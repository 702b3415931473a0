#!/usr/bin/env python3
"""measure: run one benchmark command and keep its JSON result with what the machine was doing.

    python3 bench/measure.py --out FILE [--timeout S] [--env K=V]... [--format redis-csv]
                             -- CMD ARG...

CMD must print one JSON object on stdout (or redis-benchmark's --csv table). FILE gets that object plus "env": the load average
before, wall time, the CPU time CMD and its children used, and the CPU time everything else on
the machine used meanwhile ("other_cores": other processes' average number of busy cores).
On a machine shared with builds the last figure says how much the numbers can be trusted.
Also a library for service.py (python3 stdlib only, Linux /proc).
"""

import json
import os
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_cpu():
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def proc_cpu(pid):
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def children_of(pid):
    """Pids whose parent is `pid` (scans /proc: works without CONFIG_PROC_CHILDREN)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def run(cmd, timeout, env=None, watch=()):
    """Runs cmd; returns (returncode, stdout, stderr, env_info). `watch` are pids of other
    processes whose CPU is ours too (a server under test): counted apart from "other"."""
    before_load = loadavg()
    busy0, _ = machine_cpu()
    watched0 = {p: proc_cpu(p) for p in watch}
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        err += b"\nmeasure: timed out after %ds" % timeout
    wall = time.monotonic() - t0
    busy1, _ = machine_cpu()
    watched = sum(proc_cpu(q) - c for q, c in watched0.items())
    info = {
        "loadavg_before": before_load,
        "wall_s": wall,
        "machine_busy_s": busy1 - busy0,
        "watched_cpu_s": watched,
    }
    return p.returncode, out.decode(), err.decode(errors="replace"), info


def run_self_cpu(cmd, timeout, env=None, watch=()):
    """run(), plus the CPU time of cmd and its reaped descendants ("self_cpu_s") and the rest
    of the machine's busy time ("other_cores" = other CPU seconds / wall seconds)."""
    # RUSAGE_CHILDREN grows by exactly this child (and the children it reaped) once
    # communicate() has reaped it.
    r0 = os.times()
    rc, out, err, info = run(cmd, timeout, env, watch)
    r1 = os.times()
    own = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    info["self_cpu_s"] = own
    other = info["machine_busy_s"] - own - info["watched_cpu_s"]
    info["other_cores"] = max(0.0, other) / info["wall_s"] if info["wall_s"] > 0 else 0.0
    return rc, out, err, info


def redis_csv(text):
    """redis-benchmark --csv output as {"tests": {NAME: {column: number}}}."""
    import csv

    rows = list(csv.reader(text.splitlines()))
    head, tests = rows[0], {}
    for row in rows[1:]:
        if len(row) == len(head):
            tests[row[0]] = {h: float(v) for h, v in zip(head[1:], row[1:])}
    return {"tests": tests}


def main(argv):
    out_path, timeout, env, fmt = None, 900, dict(os.environ), "json"
    while argv and argv[0] != "--":
        flag, val = argv[0], argv[1]
        argv = argv[2:]
        if flag == "--out":
            out_path = val
        elif flag == "--timeout":
            timeout = float(val)
        elif flag == "--format":
            fmt = val
        elif flag == "--env":
            k, _, v = val.partition("=")
            env[k] = v
        else:
            sys.exit("measure: unknown flag %s" % flag)
    cmd = argv[1:]
    if not out_path or not cmd:
        sys.exit(__doc__)
    rc, out, err, info = run_self_cpu(cmd, timeout, env)
    sys.stderr.write(err)
    if rc != 0:
        sys.exit("measure: %s exited %s" % (" ".join(cmd[:3]), rc))
    result = redis_csv(out) if fmt == "redis-csv" else json.loads(out)
    result["env"] = info
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
