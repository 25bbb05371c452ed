"""chart.png: the ratios to glibc, drawn by draw_chart.py (next to this file) in a
python3 that has matplotlib, so that the harness itself needs only the standard
library."""

import json
import os
import tempfile

from .common import run_tool, warn
from .install import find_matplotlib

DRAW_CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "draw_chart.py")


def write_chart(summary, settings, apt):
    """chart.png: grouped bars of the ratio to glibc. Returns its path, or None (with a
    warning) when matplotlib cannot be had."""
    if "glibc" not in summary.main:
        warn("no chart: glibc was not run")
        return None
    python = find_matplotlib(settings, apt)
    if python is None:
        warn("no chart: matplotlib is not installed" +
             (" (quick mode installs nothing)" if settings.quick else ""))
        return None
    series = {c: [summary.time_ratio(w, c, "glibc") for w in summary.workloads]
              for c in summary.main if c != "glibc"}
    data = {"title": f"Median time, ratio to glibc ({settings.threads} threads, lower is faster)",
            "workloads": summary.workloads, "series": series}
    chart = os.path.join(settings.results_dir, "chart.png")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        status = run_tool([python, DRAW_CHART, f.name, chart], check=False)
    finally:
        os.unlink(f.name)
    if status != 0:
        warn(f"no chart: benches/harness/draw_chart.py failed with status {status}")
        return None
    return chart
