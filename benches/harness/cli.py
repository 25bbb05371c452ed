"""The command line: the options (`benches/run.sh -h`) and the Settings they make, with
the defaults of the full and the quick mode."""

import argparse
import os
from dataclasses import dataclass, field

from .common import ROOT, SetupError, target_dir

# The configurations --allocators chooses from, in table order.
ALLOCATORS = ["glibc", "cgmalloc", "cgmalloc-limited", "mimalloc", "jemalloc", "tcmalloc"]
# The default --group-counts.
FULL_GROUP_COUNTS = [1, 16, 256]
QUICK_GROUP_COUNTS = [1, 16]


@dataclass
class Settings:
    """What this run was asked for, the defaults filled in (kept in results.json)."""

    quick: bool
    runs: int
    threads: int
    short: bool
    group_counts: list
    workloads: list  # names asked for, or None for all
    allocators: list
    out: str  # where BENCHMARKS.md, results.json and chart.png go
    workload_bin: str  # where the workload programs are built
    workload_src: str
    timeout: float
    build_lib: bool
    install: bool
    criterion: bool
    baseline: str = ""  # another libcgmalloc.so to run beside this one, or ""
    # Peers built outside the repository (`--peer NAME=LIB`): {name: library path}.
    extra_peers: dict = field(default_factory=dict)
    argv: list = field(default_factory=list)
    maxrss_tool: str = ""  # benches/maxrss.c, once built

    @property
    def markdown(self):
        return os.path.join(self.out, "BENCHMARKS.md")

    @property
    def results_dir(self):
        """results.json and chart.png: benches/results for the default full run."""
        if self.out == ROOT:
            return os.path.join(ROOT, "benches", "results")
        return self.out


def comma_list(text):
    return [x.strip() for x in text.split(",") if x.strip()]


def count_list(text):
    """`1,16,256` -> [1, 16, 256] (argparse type)."""
    try:
        counts = [int(x) for x in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}")
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"group counts must be at least 1: {text!r}")
    return counts


def peer_spec(text):
    """`NAME=LIB` -> (name, absolute path) (argparse type)."""
    name, sep, lib = text.partition("=")
    name = name.strip()
    if not sep or not name or not lib:
        raise argparse.ArgumentTypeError(f"not NAME=LIB: {text!r}")
    if name in ALLOCATORS or name.startswith(("cgmalloc", "baseline")):
        raise argparse.ArgumentTypeError(f"--peer {name}: that name is taken")
    if not os.path.isfile(lib):
        raise argparse.ArgumentTypeError(f"--peer {name}: no such file {lib!r}")
    return name, os.path.abspath(lib)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="benches/run.sh",
        description="Benchmark cgmalloc against glibc malloc, mimalloc, jemalloc and "
        "tcmalloc on the C workloads in benches/workloads, and write BENCHMARKS.md.",
        epilog="See the docstring at the top of benches/run.py for how to read the output.",
    )
    p.add_argument("--quick", action="store_true",
                   help="smoke test: --short workloads, 1 run, 2 threads, groups 1 and 16, "
                   "output in target/bench/quick/; exits non-zero if any run failed")
    p.add_argument("--workloads", type=comma_list, help="only these workloads (a,b,...)")
    p.add_argument("--allocators", type=comma_list,
                   help="only these configurations, from: " + ", ".join(ALLOCATORS))
    p.add_argument("--runs", type=int, help="runs per workload and configuration (default 5)")
    p.add_argument("--threads", type=int, help="workload threads (default: the cores)")
    p.add_argument("--group-counts", type=count_list,
                   help="accounting-overhead group counts (default 1,16,256; "
                   "quick 1,16; empty to skip)")
    p.add_argument("--out", help="write BENCHMARKS.md, results.json, chart.png and the "
                   "workload programs here instead of the repo")
    p.add_argument("--timeout", type=float,
                   help="seconds before a run is killed (default 300, quick 60)")
    p.add_argument("--no-build-lib", action="store_true",
                   help="do not run cargo build; only check target/release/libcgmalloc.so")
    p.add_argument("--no-install", action="store_true",
                   help="install nothing (peers, matplotlib); use what is there")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: write the report again from the results directory's "
                        "results.json (as the run that wrote it was asked for) and the "
                        "criterion and side-by-side results at hand")
    p.add_argument("--baseline", metavar="LIB",
                   help="also run `cgmalloc` and `cgmalloc-limited` with this other build "
                   "of libcgmalloc.so, as `baseline` and `baseline-limited`")
    p.add_argument("--peer", type=peer_spec, action="append", default=[],
                   metavar="NAME=LIB",
                   help="also run this allocator library, built outside the repository "
                   "(mimalloc 3, snmalloc...), as configuration NAME: LD_PRELOAD=LIB; it "
                   "counts as a peer (repeatable)")
    p.add_argument("--criterion", action="store_true",
                   help="also run the criterion benches (alloc, charge) after the workloads")
    p.add_argument("--workload-src", default=os.path.join(ROOT, "benches", "workloads"),
                   help="the workloads' source directory (its Makefile takes OUT=)")
    return p.parse_args(argv)


def settings_from(args, argv):
    """Fills in the defaults, which differ between the full and the quick mode."""
    quick = args.quick
    if args.out:
        out = os.path.abspath(args.out)
    elif quick:
        out = os.path.join(target_dir(), "bench", "quick")
    else:
        out = ROOT
    workload_bin = (os.path.join(out, "workloads") if out != ROOT
                    else os.path.join(target_dir(), "bench", "workloads"))
    if args.group_counts is not None:
        group_counts = args.group_counts
    else:
        group_counts = QUICK_GROUP_COUNTS if quick else FULL_GROUP_COUNTS
    allocators = args.allocators or list(ALLOCATORS)
    unknown = [a for a in allocators if a not in ALLOCATORS]
    if unknown:
        raise SetupError(f"unknown allocator(s) {', '.join(unknown)}; "
                         f"known: {', '.join(ALLOCATORS)}")
    return Settings(
        quick=quick,
        runs=args.runs or (1 if quick else 5),
        threads=args.threads or (2 if quick else os.cpu_count() or 1),
        short=quick,
        group_counts=group_counts,
        workloads=args.workloads,
        allocators=[a for a in ALLOCATORS if a in allocators],
        out=out,
        workload_bin=workload_bin,
        workload_src=os.path.abspath(args.workload_src),
        timeout=args.timeout or (60.0 if quick else 300.0),
        build_lib=not args.no_build_lib,
        install=not args.no_install,
        criterion=args.criterion,
        baseline=os.path.abspath(args.baseline) if args.baseline else "",
        extra_peers=dict(args.peer),
        argv=argv,
    )
