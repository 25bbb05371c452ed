"""The builds: the preloadable library (`cargo build --release`, checked to export
malloc), the workload programs (`make -C benches/workloads OUT=...`) and the maxrss
helper (benches/maxrss.c)."""

import os
import shutil
import subprocess

from .common import ROOT, SetupError, clean_env, library_path, run_tool, warn

# Table order for the workloads the contract names; any other one follows, sorted.
WORKLOAD_ORDER = [
    "simple", "thread", "larson", "xmalloc", "cache_scratch", "cache_thrash",
    "mstress", "malloc_large", "realloc_growth",
]


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
