"""The allocator benchmark harness that benches/run.py runs (its docstring explains the
method and the output). It needs only the standard library: the chart is drawn with
matplotlib by draw_chart.py, a separate script. One concern per module:

  main        the run from start to exit status: measure, criterion, report
  cli         the options (`benches/run.sh -h`) -> Settings
  measure     running the workloads under every configuration, with maxrss and a timeout
  configs     the allocator configurations (environment and workload arguments)
  build       the library, the workload programs and the maxrss helper
  machine     the machine the runs were measured on
  report      BENCHMARKS.md and results.json
  chart       chart.png, through draw_chart.py
  install     the peer allocators and matplotlib (apt-get, pip)
  criterion   the criterion benches and their report sections
  tables      the tables of results, in Markdown
  stats       medians, ratios, geomeans: Cell and Summary
  common      paths, log and warnings, SetupError, running commands in a clean environment
  draw_chart  the matplotlib script, run in whichever python3 has matplotlib; imports
              nothing from the package

A module imports only modules below it in this list: main -> cli, measure, configs,
report, install, criterion; measure -> configs, build, machine, install; machine ->
install; report -> chart, criterion, tables, stats; chart -> install; criterion -> tables;
tables -> stats; all but tables, stats and draw_chart -> common.
"""
