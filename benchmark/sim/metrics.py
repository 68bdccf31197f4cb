"""A simulated model's ``/metrics``: TGI's own ``tgi_*`` names, types and buckets.

Source: huggingface/text-generation-inference ``router/src/server.rs`` (the counters and
histograms recorded per request; duration buckets ``0.0001 x 1.5^k`` for k = 1..35 on
every name ending in ``duration``; token-count buckets in hundredths of the limit),
``backends/v3/src/lib.rs`` (``tgi_batch_max_total_tokens`` gauge), docs
``reference/metrics.md`` (the list and types). Rendered in Prometheus' text format, as
``metrics-exporter-prometheus`` does: ``# TYPE`` lines, histograms as ``_bucket{le}``,
``_sum`` and ``_count``. A leading comment line marks the page as simulated.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

__all__ = ["Histogram", "ModelMetrics"]

_DURATION_BUCKETS = tuple(0.0001 * 1.5**k for k in range(1, 36))


def _hundredths(limit: int) -> tuple[float, ...]:
    return tuple(limit / 100 * (x + 1) for x in range(100))


class Histogram:
    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.bounds, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.count += 1

    def render(self, name: str) -> list[str]:
        lines = [f"# TYPE {name} histogram"]
        cumulative = 0
        for bound, n in zip(self.bounds, self.counts):
            cumulative += n
            lines.append(f'{name}_bucket{{le="{bound!r}"}} {cumulative}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {self.total!r}")
        lines.append(f"{name}_count {self.count}")
        return lines


class ModelMetrics:
    """Counters and histograms of one simulated model (all its replicas)."""

    def __init__(self, *, max_input_tokens: int, max_total_tokens: int) -> None:
        self.request_count = 0
        self.request_success = 0
        self.request_failure: dict[str, int] = {}  # err label -> count
        self.histograms: dict[str, Histogram] = {
            name: Histogram(_DURATION_BUCKETS)
            for name in (
                "tgi_request_duration",
                "tgi_request_validation_duration",
                "tgi_request_queue_duration",
                "tgi_request_inference_duration",
                "tgi_request_mean_time_per_token_duration",
            )
        }
        self.histograms["tgi_request_input_length"] = Histogram(_hundredths(max_input_tokens))
        self.histograms["tgi_request_max_new_tokens"] = Histogram(_hundredths(max_total_tokens))
        self.histograms["tgi_request_generated_tokens"] = Histogram(_hundredths(max_total_tokens))
        self.histograms["tgi_batch_next_size"] = Histogram(tuple(float(x + 1) for x in range(1024)))

    def observe(self, name: str, value: float) -> None:
        self.histograms[name].observe(value)

    def fail(self, err: str) -> None:
        self.request_failure[err] = self.request_failure.get(err, 0) + 1

    def render(self, gauges: dict[str, float]) -> str:
        lines = ["# gpu-sharing tgi simulator: SIMULATED metrics, not a real TGI server"]
        lines += ["# TYPE tgi_request_count counter", f"tgi_request_count {self.request_count}"]
        lines += ["# TYPE tgi_request_success counter", f"tgi_request_success {self.request_success}"]
        if self.request_failure:
            lines.append("# TYPE tgi_request_failure counter")
            lines += [f'tgi_request_failure{{err="{err}"}} {n}' for err, n in sorted(self.request_failure.items())]
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value:g}"]
        for name, histogram in self.histograms.items():
            lines += histogram.render(name)
        return "\n".join(lines) + "\n"
