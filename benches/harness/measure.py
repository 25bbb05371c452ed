"""The measuring: running one workload under one configuration through the maxrss helper
(with a timeout), reading its RESULT line and CGMALLOC_STATS, the CGMALLOC_ATTACH probe,
and every run, interleaved (`measure_all` also does the builds and finds the peers)."""

import os
import re
import shlex
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass

from .build import build_library, build_maxrss, build_workloads
from .common import clean_env, log, warn
from .configs import limited_config, make_configs, workload_cmd
from .install import Apt, find_peers
from .machine import machine_info


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
        machine = machine_info(peers, settings.extra_peers)
        records = measure(workloads, configs, settings, scratch)
    return workloads, configs, machine, records, apt
