"""Per-request records -> pandas: one row per request, then one summary row per (model, scenario).

Definitions (the README's "Metric definitions" and every report repeat them):

- ``count``: every measured request, failures included (warmup requests are never recorded).
  ``successes``/``failures``; ``success_rate = successes / count``.
- ``duration_s``: the wall span of the group, from the earliest *intended* send to the latest
  completion (``intended_send + e2e``), failed requests included, so time lost to failures
  stays in the denominator of every rate below. A group that ran in several rounds
  (``--repeats``) spans the sum of its rounds' spans, not the time between them.
- ``requests_per_min = 60 * successes / duration_s``; ``attempts_per_min = 60 * count / duration_s``.
- ``output_tokens_per_s = output_tokens_total / duration_s``, where ``output_tokens_total``
  sums the server-reported output tokens of the successful requests.
- Latency metrics, in seconds, over the *successful* requests only (a failure has no TTFT or
  E2E of a completed answer); each metric's ``<m>_count`` says how many values it covers, and
  ``count``/``failures`` beside it say how many requests it does not:
  ``e2e`` (completion minus intended send), ``ttft`` (first token-bearing event minus intended
  send), ``itl`` (every gap between consecutive token events, pooled over requests) and
  ``tpot`` ((e2e - ttft) / (output_tokens - 1), per request with >= 2 tokens).
  For each: ``<m>_mean``, ``<m>_std`` (sample, ddof=1), ``<m>_min``, ``<m>_max``,
  ``<m>_p50``, ``<m>_p90``, ``<m>_p95``, ``<m>_p99`` (linear interpolation, numpy's default).
- ``errors_<kind>``: failed requests per error kind (``benchmark.records.ERROR_KINDS``).
- ``tokens_from_chunks``: successful requests whose output tokens were counted from the
  stream's content chunks because the server sent no count (``RequestRecord.tokens_from``).

``error_samples`` lists, per (model, scenario, error kind), the count and the first distinct
error texts (the server's error body among them), for the console and the report;
``below_min_success`` the (model, scenario) groups whose success rate is below a threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.engine.records import ERROR_KINDS, RequestRecord

__all__ = ["LATENCY_METRICS", "PERCENTILES", "ErrorSample", "below_min_success", "error_samples", "records_frame",
           "summarize", "summary_columns"]

LATENCY_METRICS: tuple[str, ...] = ("e2e", "ttft", "itl", "tpot")
PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
_STATS: tuple[str, ...] = ("count", "mean", "std", "min", "max") + tuple(f"p{p}" for p in PERCENTILES)
_RECORD_COLUMNS: tuple[str, ...] = tuple(RequestRecord.__dataclass_fields__)


def summary_columns() -> list[str]:
    """The summary's columns, in order."""
    head = ["model", "scenario", "count", "successes", "failures", "success_rate", "duration_s",
            "requests_per_min", "attempts_per_min", "output_tokens_total", "output_tokens_per_s",
            "input_tokens_mean", "output_tokens_mean"]
    latency = [f"{m}_{s}" for m in LATENCY_METRICS for s in _STATS]
    return head + latency + [f"errors_{k}" for k in ERROR_KINDS] + ["tokens_from_chunks"]


def records_frame(records: Sequence[RequestRecord]) -> pd.DataFrame:
    """One row per request: the record's fields, plus ``tpot`` and ``done`` (completion, run clock)."""
    rows = [
        {name: getattr(r, name) for name in _RECORD_COLUMNS} | {"tpot": r.tpot} for r in records
    ]
    frame = pd.DataFrame(rows, columns=[*_RECORD_COLUMNS, "tpot"])
    frame["done"] = frame["intended_send"] + frame["e2e"]
    return frame


def summarize(data: Sequence[RequestRecord] | pd.DataFrame) -> pd.DataFrame:
    """One row per (model, scenario), columns ``summary_columns()``, sorted by model then scenario."""
    frame = data if isinstance(data, pd.DataFrame) else records_frame(data)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(frame["model"].tolist(), frame["scenario"].tolist())):
        groups.setdefault((str(key[0]), str(key[1])), []).append(i)
    rows = [_summarize_group(m, s, frame.iloc[rows]) for (m, s), rows in sorted(groups.items())]
    return pd.DataFrame(rows, columns=summary_columns())


def _floats(g: pd.DataFrame, name: str) -> np.ndarray:
    """A column as floats, None -> NaN."""
    return np.array([np.nan if v is None else v for v in g[name].tolist()], dtype=float)


def _summarize_group(model: str, scenario: str, g: pd.DataFrame) -> dict[str, object]:
    success = np.array(g["success"].tolist(), dtype=bool)
    count, successes = len(success), int(success.sum())
    done, sent, rounds = _floats(g, "done"), _floats(g, "intended_send"), np.asarray(g["round"].tolist())
    spans = [float(np.nanmax(done[rounds == r]) - np.nanmin(sent[rounds == r]))
             for r in np.unique(rounds) if (~np.isnan(done[rounds == r])).any()]
    duration = sum(spans) if spans else float("nan")
    out_tokens = _floats(g, "output_tokens")[success]
    in_tokens = _floats(g, "input_tokens")[success]
    tokens_total = float(np.nansum(out_tokens))
    row: dict[str, object] = {
        "model": model,
        "scenario": scenario,
        "count": count,
        "successes": successes,
        "failures": count - successes,
        "success_rate": successes / count if count else float("nan"),
        "duration_s": duration,
        "requests_per_min": _per(60.0 * successes, duration),
        "attempts_per_min": _per(60.0 * count, duration),
        "output_tokens_total": tokens_total,
        "output_tokens_per_s": _per(tokens_total, duration),
        "input_tokens_mean": _mean(in_tokens),
        "output_tokens_mean": _mean(out_tokens),
    }
    itl_lists = [gaps for gaps, ok in zip(g["itl"].tolist(), success) if ok]
    values = {
        "e2e": _floats(g, "e2e")[success],
        "ttft": _floats(g, "ttft")[success],
        "itl": np.fromiter((gap for gaps in itl_lists for gap in gaps), dtype=float),
        "tpot": _floats(g, "tpot")[success],
    }
    for metric, arr in values.items():
        row.update(_stats(metric, arr[~np.isnan(arr)]))
    kinds = g["error_kind"].tolist()
    for kind in ERROR_KINDS:
        row[f"errors_{kind}"] = kinds.count(kind)
    row["tokens_from_chunks"] = sum(ok and src == "chunks" for ok, src in zip(success, g["tokens_from"].tolist()))
    return row


@dataclass(frozen=True)
class ErrorSample:
    """The failures of one (model, scenario) of one kind: how many, and their first distinct texts."""

    model: str
    scenario: str
    kind: str
    count: int
    examples: tuple[str, ...]


def error_samples(records: Iterable[RequestRecord], *, examples: int = 3) -> list[ErrorSample]:
    """Per (model, scenario, error kind), in that order: the count and up to ``examples``
    distinct error texts, first seen first."""
    groups: dict[tuple[str, str, str], tuple[list[int], list[str]]] = {}
    for r in records:
        if r.success or r.error_kind is None:
            continue
        count, texts = groups.setdefault((r.model, r.scenario, r.error_kind), ([0], []))
        count[0] += 1
        if r.error and r.error not in texts and len(texts) < examples:
            texts.append(r.error)
    return [ErrorSample(m, s, k, n[0], tuple(t)) for (m, s, k), (n, t) in sorted(groups.items())]


def below_min_success(summary: pd.DataFrame, min_success: float) -> list[tuple[str, str, float]]:
    """(model, scenario, success rate) of every group whose success rate is below ``min_success``."""
    return [(str(r["model"]), str(r["scenario"]), float(r["success_rate"])) for r in summary.to_dict("records")
            if not float(r["success_rate"]) >= min_success]


def _stats(metric: str, arr: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {f"{metric}_count": int(arr.size)}
    if arr.size == 0:
        return out | {f"{metric}_{s}": float("nan") for s in _STATS[1:]}
    out |= {
        f"{metric}_mean": float(arr.mean()),
        f"{metric}_std": float(arr.std(ddof=1)) if arr.size > 1 else float("nan"),
        f"{metric}_min": float(arr.min()),
        f"{metric}_max": float(arr.max()),
    }
    for p, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES)):
        out[f"{metric}_p{p}"] = float(v)
    return out


def _per(amount: float, duration: float) -> float:
    return amount / duration if duration > 0 else float("nan")


def _mean(arr: np.ndarray) -> float:
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")
