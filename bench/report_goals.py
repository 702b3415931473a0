"""report_goals: RESULTS.md's goals table, from the interleaved pairs (stdlib; used by report.py).

Trust boundary: none; it reads the JSON files the bench itself wrote. Every ratio is taken per
pair (service.py runs A B A B ...: the two runs of a pair are next to each other, so drift and
bursts of outside load fall on both), then reported as the median over the pairs with the
min-max spread, beside the same ratio CPU-normalised. Rows other bench scripts add come from
RESULTS/goals-*.json (report.py loads them into R.extra_goals) and are appended as they are.
"""

import statistics

# The in-process imgfilters side each job's service runs are held against: the server runs
# imgfilters' defaults, so its resize (shrink-on-load on) against imgbench's resize50d.
OWN_SIDE = {"blur2": ("imgfilters", "blur2"), "resize50": ("imgfilters", "resize50d"),
            "gray": ("imgfilters", "gray")}

MET, WITHIN, MISSED = "met", "met only within the spread", "missed"


def cpu_per_image_ms(r):
    """CPU ms per image of an in-process run (measure.py's CPU of the process tree over every
    job it ran, its warm-up job per thread included)."""
    jobs = sum(p["jobs"] for p in r["passes"]) + r["procs"]
    return 1e3 * r["env"]["self_cpu_s"] / jobs if jobs else None


def service_figures(r):
    """(images/s, CPU ms per image: server + client) of one service run."""
    b, e = r["bench"], r["env"]
    ok = max(1, b["ok"])
    rate = b["ok"] / b["elapsed_s"] if b["elapsed_s"] else 0.0
    return rate, 1e3 * (e["server_cpu_s"] + e["client_cpu_s"]) / ok


def pair_ratios(R, job, impl, injob):
    """[(wall ratio, CPU-normalised ratio)] of the service's `job` over the in-process
    (impl, injob) side, one per pair that has both sides."""
    out = []
    sides = R.pairs.get((impl, injob), {})
    for k, s in sorted(R.service_pairs.get(job, {}).items()):
        x = sides.get(k)
        if not x or not x.get("images_per_s"):
            continue
        rate, cpu = service_figures(s)
        c_in = cpu_per_image_ms(x)
        out.append((rate / x["images_per_s"], c_in / cpu if c_in and cpu else None))
    return out


def median_of(pairs, i):
    v = [p[i] for p in pairs if p[i] is not None]
    return statistics.median(v) if v else None


def status(series, goal, higher=True):
    """met: every pair meets the goal (the spread's worst end does) in every deciding series;
    met only within the spread: every series' median meets it but some pair does not;
    missed: a median misses it."""
    ok = (lambda v: v >= goal) if higher else (lambda v: v <= goal)
    worst = min if higher else max
    series = [v for v in series if v]
    if not series:
        return None
    if not all(ok(statistics.median(v)) for v in series):
        return MISSED
    return MET if all(ok(worst(v)) for v in series) else WITHIN


def fmt_ratio(v):
    return "%.2f×" % v


def spread(v, fmt=fmt_ratio):
    if not v:
        return ""
    if len(v) == 1:
        return "(one pair)"
    return "%s – %s" % (fmt(min(v)), fmt(max(v)))


def ratio_row(target, pairs, goal, cpu_decides, wall_decides):
    """One goals row from per-pair (wall, CPU) ratios."""
    wall = [p[0] for p in pairs]
    cpu = [p[1] for p in pairs if p[1] is not None]
    if not wall:
        return {"target": target, "measured": "n/a (not measured in this run)", "spread": "",
                "goal": "≥ %.2f×" % goal, "status": "", "cpu_normalised": ""}
    deciding = ([wall] if wall_decides else []) + ([cpu] if cpu_decides else [])
    return {"target": target, "measured": fmt_ratio(statistics.median(wall)),
            "spread": spread(wall),
            "cpu_normalised": (fmt_ratio(statistics.median(cpu)) + (
                " (%s)" % spread(cpu) if len(cpu) > 1 else "") if cpu else ""),
            "goal": "≥ %.2f×%s" % (goal, {(True, True): ", wall and CPU-normalised",
                                          (False, True): ", CPU-normalised",
                                          (True, False): ""}[(wall_decides, cpu_decides)]),
            "status": status(deciding, goal) or "", "pairs": len(wall)}


def goal_rows(R):
    """The issue's goals, computed from this run's pairs."""
    rows = []
    sharp_goals = [("blur2", "blur2", "blur σ2", 2.0),
                   ("resize50", "resize50", "resize 50%, same work (sharp without "
                    "shrink-on-load)", 1.5),
                   ("resize50", "resize50d", "resize 50%, each at its defaults (resize50d)", 1.5),
                   ("gray", "gray", "grayscale", 2.0)]
    for job, injob, label, goal in sharp_goals:
        rows.append(ratio_row("service vs sharp in-process, %s" % label,
                              pair_ratios(R, job, "sharp", injob), goal, True, True))
    for job, label in (("blur2", "blur σ2"), ("resize50", "resize 50% (imgfilters at its "
                                                          "defaults, as the server)"),
                       ("gray", "grayscale")):
        rows.append(ratio_row("service vs own in-process, %s" % label,
                              pair_ratios(R, job, *OWN_SIDE[job]), 0.95, True, False))
    # PING at 150 connections over redis-benchmark's, pair by pair.
    ping = []
    for k, s in sorted(R.ping150_pairs.items()):
        r = R.redis_pairs.get(k)
        if r:
            rr = (r["tests"].get("PING_MBULK") or r["tests"].get("PING_INLINE") or {}).get("rps")
            if rr:
                ping.append((s["bench"]["throughput_rps"] / rr, None))
    rows.append(ratio_row("PING at 150 connections vs redis-benchmark (PING_MBULK)", ping, 1.2,
                          False, True))
    # No-op job p50 minus PING p50 at one connection, pair by pair (µs).
    diffs = []
    noop = {r.get("pair", i): r for i, r in enumerate(R.noop1) if r}
    pings = {r.get("pair", i): r for i, r in enumerate(R.ping1) if r}
    for k in sorted(set(noop) & set(pings)):
        diffs.append(1e3 * (noop[k]["bench"]["latency_ms"]["p50"]
                            - pings[k]["bench"]["latency_ms"]["p50"]))
    us = lambda v: "%.0f µs" % v  # noqa: E731
    rows.append({"target": "no-op job p50 minus PING p50 (1 connection)",
                 "measured": us(statistics.median(diffs)) if diffs else
                 "n/a (not measured in this run)",
                 "spread": spread(diffs, us), "cpu_normalised": "", "goal": "≤ 30 µs",
                 "status": status([diffs], 30, higher=False) or "", "pairs": len(diffs)})
    return rows


def write_goals(R, w):
    """The goals section: the table, the rule, and which goals hold only within the spread."""
    rows = goal_rows(R)
    rows += R.extra_goals
    npairs = max([r.get("pairs", 0) for r in rows] + [0])
    w("## Goals (reported, not enforced)")
    w("")
    w("Every ratio comes from interleaved pairs of runs (service, then the other side, round "
      "after round: %d pair%s here), taken pair by pair and reported as the median with its "
      "min–max spread over the pairs. Throughput ratios compare images/s over the same image "
      "set, every image weighted equally, in-process on all %d cores. The service runs "
      "imgfilters' defaults (shrink-on-load on), so its resize is held against imgfilters' own "
      "resize at its defaults; against sharp it is shown both at sharp's defaults and against "
      "sharp doing the same work as every other implementation (no shrink-on-load)."
      % (npairs, "" if npairs == 1 else "s", R.cores))
    w("")
    w("| target | median ratio | spread (min–max) | CPU-normalised median (spread) | goal "
      "| status |")
    w("|---|---|---|---|---|---|")
    for r in rows:
        st = r.get("status", "")
        w("| %s | %s | %s | %s | %s | %s |" % (
            r.get("target", ""), r.get("measured", ""), r.get("spread", ""),
            r.get("cpu_normalised", ""), r.get("goal", ""),
            "**%s**" % st if st == MISSED else st))
    w("")
    w("*Status*: **met** when the goal holds for every pair (the spread's worse end meets it); "
      "**met only within the spread** when the median meets it but at least one pair does "
      "not; **missed** when the median does not. A goal marked *wall and CPU-normalised* must "
      "hold for both figures; *CPU-normalised* is decided by that figure alone. One pair (the "
      "smoke run) has no spread: its status is that pair's.")
    w("")
    w("*CPU-normalised*: the same ratio in images per CPU-second instead of per wall-second "
      "(in-process: the CPU of the process and its threads; service: the server's, master + "
      "workers, plus the load generator's). It does not depend on how much CPU other "
      "processes left each run, so on a busy machine it is the steadier of the two; it says "
      "what the ratio would be if both sides had the cores to themselves and used them fully.")
    w("")
    within = [r["target"] for r in rows if r.get("status") == WITHIN]
    missed = [r["target"] for r in rows if r.get("status") == MISSED]
    w("Met only within the spread: %s. Missed: %s." % (
        "; ".join(within) if within else "none",
        "; ".join(missed) if missed else "none"))
    w("")
