"""The impact over rounds: Student's t quantiles, intervals that cover the truth about as often as
they claim when every run of a scenario drifts, the drift warnings and the rounds they call for."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic_records import sequential_run

from benchmark.analysis.rounds import RoundFigures, between_rounds, drifts, round_figures, t_quantile


@pytest.mark.parametrize(("p", "df", "expected"), [
    (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 4, 2.7764), (0.975, 10, 2.2281), (0.975, 30, 2.0423),
    (0.95, 5, 2.0150), (0.975, 1e6, 1.9600),
])  # fmt: skip
def test_t_quantiles_match_the_tables(p: float, df: float, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-4)


def test_t_quantiles_of_fractional_degrees_of_freedom_lie_between_their_neighbours() -> None:
    assert t_quantile(0.975, 2) > t_quantile(0.975, 2.5) > t_quantile(0.975, 3)
    with pytest.raises(ValueError, match="allowed: 0.5 < p < 1, df > 0"):
        t_quantile(0.975, 0)


def _figures(scenario: str, model: str, e2e: list[float]) -> list[RoundFigures]:
    return [RoundFigures(scenario=scenario, model=model, round=r + 1, count=10, success_rate=1.0, e2e_mean=v,
                         output_tokens_per_s=100 / v) for r, v in enumerate(e2e)]


def _experiment(rng: np.random.Generator, truth: float, drift_sd: float, rounds: int) -> tuple[list[float], list[float]]:
    """Each run of each scenario lands on a server slower or faster by a random factor of its own."""
    alone = np.exp(rng.normal(0, drift_sd, rounds))
    return list(alone), list((1 + truth) * np.exp(rng.normal(0, drift_sd, rounds)))


@pytest.mark.parametrize("interleaved", [True, False])
def test_the_interval_over_rounds_covers_the_truth_about_as_often_as_it_claims(interleaved: bool) -> None:
    rng = np.random.default_rng(12)
    truth, runs, hits = 0.3, 300, 0
    for _ in range(runs):
        alone, shared = _experiment(rng, truth, drift_sd=0.15, rounds=3)
        result = between_rounds(_figures("alone", "m", alone), _figures("shared", "m", shared), [],
                                latency_change={"m": truth}, interleaved=interleaved)
        b = result.of("m", "latency")
        assert b is not None and b.rounds == 3
        hits += b.ci_low <= truth <= b.ci_high
    assert 0.9 <= hits / runs <= 0.99, hits  # a 95 % interval: about 285 of 300


def test_interleaved_rounds_give_each_rounds_change_and_their_geometric_mean() -> None:
    result = between_rounds(_figures("alone", "m", [1.0, 1.2, 1.1]), _figures("shared", "m", [1.5, 1.92, 1.54]), [],
                            latency_change={"m": 0.5}, interleaved=True)
    latency, throughput = result.of("m", "latency"), result.of("m", "throughput")
    assert latency is not None and throughput is not None
    assert latency.per_round == pytest.approx({1: 0.5, 2: 0.6, 3: 0.4})
    assert latency.estimate == pytest.approx((1.5 * 1.6 * 1.4) ** (1 / 3) - 1)
    assert latency.ci_low < latency.estimate < latency.ci_high
    assert throughput.estimate == pytest.approx(1 / (1 + latency.estimate) - 1)  # tokens/s = 100 / E2E here
    assert not result.single_pass and result.interleaved


def test_one_round_is_a_single_pass_without_an_interval() -> None:
    result = between_rounds(_figures("alone", "m", [1.0]), _figures("shared", "m", [1.5]), [],
                            latency_change={"m": 0.5}, interleaved=True)
    latency = result.of("m", "latency")
    assert latency is not None and latency.estimate == pytest.approx(0.5) and math.isnan(latency.ci_low)
    assert result.single_pass


def test_drift_larger_than_the_impact_is_warned_about_with_the_rounds_needed() -> None:
    alone = _figures("alone", "m", [1.0, 1.15, 1.3])  # drifts 30 %
    shared = _figures("shared", "m", [1.1, 1.28, 1.42])  # a 10 % impact, each round's own
    drift = drifts([*alone, *shared])
    assert {(d.scenario, round(d.drift, 3)) for d in drift} == {("alone", 0.3), ("shared", round(1.42 / 1.1 - 1, 3))}
    result = between_rounds(alone, shared, drift, latency_change={"m": 0.1}, interleaved=True)
    assert {w.scenario for w in result.warnings} == {"alone", "shared"}
    (warning,) = [w for w in result.warnings if w.scenario == "alone"]
    latency = result.of("m", "latency")
    assert latency is not None and warning.needed == latency.needed and warning.rounds == 3
    # what it promises: with that many rounds and the spread seen, the half-width is at most half the impact
    logs = np.log([1.1 / 1.0, 1.28 / 1.15, 1.42 / 1.3])
    spread, n = float(np.std(logs, ddof=1)), warning.needed
    assert n is not None and t_quantile(0.975, n - 1) * spread / math.sqrt(n) <= math.log(1.1) / 2
    assert n == 2 or t_quantile(0.975, n - 2) * spread / math.sqrt(n - 1) > math.log(1.1) / 2
    quiet = between_rounds(alone, shared, drift, latency_change={"m": 0.5}, interleaved=True)
    assert quiet.warnings == []  # a 50 % impact: the 30 % drift does not hide it


def test_round_figures_come_from_each_rounds_own_records() -> None:
    records = []
    for r, slowdown in enumerate((1.0, 1.2), start=1):
        for rec in sequential_run("m", "alone", slowdown=slowdown, seed=r, noise=0.0):
            rec.round = r
            records.append(rec)
    figures = round_figures(records)
    assert [(f.round, f.count) for f in figures] == [(1, 50), (2, 50)]
    assert figures[1].e2e_mean / figures[0].e2e_mean == pytest.approx(1.2)
    assert figures[1].output_tokens_per_s / figures[0].output_tokens_per_s == pytest.approx(1 / 1.2)
