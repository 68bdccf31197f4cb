"""``report.md``: the run, the guide's result blocks, the errors, the impact per scenario with
its detail and what its rounds say, each round's figures and the drift between rounds,
percentiles, the server-side attribution, the access path, the client self-check and the
metric definitions. It only formats ``benchmark.analysis.comparison.Analysis``."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from benchmark.analysis.comparison import BASELINE_SCENARIO, Analysis, Comparison, scenario_order
from benchmark.analysis.impact import Impact
from benchmark.analysis.rounds import RoundsImpact
from benchmark.engine.selfcheck import SelfCheck
from benchmark.report.failures import failure_lines
from benchmark.report.text import (
    chg,
    dms,
    finite,
    impact_lines,
    ms,
    num,
    pct,
    result_blocks,
    rounds_lines,
    sec,
    simulated_banner,
)

__all__ = ["DEFINITIONS", "impact_markdown", "markdown", "failure_report", "tokens_note"]


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
- **Rounds** (`--repeats N`): the scenarios run N times; with `--scenarios all` each round holds
  every scenario, in an order rotated from round to round (or shuffled with `--seed`), so drift
  hits alone and shared alike. A round's figures are the E2E mean and tokens/s of its own
  requests; a scenario's **drift** is its largest round E2E mean over its smallest, minus 1.
  The **impact over rounds** works on the log of each round's ratio (shared / alone): interleaved
  rounds give a Student t-interval over those (n - 1 degrees of freedom; the estimate is their
  geometric mean, minus 1); a baseline from other runs gives Welch's t-interval on the two sides'
  mean log round figures. Unlike the bootstrap, it covers drift between the rounds. **Rounds
  needed**: the fewest for which that interval, with the spread seen, is at most half the impact
  wide on either side. A single pass (`--repeats 1`) has no interval over rounds.
- **Server-side attribution** (TGI's `/metrics`, scraped before and after each scenario):
  queue time (`tgi_request_queue_duration`) vs inference time
  (`tgi_request_inference_duration`) per request, batch sizes (`tgi_batch_next_size`), and the
  KV-token budget TGI found at warmup (`tgi_batch_max_total_tokens`) next to the planner's."""


def impact_markdown(impact: Impact, rounds: RoundsImpact, *, other: str, baseline: str) -> list[str]:
    """The impact lines, what the rounds say, the per-round table and the per-metric table, as Markdown."""
    level = f"{impact.confidence:.0%} CI"
    out = [f"- {line}" for line in impact_lines(impact, other=other, baseline=baseline)]
    out += [f"- {line}" for line in rounds_lines(rounds, other=other, baseline=baseline)]
    if not impact.models:
        return out
    numbered = sorted({r for b in rounds.between for r in b.per_round})
    if not rounds.single_pass:
        out += ["", f"| model | quantity | {' | '.join(f'round {r}' for r in numbered)}{' | ' if numbered else ''}"
                    f"over rounds | {level} over rounds | rounds for half the impact |",
                "| --- | --- |" + " ---: |" * (len(numbered) + 1) + " --- | ---: |"]
        for b in rounds.between:
            cells = [chg(b.per_round.get(r)) for r in numbered]
            out.append(f"| {b.model} | {b.quantity} | {' | '.join(cells)}{' | ' if cells else ''}{chg(b.estimate)} | "
                       f"{chg(b.ci_low)} to {chg(b.ci_high)} | {b.needed if b.needed is not None else '> 1000'} |")
    out += ["", f"| model | metric | {baseline} | {other} | change | {level} |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for row in impact.per_model.to_dict("records"):
        unit = (lambda v: num(v, 2)) if row["metric"] == "output_tokens_per_s" else sec
        name = "tokens/s" if row["metric"] == "output_tokens_per_s" else row["metric"].replace("e2e_", "E2E ")
        out.append(f"| {row['model']} | {name} | {unit(row['baseline'])} | {unit(row['other'])} | "
                   f"{chg(row['change'])} | {chg(row['ci_low'])} to {chg(row['ci_high'])} |")
    out += ["", f"Bootstrap: {impact.n_boot} replicates, seed {impact.seed}."]
    return out


def markdown(a: Analysis) -> str:
    meta = a.run.meta
    title = "each model alone, then all together" if meta.label == "all" else meta.label
    md = [f"# Benchmark report: {title} ({meta.created})", ""]
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
    if meta.repeats > 1:
        order = (f"shuffled with --seed {meta.seed}" if meta.seed is not None
                 else "rotated: round r starts r - 1 scenarios later")
        md.append(f"- Rounds: {meta.repeats} (--repeats {meta.repeats}); order within a round: {order}")
    elif meta.label != "load":
        md.append("- A single pass (--repeats 1): its intervals do not cover drift between runs")
    for s in meta.scenarios:
        when = f" ({s.started} to {s.finished or 'interrupted'})" if s.started else ""
        which = f" round {s.round}" if meta.repeats > 1 else ""
        md.append(f"- Scenario `{s.scenario}`{which}: {', '.join(s.models)}{when}")
        note = (check := SelfCheck.from_dict(s.self_check or {})) and check.filler_note()
        md += [f"  - {note[0].upper()}{note[1:]}."] if note else []
    for model, source in sorted(meta.baselines.items()):
        md.append(f"- Baseline for `{model}`: the alone run in `{source}` (copied to `baseline.jsonl`)")
    md += [f"- Settings: `{json.dumps(meta.settings, sort_keys=True)}`", ""]

    blocks = result_blocks(a.summary)
    md += ["## Results", ""] + (["```", *blocks, "```"] if blocks else ["No requests recorded."]) + [""]
    md += tokens_note(a.summary)
    if a.errors:
        md += ["## Errors", "", "Failed requests by model, scenario and kind, with their first distinct error texts:",
               "", "```", *failure_report(a), "```", ""]
    for c in a.comparisons:
        md += [f"## Impact: {c.scenario} vs {BASELINE_SCENARIO}", ""]
        md += impact_markdown(c.impact, c.rounds, other=c.scenario, baseline=BASELINE_SCENARIO) + [""]
        md += _breakdown_table(c) + [""]
    if not a.comparisons and any(s != BASELINE_SCENARIO for s in scenario_order(a.records)):
        md += ["## Impact", "", f"No {BASELINE_SCENARIO} baseline with the same settings: no impact computed.", ""]

    md += _rounds_section(a)
    md += ["## Percentiles (seconds)", "", *_percentile_table(a.summary), ""]
    md += ["## Server-side attribution (TGI /metrics)", "", *_attribution_table(a.attribution), ""]
    md += ["## Throughput over time", "", "![output tokens per second](throughput.png)", ""]
    md += ["## Latency distribution", "", "![E2E latency CDF](latency_cdf.png)", ""]

    md += ["## Access path", ""]
    if meta.access:
        md += ["| model | path | URL | GET /health median |", "| --- | --- | --- | ---: |"]
        md += [f"| {k} | {v.path} | {v.url} | {ms(v.health_rtt_s)} |" for k, v in sorted(meta.access.items())]
        md += ["", "Every request's latency includes one round trip through this path; a port-forward "
                   "(client -> API server -> kubelet -> pod) adds its own."]
    else:
        md.append("Not recorded.")
    md += ["", "## Client self-check", ""]
    checks = [_self_check(s.self_check) for s in meta.scenarios if s.self_check]
    md += ["```", *[line for lines in checks for line in lines], "```"] if checks else ["Not recorded."]
    md += ["", "## Metric definitions", "", DEFINITIONS, ""]
    return "\n".join(md)


def failure_report(a: Analysis) -> list[str]:
    access = a.run.meta.access
    return failure_lines(a.errors, served={k: v.served_models for k, v in access.items()},
                         sent={k: v.model_name for k, v in access.items() if v.model_name is not None})


def tokens_note(summary: pd.DataFrame) -> list[str]:
    """A line per (model, scenario) whose token counts came from counting chunks."""
    rows = [r for r in summary.to_dict("records") if r["tokens_from_chunks"]]
    return [f"Output tokens of {r['model']} ({r['scenario']}) counted from the stream's content chunks for "
            f"{r['tokens_from_chunks']} of {r['successes']} requests: the server sent no usage; a chunk can hold "
            "several tokens, so tokens/s may be low." for r in rows] + ([""] if rows else [])


def _percentile_table(summary: pd.DataFrame) -> list[str]:
    cols = [("e2e", "E2E"), ("ttft", "TTFT"), ("itl", "ITL"), ("tpot", "TPOT")]
    stats = ("mean", "p50", "p90", "p95", "p99", "max")
    head = "| model | scenario | requests | ok | metric | " + " | ".join(stats) + " |"
    out = [head, "|" + " --- |" * 5 + " ---: |" * len(stats)]
    for row in summary.to_dict("records"):
        for metric, label in cols:
            values = " | ".join(num(row[f"{metric}_{s}"], 4) for s in stats)
            out.append(f"| {row['model']} | {row['scenario']} | {row['count']} | {row['successes']} | {label} | {values} |")
    errors = [c for c in summary.columns if str(c).startswith("errors_")]
    failed = [(r["model"], r["scenario"], {str(c)[7:]: r[c] for c in errors if r[c]}) for r in summary.to_dict("records")]
    out += [""] + [f"Errors for {m} ({s}): " + ", ".join(f"{k} {v}" for k, v in e.items()) for m, s, e in failed if e]
    return out


def _attribution_table(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return ["No `/metrics` scrapes in this run (the server does not expose TGI's metrics, or scraping failed)."]
    out = ["| scenario | round | model | requests (server) | queue mean / p95 | inference mean / p95 | queue share "
           "| batch size mean / p95 | KV tokens found / planned |",
           "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in frame.to_dict("records"):
        kv = f"{num(r['kv_tokens_found'], 0)} / {num(r['kv_tokens_planned'], 0)}"
        if finite(r["kv_found_vs_planned"]):
            kv += f" ({chg(r['kv_found_vs_planned'])})"
        out.append(
            f"| {r['scenario']} | {r['round']} | {r['model']} | {num(r['requests'], 0)} | {sec(r['queue_mean_s'])} / {sec(r['queue_p95_s'])} "
            f"| {sec(r['inference_mean_s'])} / {sec(r['inference_p95_s'])} | {pct(r['queue_share'])} "
            f"| {num(r['batch_size_mean'], 2)} / {num(r['batch_size_p95'], 0)} | {kv} |"
        )
    out += ["", "Queue time is waiting for a place in a batch; inference time runs from joining a batch to the "
                "last token, and grows when the GPU is time-sliced with other models. The server's request "
                "count includes the unrecorded requests that kept finished models busy in a shared scenario "
                "(see Run); warmup requests go before the first scrape."]
    return out


def _rounds_section(a: Analysis) -> list[str]:
    """Each round's figures and the drift between rounds, where a scenario ran more than once."""
    if not a.drift:
        return []
    out = ["## Rounds", "", "Each round's figures (its own requests):", "",
           "| scenario | model | round | requests | success | E2E mean | tokens/s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    out += [f"| {f.scenario} | {f.model} | {f.round} | {f.count} | {pct(f.success_rate)} | {sec(f.e2e_mean)} | "
            f"{num(f.output_tokens_per_s, 2)} |" for f in a.rounds]
    out += ["", "Drift between the rounds of a scenario (largest round E2E mean over the smallest, minus 1):", "",
            "| scenario | model | E2E mean per round | drift |", "| --- | --- | --- | ---: |"]
    out += [f"| {d.scenario} | {d.model} | {', '.join(sec(v) for _, v in sorted(d.e2e_means.items()))} | {pct(d.drift)} |"
            for d in a.drift]
    return out + [""]


def _breakdown_table(c: Comparison) -> list[str]:
    if c.breakdown.empty:
        return [f"Where the extra latency went: needs `/metrics` scrapes of both {BASELINE_SCENARIO} and {c.scenario}."]
    out = [f"Where the extra latency went ({c.scenario} vs {BASELINE_SCENARIO}, means per request; "
           "the server's figures from TGI's `/metrics`):", "",
           "| model | E2E (client) | queue (server) | inference (server) | elsewhere |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in c.breakdown.to_dict("records"):
        out.append(f"| {r['model']} | {dms(r['e2e_s'])} | {dms(r['queue_s'])} | {dms(r['inference_s'])} "
                   f"| {dms(r['elsewhere_s'])} |")
    out += ["", "Queue: waiting for a place in a batch. Inference: from joining a batch to the last token; it "
                "grows when time-slicing hands the GPU to other models. Elsewhere: validation, network, the "
                "access path and the client."]
    return out


def _self_check(data: dict[str, Any]) -> list[str]:
    report = SelfCheck.from_dict(data)
    return report.lines() if report is not None else [json.dumps(data, sort_keys=True)]


