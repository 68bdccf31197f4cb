"""What a run's report compares, computed once: ``analyse(run) -> Analysis``.

Which runs are compared: every scenario other than ``alone`` against the ``alone`` records of
the same models, taken from this run (``--scenarios all``: interleaved, round by round) or else
from ``baseline.jsonl`` (the alone runs a shared run found under ``--results-dir``). Besides the
impact (pooled over the rounds, with its within-run bootstrap interval): each round's figures,
the drift between rounds and the impact over rounds (``benchmark.analysis.rounds``), the
summary, the server-side attribution per scenario (and round), the throughput timelines (the
keep-busy fillers included), the failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from benchmark.analysis.impact import Impact, compute_impact
from benchmark.analysis.promscrape import attribute_rounds, breakdown
from benchmark.analysis.rounds import Drift, RoundFigures, RoundsImpact, between_rounds, drifts, round_figures
from benchmark.analysis.summary import ErrorSample, error_samples, summarize
from benchmark.analysis.timeline import throughput_timeline
from benchmark.engine.records import RequestRecord
from benchmark.stack.rundir import LoadedRun, ScenarioMeta

__all__ = ["BASELINE_SCENARIO", "BIN_S", "Analysis", "Comparison", "analyse", "compare_records", "impact_row",
           "scenario_order"]

BASELINE_SCENARIO = "alone"
BIN_S = 1.0  # s, the throughput timeline's bins


@dataclass(frozen=True)
class Comparison:
    """One scenario of the run against the alone baseline."""

    scenario: str
    impact: Impact  # pooled over the rounds; its interval resamples requests within them
    rounds: RoundsImpact  # per round, and over the rounds
    breakdown: pd.DataFrame = field(default_factory=pd.DataFrame)  # per model: where the extra mean latency went


@dataclass(frozen=True)
class Analysis:
    """Every number the report shows, computed once from a loaded run."""

    run: LoadedRun
    records: list[RequestRecord]  # this run's, then the baseline's not measured here
    sources: list[str]  # per record: "run" or the baseline directory's name
    summary: pd.DataFrame
    comparisons: list[Comparison]
    attribution: pd.DataFrame  # per (scenario, round, model)
    timeline: pd.DataFrame
    rounds: list[RoundFigures] = field(default_factory=list)  # every (scenario, model, round)
    drift: list[Drift] = field(default_factory=list)  # every (scenario, model) with two rounds or more
    errors: list[ErrorSample] = field(default_factory=list)  # the failures, by model, scenario and kind


def compare_records(baseline: Sequence[RequestRecord], other: Sequence[RequestRecord], *,
                    interleaved: bool) -> tuple[Impact, RoundsImpact]:  # fmt: skip
    """The impact of ``other`` against ``baseline`` (one scenario each), pooled over their rounds
    and over the rounds; ``interleaved``: both ran round by round in one run."""
    impact = compute_impact(baseline, other)
    base_rounds, other_rounds = round_figures(baseline), round_figures(other)
    latency = {r["model"]: float(r["change"]) for r in impact.per_model.to_dict("records") if r["metric"] == "e2e_mean"}
    rounds = between_rounds(base_rounds, other_rounds, drifts([*base_rounds, *other_rounds]), latency_change=latency,
                            interleaved=interleaved, confidence=impact.confidence)
    return impact, rounds


def analyse(run: LoadedRun) -> Analysis:
    """Every number of the report: summary, rounds, impact per non-alone scenario, attribution, timelines."""
    own_alone = {r.model for r in run.records if r.scenario == BASELINE_SCENARIO}
    borrowed = [r for r in run.baseline if r.scenario == BASELINE_SCENARIO and r.model not in own_alone]
    records = list(run.records) + borrowed
    sources = ["run"] * len(run.records) + [run.meta.baselines.get(r.model, "baseline") for r in borrowed]
    scenarios = [s for s in run.meta.baseline_scenarios if s.models[0] not in own_alone] + run.meta.scenarios
    per_round, pooled = _attribution(run, scenarios)
    summary = summarize(records)
    e2e = {(str(r["scenario"]), str(r["model"])): float(r["e2e_mean"]) for r in summary.to_dict("records")}

    comparisons = []
    for scenario in scenario_order(run.records):
        alone = [r for r in records if r.scenario == BASELINE_SCENARIO]
        if scenario == BASELINE_SCENARIO or not alone:
            continue
        other = [r for r in run.records if r.scenario == scenario]
        paired = {r.model for r in other} <= own_alone
        impact, rounds = compare_records(alone, other, interleaved=paired)
        where = [
            {"model": m} | breakdown(pooled[(BASELINE_SCENARIO, m)], pooled[(scenario, m)],
                                     e2e_baseline_s=e2e[(BASELINE_SCENARIO, m)], e2e_other_s=e2e[(scenario, m)])
            for m in impact.models
            if (BASELINE_SCENARIO, m) in pooled and (scenario, m) in pooled
        ]
        comparisons.append(Comparison(scenario, impact, rounds, pd.DataFrame(where)))
    figures = round_figures(records)
    return Analysis(
        run=run, records=records, sources=sources, summary=summary, comparisons=comparisons,
        attribution=pd.DataFrame(per_round),
        timeline=throughput_timeline(records, runs=[(s.scenario, s.round, s.models) for s in scenarios], bin_s=BIN_S,
                                     fillers=run.fillers),
        rounds=figures, drift=drifts(figures), errors=error_samples(records),
    )  # fmt: skip


def _attribution(run: LoadedRun, scenarios: Sequence[ScenarioMeta]
                 ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:  # fmt: skip
    """The server's view from the ``/metrics`` scrapes: per (scenario, round, model), and per
    (scenario, model) over all its rounds."""
    pairs: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for s in scenarios:
        for model in s.models:
            files = s.metrics.get(model, {})
            before, after = (run.scrape_text(files[p]) if p in files else None for p in ("before", "after"))
            if before is not None and after is not None:
                pairs.setdefault((s.scenario, model), []).append((s.round, before, after))
    per_round, pooled = [], {}
    for (scenario, model), found in pairs.items():
        planned = run.meta.planned_kv_tokens(model)
        for rnd, before, after in found:
            got = attribute_rounds([(before, after)], planned_kv_tokens=planned)
            per_round.append({"scenario": scenario, "round": rnd, "model": model} | got)
        pooled[(scenario, model)] = attribute_rounds([(b, a) for _, b, a in found], planned_kv_tokens=planned)
    return per_round, pooled


def scenario_order(records: Sequence[RequestRecord]) -> list[str]:
    """Scenario labels in first-seen order, the baseline first."""
    seen = list(dict.fromkeys(r.scenario for r in records))
    return sorted(seen, key=lambda s: s != BASELINE_SCENARIO)


def impact_row(impact: Impact, model: str, metric: str) -> dict[str, Any]:
    return next(r for r in impact.per_model.to_dict("records") if r["model"] == model and r["metric"] == metric)
