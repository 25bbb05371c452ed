"""What the harness installs when allowed: the peer allocators (Debian packages through
apt-get, found by their shared library) and matplotlib for the chart."""

import os
import shlex
import shutil
import subprocess
import sys

from .common import clean_env, log, run_tool, warn

LIBDIR = "/usr/lib/x86_64-linux-gnu"

# Peer allocators: name -> (Debian package, shared library name).
PEERS = {
    "mimalloc": ("libmimalloc2.0", "libmimalloc.so.2"),
    "jemalloc": ("libjemalloc2", "libjemalloc.so.2"),
    "tcmalloc": ("libtcmalloc-minimal4", "libtcmalloc_minimal.so.4"),
}


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
