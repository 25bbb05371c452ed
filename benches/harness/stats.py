"""The statistics every table is made of: the runs of each (workload, configuration) as a
Cell (medians of time and peak RSS), ratios, geometric means, and the Summary over all."""

import math
import statistics
from dataclasses import dataclass

def is_peer(config):
    """Whether a main-table configuration is another allocator (not a cgmalloc build)."""
    return not config.startswith(("cgmalloc", "baseline"))


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
        """(name, median seconds) of the fastest other allocator: glibc, mimalloc,
        jemalloc, tcmalloc and any `--peer`."""
        times = [(self.time(workload, p), p) for p in self.main if is_peer(p)]
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
