"""The report files of a results directory, rebuilt from its raw files alone.

``write_report(run_dir)`` reads ``run.json``, ``requests.jsonl``, ``baseline.jsonl`` and the
``metrics/`` scrapes (``benchmark.stack.rundir``) and writes:

- ``requests.csv``: one row per request (``benchmark.summary.records_frame``; ``itl`` as a
  JSON list), the baseline's requests included, with a ``source`` column.
- ``summary.csv`` / ``summary.json``: one row per (model, scenario) (``benchmark.analysis.summary``);
  the JSON adds the impact, the server-side attribution and the run's metadata.
- ``report.md``: the guide's result blocks, impact lines, percentile table, impact detail,
  server-side attribution, access path, client self-check, metric definitions, and a
  SIMULATED banner when the numbers came from the simulator.
- ``latency_cdf.png`` (E2E latency CDF per model, one curve per scenario) and
  ``throughput.png`` (output tokens/s per second, per model, one panel per scenario).

This module only formats: the numbers come from ``summary``, ``impact``, ``promscrape`` and
``timeline``. Nothing in ``report.md`` depends on when it was written, and the bootstrap is
seeded, so ``python -m benchmark report DIR`` reproduces it exactly.

Which runs are compared: every scenario other than ``alone`` against the ``alone`` records of
the same models, taken from this run (``--plan all``) or else from ``baseline.jsonl``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display; before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmark.report.failures import failure_lines  # noqa: E402
from benchmark.analysis.impact import Impact, compute_impact  # noqa: E402
from benchmark.analysis.promscrape import attribute, breakdown  # noqa: E402
from benchmark.engine.records import RequestRecord  # noqa: E402
from benchmark.stack.rundir import LoadedRun, RunMeta, load_run  # noqa: E402
from benchmark.engine.selfcheck import SelfCheck
from benchmark.engine.driver import TargetCheck  # noqa: E402
from benchmark.analysis.summary import ErrorSample, error_samples, records_frame, summarize  # noqa: E402
from benchmark.analysis.timeline import throughput_timeline  # noqa: E402

__all__ = ["Analysis", "Comparison", "Report", "analyse", "write_report", "result_blocks", "impact_lines", "impact_markdown",
           "simulated_banner", "time_scale_note"]

BASELINE_SCENARIO = "alone"
BIN_S = 1.0  # s, the throughput timeline's bins
SIMULATED_BANNER = (
    "**SIMULATED**: these numbers come from the TGI simulator (`benchmark/sim`), "
    "not from models on a GPU. They show how the tool works, not how your cluster performs."
)


def time_scale_note(scale: float | None) -> str:
    """What the simulator's time scale (``RunMeta.time_scale``, from its /info) means for the figures."""
    if scale is None:
        return "The simulator's time scale was not recorded: compare only with runs of the same simulator settings."
    if scale == 1:
        return "Time scale x1: latencies and throughput are the presets' L40S estimates (the simulated step times)."
    factor, (latency, throughput) = (1 / scale, ("shorter", "higher")) if scale < 1 else (scale, ("longer", "lower"))
    return (f"Time scale x{scale:g}: latencies are {factor:.3g}x {latency} and throughput {factor:.3g}x {throughput} "
            "than the presets' L40S estimates (the simulated step times at x1).")


def simulated_banner(meta: RunMeta) -> str:
    """The SIMULATED banner with the run's time scale, as the simulator reported it."""
    return f"{SIMULATED_BANNER} {time_scale_note(meta.time_scale)}"


DEFINITIONS = """\
- **E2E latency**: completion minus the request's *intended* send time (queueing in the client
  or the server counts). Latency statistics cover successful requests; failures stay in every
  count and rate.
- **TTFT**: first token-bearing event minus the intended send time. **ITL**: every gap between
  consecutive token events, pooled. **TPOT**: (E2E - TTFT) / (output tokens - 1) per request.
- **Tokens per second**: output tokens of successful requests (as the server counted them)
  over the wall span from the first intended send to the last completion.
  **Requests/minute**: successful requests over the same span. **Success rate**: successes /
  all requests.
- **Impact**: per model, (other - baseline) / baseline, e.g. shared vs alone; latency +% is
  slower, throughput -% is less. 95 % confidence intervals: seeded percentile bootstrap over the
  requests, resampled within each prompt (throughput scaled by Little's law: exact for the
  closed-loop standard suite). **Aggregate**: the models' summed tokens/s vs the sum of their
  alone tokens/s. **Fairness**: Jain's index over each model's tokens/s relative to alone
  (1 = all keep the same share; 1/n = one model keeps everything).
- **Server-side attribution** (TGI's `/metrics`, scraped before and after each scenario):
  queue time (`tgi_request_queue_duration`) vs inference time
  (`tgi_request_inference_duration`) per request, batch sizes (`tgi_batch_next_size`), and the
  KV-token budget TGI found at warmup (`tgi_batch_max_total_tokens`) next to the planner's."""


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


@dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote: the Markdown, a terminal version, and the files."""

    run_dir: Path
    markdown: str
    console: str  # the guide's result blocks and impact lines, with the SIMULATED banner
    files: list[Path] = field(default_factory=list)


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
    for scenario in _scenarios(run.records):
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
    files += _plots(a, out)
    markdown = _markdown(a)
    files[3].write_text(markdown)
    return Report(run_dir=out, markdown=markdown, console=_console(a), files=files)


# ---------------------------------------------------------------- text


def result_blocks(summary: pd.DataFrame) -> list[str]:
    """The guide's result block for each (model, scenario) row of a summary."""
    lines: list[str] = []
    for row in summary.to_dict("records"):
        lines += [
            f"{row['model']} ({row['scenario']})",
            f"  Total Requests: {row['count']}",
            f"  Successful Requests: {row['successes']}",
            f"  Success Rate: {_pct(row['success_rate'])}",
            f"  Average Latency: {_s(row['e2e_mean'])} (±{_s(row['e2e_std'])})",
            f"  Throughput: {_num(row['requests_per_min'], 2)} requests/minute",
            f"  Tokens per Second: {_num(row['output_tokens_per_s'], 2)}",
        ]
    return lines


def impact_lines(impact: Impact, *, other: str, baseline: str) -> list[str]:
    """One guide-style impact line per model, then the aggregate and fairness lines."""
    level = f"{impact.confidence:.0%} CI"
    lines = []
    for model in impact.models:
        lat, tok = _row(impact, model, "e2e_mean"), _row(impact, model, "output_tokens_per_s")
        lines.append(
            f"Impact on {model} ({other} vs {baseline}): latency {_chg(lat['change'])} "
            f"({level} {_chg(lat['ci_low'])} to {_chg(lat['ci_high'])}), throughput {_chg(tok['change'])} "
            f"({level} {_chg(tok['ci_low'])} to {_chg(tok['ci_high'])})"
        )
    agg = impact.aggregate
    if impact.models:
        lines.append(
            f"Aggregate throughput ({other}): {_num(agg.other, 2)} tokens/s vs {_num(agg.baseline, 2)} summed "
            f"{baseline}: {_chg(agg.change)} ({level} {_chg(agg.ci_low)} to {_chg(agg.ci_high)})"
        )
    fair = impact.fairness
    if fair.index is not None:
        lines.append(f"Fairness (Jain's index over tokens/s relative to {baseline}): {_num(fair.index, 3)} "
                     f"({level} {_num(fair.ci_low, 3)} to {_num(fair.ci_high, 3)})")
    for model in impact.only_other:
        lines.append(f"No {baseline} baseline for {model}: no impact computed")
    return lines


def impact_markdown(impact: Impact, *, other: str, baseline: str) -> list[str]:
    """The impact lines and the per-metric table, as Markdown."""
    level = f"{impact.confidence:.0%} CI"
    out = [f"- {line}" for line in impact_lines(impact, other=other, baseline=baseline)]
    if not impact.models:
        return out
    out += ["", f"| model | metric | {baseline} | {other} | change | {level} |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for row in impact.per_model.to_dict("records"):
        unit = (lambda v: _num(v, 2)) if row["metric"] == "output_tokens_per_s" else _s
        name = "tokens/s" if row["metric"] == "output_tokens_per_s" else row["metric"].replace("e2e_", "E2E ")
        out.append(f"| {row['model']} | {name} | {unit(row['baseline'])} | {unit(row['other'])} | "
                   f"{_chg(row['change'])} | {_chg(row['ci_low'])} to {_chg(row['ci_high'])} |")
    out += ["", f"Bootstrap: {impact.n_boot} replicates, seed {impact.seed}."]
    return out


def _markdown(a: Analysis) -> str:
    meta = a.run.meta
    md = [f"# Benchmark report: {meta.label} ({meta.created})", ""]
    if meta.simulated:
        md += [f"> {simulated_banner(meta)}", ""]
    md += ["## Run", ""]
    gpu = meta.contract.get("gpu", {})
    if gpu:
        sharing = gpu.get("sharing", {})
        md.append(f"- GPU: {gpu.get('gpu_model', '?')} on {gpu.get('instance_type', '?')} "
                  f"({gpu.get('memory_gib', '?')} GiB), sharing: {sharing.get('strategy', '?')} "
                  f"x {sharing.get('replicas', '?')}")
    for key, model in sorted(meta.contract.get("models", {}).items()):
        md.append(f"- Model `{key}`: {model.get('model_id', '?')}")
    for s in meta.scenarios:
        when = f" ({s.started} to {s.finished or 'interrupted'})" if s.started else ""
        md.append(f"- Scenario `{s.scenario}`: {', '.join(s.models)}{when}")
        note = (check := _run_report(s.self_check or {})) and check.filler_note()
        md += [f"  - {note[0].upper()}{note[1:]}."] if note else []
    for model, source in sorted(meta.baselines.items()):
        md.append(f"- Baseline for `{model}`: the alone run in `{source}` (copied to `baseline.jsonl`)")
    md += [f"- Settings: `{json.dumps(meta.settings, sort_keys=True)}`", ""]

    blocks = result_blocks(a.summary)
    md += ["## Results", ""] + (["```", *blocks, "```"] if blocks else ["No requests recorded."]) + [""]
    md += _tokens_note(a.summary)
    if a.errors:
        md += ["## Errors", "", "Failed requests by model, scenario and kind, with their first distinct error texts:",
               "", "```", *_failure_lines(a), "```", ""]
    for c in a.comparisons:
        md += [f"## Impact: {c.scenario} vs {BASELINE_SCENARIO}", ""]
        md += impact_markdown(c.impact, other=c.scenario, baseline=BASELINE_SCENARIO) + [""]
        md += _breakdown_table(c) + [""]
    if not a.comparisons and any(s != BASELINE_SCENARIO for s in _scenarios(a.records)):
        md += ["## Impact", "", f"No {BASELINE_SCENARIO} baseline with the same settings: no impact computed.", ""]

    md += ["## Percentiles (seconds)", "", *_percentile_table(a.summary), ""]
    md += ["## Server-side attribution (TGI /metrics)", "", *_attribution_table(a.attribution), ""]
    md += ["## Throughput over time", "", "![output tokens per second](throughput.png)", ""]
    md += ["## Latency distribution", "", "![E2E latency CDF](latency_cdf.png)", ""]

    md += ["## Access path", ""]
    if meta.access:
        md += ["| model | path | URL | GET /health median |", "| --- | --- | --- | ---: |"]
        md += [f"| {k} | {v.path} | {v.url} | {_ms(v.health_rtt_s)} |" for k, v in sorted(meta.access.items())]
        md += ["", "Every request's latency includes one round trip through this path; a port-forward "
                   "(client -> API server -> kubelet -> pod) adds its own."]
    else:
        md.append("Not recorded.")
    md += ["", "## Client self-check", ""]
    checks = [_self_check(s.self_check) for s in meta.scenarios if s.self_check]
    md += ["```", *[line for lines in checks for line in lines], "```"] if checks else ["Not recorded."]
    md += ["", "## Metric definitions", "", DEFINITIONS, ""]
    return "\n".join(md)


def _failure_lines(a: Analysis) -> list[str]:
    access = a.run.meta.access
    return failure_lines(a.errors, served={k: v.served_models for k, v in access.items()},
                         sent={k: v.model_name for k, v in access.items() if v.model_name is not None})


def _tokens_note(summary: pd.DataFrame) -> list[str]:
    """A line per (model, scenario) whose token counts came from counting chunks."""
    rows = [r for r in summary.to_dict("records") if r["tokens_from_chunks"]]
    return [f"Output tokens of {r['model']} ({r['scenario']}) counted from the stream's content chunks for "
            f"{r['tokens_from_chunks']} of {r['successes']} requests: the server sent no usage; a chunk can hold "
            "several tokens, so tokens/s may be low." for r in rows] + ([""] if rows else [])


def _console(a: Analysis) -> str:
    lines = [f"*** {simulated_banner(a.run.meta).replace('**', '')} ***", ""] if a.run.meta.simulated else []
    lines += result_blocks(a.summary)
    lines += [line for line in _tokens_note(a.summary) if line]
    if a.errors:
        lines += ["", "Errors:", *_failure_lines(a)]
    for c in a.comparisons:
        lines += ["", *impact_lines(c.impact, other=c.scenario, baseline=BASELINE_SCENARIO)]
    return "\n".join(lines)


def _percentile_table(summary: pd.DataFrame) -> list[str]:
    cols = [("e2e", "E2E"), ("ttft", "TTFT"), ("itl", "ITL"), ("tpot", "TPOT")]
    stats = ("mean", "p50", "p90", "p95", "p99", "max")
    head = "| model | scenario | requests | ok | metric | " + " | ".join(stats) + " |"
    out = [head, "|" + " --- |" * 5 + " ---: |" * len(stats)]
    for row in summary.to_dict("records"):
        for metric, label in cols:
            values = " | ".join(_num(row[f"{metric}_{s}"], 4) for s in stats)
            out.append(f"| {row['model']} | {row['scenario']} | {row['count']} | {row['successes']} | {label} | {values} |")
    errors = [c for c in summary.columns if str(c).startswith("errors_")]
    failed = [(r["model"], r["scenario"], {str(c)[7:]: r[c] for c in errors if r[c]}) for r in summary.to_dict("records")]
    out += [""] + [f"Errors for {m} ({s}): " + ", ".join(f"{k} {v}" for k, v in e.items()) for m, s, e in failed if e]
    return out


def _attribution_table(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return ["No `/metrics` scrapes in this run (the server does not expose TGI's metrics, or scraping failed)."]
    out = ["| scenario | model | requests (server) | queue mean / p95 | inference mean / p95 | queue share "
           "| batch size mean / p95 | KV tokens found / planned |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in frame.to_dict("records"):
        kv = f"{_num(r['kv_tokens_found'], 0)} / {_num(r['kv_tokens_planned'], 0)}"
        if _finite(r["kv_found_vs_planned"]):
            kv += f" ({_chg(r['kv_found_vs_planned'])})"
        out.append(
            f"| {r['scenario']} | {r['model']} | {_num(r['requests'], 0)} | {_s(r['queue_mean_s'])} / {_s(r['queue_p95_s'])} "
            f"| {_s(r['inference_mean_s'])} / {_s(r['inference_p95_s'])} | {_pct(r['queue_share'])} "
            f"| {_num(r['batch_size_mean'], 2)} / {_num(r['batch_size_p95'], 0)} | {kv} |"
        )
    out += ["", "Queue time is waiting for a place in a batch; inference time runs from joining a batch to the "
                "last token, and grows when the GPU is time-sliced with other models. The server's request "
                "count includes the unrecorded requests that kept finished models busy in a shared scenario "
                "(see Run); warmup requests go before the first scrape."]
    return out


def _breakdown_table(c: Comparison) -> list[str]:
    if c.breakdown.empty:
        return [f"Where the extra latency went: needs `/metrics` scrapes of both {BASELINE_SCENARIO} and {c.scenario}."]
    out = [f"Where the extra latency went ({c.scenario} vs {BASELINE_SCENARIO}, means per request; "
           "the server's figures from TGI's `/metrics`):", "",
           "| model | E2E (client) | queue (server) | inference (server) | elsewhere |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in c.breakdown.to_dict("records"):
        out.append(f"| {r['model']} | {_dms(r['e2e_s'])} | {_dms(r['queue_s'])} | {_dms(r['inference_s'])} "
                   f"| {_dms(r['elsewhere_s'])} |")
    out += ["", "Queue: waiting for a place in a batch. Inference: from joining a batch to the last token; it "
                "grows when time-slicing hands the GPU to other models. Elsewhere: validation, network, the "
                "access path and the client."]
    return out


def _run_report(data: dict[str, Any]) -> SelfCheck | None:
    try:
        return SelfCheck(**{**data, "targets": [TargetCheck(**t) for t in data.get("targets", [])]})
    except TypeError:  # written by another version of the engine
        return None


def _self_check(data: dict[str, Any]) -> list[str]:
    report = _run_report(data)
    return report.lines() if report is not None else [json.dumps(data, sort_keys=True)]


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
             "latency_breakdown": c.breakdown.to_dict("records")}
            for c in a.comparisons
        ],
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


# ---------------------------------------------------------------- plots


def _plots(a: Analysis, out: Path) -> list[Path]:
    models = sorted({r.model for r in a.records})
    paths = [out / "latency_cdf.png", out / "throughput.png"]
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(5 * max(1, len(models)), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for scenario in _scenarios(a.records):
            e2e = np.sort([r.e2e for r in a.records if r.model == model and r.scenario == scenario
                           and r.success and r.e2e is not None])
            if e2e.size:
                ax.step(e2e, np.arange(1, e2e.size + 1) / e2e.size, where="post", label=f"{scenario} (n={e2e.size})")
        ax.set(title=model, xlabel="E2E latency (s)", ylabel="fraction of requests", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no successful request: nothing to label
            ax.legend(loc="lower right")
    _save(fig, paths[0], a.run.meta)

    scenarios = _scenarios(a.records)
    fig, axes = plt.subplots(len(scenarios) or 1, 1, figsize=(10, 3 * max(1, len(scenarios))), squeeze=False)
    for ax, scenario in zip(axes[:, 0], scenarios):
        part = a.timeline[a.timeline["scenario"] == scenario]
        for model in models:
            line = part[part["model"] == model]
            if len(line):  # repeat the last value to the end of its bin
                t, y = line["t"].tolist(), line["tokens_per_s"].tolist()
                ax.step(t + [t[-1] + BIN_S], y + y[-1:], where="post", label=model)
        ax.set(title=f"{scenario}: output tokens per second ({BIN_S:g} s bins)",
               xlabel="seconds since the scenario's start", ylabel="tokens/s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
    _save(fig, paths[1], a.run.meta)
    return paths


def _save(fig: Any, path: Path, meta: RunMeta) -> None:
    if meta.simulated:
        scale = f", time x{meta.time_scale:g}" if meta.time_scale is not None else ""
        fig.suptitle(f"SIMULATED (benchmark/sim{scale}): not GPU measurements", color="firebrick")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- formatting


def _scenarios(records: Sequence[RequestRecord]) -> list[str]:
    """Scenario labels in first-seen order, the baseline first."""
    seen = list(dict.fromkeys(r.scenario for r in records))
    return sorted(seen, key=lambda s: s != BASELINE_SCENARIO)


def _row(impact: Impact, model: str, metric: str) -> dict[str, Any]:
    return next(r for r in impact.per_model.to_dict("records") if r["model"] == model and r["metric"] == metric)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _num(x: Any, digits: int) -> str:
    return f"{x:,.{digits}f}" if _finite(x) else "n/a"


def _s(x: Any) -> str:
    return f"{x:.3f}s" if _finite(x) else "n/a"


def _ms(x: Any) -> str:
    return f"{x * 1e3:.2f} ms" if _finite(x) else "n/a"


def _dms(x: Any) -> str:
    return f"{x * 1e3:+.1f} ms" if _finite(x) else "n/a"


def _pct(x: Any) -> str:
    return f"{x:.1%}" if _finite(x) else "n/a"


def _chg(x: Any) -> str:
    return f"{x:+.1%}" if _finite(x) else "n/a"
