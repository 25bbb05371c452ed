"""The machine the runs were measured on, for the report and results.json: CPU, cores,
memory, kernel, toolchain versions, the date, the git commit and the peers' packages."""

import datetime
import os
import platform
import subprocess

from .common import ROOT, first_line
from .install import PEERS, package_version


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


def machine_info(peers, extra_peers):
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
        "peers": {**{name: package_version(PEERS[name][0]) or path
                     for name, path in peers.items()},
                  **{name: f"built outside the repository: {path}"
                     for name, path in extra_peers.items()}},
    }
