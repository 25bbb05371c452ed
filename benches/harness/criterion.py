"""The criterion benches (`cargo bench --no-default-features`: alloc, charge, and
side_by_side, whose table is kept in the results directory) and their report sections."""

import datetime
import glob
import json
import os
import re
import shlex
import subprocess

from .common import ROOT, clean_env, log, run_tool, target_dir, warn
from .tables import table

SIDE_BY_SIDE = "side_by_side.md"


def run_criterion(settings):
    """The criterion benches, then `side_by_side` (its table written to the results
    directory). They build with --no-default-features, which rewrites
    target/release/libcgmalloc.so without malloc: hence run after the workloads, and the
    library rebuilt afterwards."""
    flags = ["--", "--warm-up-time", "1", "--measurement-time", "3"]
    ok = True
    for bench in ("alloc", "charge"):
        cmd = ["cargo", "bench", "--no-default-features", "--bench", bench] + flags
        if run_tool(cmd, check=False) != 0:
            warn(f"`cargo bench --bench {bench}` failed")
            ok = False
    cmd = ["cargo", "bench", "--no-default-features", "--bench", "side_by_side"]
    log("$ " + shlex.join(cmd))
    r = subprocess.run(cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, text=True,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0 or "|" not in r.stdout:
        warn("`cargo bench --bench side_by_side` failed")
        ok = False
    else:
        os.makedirs(settings.results_dir, exist_ok=True)
        with open(os.path.join(settings.results_dir, SIDE_BY_SIDE), "w") as f:
            f.write(r.stdout)
    run_tool(["cargo", "build", "--release"], check=False)
    return ok


def natural_key(text):
    """Sorts `pair/16` before `pair/256`: digit runs compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)]


def criterion_estimates(crit_dir):
    """[(benchmark, median ns, low, high, mtime)] from criterion's estimates.json files."""
    found = []
    paths = glob.glob(os.path.join(crit_dir, "**", "new", "estimates.json"), recursive=True)
    for path in sorted(paths, key=natural_key):
        name = os.path.relpath(os.path.dirname(os.path.dirname(path)), crit_dir)
        try:
            with open(path) as f:
                median = json.load(f)["median"]
            ci = median.get("confidence_interval", {})
            found.append((name, median["point_estimate"], ci.get("lower_bound"),
                          ci.get("upper_bound"), os.path.getmtime(path)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def fmt_ns(ns):
    if ns is None:
        return "—"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def section_criterion():
    crit_dir = os.path.join(target_dir(), "criterion")
    lines = ["## Criterion micro-benchmarks", ""]
    found = criterion_estimates(crit_dir)
    if not found:
        return lines + ["No criterion results in `target/criterion`: run "
                        "`benches/run.sh --criterion` (or `cargo bench "
                        "--no-default-features --bench alloc`, `--bench charge`).", ""]
    oldest = datetime.datetime.fromtimestamp(min(f[4] for f in found)).strftime("%Y-%m-%d %H:%M")
    lines += [f"Medians from `target/criterion/*/new/estimates.json` (measured since "
              f"{oldest}; `cargo bench --no-default-features --bench alloc|charge`).", ""]
    rows = [(f"`{name}`", fmt_ns(med), f"{fmt_ns(lo)} – {fmt_ns(hi)}")
            for name, med, lo, hi, _ in found]
    return lines + table(["benchmark", "median", "95 % interval"], rows) + [""]


def section_side_by_side(settings):
    """The interleaved-rounds table `run_criterion` kept, if any."""
    path = os.path.join(settings.results_dir, SIDE_BY_SIDE)
    lines = ["## Side by side: the same micro-benchmarks in interleaved rounds", ""]
    try:
        with open(path) as f:
            body = f.read().strip()
        stamp = datetime.datetime.fromtimestamp(os.path.getmtime(path)).strftime(
            "%Y-%m-%d %H:%M")
    except OSError:
        return lines + ["None yet: run `benches/run.sh --criterion` (or `cargo bench "
                        "--no-default-features --bench side_by_side`).", ""]
    return lines + [
        f"Measured {stamp} (`cargo bench --no-default-features --bench side_by_side`): "
        "each round runs one batch of every allocator, in rotating order; medians per "
        "operation over the rounds, and ratios of those medians. `per round` is the "
        "median of limited / root taken within each round.", "", body, ""]
