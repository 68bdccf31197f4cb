"""Server-side attribution from TGI's Prometheus ``/metrics``: where did the time go?

A scenario scrapes every model's ``/metrics`` before and after it runs (``scrape``) and
keeps the raw text (``benchmark.rundir.save_scrape``); ``attribute`` turns one
before/after pair into the figures the report shows next to the planner's prediction.

TGI facts used (huggingface/text-generation-inference, ``router/src/server.rs``,
``backends/v3/src/lib.rs``; docs ``reference/metrics``):
- ``tgi_request_queue_duration`` and ``tgi_request_inference_duration`` are histograms in
  seconds (buckets from ``Matcher::Suffix("duration")``), recorded once per successful
  request: queue = time waiting to join a batch, inference = time from joining a batch to
  the last token.
- ``tgi_batch_next_size`` is a histogram (buckets 1..1024) of the size of each new batch.
- ``tgi_batch_max_total_tokens`` is a gauge set once at warmup: the KV-token budget TGI found
  in the memory that was free when it started.
- ``tgi_request_success`` is a counter.
Histograms are rendered as ``_bucket{le=...}``, ``_sum`` and ``_count``; means come from
``_sum``/``_count`` (which a summary would also have), quantiles from the buckets the way
PromQL's ``histogram_quantile`` interpolates them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from benchmark.errors import BenchmarkError

__all__ = ["Histogram", "Scrape", "parse_metrics", "attribute", "attribute_rounds", "breakdown", "scrape"]

Labels = tuple[tuple[str, str], ...]



@dataclass(frozen=True, slots=True)
class Scrape:
    """One parsed ``/metrics`` page: ``(name, sorted labels) -> value``."""

    samples: dict[tuple[str, Labels], float]

    def value(self, name: str) -> float | None:
        """The sum over label sets of ``name`` (None when absent)."""
        values = [v for (n, _), v in self.samples.items() if n == name]
        return math.fsum(values) if values else None

    def histogram(self, name: str) -> Histogram | None:
        """``name``'s histogram summed over its label sets (None when absent)."""
        count, total = self.value(f"{name}_count"), self.value(f"{name}_sum")
        if count is None or total is None:
            return None
        buckets: dict[float, float] = {}
        for (n, labels), v in self.samples.items():
            if n == f"{name}_bucket":
                le = float(dict(labels)["le"])
                buckets[le] = buckets.get(le, 0.0) + v
        return Histogram(count=count, sum=total, buckets=tuple(sorted(buckets.items())))


@dataclass(frozen=True, slots=True)
class Histogram:
    """A Prometheus histogram: cumulative ``(upper bound, count)`` buckets, ``+Inf`` last."""

    count: float
    sum: float
    buckets: tuple[tuple[float, float], ...] = ()

    def __sub__(self, before: Histogram) -> Histogram:
        """The observations made between two scrapes (``before`` is the earlier one).

        A counter that went down means the server restarted in between: then only the
        later scrape's observations are known, as Prometheus' ``increase`` assumes.
        """
        if self.count < before.count:
            return self
        earlier = dict(before.buckets)
        return Histogram(
            count=self.count - before.count,
            sum=self.sum - before.sum,
            buckets=tuple((le, c - earlier.get(le, 0.0)) for le, c in self.buckets),
        )

    def __add__(self, other: Histogram) -> Histogram:
        """The observations of both (e.g. two rounds' deltas)."""
        buckets = dict(self.buckets)
        for le, c in other.buckets:
            buckets[le] = buckets.get(le, 0.0) + c
        return Histogram(count=self.count + other.count, sum=self.sum + other.sum, buckets=tuple(sorted(buckets.items())))

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None

    def quantile(self, q: float, *, interpolate: bool = True) -> float | None:
        """The value below which a fraction ``q`` of the observations fall.

        As ``histogram_quantile``: linear interpolation inside the bucket holding rank
        ``q * count``, the first bucket's lower bound is 0, and a rank in the ``+Inf`` bucket
        returns the highest finite bound. ``interpolate=False`` returns the bucket's upper
        bound instead: exact for integer counts bucketed one by one (batch sizes).
        """
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(le):
                    return lower_bound
                if not interpolate:
                    return le
                width = cumulative - lower_count
                fraction = (rank - lower_count) / width if width > 0 else 1.0
                return lower_bound + (le - lower_bound) * fraction
            lower_bound, lower_count = le, cumulative
        return lower_bound


def parse_metrics(text: str) -> Scrape:
    """Parse the Prometheus text exposition format with the official parser (``prometheus_client``).

    That parser names a counter's samples ``<family>_total`` even where the exporter wrote the
    bare name (TGI's ``# TYPE tgi_request_success counter`` / ``tgi_request_success 5``), so a
    counter is kept under both names, as the exporter wrote it and as the parser reports it.
    """
    samples: dict[tuple[str, Labels], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                samples[(sample.name, labels)] = float(sample.value)
                if family.type == "counter" and sample.name == family.name + "_total":
                    samples[(family.name, labels)] = float(sample.value)
    except ValueError as e:
        raise BenchmarkError(f"/metrics is not in the Prometheus text format: {_bad_line(text) or e}") from None
    return Scrape(samples)


def _bad_line(text: str) -> str | None:
    """The first line the parser refuses on its own, for the error message."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.startswith("#"):
            try:
                list(text_string_to_metric_families(line + "\n"))
            except ValueError:
                return f"line {number} is not a sample: {line!r}"
    return None


def attribute(before: str, after: str, *, planned_kv_tokens: int | None) -> dict[str, Any]:
    """What one model's server did during a scenario, from its scrapes before and after.

    Keys (None where the server did not expose the metric): ``requests`` (successful,
    as the server counted them), ``queue_mean_s``/``queue_p95_s``, ``inference_mean_s``/
    ``inference_p95_s``, ``queue_share`` (queue time / (queue + inference) time, summed
    over the scenario's requests), ``batch_size_mean``/``batch_size_p95`` (of the batches
    formed), ``kv_tokens_found`` (``tgi_batch_max_total_tokens``), ``kv_tokens_planned``
    and ``kv_found_vs_planned`` (found / planned - 1).
    """
    return attribute_rounds([(before, after)], planned_kv_tokens=planned_kv_tokens)


def attribute_rounds(pairs: Sequence[tuple[str, str]], *, planned_kv_tokens: int | None) -> dict[str, Any]:
    """``attribute`` over several runs of a scenario (its rounds), each a (before, after) pair of
    scrapes: the observations of every round together; the KV budget as the last one found it."""
    queue = inference = batch = None
    requests: float | None = None
    kv_found = None
    for before, after in pairs:
        b, a = parse_metrics(before), parse_metrics(after)
        queue = _add(queue, _delta(b, a, "tgi_request_queue_duration"))
        inference = _add(inference, _delta(b, a, "tgi_request_inference_duration"))
        batch = _add(batch, _delta(b, a, "tgi_batch_next_size"))
        success_after, success_before = a.value("tgi_request_success"), b.value("tgi_request_success")
        if success_after is not None:
            served = success_after - (success_before or 0.0)
            requests = (requests or 0.0) + (served if served >= 0 else success_after)  # < 0: restarted in between
        kv_found = a.value("tgi_batch_max_total_tokens")
    busy = (queue.sum if queue else 0.0) + (inference.sum if inference else 0.0)
    return {
        "requests": requests,
        "queue_mean_s": queue.mean if queue else None,
        "queue_p95_s": queue.quantile(0.95) if queue else None,
        "inference_mean_s": inference.mean if inference else None,
        "inference_p95_s": inference.quantile(0.95) if inference else None,
        "queue_share": queue.sum / busy if queue and inference and busy > 0 else None,
        "batch_size_mean": batch.mean if batch else None,
        "batch_size_p95": batch.quantile(0.95, interpolate=False) if batch else None,
        "kv_tokens_found": kv_found,
        "kv_tokens_planned": planned_kv_tokens,
        "kv_found_vs_planned": (
            kv_found / planned_kv_tokens - 1.0 if kv_found is not None and planned_kv_tokens else None
        ),
    }


def _delta(before: Scrape, after: Scrape, name: str) -> Histogram | None:
    """``name``'s observations between two scrapes (all of the later one's without an earlier)."""
    h_after, h_before = after.histogram(name), before.histogram(name)
    if h_after is None:
        return None
    return h_after - h_before if h_before is not None else h_after


def _add(total: Histogram | None, part: Histogram | None) -> Histogram | None:
    if total is None or part is None:
        return total or part
    return total + part


def breakdown(
    baseline: Mapping[str, Any], other: Mapping[str, Any], *, e2e_baseline_s: float, e2e_other_s: float
) -> dict[str, float | None]:
    """Where a model's extra mean latency went between two scenarios (e.g. alone -> shared).

    ``baseline``/``other`` are ``attribute`` results for the model; ``e2e_*_s`` the client's
    mean E2E latencies. Keys: ``e2e_s`` (the client's extra mean latency), ``queue_s`` and
    ``inference_s`` (the server's extra mean queue and inference time), ``elsewhere_s``
    (the rest: validation, network, the access path, the client). None where a server
    metric is missing. Server means cover every request the server served between the
    scrapes, warmup requests included.
    """

    def extra(key: str) -> float | None:
        a, b = other.get(key), baseline.get(key)
        return a - b if a is not None and b is not None else None

    e2e = e2e_other_s - e2e_baseline_s
    queue, inference = extra("queue_mean_s"), extra("inference_mean_s")
    return {
        "e2e_s": e2e,
        "queue_s": queue,
        "inference_s": inference,
        "elsewhere_s": e2e - queue - inference if queue is not None and inference is not None else None,
    }


async def scrape(session: aiohttp.ClientSession, base_url: str, *, timeout_s: float = 10.0) -> str:
    """GET ``{base_url}/metrics`` and return its text; a BenchmarkError names the URL on failure."""
    url = base_url.rstrip("/") + "/metrics"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            text = await response.text()
            if response.status != 200:
                raise BenchmarkError(f"scraping {url} answered HTTP {response.status}: {text[:200]!r}")
            return text
    except (aiohttp.ClientError, TimeoutError) as e:
        raise BenchmarkError(f"scraping {url} failed: {e!r}") from e
