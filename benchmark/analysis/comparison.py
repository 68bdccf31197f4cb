"""What a run's report compares, computed once: ``analyse(run) -> Analysis``.

Which runs are compared: every scenario other than ``alone`` against the ``alone`` records of
the same models, taken from this run (``--scenarios all``) or else from ``baseline.jsonl``
(the alone runs a shared run found under ``--results-dir``). Besides the impact: the summary,
the server-side attribution per scenario, the throughput timelines, the failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from benchmark.analysis.impact import Impact, compute_impact
from benchmark.analysis.promscrape import attribute, breakdown
from benchmark.analysis.summary import ErrorSample, error_samples, summarize
from benchmark.analysis.timeline import throughput_timeline
from benchmark.engine.records import RequestRecord
from benchmark.stack.rundir import LoadedRun

__all__ = ["BASELINE_SCENARIO", "BIN_S", "Analysis", "Comparison", "analyse", "impact_row", "scenario_order"]

BASELINE_SCENARIO = "alone"
BIN_S = 1.0  # s, the throughput timeline's bins


@dataclass(frozen=True)
class Comparison:
    """One scenario of the run against the alone baseline."""

    scenario: str
    impact: Impact
    breakdown: pd.DataFrame  # per model: where the extra mean latency went (promscrape.breakdown)


@dataclass(frozen=True)
class Analysis:
    """Every number the report shows, computed once from a loaded run."""

    run: LoadedRun
    records: list[RequestRecord]  # this run's, then the baseline's not measured here
    sources: list[str]  # per record: "run" or the baseline directory's name
    summary: pd.DataFrame
    comparisons: list[Comparison]
    attribution: pd.DataFrame
    timeline: pd.DataFrame
    errors: list[ErrorSample] = field(default_factory=list)  # the failures, by model, scenario and kind


def analyse(run: LoadedRun) -> Analysis:
    """Every number of the report: summary, impact per non-alone scenario, attribution, timelines."""
    own_alone = {r.model for r in run.records if r.scenario == BASELINE_SCENARIO}
    borrowed = [r for r in run.baseline if r.scenario == BASELINE_SCENARIO and r.model not in own_alone]
    records = list(run.records) + borrowed
    sources = ["run"] * len(run.records) + [run.meta.baselines.get(r.model, "baseline") for r in borrowed]
    scenarios = [s for s in run.meta.baseline_scenarios if s.models[0] not in own_alone] + run.meta.scenarios
    attributed: dict[tuple[str, str], dict[str, Any]] = {}
    for s in scenarios:
        for model in s.models:
            files = s.metrics.get(model, {})
            before, after = (run.scrape_text(files[p]) if p in files else None for p in ("before", "after"))
            if before is not None and after is not None:
                got = attribute(before, after, planned_kv_tokens=run.meta.planned_kv_tokens(model))
                attributed[(s.scenario, model)] = {"scenario": s.scenario, "model": model} | got
    summary = summarize(records)
    e2e = {(str(r["scenario"]), str(r["model"])): float(r["e2e_mean"]) for r in summary.to_dict("records")}

    alone = [r for r in records if r.scenario == BASELINE_SCENARIO]
    comparisons = []
    for scenario in scenario_order(run.records):
        if scenario == BASELINE_SCENARIO or not alone:
            continue
        impact = compute_impact(alone, [r for r in run.records if r.scenario == scenario])
        where = [
            {"model": m} | breakdown(attributed[(BASELINE_SCENARIO, m)], attributed[(scenario, m)],
                                     e2e_baseline_s=e2e[(BASELINE_SCENARIO, m)], e2e_other_s=e2e[(scenario, m)])
            for m in impact.models
            if (BASELINE_SCENARIO, m) in attributed and (scenario, m) in attributed
        ]
        comparisons.append(Comparison(scenario, impact, pd.DataFrame(where)))
    runs = [(s.scenario, s.models) for s in scenarios]
    return Analysis(
        run=run, records=records, sources=sources, summary=summary, comparisons=comparisons,
        attribution=pd.DataFrame(list(attributed.values())),
        timeline=throughput_timeline(records, runs=runs, bin_s=BIN_S),
        errors=error_samples(records),
    )


def scenario_order(records: Sequence[RequestRecord]) -> list[str]:
    """Scenario labels in first-seen order, the baseline first."""
    seen = list(dict.fromkeys(r.scenario for r in records))
    return sorted(seen, key=lambda s: s != BASELINE_SCENARIO)




def impact_row(impact: Impact, model: str, metric: str) -> dict[str, Any]:
    return next(r for r in impact.per_model.to_dict("records") if r["model"] == model and r["metric"] == metric)


