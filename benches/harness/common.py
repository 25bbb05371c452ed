"""What every part of the harness uses: the repository root and cargo's target directory,
the log and the warnings kept for the report's notes, SetupError, and running commands
with a clean environment (no LD_PRELOAD, no CGMALLOC_* variable)."""

import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# This run's warnings, for the report's notes.
WARNINGS = []


def log(msg=""):
    print(msg, flush=True)


def warn(msg):
    """Prints a warning now and keeps it for the report's notes."""
    WARNINGS.append(msg)
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


class SetupError(Exception):
    """Something the benchmark cannot run without (a build, the library)."""


def target_dir():
    """Cargo's target directory (CARGO_TARGET_DIR if set, else ROOT/target)."""
    return os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target"))


def library_path():
    return os.path.join(target_dir(), "release", "libcgmalloc.so")


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
