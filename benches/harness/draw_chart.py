#!/usr/bin/env python3
"""Draws benches/results/chart.png for benches/run.py: a grouped bar chart of the median
time of each allocator divided by glibc's, per workload, on a log scale with a line at 1.0.

Usage: draw_chart.py DATA.json OUT.png, where DATA.json is
{"title": str, "workloads": [name, ...], "series": {allocator: [ratio or null, ...]}}.
It is a separate script, importing nothing from the harness package, so that the harness
needs only the standard library: chart.py starts it with whichever python3 has
matplotlib.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import FuncFormatter  # noqa: E402


def draw(data, out):
    workloads, series = data["workloads"], data["series"]
    n = max(len(series), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(workloads) + 2), 5))
    for i, (name, ratios) in enumerate(series.items()):
        xs = [w + (i - (n - 1) / 2) * width for w in range(len(workloads))]
        points = [(x, r) for x, r in zip(xs, ratios) if r]
        if points:
            ax.bar([p[0] for p in points], [p[1] for p in points], width, label=name)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(workloads, rotation=30, ha="right")
    ax.set_ylabel("median time ÷ glibc (log scale, lower is faster)")
    ax.set_title(data.get("title", ""))
    ax.legend(fontsize="small", ncol=min(n, 3))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        draw(json.load(f), argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
