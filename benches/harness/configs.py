"""The allocator configurations a workload runs under: each a set of environment
variables and workload arguments (glibc, cgmalloc, cgmalloc-limited, the peers, the
`--peer` libraries, the `--baseline` pair and the accounting-overhead `cgmalloc-gN`)."""

import os
from dataclasses import dataclass

from .common import SetupError

LIMITED_GROUPS = "/bench:max=64G"


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
    for name, path in settings.extra_peers.items():
        configs.append(Config(name, {"LD_PRELOAD": path}, [], "main"))
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
