#!/usr/bin/env python3
"""cgmalloc's allocator benchmark: the C workloads under six allocator configurations.

What it does
------------
1. Builds the preloadable library (`cargo build --release`, default features, never with
   LD_PRELOAD set) and the workload programs (`make -C benches/workloads OUT=...`); every
   executable file the Makefile leaves in OUT is a workload.
2. Finds the peer allocators (mimalloc, jemalloc, tcmalloc) and installs the Debian
   packages that are missing (`apt-get install -y`); a peer that cannot be had is left out
   and the report says so.
3. Runs every workload under every configuration, alternating them run by run
   (`for run: for workload: for configuration`, the configuration order rotated each
   run), several runs each. A configuration is a set of environment variables and
   workload arguments:
     glibc             nothing preloaded
     cgmalloc          LD_PRELOAD=libcgmalloc.so, every thread in the root group
     cgmalloc-limited  accounting on: every thread in the child group /bench, whose limit
                       (64G) is far above what a workload needs
                       (CGMALLOC_GROUPS=/bench:max=64G CGMALLOC_ATTACH=/bench; if the
                       library ignores CGMALLOC_ATTACH, `--groups 1` instead, with a
                       warning)
     mimalloc, jemalloc, tcmalloc   LD_PRELOAD of each
     cgmalloc-gN       `--groups N`: the workload spreads its threads over N groups
                       /bench/g* (the accounting-overhead table, against `cgmalloc`)
     baseline, baseline-limited   with `--baseline LIB`: `cgmalloc` and
                       `cgmalloc-limited` with another build of the library (the
                       previous commit's, say), run interleaved with the others so that
                       a change is measured side by side with what it changes
   Each run records the time the workload reports (`seconds` in its RESULT line: the
   measured section only, not process start and exit) and the child's peak RSS
   (`ru_maxrss` from wait4, taken by the small static helper benches/maxrss.c: a child
   forked by Python would count Python's own ~20 MiB in its peak). A child that exceeds
   the timeout is killed and its cell marked failed; the others go on. Runs in groups
   also write CGMALLOC_STATS, to check that /bench was really charged.
4. Writes the report: BENCHMARKS.md (repo root), benches/results/results.json (every
   run, the machine, the settings) and benches/results/chart.png, and prints the tables.

How to read the output
----------------------
- Time table: the median over the runs of each workload's own `seconds`, and in
  parentheses its ratio to glibc's median on the same workload. Below 1.00x is faster
  than glibc. The last row is the geometric mean of those ratios over the workloads.
- Peak RSS table: the median peak resident set size in MiB, with the ratio to mimalloc
  (or to glibc when mimalloc is missing). Lower is less memory.
- cgmalloc-limited against the others: the configuration the project cares about
  (accounting on, as a real user runs it) divided by mimalloc, glibc and the fastest
  peer (glibc, mimalloc, jemalloc, tcmalloc) on each workload.
- Accounting overhead: cgmalloc with the workload's threads spread over 1, 16, 256 groups
  divided by cgmalloc with everything in the root; 1.03x is 3 % slower.
- Targets: the project's goals, each marked met / not met / not measured.
- A cell marked "k/N failed" had failed runs; its median is over the others.

Modes
-----
  benches/run.sh                 the full run (5 runs, every workload, threads = cores)
  benches/run.sh --quick         a smoke test of the harness: --short workloads, one run,
                                 2 threads, groups 1 and 16; writes to target/bench/quick/
                                 and exits non-zero if any run failed. Figures not checked.
  benches/run.sh --criterion     also runs the criterion benches (`cargo bench
                                 --no-default-features --bench alloc`, `--bench charge`)
                                 and the same allocator workloads in interleaved rounds
                                 (`--bench side_by_side`, its table kept in
                                 benches/results/side_by_side.md) after the workloads,
                                 then `cargo build --release` again (those builds
                                 overwrite libcgmalloc.so without malloc). Without it,
                                 the report summarises whatever results target/criterion
                                 and benches/results already hold.
  benches/run.sh --report-only   runs nothing: writes BENCHMARKS.md again from
                                 benches/results/results.json and the criterion and
                                 side-by-side results at hand (after editing the notes).
Options: --workloads a,b  --allocators x,y  --runs N  --threads N  --out DIR
--baseline LIB
--group-counts 1,16,256  --timeout S  --no-build-lib (use the existing
target/release/libcgmalloc.so)  --no-install  --workload-src DIR  -h.
A full run writes over BENCHMARKS.md and benches/results/ unless --out is given; the text
after the line `<!-- notes: kept across runs -->` in BENCHMARKS.md is kept.

The measuring part uses the standard library only; the chart is drawn by
benches/chart.py with matplotlib, in whichever python3 has it (skipped with a warning if
none has and it cannot be installed; quick mode installs nothing for it). Exit status: 0 if every run succeeded, 1 if any
failed (the report is still written), 2 if the setup failed.
"""

import argparse
import datetime
import glob
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTES_MARKER = "<!-- notes: kept across runs -->"
LIBDIR = "/usr/lib/x86_64-linux-gnu"

# Peer allocators: name -> (Debian package, shared library name).
PEERS = {
    "mimalloc": ("libmimalloc2.0", "libmimalloc.so.2"),
    "jemalloc": ("libjemalloc2", "libjemalloc.so.2"),
    "tcmalloc": ("libtcmalloc-minimal4", "libtcmalloc_minimal.so.4"),
}
ALLOCATORS = ["glibc", "cgmalloc", "cgmalloc-limited", "mimalloc", "jemalloc", "tcmalloc"]
# The allocators cgmalloc is compared with for "best peer".
BEST_PEER_CANDIDATES = ["glibc", "mimalloc", "jemalloc", "tcmalloc"]
# Table order for the workloads the contract names; any other one follows, sorted.
WORKLOAD_ORDER = [
    "simple", "thread", "larson", "xmalloc", "cache_scratch", "cache_thrash",
    "mstress", "malloc_large", "realloc_growth",
]
FULL_GROUP_COUNTS = [1, 16, 256]
QUICK_GROUP_COUNTS = [1, 16]
LIMITED_GROUPS = "/bench:max=64G"

# The project's targets.
TARGET_VS_MIMALLOC = 1.05
TARGET_VS_GLIBC = 0.85
TARGET_VS_BEST_PEER = 1.5
TARGET_OVERHEAD = 1.03
TARGET_RSS_VS_MIMALLOC = 1.15
LOSS_THRESHOLD = 1.10  # "Where cgmalloc loses": slower than the best peer by more than 10 %

WARNINGS = []


def log(msg=""):
    print(msg, flush=True)


def warn(msg):
    """Prints a warning now and keeps it for the report's notes."""
    WARNINGS.append(msg)
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


class SetupError(Exception):
    """Something the benchmark cannot run without (a build, the library)."""


# ---------------------------------------------------------------------------------------
# Settings


@dataclass
class Settings:
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


def target_dir():
    """Cargo's target directory (CARGO_TARGET_DIR if set, else ROOT/target)."""
    return os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target"))


def library_path():
    return os.path.join(target_dir(), "release", "libcgmalloc.so")


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
        argv=argv,
    )


# ---------------------------------------------------------------------------------------
# Processes


def clean_env(extra=None):
    """This process's environment without LD_PRELOAD or any CGMALLOC_* variable, plus
    `extra`. Every child gets this, so nothing leaks in from the caller's shell."""
    env = {k: v for k, v in os.environ.items()
           if k != "LD_PRELOAD" and not k.startswith("CGMALLOC_")}
    env.update(extra or {})
    return env


def run_tool(cmd, cwd=ROOT, check=True, quiet=False):
    """Runs a build or setup command with a clean environment; its output goes to ours
    unless `quiet`. Returns the exit status (raises SetupError if `check` and it failed)."""
    log("$ " + shlex.join(cmd))
    out = subprocess.DEVNULL if quiet else None
    status = subprocess.call(cmd, cwd=cwd, env=clean_env(), stdout=out, stderr=out,
                             stdin=subprocess.DEVNULL)
    if check and status != 0:
        raise SetupError(f"`{shlex.join(cmd)}` failed with status {status}")
    return status


def first_line(cmd):
    """The first line a command prints (stdout, else stderr), or 'unknown'."""
    try:
        r = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (r.stdout or r.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


@dataclass
class Child:
    """How one workload run ended."""
    status: int  # as os.waitstatus_to_exitcode: negative for a signal
    stdout: str
    stderr: str
    maxrss_kib: int  # None if the maxrss helper reported nothing
    timed_out: bool


def read_maxrss_report(path):
    """`maxrss=K exit=N` or `maxrss=K signal=N` (benches/maxrss.c) -> (KiB, status as
    os.waitstatus_to_exitcode gives it), or (None, None) if there is no report."""
    try:
        with open(path) as f:
            fields = dict(tok.split("=", 1) for tok in f.read().split() if "=" in tok)
        status = -int(fields["signal"]) if "signal" in fields else int(fields["exit"])
        return int(fields["maxrss"]), status
    except (OSError, KeyError, ValueError):
        return None, None


def run_child(cmd, env, settings, scratch):
    """Runs a workload through the maxrss helper, killing the process group after
    settings.timeout seconds. Its output goes to files (no pipe to fill up)."""
    killed = threading.Event()

    def kill(pid):
        killed.set()
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    report = os.path.join(scratch, "maxrss.report")
    if os.path.exists(report):
        os.unlink(report)  # never read the last run's
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([settings.maxrss_tool, report] + cmd, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        timer = threading.Timer(settings.timeout, kill, [proc.pid])
        timer.start()
        try:
            status = proc.wait()
        except BaseException:  # e.g. ^C: the child is in its own session, end it too
            kill(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
        maxrss, child_status = read_maxrss_report(report)
        out.seek(0)
        err.seek(0)
        return Child(
            status=status if child_status is None else child_status,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            maxrss_kib=maxrss,
            timed_out=killed.is_set(),
        )


def parse_result(stdout):
    """The key=value pairs of the last `RESULT ...` line, or None if there is none or its
    `seconds` is not a number."""
    lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
    if not lines:
        return None
    fields = dict(tok.split("=", 1) for tok in lines[-1].split()[1:] if "=" in tok)
    try:
        fields["seconds"] = float(fields["seconds"])
    except (KeyError, ValueError):
        return None
    for key, conv in (("ops", int), ("ops_per_sec", float), ("threads", int), ("groups", int)):
        try:
            fields[key] = conv(fields[key])
        except (KeyError, ValueError):
            pass
    return fields


SIZE_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text):
    """`1.7M` -> bytes, as CGMALLOC_STATS prints them; None for `max` or garbage."""
    m = re.fullmatch(r"([0-9.]+)([KMGT]?)i?B?", text.strip(), re.IGNORECASE)
    if not m:
        return None
    return int(float(m.group(1)) * SIZE_SUFFIX[m.group(2).upper()])


def parse_stats(path):
    """The CGMALLOC_STATS table -> {group path: memory.peak in bytes}."""
    peaks = {}
    try:
        with open(path) as f:
            for line in f:
                cols = line.split()
                if len(cols) >= 3 and cols[0].startswith("/"):
                    peaks[cols[0]] = parse_size(cols[2])
    except OSError:
        pass
    return peaks


# ---------------------------------------------------------------------------------------
# Builds and peers


def build_library(settings):
    """`cargo build --release` (unless --no-build-lib), then checks that the library
    exists and exports malloc: a `--no-default-features` build writes the same file
    without the standard names, and preloading it would silently measure glibc."""
    if settings.build_lib:
        run_tool(["cargo", "build", "--release"])
    lib = library_path()
    if not os.path.isfile(lib):
        raise SetupError(f"{lib} is missing: run `cargo build --release`")
    if shutil.which("nm"):
        r = subprocess.run(["nm", "-D", "--defined-only", lib], env=clean_env(),
                           capture_output=True, text=True)
        if not any(l.endswith(" T malloc") for l in r.stdout.splitlines()):
            raise SetupError(f"{lib} does not export malloc (built with "
                             "--no-default-features?): run `cargo build --release`")
    else:
        warn("nm not found: could not check that libcgmalloc.so exports malloc")
    return lib


def build_workloads(settings):
    """`make -C <src> OUT=<bin>`; returns {name: path} of the executables in <bin>,
    restricted to --workloads, in table order."""
    if not os.path.isfile(os.path.join(settings.workload_src, "Makefile")):
        raise SetupError(f"no Makefile in {settings.workload_src}: the workload "
                         "programs are missing")
    os.makedirs(settings.workload_bin, exist_ok=True)
    run_tool(["make", "-C", settings.workload_src, f"OUT={settings.workload_bin}"])
    found = {}
    for name in os.listdir(settings.workload_bin):
        path = os.path.join(settings.workload_bin, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            found[name] = path
    if settings.workloads:
        missing = [w for w in settings.workloads if w not in found]
        if missing:
            raise SetupError(f"no workload named {', '.join(missing)} "
                             f"(built: {', '.join(sorted(found))})")
        found = {w: found[w] for w in settings.workloads}
    if not found:
        raise SetupError(f"the Makefile built no executable in {settings.workload_bin}")
    order = {w: i for i, w in enumerate(WORKLOAD_ORDER)}
    names = sorted(found, key=lambda w: (order.get(w, len(order)), w))
    return {w: found[w] for w in names}


def build_maxrss(settings):
    """Compiles benches/maxrss.c (statically if the toolchain can, so that LD_PRELOAD
    does not load the allocator under test into the helper too)."""
    tools = os.path.join(os.path.dirname(settings.workload_bin), "tools")
    os.makedirs(tools, exist_ok=True)
    exe = os.path.join(tools, "maxrss")
    src = os.path.join(ROOT, "benches", "maxrss.c")
    base = ["cc", "-O2", "-Wall", "-o", exe, src]
    if run_tool(base[:1] + ["-static"] + base[1:], check=False, quiet=True) != 0:
        warn("cc -static failed: the maxrss helper is linked dynamically, so LD_PRELOAD "
             "loads each allocator into it too (a small floor under the peak RSS)")
        run_tool(base)
    return exe


def find_shared_lib(soname):
    """The path of a shared library: in the multiarch directory, else from ldconfig."""
    path = os.path.join(LIBDIR, soname)
    if os.path.exists(path):
        return path
    try:
        cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return None
    for line in cache.splitlines():
        name, _, where = line.strip().partition(" => ")
        if name.split(" ")[0] == soname and "x86-64" in name and os.path.exists(where):
            return where
    return None


class Apt:
    """apt-get install, with one `apt-get update` when an install first fails."""

    def __init__(self):
        self.updated = False

    def usable(self):
        return os.geteuid() == 0 and shutil.which("apt-get") is not None

    def install(self, package):
        """Installs a Debian package; True on success."""
        if not self.usable():
            return False
        cmd = ["apt-get", "install", "-y", "-q", package]
        env = clean_env({"DEBIAN_FRONTEND": "noninteractive"})
        for attempt in range(2):
            log("$ " + shlex.join(cmd))
            r = subprocess.run(cmd, env=env, capture_output=True, text=True,
                               stdin=subprocess.DEVNULL)
            if r.returncode == 0:
                return True
            if attempt == 0 and not self.updated:
                self.updated = True
                log("$ apt-get update -q")
                subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                               stdin=subprocess.DEVNULL)
            else:
                break
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        warn(f"`apt-get install {package}` failed: {tail[0]}")
        return False


def find_peers(settings, apt):
    """{peer: library path} for the selected peers, installing the missing ones when
    allowed. A peer that cannot be had is left out, with a warning."""
    peers = {}
    for name in settings.allocators:
        if name not in PEERS:
            continue
        package, soname = PEERS[name]
        path = find_shared_lib(soname)
        why = "--no-install"
        if path is None and settings.install:
            if not apt.usable():
                why = "not root, or no apt-get"
            elif apt.install(package):
                path = find_shared_lib(soname)
            else:
                why = "apt-get install failed"
        if path is None:
            warn(f"{name} is missing ({soname} from {package}; {why}): run without it")
        else:
            peers[name] = path
    return peers


def package_version(package):
    """The installed version of a Debian package, or None."""
    if not shutil.which("dpkg-query"):
        return None
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


# ---------------------------------------------------------------------------------------
# Configurations


@dataclass
class Config:
    name: str
    env: dict  # added to the child's environment
    args: list  # added to the workload's arguments
    table: str  # "main" or "overhead"
    groups: int = 0  # the --groups N passed, 0 for none
    check_bench: bool = False  # check with CGMALLOC_STATS that /bench was charged

    def describe(self):
        parts = [f"{k}={v}" for k, v in self.env.items()] + self.args
        return " ".join(parts) if parts else "(nothing preloaded)"


def limited_config(lib, attach):
    """cgmalloc-limited: every thread in /bench through CGMALLOC_ATTACH, or, when the
    library does not know that variable, the workload's own `--groups 1`."""
    if attach:
        env = {"LD_PRELOAD": lib, "CGMALLOC_GROUPS": LIMITED_GROUPS,
               "CGMALLOC_ATTACH": "/bench"}
        return Config("cgmalloc-limited", env, [], "main", check_bench=True)
    return Config("cgmalloc-limited", {"LD_PRELOAD": lib}, ["--groups", "1"], "main",
                  groups=1, check_bench=True)


def make_configs(settings, lib, peers, attach):
    """The configurations to run, main table first, then the accounting-overhead ones
    (which need `cgmalloc` as their baseline)."""
    configs = []
    for name in settings.allocators:
        if name == "glibc":
            configs.append(Config("glibc", {}, [], "main"))
        elif name == "cgmalloc":
            configs.append(Config("cgmalloc", {"LD_PRELOAD": lib}, [], "main"))
        elif name == "cgmalloc-limited":
            configs.append(limited_config(lib, attach))
        elif name in peers:
            configs.append(Config(name, {"LD_PRELOAD": peers[name]}, [], "main"))
    if settings.baseline:
        if not os.path.isfile(settings.baseline):
            raise SetupError(f"--baseline {settings.baseline}: no such file")
        base = settings.baseline
        configs.append(Config("baseline", {"LD_PRELOAD": base}, [], "main"))
        limited = limited_config(base, attach)
        limited.name = "baseline-limited"
        configs.append(limited)
    if "cgmalloc" in settings.allocators:
        for n in settings.group_counts:
            configs.append(Config(f"cgmalloc-g{n}", {"LD_PRELOAD": lib},
                                  ["--groups", str(n)], "overhead", groups=n,
                                  check_bench=True))
    return configs


def workload_cmd(path, settings, config):
    cmd = [path, "-t", str(settings.threads)]
    if settings.short:
        cmd.append("--short")
    return cmd + config.args


def probe_attach(workload, path, settings, lib, scratch):
    """Runs one short workload with CGMALLOC_ATTACH=/bench and CGMALLOC_STATS, and tells
    whether /bench was charged (i.e. the library knows CGMALLOC_ATTACH)."""
    stats = os.path.join(scratch, "probe.stats")
    config = limited_config(lib, attach=True)
    env = clean_env(dict(config.env, CGMALLOC_STATS=stats))
    cmd = [path, "-t", str(settings.threads), "--short"]
    log(f"probe: does CGMALLOC_ATTACH work? {shlex.join(cmd)}")
    child = run_child(cmd, env, settings, scratch)
    peak = parse_stats(stats).get("/bench")
    if peak:
        log(f"probe: /bench peak {peak} bytes: CGMALLOC_ATTACH works")
        return True
    if child.status != 0:
        why = f"the probe run failed ({describe_status(child.status)})"
    else:
        why = "CGMALLOC_ATTACH had no effect (the /bench group was never charged)"
    warn(f"!!! {why}: cgmalloc-limited runs with the workloads' `--groups 1` instead !!!")
    return False


# ---------------------------------------------------------------------------------------
# Measuring


def describe_status(status):
    """`exit status 3` or `killed by SIGSEGV` for an os.waitstatus_to_exitcode value."""
    if status >= 0:
        return f"exit status {status}"
    try:
        return f"killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"killed by signal {-status}"


def run_once(workload, path, config, settings, scratch, run_index):
    """One run of one workload under one configuration -> a result record."""
    extra = dict(config.env)
    stats = None
    if config.check_bench:
        stats = os.path.join(scratch, f"{workload}.{config.name}.{run_index}.stats")
        extra["CGMALLOC_STATS"] = stats
    cmd = workload_cmd(path, settings, config)
    child = run_child(cmd, clean_env(extra), settings, scratch)
    result = parse_result(child.stdout)
    record = {
        "run": run_index, "workload": workload, "config": config.name,
        "table": config.table, "threads": settings.threads, "groups": config.groups,
        "command": shlex.join(cmd), "env": config.env, "status": child.status,
        "maxrss_kib": child.maxrss_kib, "seconds": None, "ops": None,
        "ops_per_sec": None, "ok": False, "error": None,
    }
    if result:
        record.update(seconds=result["seconds"], ops=result.get("ops"),
                      ops_per_sec=result.get("ops_per_sec"))
    if child.timed_out:
        record["error"] = f"timed out after {settings.timeout:g} s"
    elif child.status != 0:
        record["error"] = describe_status(child.status)
    elif result is None:
        record["error"] = "no RESULT line"
    else:
        record["ok"] = True
    if not record["ok"]:
        record["stderr_tail"] = child.stderr.strip().splitlines()[-5:]
    if stats is not None:
        record["bench_peak_bytes"] = parse_stats(stats).get("/bench")
        if os.path.exists(stats):
            os.unlink(stats)
    return record


def progress_line(record, settings):
    where = f"[{record['run'] + 1}/{settings.runs}] {record['workload']:<16} {record['config']:<18}"
    if not record["ok"]:
        tail = " | ".join(record.get("stderr_tail") or [])
        return f"{where} FAILED ({record['error']}) {tail}"
    rss = record["maxrss_kib"]
    rss_text = "?" if rss is None else f"{rss / 1024:.1f}"
    return f"{where} {record['seconds']:9.4f} s {rss_text:>9} MiB"


def measure(workloads, configs, settings, scratch):
    """Every run: for run, for workload, for configuration (rotated each run so that no
    configuration always goes first)."""
    records = []
    total = settings.runs * len(workloads) * len(configs)
    log(f"\n{total} runs: {settings.runs} x {len(workloads)} workloads x "
        f"{len(configs)} configurations, {settings.threads} threads")
    for r in range(settings.runs):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for workload, path in workloads.items():
            for config in order:
                record = run_once(workload, path, config, settings, scratch, r)
                records.append(record)
                log(progress_line(record, settings))
    check_bench_charged(records)
    return records


def check_bench_charged(records):
    """Warns about grouped runs that left /bench uncharged: their accounting was off."""
    bad = sorted({(r["workload"], r["config"]) for r in records
                  if r["ok"] and "bench_peak_bytes" in r and not r["bench_peak_bytes"]})
    for workload, config in bad:
        warn(f"!!! {workload} under {config}: the /bench group was never charged, so "
             "this configuration measured no accounting !!!")


# ---------------------------------------------------------------------------------------
# Statistics


@dataclass
class Cell:
    """The runs of one (workload, configuration)."""
    seconds: list
    rss_kib: list
    failed: int

    @property
    def total(self):
        return len(self.seconds) + self.failed

    @property
    def time(self):
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def rss(self):
        """Median peak RSS in KiB."""
        return statistics.median(self.rss_kib) if self.rss_kib else None


def cells_from(records):
    """{(workload, config): Cell}."""
    cells = {}
    for r in records:
        cell = cells.setdefault((r["workload"], r["config"]), Cell([], [], 0))
        if r["ok"]:
            cell.seconds.append(r["seconds"])
            if r["maxrss_kib"] is not None:
                cell.rss_kib.append(r["maxrss_kib"])
        else:
            cell.failed += 1
    return cells


def ratio(a, b):
    return a / b if a is not None and b else None


def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


class Summary:
    """The medians and ratios every table is made of."""

    def __init__(self, records, workloads, configs):
        self.records = records
        self.cells = cells_from(records)
        self.workloads = list(workloads)
        self.main = [c.name for c in configs if c.table == "main"]
        self.overhead = [c for c in configs if c.table == "overhead"]
        self.rss_base = "mimalloc" if "mimalloc" in self.main else "glibc"

    def time(self, workload, config):
        cell = self.cells.get((workload, config))
        return cell.time if cell else None

    def rss(self, workload, config):
        cell = self.cells.get((workload, config))
        return cell.rss if cell else None

    def time_ratio(self, workload, config, base):
        return ratio(self.time(workload, config), self.time(workload, base))

    def rss_ratio(self, workload, config, base):
        return ratio(self.rss(workload, config), self.rss(workload, base))

    def time_geomean(self, config, base):
        return geomean(self.time_ratio(w, config, base) for w in self.workloads)

    def rss_geomean(self, config, base):
        return geomean(self.rss_ratio(w, config, base) for w in self.workloads)

    def best_peer(self, workload):
        """(name, median seconds) of the fastest of glibc, mimalloc, jemalloc, tcmalloc."""
        times = [(self.time(workload, p), p) for p in BEST_PEER_CANDIDATES if p in self.main]
        times = [(t, p) for t, p in times if t is not None]
        if not times:
            return None, None
        t, p = min(times)
        return p, t

    def vs_best_peer(self, workload, config="cgmalloc-limited"):
        _, t = self.best_peer(workload)
        return ratio(self.time(workload, config), t)

    def failures(self):
        return sum(c.failed for c in self.cells.values())


# ---------------------------------------------------------------------------------------
# The report


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
             + ", ".join(BEST_PEER_CANDIDATES) + " on that workload.", ""]
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
    rows.append((f"every workload: cgmalloc-limited ÷ best peer ≤ {TARGET_VS_BEST_PEER:.1f}",
                 measured, verdict(r, TARGET_VS_BEST_PEER)))
    geo = overhead_geomeans(summary)
    measured = ", ".join(f"groups {n}: {fmt_ratio(v)}" for n, v in geo.items()) or "—"
    worst_overhead = None if not geo or None in geo.values() else max(geo.values())
    rows.append((f"accounting overhead: geomean ÷ root ≤ {TARGET_OVERHEAD:.2f} at every "
                 "group count", measured, verdict(worst_overhead, TARGET_OVERHEAD)))
    g = summary.rss_geomean(lim, "mimalloc") if "mimalloc" in summary.main else None
    rows.append((f"peak RSS geomean, cgmalloc-limited ÷ mimalloc ≤ {TARGET_RSS_VS_MIMALLOC:.2f}",
                 fmt_ratio(g), verdict(g, TARGET_RSS_VS_MIMALLOC)))
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


def section_machine(machine, configs, settings):
    rows = [(k, v) for k, v in machine.items() if k != "peers"]
    rows += [(f"{name} package", v) for name, v in machine.get("peers", {}).items()]
    lines = ["## Machine", ""] + table(["what", "value"], rows) + [""]
    lines += ["## Configurations", ""]
    lines += table(["name", "how the workload runs"],
                   [(c.name, f"`{c.describe()}`") for c in configs])
    lines += ["", f"Every workload runs as `<workload> -t {settings.threads}"
              + (" --short" if settings.short else "") + " <arguments above>`; "
              f"{settings.runs} run(s) each, alternating configurations run by run; "
              f"a run is killed after {settings.timeout:g} s.", ""]
    return lines


def section_notes(settings, summary):
    """What went wrong or differs from the plan in this run."""
    notes = list(dict.fromkeys(WARNINGS))
    if settings.quick:
        notes.insert(0, "Quick mode: `--short` workloads, one run; the figures are not "
                     "meaningful.")
    failed = {}
    for r in summary.records:
        if not r["ok"]:
            key = f"{r['workload']} under {r['config']}: {r['error']}"
            failed[key] = failed.get(key, 0) + 1
    notes += [f"failed: {k}" + (f" ({n} runs)" if n > 1 else "") for k, n in failed.items()]
    if not notes:
        return []
    return ["## Notes on this run", ""] + [f"- {n}" for n in notes] + [""]


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


SIDE_BY_SIDE = "side_by_side.md"


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


def reproduce_command(settings):
    return shlex.join(["benches/run.sh"] + settings.argv)


def render(summary, settings, machine, configs, chart):
    """The report's generated part (everything above the notes marker)."""
    lines = ["# cgmalloc benchmarks", "",
             "Generated by `benches/run.py` (its docstring explains the method). "
             "To reproduce:", "", "```", reproduce_command(settings), "```", "",
             f"Date: {machine['date']}, commit {machine['commit']}.", ""]
    lines += section_notes(settings, summary)
    lines += section_time(summary, settings)
    lines += section_rss(summary)
    lines += section_limited(summary)
    lines += section_geomeans(summary)
    lines += section_overhead(summary)
    lines += section_targets(summary, settings)
    if chart:
        rel = os.path.relpath(chart, os.path.dirname(settings.markdown))
        lines += ["## Chart", "", "Ratio to glibc per workload (lower is faster).", "",
                  f"![chart]({rel})", ""]
    lines += section_machine(machine, configs, settings)
    lines += section_criterion()
    lines += section_side_by_side(settings)
    lines += section_losses(summary)
    return "\n".join(lines)


def kept_notes(path):
    """The text after the notes marker in an existing report, or ''."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ""
    at = text.find(NOTES_MARKER)
    if at < 0:
        return ""
    return text[at + len(NOTES_MARKER):].lstrip("\n")


def write_markdown(path, body):
    """Writes the report, keeping whatever follows the notes marker in the old one."""
    notes = kept_notes(path)
    with open(path, "w") as f:
        f.write(body.rstrip("\n") + "\n\n" + NOTES_MARKER + "\n")
        if notes:
            f.write("\n" + notes)


# ---------------------------------------------------------------------------------------
# The chart (drawn by benches/chart.py, in a python3 that has matplotlib)


def python_with_matplotlib():
    """The first of this interpreter and the system's python3 that imports matplotlib."""
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        if python and os.path.exists(python):
            r = subprocess.run([python, "-c", "import matplotlib"], env=clean_env(),
                               capture_output=True)
            if r.returncode == 0:
                return python
    return None


def find_matplotlib(settings, apt):
    """A python3 with matplotlib, installing it (Debian's python3-matplotlib, else pip)
    when allowed and not in quick mode. None if there is none."""
    python = python_with_matplotlib()
    if python or settings.quick or not settings.install:
        return python
    if apt.usable() and apt.install("python3-matplotlib"):
        python = python_with_matplotlib()
    if python is None:
        run_tool([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=False)
        python = python_with_matplotlib()
    return python


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
        status = run_tool([python, os.path.join(ROOT, "benches", "chart.py"), f.name, chart],
                          check=False)
    finally:
        os.unlink(f.name)
    if status != 0:
        warn(f"no chart: benches/chart.py failed with status {status}")
        return None
    return chart


# ---------------------------------------------------------------------------------------
# Machine, criterion, main


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except OSError:
        pass
    return "unknown"


def git_commit():
    """HEAD's hash, marked when files other than the report differ from it."""
    head = first_line(["git", "-C", ROOT, "rev-parse", "HEAD"])
    r = subprocess.run(["git", "-C", ROOT, "status", "--porcelain"], capture_output=True,
                       text=True)
    dirty = [l for l in r.stdout.splitlines()
             if not l[3:].startswith(("BENCHMARKS.md", "benches/results"))]
    return head + (" (with uncommitted changes)" if dirty else "")


def machine_info(peers):
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory": memory_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "glibc": first_line(["ldd", "--version"]),
        "rustc": first_line(["rustc", "--version"]),
        "cc": first_line(["cc", "--version"]),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "peers": {name: package_version(PEERS[name][0]) or path
                  for name, path in peers.items()},
    }


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


def write_results(path, settings, machine, configs, records):
    data = {
        "settings": {k: v for k, v in vars(settings).items()},
        "machine": machine,
        "configs": [vars(c) for c in configs],
        "warnings": list(dict.fromkeys(WARNINGS)),
        "runs": records,
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def measure_all(settings):
    """Builds, finds the peers, probes CGMALLOC_ATTACH and runs everything:
    -> (workloads, configs, machine, records, apt)."""
    lib = build_library(settings)
    workloads = build_workloads(settings)
    settings.maxrss_tool = build_maxrss(settings)
    apt = Apt()
    peers = find_peers(settings, apt)
    with tempfile.TemporaryDirectory(prefix="cgmalloc-bench-") as scratch:
        attach = False
        if "cgmalloc-limited" in settings.allocators:
            first = next(iter(workloads))
            attach = probe_attach(first, workloads[first], settings, lib, scratch)
        configs = make_configs(settings, lib, peers, attach)
        machine = machine_info(peers)
        records = measure(workloads, configs, settings, scratch)
    return workloads, configs, machine, records, apt


def write_report(records, workloads, configs, settings, machine, apt):
    """The chart and BENCHMARKS.md from the runs -> (summary, body, chart path or None)."""
    summary = Summary(records, workloads, configs)
    os.makedirs(settings.results_dir, exist_ok=True)
    chart = write_chart(summary, settings, apt)
    body = render(summary, settings, machine, configs, chart)
    write_markdown(settings.markdown, body)
    return summary, body, chart


def report_only(settings):
    """Renders the report again from the results.json of `settings`' results directory."""
    path = os.path.join(settings.results_dir, "results.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"error: cannot read {path}: {e}", file=sys.stderr)
        return 2
    kept = Settings(**data["settings"])
    configs = [Config(**c) for c in data["configs"]]
    records = data["runs"]
    workloads = list(dict.fromkeys(r["workload"] for r in records))
    WARNINGS.extend(data.get("warnings", []))
    write_report(records, workloads, configs, kept, data["machine"], Apt())
    log(f"wrote {kept.markdown} from {path}")
    return 0


def main(argv):
    try:
        args = parse_args(argv)
        settings = settings_from(args, argv)
        os.chdir(ROOT)
        if args.report_only:
            return report_only(settings)
        workloads, configs, machine, records, apt = measure_all(settings)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    criterion_ok = run_criterion(settings) if settings.criterion else True
    summary, body, chart = write_report(records, workloads, configs, settings, machine, apt)
    write_results(os.path.join(settings.results_dir, "results.json"), settings, machine,
                  configs, records)
    log("\n" + body)
    log(f"\nwrote {settings.markdown}, {settings.results_dir}/results.json"
        + (f" and {chart}" if chart else ""))
    if summary.failures():
        print(f"error: {summary.failures()} run(s) failed", file=sys.stderr)
        return 1
    return 0 if criterion_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
