"""The report's tables of results, as Markdown lines: time, peak RSS, cgmalloc-limited
against the others, geomeans, accounting overhead, the project's targets and where
cgmalloc loses; with the cell formatting they share."""

from .stats import geomean, is_peer

# The project's targets.
TARGET_VS_MIMALLOC = 1.05
TARGET_VS_GLIBC = 0.72
TARGET_VS_BEST_PEER = 1.10
TARGET_ACCOUNTING_ROW = 1.02  # cgmalloc-limited ÷ cgmalloc on every workload
TARGET_OVERHEAD = 1.03
TARGET_RSS_VS_GLIBC = 1.18
LOSS_THRESHOLD = 1.10  # "Where cgmalloc loses": slower than the best peer by more than 10 %


def fmt_seconds(s):
    if s is None:
        return "—"
    return f"{s:.0f}" if s >= 1000 else f"{s:.3g}"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def fmt_mib(kib):
    return "—" if kib is None else f"{kib / 1024:.1f}"


def table(header, rows):
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def failed_note(cell):
    return f" ⚠ {cell.failed}/{cell.total} failed" if cell and cell.failed else ""


def time_cell(summary, workload, config):
    """`median s (ratio to glibc)`, `failed`, or `—` when not run."""
    cell = summary.cells.get((workload, config))
    if cell is None:
        return "—"
    if cell.time is None:
        return "failed"
    r = summary.time_ratio(workload, config, "glibc")
    text = fmt_seconds(cell.time) + (f" ({fmt_ratio(r)})" if r is not None else "")
    return text + failed_note(cell)


def rss_cell(summary, workload, config):
    cell = summary.cells.get((workload, config))
    if cell is None:
        return "—"
    if cell.rss is None:
        return "failed"
    r = summary.rss_ratio(workload, config, summary.rss_base)
    return fmt_mib(cell.rss) + (f" ({fmt_ratio(r)})" if r is not None else "")


def section_time(summary, settings):
    lines = ["## Time", "",
             f"Median over {settings.runs} run(s) of the time each workload reports "
             f"(seconds), {settings.threads} threads; in parentheses the ratio to glibc "
             "(lower is faster).", ""]
    rows = [[w] + [time_cell(summary, w, c) for c in summary.main] for w in summary.workloads]
    if "glibc" in summary.main:
        rows.append(["**geomean ratio to glibc**"]
                    + [fmt_ratio(summary.time_geomean(c, "glibc")) for c in summary.main])
    return lines + table(["workload"] + summary.main, rows) + [""]


def section_rss(summary):
    base = summary.rss_base
    lines = ["## Peak RSS", "",
             f"Median peak resident set size (MiB, `ru_maxrss`); in parentheses the ratio "
             f"to {base} (lower is less memory).", ""]
    rows = [[w] + [rss_cell(summary, w, c) for c in summary.main] for w in summary.workloads]
    rows.append([f"**geomean ratio to {base}**"]
                + [fmt_ratio(summary.rss_geomean(c, base)) for c in summary.main])
    return lines + table(["workload"] + summary.main, rows) + [""]


def section_limited(summary):
    """cgmalloc-limited divided by mimalloc, glibc and the best peer, per workload."""
    if "cgmalloc-limited" not in summary.main:
        return []
    lim = "cgmalloc-limited"
    rows = []
    for w in summary.workloads:
        peer, _ = summary.best_peer(w)
        rows.append([w, fmt_ratio(summary.time_ratio(w, lim, "mimalloc")),
                     fmt_ratio(summary.time_ratio(w, lim, "glibc")),
                     f"{fmt_ratio(summary.vs_best_peer(w))} ({peer or '—'})"])
    rows.append(["**geomean**", fmt_ratio(summary.time_geomean(lim, "mimalloc")),
                 fmt_ratio(summary.time_geomean(lim, "glibc")),
                 fmt_ratio(geomean(summary.vs_best_peer(w) for w in summary.workloads))])
    lines = ["## cgmalloc-limited against the others", "",
             "Median time of cgmalloc-limited divided by that of each (below 1.00× "
             "cgmalloc-limited is faster); the best peer is the fastest of "
             + ", ".join(p for p in summary.main if is_peer(p)) + " on that workload.", ""]
    return lines + table(["workload", "÷ mimalloc", "÷ glibc", "÷ best peer"], rows) + [""]


def section_geomeans(summary):
    lines = ["## Geomeans", ""]
    if "glibc" in summary.main:
        parts = [f"{c} {fmt_ratio(summary.time_geomean(c, 'glibc'))}" for c in summary.main]
        lines.append("- time, ratio to glibc: " + ", ".join(parts))
    if "mimalloc" in summary.main:
        parts = [f"{c} {fmt_ratio(summary.time_geomean(c, 'mimalloc'))}" for c in summary.main]
        lines.append("- time, ratio to mimalloc: " + ", ".join(parts))
    base = summary.rss_base
    parts = [f"{c} {fmt_ratio(summary.rss_geomean(c, base))}" for c in summary.main]
    lines.append(f"- peak RSS, ratio to {base}: " + ", ".join(parts))
    return lines + [""]


def overhead_geomeans(summary):
    """{group count: geomean of (cgmalloc-gN / cgmalloc) over the workloads}."""
    return {c.groups: summary.time_geomean(c.name, "cgmalloc") for c in summary.overhead}


def section_overhead(summary):
    if not summary.overhead:
        return []
    header = ["workload", "cgmalloc (root), s"] + [f"groups {c.groups}" for c in summary.overhead]
    rows = []
    for w in summary.workloads:
        row = [w, fmt_seconds(summary.time(w, "cgmalloc"))]
        for c in summary.overhead:
            cell = summary.cells.get((w, c.name))
            r = summary.time_ratio(w, c.name, "cgmalloc")
            text = "failed" if cell and cell.time is None else fmt_ratio(r)
            row.append(text + failed_note(cell))
        rows.append(row)
    geo = overhead_geomeans(summary)
    rows.append(["**geomean**", ""] + [fmt_ratio(geo[c.groups]) for c in summary.overhead])
    lines = ["## Accounting overhead", "",
             "cgmalloc with the workload's threads spread over N groups `/bench/g*` "
             "(`--groups N`) divided by cgmalloc with every thread in the root, median "
             "time; 1.03× is 3 % slower.", ""]
    return lines + table(header, rows) + [""]


def verdict(value, limit):
    if value is None:
        return "not measured"
    return "**met**" if value <= limit else "**not met**"


def target_rows(summary):
    """(target, measured, verdict) for each of the project's targets."""
    lim = "cgmalloc-limited"
    rows = []
    g = summary.time_geomean(lim, "mimalloc") if "mimalloc" in summary.main else None
    rows.append((f"time geomean, cgmalloc-limited ÷ mimalloc ≤ {TARGET_VS_MIMALLOC:.2f}",
                 fmt_ratio(g), verdict(g, TARGET_VS_MIMALLOC)))
    g = summary.time_geomean(lim, "glibc") if "glibc" in summary.main else None
    rows.append((f"time geomean, cgmalloc-limited ÷ glibc ≤ {TARGET_VS_GLIBC:.2f}",
                 fmt_ratio(g), verdict(g, TARGET_VS_GLIBC)))
    worst = [(summary.vs_best_peer(w), w) for w in summary.workloads]
    worst = [x for x in worst if x[0] is not None]
    if worst:
        r, w = max(worst)
        measured = f"worst {fmt_ratio(r)} ({w})"
    else:
        r, measured = None, "—"
    rows.append((f"every workload: cgmalloc-limited ÷ best peer ≤ {TARGET_VS_BEST_PEER:.2f}",
                 measured, verdict(r, TARGET_VS_BEST_PEER)))
    if "cgmalloc" in summary.main:
        worst = [(summary.time_ratio(w, lim, "cgmalloc"), w) for w in summary.workloads]
        worst = [x for x in worst if x[0] is not None]
    else:
        worst = []
    if worst:
        r, w = max(worst)
        measured = f"worst {fmt_ratio(r)} ({w})"
    else:
        r, measured = None, "—"
    rows.append((f"every workload: cgmalloc-limited ÷ cgmalloc ≤ {TARGET_ACCOUNTING_ROW:.2f}",
                 measured, verdict(r, TARGET_ACCOUNTING_ROW)))
    geo = overhead_geomeans(summary)
    measured = ", ".join(f"groups {n}: {fmt_ratio(v)}" for n, v in geo.items()) or "—"
    worst_overhead = None if not geo or None in geo.values() else max(geo.values())
    rows.append((f"accounting overhead: geomean ÷ root ≤ {TARGET_OVERHEAD:.2f} at every "
                 "group count", measured, verdict(worst_overhead, TARGET_OVERHEAD)))
    g = summary.rss_geomean(lim, "glibc") if "glibc" in summary.main else None
    rows.append((f"peak RSS geomean, cgmalloc-limited ÷ glibc ≤ {TARGET_RSS_VS_GLIBC:.2f}",
                 fmt_ratio(g), verdict(g, TARGET_RSS_VS_GLIBC)))
    return rows


def section_targets(summary, settings):
    lines = ["## Targets", ""]
    if settings.quick:
        lines += ["Quick mode (`--short`, one run): a smoke test of the harness; these "
                  "verdicts mean nothing.", ""]
    return lines + table(["target", "measured", "verdict"], target_rows(summary)) + [""]


def section_losses(summary):
    lines = ["## Where cgmalloc loses", "",
             f"Workloads where cgmalloc-limited is more than {LOSS_THRESHOLD - 1:.0%} "
             "slower than the best peer (the explanation, by hand, is below the notes "
             "marker).", ""]
    losses = []
    for w in summary.workloads:
        r = summary.vs_best_peer(w)
        if r is not None and r > LOSS_THRESHOLD:
            peer, t = summary.best_peer(w)
            losses.append(f"- {w}: {fmt_ratio(r)} the best peer ({peer}: "
                          f"{fmt_seconds(t)} s against "
                          f"{fmt_seconds(summary.time(w, 'cgmalloc-limited'))} s)")
    if "cgmalloc-limited" not in summary.main:
        losses = ["- cgmalloc-limited was not run."]
    lines += losses or [f"None: cgmalloc-limited is within {LOSS_THRESHOLD - 1:.0%} of the "
                        "best peer on every workload."]
    return lines + [""]
