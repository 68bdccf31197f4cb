"""``python -m benchmark report DIR``: rebuild every report file of a results directory.

Reads only DIR's raw files (``run.json``, ``requests.jsonl``, ``baseline.jsonl``,
``metrics/``); the same code wrote the report at the end of the run, so the rebuilt
``report.md`` is the same.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.report.files import write_report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="DIR", help="a results directory, e.g. results/20261126T204005Z-shared")


def run(args: argparse.Namespace) -> int:
    report = write_report(args.run_dir)
    print(report.console)
    print()
    print(f"report: {report.run_dir / 'report.md'}")
    print("files: " + ", ".join(p.name for p in report.files))
    return 0
