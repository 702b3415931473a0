"""report_growth: the growth curves' tables and plots (stdlib; used by report.py).

Trust boundary: none; it reads the JSON files bench/growth.py wrote. Three curves: ms per job
against megapixels (with a least-squares line and the points more than OFF_LINE off it),
throughput and p99 against connections, and throughput with 1 and 2 workers (pairs).
"""

import glob
import html
import math
import os
import re
import statistics

import harness

OFF_LINE = 0.20  # a point further than this (relative) from the fitted line is named
JOBS = [("blur2", "blur σ2", "#3182bd"), ("resize50", "resize 50% (Lanczos3)", "#e6550d")]


_load = harness.load_json


def load_growth(d):
    """{"images", "mp": {job: [(mp, record)]}, "conns": [(c, record)],
    "workers": {pair: {w: record}}} from RESULTS/growth-*.json."""
    g = {"images": _load(os.path.join(d, "growth-images.json")), "mp": {}, "conns": [],
         "workers": {}}
    sizes = {}
    if g["images"]:
        sizes = {r["mp_nominal"]: r["mp"] for r in g["images"]["images"]}
    for p in glob.glob(os.path.join(d, "growth-mp-*.json")):
        m = re.match(r"growth-mp-(\w+)-([\d.]+)\.json$", os.path.basename(p))
        r = _load(p)
        if m and r:
            nominal = float(m.group(2))
            g["mp"].setdefault(m.group(1), []).append((sizes.get(nominal, r["set_mp"]), r))
    for rows in g["mp"].values():
        rows.sort(key=lambda x: x[0])
    for p in glob.glob(os.path.join(d, "growth-conns-*.json")):
        r = _load(p)
        if r:
            g["conns"].append((r["conns"], r))
    g["conns"].sort(key=lambda x: x[0])
    for p in glob.glob(os.path.join(d, "growth-workers-*-p*.json")):
        r = _load(p)
        if r:
            g["workers"].setdefault(r["pair"], {})[r["workers"]] = r
    return g


def fit_line(points):
    """Least squares y = a + b x over [(x, y)], each point weighted 1/y², so that what is
    minimised is the relative error: an unweighted fit over 0.1 to 50 MP is set by the
    largest sizes alone and misses the small ones by several times their own cost. (a, b)."""
    ws = [(1.0 / (y * y) if y else 0.0, x, y) for x, y in points]
    sw = sum(w for w, _, _ in ws)
    if not sw:
        return 0.0, 0.0
    mx = sum(w * x for w, x, _ in ws) / sw
    my = sum(w * y for w, _, y in ws) / sw
    sxx = sum(w * (x - mx) ** 2 for w, x, _ in ws)
    b = sum(w * (x - mx) * (y - my) for w, x, y in ws) / sxx if sxx else 0.0
    return my - b * mx, b


def curve(g, job):
    """[(mp, ms per job)], the fit (a, b) and [(mp, ms, fitted, relative off)]."""
    pts = [(mp, r["ms_per_image"]) for mp, r in g["mp"].get(job, []) if r.get("ms_per_image")]
    if len(pts) < 2:
        return pts, None, []
    a, b = fit_line(pts)
    rows = []
    for mp, ms in pts:
        fit = a + b * mp
        rows.append((mp, ms, fit, (ms - fit) / fit if fit > 0 else float("inf")))
    return pts, (a, b), rows


def run_figures(r):
    """(req/s, p50 ms, p99 ms, ok, errors, server CPU ms/req, client CPU ms/req, other cores)."""
    b, e = r["bench"], r["env"]
    ok = max(1, b["ok"])
    lat = b["latency_ms"]
    return (b["throughput_rps"], lat.get("p50"), lat.get("p99"), b["ok"], b["errors"],
            1e3 * e["server_cpu_s"] / ok, 1e3 * e["client_cpu_s"] / ok, e["other_cores"])


f = harness.num


def pct(rel):
    v = round(100 * rel)
    return "%+d%%" % v if v else "0%"


def write_md(R, w):
    g = R.growth
    if not (g["mp"] or g["conns"] or g["workers"]):
        return
    w("## Growth curves")
    w("")
    w("How the cost grows with the work (bench/growth.py); plotted in results.svg.")
    w("")
    if g["mp"]:
        src = (g["images"] or {}).get("source", "?")
        w("### ms per job against megapixels")
        w("")
        w("One photograph of the set, `%s`, resized with imgfilters itself (`imgclient resize "
          "--local --mode exact`, Lanczos3, same aspect ratio) to each size; imgbench runs each "
          "size alone on one thread (median over passes, shrink-on-load off). A line "
          "*ms = a + b·MP* is fitted by least squares of the relative error (each size weighted "
          "1/ms², so the small sizes count as much as the large) over every size; *off the line* is "
          "(measured − fitted) ÷ fitted, and points more than %d%% off are named below. An "
          "enlarged photograph is smoother than a real one of that size, so its JPEG entropy "
          "decoding is cheaper per pixel and its output smaller." % (src, 100 * OFF_LINE))
        w("")
        fits = {job: curve(g, job) for job, _, _ in JOBS}
        sizes = sorted({mp for job in fits for mp, _ in fits[job][0]})
        head = "| MP | size | KiB |"
        sep = "|---|---|---|"
        for _, label, _ in JOBS:
            head += " %s ms | ms/MP | off the line |" % label
            sep += "---|---|---|"
        w(head)
        w(sep)
        imgs = {round(r["mp"], 6): r for r in (g["images"] or {}).get("images", [])}
        for mp in sizes:
            im = imgs.get(round(mp, 6), {})
            row = "| %s | %s | %s |" % (f(mp, 2), "%sx%s" % (im.get("width", "?"),
                                                            im.get("height", "?")),
                                       f(im["bytes"] / 1024, 0) if im else "?")
            for job, _, _ in JOBS:
                rr = {x[0]: x for x in fits[job][2]}.get(mp)
                ms = dict(fits[job][0]).get(mp)
                row += " %s | %s | %s |" % (
                    f(ms), f(ms / mp) if ms else "n/a",
                    (pct(rr[3]) if math.isfinite(rr[3]) else "fit ≤ 0")
                    if rr else "n/a")
            w(row)
        w("")
        for job, label, _ in JOBS:
            pts, ab, rows = fits[job]
            if not ab:
                continue
            off = [r for r in rows if not abs(r[3]) <= OFF_LINE]
            where = ("every size within %d%% of the line" % (100 * OFF_LINE) if not off else
                     "not linear at %s" % ", ".join(
                         "%s MP (%s ms, line %s ms, %s)" % (
                             f(mp, 2), f(ms), f(fit),
                             pct(rel) if math.isfinite(rel) else "fit ≤ 0")
                         for mp, ms, fit, rel in off))
            w("- %s: ms ≈ %s + %s × MP (%s ms per megapixel, %s ms fixed per job); %s." % (
                label, f(ab[0]), f(ab[1], 2), f(ab[1], 2), f(ab[0]), where))
        w("")
    if g["conns"]:
        first = g["conns"][0][1]
        w("### Throughput and p99 against connections")
        w("")
        w("`imgclient bench` (closed loop, encrypted) of blur σ2 on the curve's smallest image "
          "(`%s`) for %s each, against one server with its per-address connection caps lifted "
          "(`--max-unauth-per-addr 0 --conn-rate-per-addr 0`: every connection comes from "
          "127.0.0.1, and imgclient cannot spread source addresses), one ring slot per "
          "connection (`--slots`) and a long `--job-timeout`, so that 1,000 connections each "
          "keep a job in flight instead of being answered BUSY. Latency in a closed loop of C "
          "connections is mostly queueing (≈ C ÷ throughput)." % (
              ", ".join(first.get("images", [])),
              next((first["args"][i + 1] for i, x in enumerate(first["args"])
                    if x == "--duration"), "?")))
        w("")
        w("| connections | req/s | p50 ms | p99 ms | answered | errors | server CPU ms/req | "
          "client CPU ms/req | other cores |")
        w("|---|---|---|---|---|---|---|---|---|")
        for c, r in g["conns"]:
            x = run_figures(r)
            w("| %d | %s | %s | %s | %d | %d | %s | %s | %s |" % (
                c, f(x[0]), f(x[1]), f(x[2]), x[3], x[4], f(x[5], 3), f(x[6], 3), f(x[7], 2)))
        w("")
    if g["workers"]:
        w("### Throughput with 1 and 2 workers")
        w("")
        pairs = [p for _, p in sorted(g["workers"].items()) if 1 in p and 2 in p]
        conns = pairs[0][1].get("conns", "?") if pairs else "?"
        load = " ".join(pairs[0][1]["args"][-2:]) if pairs else "?"
        w("Two servers side by side, `--workers 1` and `--workers 2` (same flags otherwise, a "
          "long `--job-timeout`), blur σ2 over the image set at %s connections (enough to keep "
          "two workers busy), `%s` for both, alternated 1, 2, 1, 2, ...; the ratio is taken "
          "per pair, then the median and min–max spread. On %d cores the load generator "
          "shares the cores with the workers, so 2 workers cannot reach 2×."
          % (conns, load, R.cores))
        w("")
        w("| pair | 1 worker req/s | 2 workers req/s | 2 ÷ 1 | 1 worker p99 ms | 2 workers p99 "
          "ms | server CPU ms/req 1 / 2 | other cores 1 / 2 |")
        w("|---|---|---|---|---|---|---|---|")
        ratios = []
        for i, p in enumerate(pairs):
            a, b = run_figures(p[1]), run_figures(p[2])
            ratio = b[0] / a[0] if a[0] else None
            if ratio:
                ratios.append(ratio)
            w("| %d | %s | %s | %s | %s | %s | %s / %s | %s / %s |" % (
                i + 1, f(a[0]), f(b[0]), "%.2f×" % ratio if ratio else "n/a", f(a[2]), f(b[2]),
                f(a[5], 3), f(b[5], 3), f(a[7], 2), f(b[7], 2)))
        w("")
        if ratios:
            w("2 workers ÷ 1 worker: median **%.2f×** over %d pair%s%s." % (
                statistics.median(ratios), len(ratios), "" if len(ratios) == 1 else "s",
                " (%.2f–%.2f×)" % (min(ratios), max(ratios)) if len(ratios) > 1 else ""))
            w("")


# --- plots ------------------------------------------------------------------------------------

def _ticks(lo, hi, log):
    if log:
        out, e = [], math.floor(math.log10(lo))
        while 10 ** e <= hi * 1.0001:
            for m in (1, 2, 5):
                v = m * 10 ** e
                if lo * 0.9999 <= v <= hi * 1.0001:
                    out.append(v)
            e += 1
        return out or [lo, hi]
    step = (hi - lo) / 5 or 1
    mag = 10 ** math.floor(math.log10(step))
    step = next(m * mag for m in (1, 2, 5, 10) if step <= m * mag)
    v, out = 0.0, []
    while v <= hi * 1.0001:
        if v >= lo:
            out.append(v)
        v += step
    return out


def panel(o, x0, y0, w, h, title, series, xlog=False, ylog=False, xlabel="", ylabel="",
          lines=()):
    """A line/scatter plot: series [(label, colour, [(x, y)])] as markers joined by lines,
    `lines` [(label, colour, [(x, y)])] dashed (fits)."""
    pts = [p for _, _, ps in list(series) + list(lines) for p in ps
           if p[1] is not None and (not ylog or p[1] > 0) and (not xlog or p[0] > 0)]
    if not pts:
        return
    left, right, top, bottom = 55, 10, 24, 38
    pw, ph = w - left - right, h - top - bottom
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xlo, xhi = (min(xs), max(xs)) if xlog else (0.0, max(xs))
    ylo, yhi = (min(ys), max(ys)) if ylog else (0.0, max(ys) * 1.1)
    # Log axes: a little room around the data (ticks at 1, 2, 5 times powers of ten).
    if xlog:
        xlo, xhi = xlo / 1.25, xhi * 1.25
    if ylog:
        ylo, yhi = ylo / 1.25, yhi * 1.25
    xhi = xhi if xhi > xlo else xlo + 1
    yhi = yhi if yhi > ylo else ylo + 1

    def X(v):
        t = (math.log10(v) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo)) if xlog \
            else (v - xlo) / (xhi - xlo)
        return x0 + left + pw * t

    def Y(v):
        t = (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)) if ylog \
            else (v - ylo) / (yhi - ylo)
        return y0 + top + ph - ph * t

    o.append('<text x="%d" y="%d" font-size="12" font-weight="bold">%s</text>' % (
        x0 + left, y0 + 15, html.escape(title)))
    for v in _ticks(ylo, yhi, ylog):
        y = Y(v)
        o.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (
            x0 + left, x0 + left + pw, y, y))
        o.append('<text x="%.1f" y="%.1f" text-anchor="end" font-size="9">%g</text>' % (
            x0 + left - 4, y + 3, v))
    for v in _ticks(xlo, xhi, xlog):
        x = X(v)
        o.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/>' % (
            x, x, y0 + top, y0 + top + ph))
        o.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%g</text>' % (
            x, y0 + top + ph + 12, v))
    o.append('<text x="%.1f" y="%d" text-anchor="middle" font-size="10">%s</text>' % (
        x0 + left + pw / 2, y0 + h - 8, html.escape(xlabel)))
    o.append('<text x="%d" y="%.1f" font-size="10" transform="rotate(-90 %d %.1f)" '
             'text-anchor="middle">%s</text>' % (x0 + 12, y0 + top + ph / 2, x0 + 12,
                                                 y0 + top + ph / 2, html.escape(ylabel)))
    ly = y0 + top + 4
    for label, col, ps, dash in [(a, b, c, False) for a, b, c in series] + \
            [(a, b, c, True) for a, b, c in lines]:
        ps = [p for p in ps if p[1] is not None and (not ylog or p[1] > 0)
              and (not xlog or p[0] > 0)]
        if not ps:
            continue
        o.append('<polyline fill="none" stroke="%s" stroke-width="1.5"%s points="%s"/>' % (
            col, ' stroke-dasharray="4 3"' if dash else "",
            " ".join("%.1f,%.1f" % (X(x), Y(y)) for x, y in ps)))
        if not dash:
            for x, y in ps:
                o.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %g, %s</title>'
                         '</circle>' % (X(x), Y(y), col, html.escape(label), x, f(y)))
        o.append('<text x="%.1f" y="%.1f" font-size="9" fill="%s">%s</text>' % (
            x0 + left + 6, ly + 8, col, html.escape(label)))
        ly += 12


def svg_panels(R, y0, W):
    """SVG elements of the growth panels below y0, and the height they take (0: none)."""
    g = R.growth
    o = []
    if not (g["mp"] or g["conns"] or g["workers"]):
        return o, 0
    h1 = 0
    if g["mp"]:
        series, lines = [], []
        for job, label, col in JOBS:
            pts, ab, _ = curve(g, job)
            if pts:
                series.append((label + " (measured)", col, pts))
            if ab:
                # The fitted line, sampled along the log axis so it shows as the curve it is.
                lo, hi = pts[0][0], pts[-1][0]
                xs = [lo * (hi / lo) ** (i / 40) for i in range(41)]
                lines.append((label + " (least-squares line)", col,
                              [(x, ab[0] + ab[1] * x) for x in xs]))
        h1 = 300
        panel(o, 0, y0, W, h1, "ms per job vs megapixels (imgbench, one thread; log-log axes)",
              series, xlog=True, ylog=True, xlabel="megapixels", ylabel="ms per job",
              lines=lines)
    h2 = 0
    third = W // 3
    if g["conns"]:
        h2 = 260
        rows = [(c, run_figures(r)) for c, r in g["conns"]]
        panel(o, 0, y0 + h1, third, h2, "req/s vs connections",
              [("blur σ2, small image", "#756bb1", [(c, x[0]) for c, x in rows])],
              xlog=True, xlabel="connections", ylabel="requests/s")
        panel(o, third, y0 + h1, third, h2, "p99 latency vs connections",
              [("blur σ2, small image", "#756bb1", [(c, x[2]) for c, x in rows])],
              xlog=True, ylog=True, xlabel="connections", ylabel="p99 ms")
    if g["workers"]:
        h2 = max(h2, 260)
        pairs = [p for _, p in sorted(g["workers"].items()) if 1 in p and 2 in p]
        if pairs:
            med = {w: statistics.median(run_figures(p[w])[0] for p in pairs) for w in (1, 2)}
            x0, y = 2 * third + 55, y0 + h1
            o.append('<text x="%d" y="%d" font-size="12" font-weight="bold">throughput with 1 '
                     'and 2 workers</text>' % (x0, y + 15))
            top, ph = y + 30, h2 - 70
            vmax = max(med.values()) or 1
            for i, wk in enumerate((1, 2)):
                bh = ph * med[wk] / vmax
                bx = x0 + 20 + i * 90
                o.append('<rect x="%d" y="%.1f" width="60" height="%.1f" fill="%s"><title>%d '
                         'worker(s): %s req/s (median of %d)</title></rect>' % (
                             bx, top + ph - bh, bh, ("#9ecae1", "#3182bd")[i], wk, f(med[wk]),
                             len(pairs)))
                o.append('<text x="%d" y="%.1f" text-anchor="middle" font-size="9">%s req/s'
                         '</text>' % (bx + 30, top + ph - bh - 3, f(med[wk])))
                o.append('<text x="%d" y="%.1f" text-anchor="middle" font-size="10">%d worker%s'
                         '</text>' % (bx + 30, top + ph + 14, wk, "" if wk == 1 else "s"))
    return o, h1 + h2
