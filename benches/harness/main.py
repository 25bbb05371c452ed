"""main: the options, then either the measuring, the criterion benches and the report, or
(`--report-only`) the report again from results.json; returns the exit status."""

import json
import os
import sys

from .cli import Settings, parse_args, settings_from
from .common import ROOT, WARNINGS, SetupError, log
from .configs import Config
from .criterion import run_criterion
from .install import Apt
from .measure import measure_all
from .report import write_report, write_results


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
