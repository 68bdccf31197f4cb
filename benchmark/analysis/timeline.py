"""Per-second output-token throughput over time, per model: time-slicing stalls made visible.

A streamed request's token events arrive at ``intended_send + ttft`` and then after each
inter-token gap, ``intended_send + ttft + cumsum(itl)`` (run clock). Each event carries
``output_tokens / events`` tokens, so a model's timeline adds up to the tokens the server
reported (TGI may count tokens that are not streamed as events one to one). Only successful
requests count, as in the summary's ``output_tokens_per_s``.

Models that ran together (one scenario, one clock) share their time axis: ``t = 0`` is the
earliest intended send of any of them, and their bins cover the same span, zeros included,
so a model that got no GPU time while another did shows as a dip beside the other's peak.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark.engine.records import RequestRecord

__all__ = ["token_arrivals", "throughput_timeline"]

Run = tuple[str, Sequence[str]]  # (scenario, the models that ran together in it)


def token_arrivals(record: RequestRecord) -> tuple[np.ndarray, float]:
    """The run-clock times of a successful request's token events, and the tokens each carries."""
    if not record.success or record.ttft is None:
        return np.empty(0), 0.0
    times = record.intended_send + record.ttft + np.concatenate(([0.0], np.cumsum(record.itl)))
    tokens = record.output_tokens if record.output_tokens is not None else times.size
    return times, tokens / times.size


def throughput_timeline(
    records: Sequence[RequestRecord], *, runs: Sequence[Run] = (), bin_s: float = 1.0
) -> pd.DataFrame:
    """Output tokens per second in consecutive ``bin_s`` bins, per (scenario, model).

    ``runs`` names the models that ran together in a scenario (``run.json``'s scenarios);
    a (scenario, model) not named there is a run of its own. Columns: ``scenario``,
    ``model``, ``t`` (bin start, s since its run's start), ``tokens_per_s``.
    """
    if bin_s <= 0:
        raise ValueError(f"bin_s must be > 0, got {bin_s!r}")
    group_of: dict[tuple[str, str], int] = {}
    for index, (scenario, models) in enumerate(runs):
        for model in models:
            group_of.setdefault((scenario, model), index)
    groups: dict[object, list[RequestRecord]] = {}
    for r in records:
        key = group_of.get((r.scenario, r.model), (r.scenario, r.model))
        groups.setdefault(key, []).append(r)

    frames = []
    for members in groups.values():
        start = min(r.intended_send for r in members)
        arrivals = {(r.scenario, r.model): ([], []) for r in members}
        for r in members:
            times, per_event = token_arrivals(r)
            arrivals[(r.scenario, r.model)][0].append(times - start)
            arrivals[(r.scenario, r.model)][1].append(np.full(times.size, per_event))
        end = max((float(np.concatenate(t).max()) for t, _ in arrivals.values() if sum(map(len, t))), default=0.0)
        edges = np.arange(math.floor(end / bin_s) + 2) * bin_s
        for (scenario, model), (times, weights) in sorted(arrivals.items()):
            tokens, _ = np.histogram(np.concatenate(times), bins=edges, weights=np.concatenate(weights))
            frames.append(pd.DataFrame(
                {"scenario": scenario, "model": model, "t": edges[:-1], "tokens_per_s": tokens / bin_s}
            ))
    if not frames:
        return pd.DataFrame(columns=["scenario", "model", "t", "tokens_per_s"])
    return pd.concat(frames, ignore_index=True)
