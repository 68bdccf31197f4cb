"""Server-side attribution from /metrics pages shaped like TGI's exporter renders them."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.analysis.promscrape import attribute, breakdown, parse_metrics
from benchmark.errors import BenchmarkError

# TGI's duration buckets: 35 steps of a geometric sequence from 0.0001 x 1.5 (router/src/server.rs)
DURATION_BUCKETS = [0.0001 * 1.5 ** (k + 1) for k in range(35)]
BATCH_BUCKETS = [float(x + 1) for x in range(1024)]


def histogram_lines(name: str, observations: np.ndarray, bounds: list[float]) -> list[str]:
    lines = [f"# TYPE {name} histogram"]
    lines += [f'{name}_bucket{{le="{b}"}} {int(np.sum(observations <= b))}' for b in bounds]
    lines += [f'{name}_bucket{{le="+Inf"}} {observations.size}',
              f"{name}_sum {observations.sum()}", f"{name}_count {observations.size}"]
    return lines


def page(queue: np.ndarray, inference: np.ndarray, batches: np.ndarray, *, kv: int) -> str:
    lines = ["# TYPE tgi_request_success counter", f"tgi_request_success {queue.size}"]
    lines += histogram_lines("tgi_request_queue_duration", queue, DURATION_BUCKETS)
    lines += histogram_lines("tgi_request_inference_duration", inference, DURATION_BUCKETS)
    lines += histogram_lines("tgi_batch_next_size", batches, BATCH_BUCKETS)
    lines += ["# TYPE tgi_batch_max_total_tokens gauge", f"tgi_batch_max_total_tokens {kv}"]
    return "\n".join(lines) + "\n"


def test_attribution_covers_only_what_happened_between_the_scrapes() -> None:
    rng = np.random.default_rng(0)
    # earlier traffic (other scenarios) the attribution must not count
    queue_old, inference_old, batch_old = rng.uniform(0, 5, 40), rng.uniform(0, 9, 40), rng.integers(1, 3, 30)
    queue_new, inference_new = rng.exponential(0.3, 200), rng.uniform(1.0, 3.0, 200)
    batch_new = rng.integers(1, 9, 120).astype(float)
    before = page(queue_old, inference_old, batch_old.astype(float), kv=52_000)
    after = page(
        np.concatenate([queue_old, queue_new]), np.concatenate([inference_old, inference_new]),
        np.concatenate([batch_old, batch_new]).astype(float), kv=52_000,
    )
    got = attribute(before, after, planned_kv_tokens=48_000)

    assert got["requests"] == 200
    assert got["queue_mean_s"] == pytest.approx(queue_new.mean())
    assert got["inference_mean_s"] == pytest.approx(inference_new.mean())
    assert got["queue_share"] == pytest.approx(queue_new.sum() / (queue_new.sum() + inference_new.sum()))
    assert got["batch_size_mean"] == pytest.approx(batch_new.mean())
    assert got["batch_size_p95"] == np.percentile(batch_new, 95, method="inverted_cdf")
    # a quantile from buckets is exact to within the bucket that holds it
    for key, values in (("queue_p95_s", queue_new), ("inference_p95_s", inference_new)):
        true = np.percentile(values, 95)
        upper = next(b for b in DURATION_BUCKETS if b >= true)
        lower = max([0.0] + [b for b in DURATION_BUCKETS if b < true])
        assert lower <= got[key] <= upper, (key, got[key], true)
    assert got["kv_tokens_found"] == 52_000 and got["kv_tokens_planned"] == 48_000
    assert got["kv_found_vs_planned"] == pytest.approx(52_000 / 48_000 - 1)


def test_a_server_restart_between_scrapes_counts_only_the_new_process() -> None:
    rng = np.random.default_rng(1)
    before = page(rng.uniform(0, 1, 500), rng.uniform(0, 1, 500), np.ones(400), kv=10)
    queue, inference = rng.uniform(0, 1, 30), rng.uniform(2, 3, 30)
    got = attribute(before, page(queue, inference, np.ones(20), kv=10), planned_kv_tokens=None)
    assert got["requests"] == 30
    assert got["inference_mean_s"] == pytest.approx(inference.mean())
    assert got["kv_found_vs_planned"] is None


def test_a_server_without_tgi_metrics_gives_empty_attribution() -> None:
    got = attribute("", "# HELP other\nprocess_cpu_seconds_total 3\n", planned_kv_tokens=1000)
    assert got["requests"] is None and got["queue_mean_s"] is None and got["kv_tokens_found"] is None


def test_parser_reads_labels_escapes_special_values_and_timestamps() -> None:
    scrape = parse_metrics(
        '# HELP x y\n'
        'tgi_request_failure{err="overloaded"} 3\n'
        'tgi_request_failure{err="val\\"id\\\\ation", other = "a,b"} 2 1700000000000\n'
        'tgi_queue_size NaN\n'
        'tgi_batch_current_size +Inf\n'
    )
    assert scrape.value("tgi_request_failure") == 5
    assert scrape.samples[("tgi_request_failure", (("err", 'val"id\\ation'), ("other", "a,b")))] == 2
    assert scrape.value("tgi_batch_current_size") == float("inf")
    assert scrape.value("absent") is None


def test_a_malformed_line_is_named() -> None:
    with pytest.raises(BenchmarkError, match=r"line 2 .*'tgi_queue_size twelve'"):
        parse_metrics("tgi_queue_size 1\ntgi_queue_size twelve\n")
    with pytest.raises(BenchmarkError, match="line 1 is not a sample"):
        parse_metrics("<html>not metrics</html>\n")


def test_breakdown_splits_the_extra_latency_into_queue_inference_and_the_rest() -> None:
    rng = np.random.default_rng(2)
    queue_alone, inference_alone = rng.uniform(0, 0.01, 50), rng.uniform(0.9, 1.1, 50)
    queue_shared, inference_shared = rng.uniform(0.1, 0.3, 50), rng.uniform(1.8, 2.2, 50)
    empty = np.empty(0)
    alone = attribute(page(empty, empty, empty, kv=1), page(queue_alone, inference_alone, np.ones(50), kv=1),
                      planned_kv_tokens=None)
    shared = attribute(page(empty, empty, empty, kv=1), page(queue_shared, inference_shared, np.ones(50), kv=1),
                       planned_kv_tokens=None)
    got = breakdown(alone, shared, e2e_baseline_s=1.02, e2e_other_s=2.25)
    assert got["e2e_s"] == pytest.approx(1.23)
    assert got["queue_s"] == pytest.approx(queue_shared.mean() - queue_alone.mean())
    assert got["inference_s"] == pytest.approx(inference_shared.mean() - inference_alone.mean())
    parts = [got["queue_s"], got["inference_s"], got["elsewhere_s"]]
    assert got["e2e_s"] == pytest.approx(sum(p for p in parts if p is not None)) and None not in parts
    no_server = attribute("", "", planned_kv_tokens=None)
    assert breakdown(no_server, shared, e2e_baseline_s=1.0, e2e_other_s=2.0)["elsewhere_s"] is None
