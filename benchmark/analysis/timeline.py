"""Per-second output-token throughput over time, per model: time-slicing stalls made visible.

A streamed request's token events arrive at ``intended_send + ttft`` and then after each
inter-token gap, ``intended_send + ttft + cumsum(itl)`` (run clock). Each event carries
``output_tokens / events`` tokens, so a model's timeline adds up to the tokens the server
reported (TGI may count tokens that are not streamed as events one to one). Only successful
requests count, as in the summary's ``output_tokens_per_s``.

Models that ran together (one scenario in one round, one clock) share their time axis:
``t = 0`` is the earliest intended send of any of them, and their bins cover the same span,
zeros included, so a model that got no GPU time while another did shows as a dip beside the
other's peak. The span ends at the last recorded token event: its last bin, shorter than the
others, is rated over the time it covers (tokens / its width), or left out when it covers
less than half a bin (too few tokens to rate: it would draw as a collapse).

``fillers``: the unrecorded requests that kept a model that had finished busy in a shared
scenario (``rundir.LoadedRun.fillers``); they are binned on their scenario's axis as rows of
source ``filler``, so a plot shows what the GPU was doing after a model's recorded requests
ended. A filler stopped in flight counts the events it had received.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark.engine.records import FILLER_SUFFIX, RequestRecord

__all__ = ["COLUMNS", "token_arrivals", "throughput_timeline"]

Run = tuple[str, int, Sequence[str]]  # (scenario, round, the models that ran together in it)
COLUMNS = ["scenario", "round", "model", "source", "t", "width", "tokens_per_s"]


def token_arrivals(record: RequestRecord, *, partial: bool = False) -> tuple[np.ndarray, float]:
    """The run-clock times of a successful request's token events, and the tokens each carries;
    with ``partial``, also those of a request stopped in flight (no success, no error kind)."""
    usable = record.success or (partial and record.error_kind is None)
    if not usable or record.ttft is None:
        return np.empty(0), 0.0
    times = record.intended_send + record.ttft + np.concatenate(([0.0], np.cumsum(record.itl)))
    tokens = record.output_tokens if record.output_tokens is not None else times.size
    return times, tokens / times.size


def throughput_timeline(
    records: Sequence[RequestRecord], *, runs: Sequence[Run] = (), bin_s: float = 1.0,
    fillers: Sequence[RequestRecord] = (),
) -> pd.DataFrame:  # fmt: skip
    """Output tokens per second in consecutive ``bin_s`` bins, per (scenario, round, model).

    ``runs`` names the models that ran together in a scenario's round (``run.json``'s
    scenarios); a (scenario, round, model) not named there is a run of its own. Columns
    ``COLUMNS``: ``source`` (``recorded`` or ``filler``), ``t`` (bin start, s since its run's
    start), ``width`` (the bin's, s: ``bin_s`` but for a shorter last one), ``tokens_per_s``.
    """
    if bin_s <= 0:
        raise ValueError(f"bin_s must be > 0, got {bin_s!r}")
    group_of: dict[tuple[str, int, str], int] = {}
    for index, (scenario, rnd, models) in enumerate(runs):
        for model in models:
            group_of.setdefault((scenario, rnd, model), index)

    def key(scenario: str, r: RequestRecord) -> object:
        return group_of.get((scenario, r.round, r.model), (scenario, r.round, r.model))

    groups: dict[object, list[RequestRecord]] = {}
    for r in records:
        groups.setdefault(key(r.scenario, r), []).append(r)
    extra: dict[object, list[RequestRecord]] = {}
    for r in fillers:
        extra.setdefault(key(r.scenario.removesuffix(FILLER_SUFFIX), r), []).append(r)

    frames = []
    for group, members in groups.items():
        start = min(r.intended_send for r in members)
        recorded = _arrivals(members, start, partial=False)
        ends = [float(t.max()) for t, _ in recorded.values() if t.size]
        if not ends:
            continue
        end = max(ends)
        edges = np.arange(math.floor(end / bin_s) + 1) * bin_s
        if end - edges[-1] > 0:
            edges = np.append(edges, end)
        widths = np.diff(edges)
        keep = widths >= bin_s / 2  # only the last bin can be shorter
        series = [("recorded", recorded), ("filler", _arrivals(extra.get(group, []), start, partial=True))]
        for source, arrivals in series:
            for (scenario, rnd, model), (times, weights) in sorted(arrivals.items()):
                tokens, _ = np.histogram(times, bins=edges, weights=weights)
                frames.append(pd.DataFrame({
                    "scenario": scenario, "round": rnd, "model": model, "source": source, "t": edges[:-1][keep],
                    "width": widths[keep], "tokens_per_s": tokens[keep] / widths[keep],
                }))  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _arrivals(members: Sequence[RequestRecord], start: float, *,
              partial: bool) -> dict[tuple[str, int, str], tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Per (scenario, round, model): token event times since ``start`` and the tokens each carries."""
    parts: dict[tuple[str, int, str], tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for r in members:
        times, per_event = token_arrivals(r, partial=partial)
        scenario = r.scenario.removesuffix(FILLER_SUFFIX)
        times_list, weights = parts.setdefault((scenario, r.round, r.model), ([], []))
        times_list.append(times - start)
        weights.append(np.full(times.size, per_event))
    return {k: (np.concatenate(t), np.concatenate(w)) for k, (t, w) in parts.items()}
