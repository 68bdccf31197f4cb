"""Impact analysis on records with a known slowdown: the intervals must catch the truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic_records import sequential_run

from benchmark.analysis.impact import compute_impact, jain_index
from benchmark.errors import BenchmarkError


def _row(impact, model: str, metric: str) -> dict:
    rows = impact.per_model
    return rows[(rows["model"] == model) & (rows["metric"] == metric)].iloc[0].to_dict()


def test_known_slowdown_lies_inside_every_interval() -> None:
    slowdown = 1.8
    alone = sequential_run("phi", "alone", seed=1)
    shared = sequential_run("phi", "shared", slowdown=slowdown, seed=2)
    impact = compute_impact(alone, shared)
    for metric in ("e2e_mean", "e2e_p50", "e2e_p95", "e2e_p99"):
        row = _row(impact, "phi", metric)
        assert row["ci_low"] <= slowdown - 1 <= row["ci_high"], (metric, row)
        assert row["ci_low"] <= row["change"] <= row["ci_high"], (metric, row)
    # same tokens in 1.8x the time: throughput falls to 1/1.8 of alone
    row = _row(impact, "phi", "output_tokens_per_s")
    assert row["ci_low"] <= 1 / slowdown - 1 <= row["ci_high"], row
    assert row["ci_high"] < 0


def test_the_intervals_cover_the_truth_about_as_often_as_they_claim() -> None:
    # 60 independent alone/shared pairs with a known 1.8x slowdown; a 95 % interval should
    # miss about 3 of them (a miscalibrated or too narrow interval misses many more)
    runs = 60
    hits = {"e2e_mean": 0, "e2e_p50": 0, "output_tokens_per_s": 0}
    for k in range(runs):
        impact = compute_impact(sequential_run("phi", "alone", seed=1000 + 2 * k),
                                sequential_run("phi", "shared", slowdown=1.8, seed=1001 + 2 * k), n_boot=500)
        for metric in hits:
            row = _row(impact, "phi", metric)
            truth = 0.8 if metric.startswith("e2e") else 1 / 1.8 - 1
            hits[metric] += row["ci_low"] <= truth <= row["ci_high"]
    for metric, hit in hits.items():
        assert hit / runs >= 0.85, (metric, hit)


def test_no_slowdown_gives_an_interval_around_zero_and_a_real_one_excludes_zero() -> None:
    alone = sequential_run("phi", "alone", seed=3)
    same = compute_impact(alone, sequential_run("phi", "shared", seed=4))
    slower = compute_impact(alone, sequential_run("phi", "shared", slowdown=1.3, seed=4))
    for metric in ("e2e_mean", "output_tokens_per_s"):
        row = _row(same, "phi", metric)
        assert row["ci_low"] < 0 < row["ci_high"], row
    assert _row(slower, "phi", "e2e_mean")["ci_low"] > 0
    assert _row(slower, "phi", "output_tokens_per_s")["ci_high"] < 0


def test_point_estimates_are_the_summarys_and_the_bootstrap_is_seeded() -> None:
    alone = sequential_run("phi", "alone", seed=5)
    shared = sequential_run("phi", "shared", slowdown=1.5, seed=6)
    first, again = compute_impact(alone, shared, seed=7), compute_impact(alone, shared, seed=7)
    assert first.per_model.equals(again.per_model)
    other_seed = compute_impact(alone, shared, seed=8)
    assert not first.per_model["ci_low"].equals(other_seed.per_model["ci_low"])
    row = _row(first, "phi", "e2e_mean")
    assert row["baseline"] == pytest.approx(np.mean([r.e2e or 0.0 for r in alone]))
    assert row["other"] == pytest.approx(np.mean([r.e2e or 0.0 for r in shared]))


def test_failed_requests_cost_throughput() -> None:
    alone = sequential_run("phi", "alone", seed=9)
    # same latencies, but a fifth of the requests fail: a fifth of the tokens are lost
    shared = sequential_run("phi", "shared", seed=9, failures=10)
    row = _row(compute_impact(alone, shared), "phi", "output_tokens_per_s")
    assert row["change"] == pytest.approx(-0.2, abs=1e-9)
    assert row["ci_low"] <= -0.2 <= row["ci_high"]


def test_aggregate_and_fairness_across_models() -> None:
    alone = sequential_run("phi", "alone", seed=10) + sequential_run("llama", "alone", seed=11)
    # phi keeps half its throughput, llama a quarter
    shared = sequential_run("phi", "shared", slowdown=2.0, seed=12) + sequential_run(
        "llama", "shared", slowdown=4.0, seed=13
    )
    impact = compute_impact(alone, shared)
    fair = impact.fairness
    x = fair.normalised
    assert x["phi"] == pytest.approx(0.5, rel=0.15) and x["llama"] == pytest.approx(0.25, rel=0.15)
    assert fair.index == pytest.approx((x["phi"] + x["llama"]) ** 2 / (2 * (x["phi"] ** 2 + x["llama"] ** 2)))
    assert fair.index is not None and fair.ci_low is not None and fair.ci_high is not None
    assert fair.ci_low <= fair.index <= fair.ci_high
    tokens = {m: _row(impact, m, "output_tokens_per_s") for m in ("phi", "llama")}
    expected = sum(t["other"] for t in tokens.values()) / sum(t["baseline"] for t in tokens.values()) - 1
    assert impact.aggregate.change == pytest.approx(expected)
    assert impact.aggregate.ci_low <= expected <= impact.aggregate.ci_high


def test_jain_index_bounds() -> None:
    assert jain_index(np.array([0.7, 0.7, 0.7])) == pytest.approx(1.0)
    assert jain_index(np.array([1.0, 0.0, 0.0, 0.0])) == pytest.approx(1 / 4)


def test_models_missing_on_one_side_are_listed_and_one_model_has_no_fairness() -> None:
    alone = sequential_run("phi", "alone") + sequential_run("llama", "alone")
    impact = compute_impact(alone, sequential_run("phi", "shared"))
    assert impact.models == ["phi"] and impact.only_baseline == ["llama"]
    assert impact.fairness.index is None


def test_several_scenarios_for_one_model_are_refused() -> None:
    mixed = sequential_run("phi", "alone") + sequential_run("phi", "shared")
    with pytest.raises(BenchmarkError, match="several scenarios for model 'phi'"):
        compute_impact(mixed, mixed)


def test_a_model_without_successes_has_no_interval() -> None:
    alone = sequential_run("phi", "alone")
    broken = sequential_run("phi", "shared", failures=50)
    row = _row(compute_impact(alone, broken), "phi", "e2e_mean")
    assert math.isnan(row["ci_low"]) and math.isnan(row["other"])
