"""The report files of a results directory, rebuilt from its raw files alone.

``write_report(run_dir)`` reads ``run.json``, ``requests.jsonl``, ``baseline.jsonl`` and the
``metrics/`` scrapes (``benchmark.stack.rundir``) and writes:

- ``requests.csv``: one row per request (``benchmark.summary.records_frame``; ``itl`` as a
  JSON list), the baseline's requests included, with a ``source`` column.
- ``summary.csv`` / ``summary.json``: one row per (model, scenario) (``benchmark.analysis.summary``);
  the JSON adds the impact (with what its rounds say), each round's figures, the drift between
  rounds, the server-side attribution and the run's metadata.
- ``report.md``: the guide's result blocks, impact lines, percentile table, impact detail,
  server-side attribution, access path, client self-check, metric definitions, and a
  SIMULATED banner when the numbers came from the simulator.
- ``latency_cdf.png`` (E2E latency CDF per model, one curve per scenario) and
  ``throughput.png`` (output tokens/s per second, per model: a panel per scenario and round, on
  one y-axis, with the keep-busy fillers of a shared scenario dashed).

The report modules only format: the numbers come from ``benchmark.analysis`` (``analyse``). Nothing in ``report.md`` depends on when it was written, and the bootstrap is
seeded, so ``python -m benchmark report DIR`` reproduces it exactly.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.analysis.comparison import BASELINE_SCENARIO, Analysis, analyse
from benchmark.analysis.summary import records_frame
from benchmark.report.console import console
from benchmark.report.markdown import markdown
from benchmark.report.plots import plots
from benchmark.stack.rundir import load_run

__all__ = ["Report", "write_report"]


@dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote: the Markdown, a terminal version, and the files."""

    run_dir: Path
    markdown: str
    console: str  # the guide's result blocks and impact lines, with the SIMULATED banner
    files: list[Path] = field(default_factory=list)


def write_report(run_dir: str | os.PathLike[str]) -> Report:
    """(Re)write every report file of ``run_dir`` from its raw files; see the module docstring."""
    a = analyse(load_run(run_dir))
    out = a.run.run_dir
    files = [out / name for name in ("requests.csv", "summary.csv", "summary.json", "report.md")]

    frame = records_frame(a.records)
    frame.insert(0, "source", a.sources)
    frame["itl"] = [json.dumps(gaps) for gaps in frame["itl"]]
    frame.to_csv(files[0], index=False)
    a.summary.to_csv(files[1], index=False)
    files[2].write_text(json.dumps(_summary_json(a), indent=2, allow_nan=False) + "\n")
    files += plots(a, out)
    text = markdown(a)
    files[3].write_text(text)
    return Report(run_dir=out, markdown=text, console=console(a), files=files)


def _summary_json(a: Analysis) -> dict[str, Any]:
    meta = a.run.meta
    return _clean({
        "label": meta.label,
        "created": meta.created,
        "simulated": meta.simulated,
        "time_scale": meta.time_scale,
        "settings": meta.settings,
        "summary": a.summary.to_dict("records"),
        "impact": [
            {"scenario": c.scenario, "baseline": BASELINE_SCENARIO, "confidence": c.impact.confidence,
             "n_boot": c.impact.n_boot, "seed": c.impact.seed, "per_model": c.impact.per_model.to_dict("records"),
             "aggregate": vars(c.impact.aggregate), "fairness": vars(c.impact.fairness),
             "latency_breakdown": c.breakdown.to_dict("records"),
             "rounds": {"interleaved": c.rounds.interleaved, "single_pass": c.rounds.single_pass,
                        "between": [vars(b) for b in c.rounds.between],
                        "drift_warnings": [vars(w) for w in c.rounds.warnings]}}
            for c in a.comparisons
        ],
        "repeats": meta.repeats,
        "seed": meta.seed,
        "rounds": [vars(f) for f in a.rounds],
        "drift": [vars(d) for d in a.drift],
        "attribution": a.attribution.to_dict("records"),
        "access": {k: vars(v) for k, v in meta.access.items()},
    })


def _clean(value: Any) -> Any:
    """JSON-safe: NaN -> null, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value



