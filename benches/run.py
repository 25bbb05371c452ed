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
--baseline LIB  --peer NAME=LIB (an allocator built outside the repository, e.g. mimalloc 3 or
snmalloc from upstream sources, run as configuration NAME and counted as a peer; repeatable)
--group-counts 1,16,256  --timeout S  --no-build-lib (use the existing
target/release/libcgmalloc.so)  --no-install  --workload-src DIR  -h.
A full run writes over BENCHMARKS.md and benches/results/ unless --out is given; the text
after the line `<!-- notes: kept across runs -->` in BENCHMARKS.md is kept.

The measuring part uses the standard library only; the chart is drawn by
benches/harness/draw_chart.py with matplotlib, in whichever python3 has it (skipped with a
warning if none has and it cannot be installed; quick mode installs nothing for it). Exit
status: 0 if every run succeeded, 1 if any failed (the report is still written), 2 if the
setup failed.

The code is the package benches/harness/ (its docstring lists the modules, one concern
each); this file only runs it.
"""

import sys

from harness.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
