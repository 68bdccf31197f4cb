"""Latency targets (SLOs), goodput, and the capacity a model keeps within them.

An SLO bounds per-request latencies, in seconds: ``ttft`` (time to first token), ``tpot``
(time per output token after the first) and ``e2e`` (the whole request), each measured as the
summary defines them (from the *intended* send, so open-loop queueing counts). A request meets
the SLO when it succeeded and every bounded metric is within its bound; a failed request never
does. ``--slo ttft=0.5,tpot=0.05`` applies to every model, ``--slo phi:ttft=0.3`` to one
(a model's own SLO replaces the common one).

- **goodput**: requests that met the SLO per second, over the same wall span as the summary's
  rates (first intended send to last completion, failures included).
- **share within SLO**: requests that met it / all requests.
- **capacity** (a load sweep): the highest offered load (req/s of an open loop, or a
  concurrency) at which at least ``target`` (default 0.9: the p90) of the requests met the SLO,
  interpolated linearly between the highest point that met it and the next one that did not;
  ``None`` when even the lowest load missed it, and marked ``lower_bound`` when the highest
  load tried still met it (the capacity is at least that).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from benchmark.engine.records import RequestRecord
from benchmark.errors import BenchmarkError

__all__ = ["METRICS", "Capacity", "Slo", "SweepPoint", "capacity", "goodput", "meets", "parse_slos"]

METRICS = ("ttft", "tpot", "e2e")


@dataclass(frozen=True)
class Slo:
    """Upper bounds in seconds per metric (``METRICS``); a metric left out is not bounded."""

    bounds: Mapping[str, float]

    def describe(self) -> str:
        return ", ".join(f"{m} <= {self.bounds[m] * 1e3:g} ms" for m in METRICS if m in self.bounds)


def parse_slos(values: Sequence[str], models: Sequence[str]) -> dict[str, Slo]:
    """``--slo`` flags into an SLO per model: ``METRIC=SECONDS[,...]`` for every model, or
    ``KEY:METRIC=SECONDS[,...]`` for one (which replaces the common one for that model)."""
    common: dict[str, float] = {}
    own: dict[str, dict[str, float]] = {}
    for raw in values:
        key, colon, spec = raw.partition(":") if ":" in raw.split("=", 1)[0] else ("", "", raw)
        if colon and key not in models:
            raise BenchmarkError(f"--slo {raw!r}: model {key!r} is not measured here; models: {', '.join(models)}")
        bounds = own.setdefault(key, {}) if colon else common
        for part in spec.split(","):
            metric, eq, number = part.strip().partition("=")
            try:
                value = float(number)
            except ValueError:
                value = -1.0
            if not eq or metric not in METRICS or not value > 0:
                raise BenchmarkError(f"--slo {raw!r}: expected [KEY:]METRIC=SECONDS[,...] with METRIC one of "
                                     f"{', '.join(METRICS)} and SECONDS > 0, e.g. --slo ttft=0.5,tpot=0.05")
            bounds[metric] = value
    return {m: Slo(own.get(m, common)) for m in models if own.get(m, common)}


def meets(record: RequestRecord, slo: Slo) -> bool:
    """Whether one request met every bound of ``slo`` (a failure never does)."""
    if not record.success:
        return False
    values = {"ttft": record.ttft, "tpot": record.tpot, "e2e": record.e2e}
    for metric, bound in slo.bounds.items():
        value = values[metric]
        if metric == "tpot" and value is None and record.output_tokens is not None and record.output_tokens < 2:
            continue  # one token: no time per output token to bound
        if value is None or value > bound:
            return False
    return True


def goodput(records: Iterable[RequestRecord], slo: Slo) -> tuple[float, float, int]:
    """(goodput in req/s, share within the SLO, requests) of one model's records of one run."""
    records = list(records)
    if not records:
        return float("nan"), float("nan"), 0
    met = sum(meets(r, slo) for r in records)
    ends = [r.intended_send + r.e2e for r in records if r.e2e is not None]
    span = (max(ends) - min(r.intended_send for r in records)) if ends else 0.0
    return (met / span if span > 0 else float("nan")), met / len(records), len(records)


@dataclass(frozen=True)
class SweepPoint:
    """One load of a sweep: what was offered and what met the SLO."""

    load: float  # req/s (open loop) or concurrency (closed loop)
    share: float  # of the requests within the SLO
    goodput: float  # req/s within the SLO
    p90_e2e: float  # s, of the successful requests


@dataclass(frozen=True)
class Capacity:
    """The highest load within the SLO for ``target`` of the requests (see the module docstring)."""

    value: float | None
    lower_bound: bool = False  # the highest load tried still met the SLO


def capacity(points: Sequence[SweepPoint], target: float = 0.9) -> Capacity:
    """The capacity from a sweep's points (any order)."""
    ordered = sorted(points, key=lambda p: p.load)
    ok = [i for i, p in enumerate(ordered) if p.share >= target]
    if not ok:
        return Capacity(None)
    i = max(ok)
    if i == len(ordered) - 1:
        return Capacity(ordered[i].load, lower_bound=True)
    below, above = ordered[i], ordered[i + 1]
    if below.share == above.share:
        return Capacity(below.load)
    # the load at which the share crosses the target, on the line between the two points
    fraction = (below.share - target) / (below.share - above.share)
    return Capacity(below.load + fraction * (above.load - below.load))
