"""What sharing the GPU costs each model: shared (or any run B) against alone (run A).

Definitions (the report repeats them):

- Per model, for E2E latency's mean, p50, p95 and p99 and for output tokens/s:
  ``change = other / baseline - 1``. Latency +% is slower; throughput -% is less. Point
  estimates are the summary's (``benchmark.analysis.summary``), never recomputed here.
- 95 % confidence intervals: percentile bootstrap (``n_boot`` replicates, seeded, so a report
  rebuilds identically). Each replicate resamples both runs' requests with replacement,
  within each prompt (the standard suite repeats every prompt, so each prompt keeps its share
  of the mix), and recomputes the change. Latency statistics resample the successful
  requests. Throughput resamples all requests and scales the point estimate by the
  replicate's ``sum(output tokens) / sum(e2e)`` relative to the run's own: by Little's law
  that is exact for closed-loop loads (such as the sequential standard suite, where the wall
  span is the sum of the latencies); for an open-loop load below saturation, throughput
  follows the arrival rate and the interval is approximate.
- Aggregate: the sum over models of the other run's tokens/s against the sum of their
  baseline tokens/s (each model's throughput over its own wall span), with its interval
  from the same replicates.
- Fairness: Jain's index over the models' *normalised* throughputs
  ``x_m = tokens/s in the other run / tokens/s in the baseline``:
  ``J = (sum x)^2 / (n * sum x^2)``; 1 when every model keeps the same fraction of its
  alone throughput, ``1/n`` when one model keeps everything. Undefined for fewer than 2 models.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from benchmark.analysis.summary import summarize
from benchmark.engine.records import RequestRecord
from benchmark.errors import BenchmarkError

__all__ = ["LATENCY_STATS", "Aggregate", "Fairness", "Impact", "compute_impact", "jain_index"]

LATENCY_STATS: tuple[str, ...] = ("mean", "p50", "p95", "p99")
_CHUNK_ELEMENTS = 4_000_000  # replicate matrices are built in chunks of about this many cells


@dataclass(frozen=True)
class Aggregate:
    """Summed tokens/s of the models in both runs; NaN where undefined."""

    baseline: float
    other: float
    change: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Fairness:
    """Jain's index over normalised throughputs; ``index`` is None for fewer than 2 models."""

    index: float | None
    ci_low: float | None
    ci_high: float | None
    normalised: dict[str, float]  # model -> tokens/s in the other run / in the baseline


@dataclass(frozen=True)
class Impact:
    """The result of ``compute_impact``.

    ``per_model``: one row per (model, metric), metric in ``e2e_mean``, ``e2e_p50``,
    ``e2e_p95``, ``e2e_p99`` (seconds) and ``output_tokens_per_s``; columns ``model``,
    ``metric``, ``baseline``, ``other``, ``change``, ``ci_low``, ``ci_high``.
    """

    per_model: pd.DataFrame
    aggregate: Aggregate
    fairness: Fairness
    confidence: float
    n_boot: int
    seed: int
    only_baseline: list[str] = field(default_factory=list)  # models the other run lacks
    only_other: list[str] = field(default_factory=list)  # models the baseline lacks

    @property
    def models(self) -> list[str]:
        return sorted(set(self.per_model["model"]))


def jain_index(values: np.ndarray) -> np.ndarray:
    """Jain's fairness index over the last axis: ``(sum x)^2 / (n * sum x^2)``."""
    values = np.asarray(values, dtype=float)
    squares = np.sum(values**2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(values, axis=-1) ** 2 / (values.shape[-1] * squares)


def compute_impact(
    baseline: Sequence[RequestRecord],
    other: Sequence[RequestRecord],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Impact:
    """Per-model impact of ``other`` against ``baseline`` (e.g. shared against alone).

    Each side must hold at most one scenario per model (filter the records first).
    """
    if n_boot < 100:
        raise ValueError(f"n_boot must be >= 100 for a usable interval, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    base_summary, other_summary = _one_row_per_model(baseline, "baseline"), _one_row_per_model(other, "other")
    common = sorted(set(base_summary) & set(other_summary))
    tail = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100

    rows: list[dict[str, object]] = []
    throughput_reps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for model in common:
        rng = np.random.default_rng([seed, zlib.crc32(model.encode())])
        b_recs = [r for r in baseline if r.model == model]
        o_recs = [r for r in other if r.model == model]
        b_reps = _replicates(b_recs, base_summary[model], n_boot, rng)
        o_reps = _replicates(o_recs, other_summary[model], n_boot, rng)
        for metric in (*(f"e2e_{s}" for s in LATENCY_STATS), "output_tokens_per_s"):
            b_point, o_point = float(base_summary[model][metric]), float(other_summary[model][metric])
            with np.errstate(invalid="ignore", divide="ignore"):
                change = o_reps[metric] / b_reps[metric] - 1.0
            low, high = _interval(change, tail)
            rows.append({
                "model": model, "metric": metric, "baseline": b_point, "other": o_point,
                "change": _ratio(o_point, b_point) - 1.0, "ci_low": low, "ci_high": high,
            })
        throughput_reps[model] = (b_reps["output_tokens_per_s"], o_reps["output_tokens_per_s"])

    b_total = sum(float(base_summary[m]["output_tokens_per_s"]) for m in common)
    o_total = sum(float(other_summary[m]["output_tokens_per_s"]) for m in common)
    low = high = float("nan")
    if common:
        b_sum = np.sum([b for b, _ in throughput_reps.values()], axis=0)
        o_sum = np.sum([o for _, o in throughput_reps.values()], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            low, high = _interval(o_sum / b_sum - 1.0, tail)
    aggregate = Aggregate(baseline=b_total, other=o_total, change=_ratio(o_total, b_total) - 1.0,
                          ci_low=low, ci_high=high)

    normalised = {
        m: _ratio(float(other_summary[m]["output_tokens_per_s"]), float(base_summary[m]["output_tokens_per_s"]))
        for m in common
    }
    fairness = Fairness(index=None, ci_low=None, ci_high=None, normalised=normalised)
    if len(common) >= 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            x_reps = np.stack([o / b for b, o in throughput_reps.values()], axis=-1)
        low, high = _interval(jain_index(x_reps), tail)
        index = float(jain_index(np.array(list(normalised.values()))))
        fairness = Fairness(index=index, ci_low=low, ci_high=high, normalised=normalised)

    return Impact(
        per_model=pd.DataFrame(rows, columns=["model", "metric", "baseline", "other", "change", "ci_low", "ci_high"]),
        aggregate=aggregate,
        fairness=fairness,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        only_baseline=sorted(set(base_summary) - set(other_summary)),
        only_other=sorted(set(other_summary) - set(base_summary)),
    )


def _one_row_per_model(records: Sequence[RequestRecord], side: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for row in summarize(records).to_dict("records"):
        model = str(row["model"])
        if model in rows:
            raise BenchmarkError(
                f"the {side} run holds several scenarios for model {model!r} "
                f"({rows[model]['scenario']!r}, {row['scenario']!r}): choose one"
            )
        rows[model] = {str(k): v for k, v in row.items()}
    return rows


def _replicates(
    records: Sequence[RequestRecord], point: dict[str, Any], n_boot: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``n_boot`` bootstrap values of each metric, resampling within prompts."""
    ok = [r for r in records if r.success and r.e2e is not None]
    e2e = np.array([r.e2e for r in ok], dtype=float)
    out: dict[str, np.ndarray] = {}
    latency = _draw(e2e, [r.prompt_id for r in ok], n_boot, rng, _latency_stats)
    for index, stat in enumerate(LATENCY_STATS):
        out[f"e2e_{stat}"] = latency[:, index]

    tokens = np.array([(r.output_tokens or 0) if r.success else 0 for r in records], dtype=float)
    busy = np.array([r.e2e or 0.0 for r in records], dtype=float)
    pairs = np.stack([tokens, busy], axis=-1)
    rate = _draw(pairs, [r.prompt_id for r in records], n_boot, rng, _token_rate)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        own_rate = tokens.sum() / busy.sum()
        out["output_tokens_per_s"] = float(point["output_tokens_per_s"]) * rate / own_rate
    return out


def _latency_stats(samples: np.ndarray) -> np.ndarray:
    """(replicates, n) -> (replicates, 4): mean, p50, p95, p99 (linear, as the summary)."""
    return np.column_stack([samples.mean(axis=1), np.percentile(samples, (50, 95, 99), axis=1).T])


def _token_rate(samples: np.ndarray) -> np.ndarray:
    """(replicates, n, 2) of (tokens, e2e) -> (replicates, 1): sum(tokens) / sum(e2e)."""
    sums = samples.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums[:, 0] / sums[:, 1])[:, None]


def _draw(
    values: np.ndarray,
    strata: Sequence[str],
    n_boot: int,
    rng: np.random.Generator,
    statistic: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Stratified bootstrap: ``statistic`` of ``n_boot`` resamples of ``values`` (first axis)."""
    n = len(values)
    if n == 0:
        width = statistic(np.zeros((1, 1) + values.shape[1:])).shape[1]
        return np.full((n_boot, width), np.nan)
    groups = [np.flatnonzero(np.asarray(strata) == s) for s in sorted(set(strata))]
    chunk = max(1, _CHUNK_ELEMENTS // n)
    parts = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        index = np.concatenate([g[rng.integers(0, g.size, (size, g.size))] for g in groups], axis=1)
        parts.append(statistic(values[index]))
    return np.concatenate(parts)


def _interval(replicates: np.ndarray, tail: tuple[float, float]) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size < len(replicates) * 0.9:  # mostly undefined (e.g. no successes): no interval
        return float("nan"), float("nan")
    low, high = np.percentile(finite, tail)
    return float(low), float(high)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
