"""`run --repeats N`: rounds of the scenarios, interleaved, whose impact interval covers drift.

Against a simulated GPU that slows down at a known rate (``SimulatedGpu(drift_per_s=...)``:
every duration, of every model alike, grows by that share per second, so the slowdown sharing
causes stays what it is without drift), a single pass measures the shared scenario later, on a
slower GPU, than the alone ones, and its within-run interval excludes the truth; three
interleaved rounds give an interval over rounds that holds it. The truth is the impact the same
stack shows without drift."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from benchmark.commands.demo import simulated_stack
from benchmark.commands.run import benchmark_stack
from benchmark.engine.results import read_records
from benchmark.sim.spec import ModelSpec
from benchmark.stack import rundir
from benchmark.stack.outputs import parse_outputs
from benchmark.stack.session import RunOptions

SPECS = [ModelSpec(key=key, model_id=f"example/{key}", decode_base_s=step, prefill_base_s=0.002, prefill_s_per_token=0.0,
                   warmup_s=0.05, max_input_tokens=256, max_total_tokens=512, max_batch_total_tokens=8192,
                   max_concurrent_requests=16)
         for key, step in (("small", 0.004), ("large", 0.008))]  # fmt: skip
DRIFT = 0.1  # the GPU 10 % slower every second


def _run(tmp_path: Path, name: str, *, drift: float, repeats: int) -> dict[str, Any]:
    async def main() -> Path:
        async with simulated_stack(time_scale=1.0, specs=SPECS, drift_per_s=drift) as sim:
            options = RunOptions(scenarios="all", repeats=repeats, iterations=2, max_new_tokens=10, warmup=1,
                                 results_dir=tmp_path / name, ready_timeout=20, poll=0.02, progress=False,
                                 endpoints=[f"{k}={m.base_url}" for k, m in sim.models.items()])  # fmt: skip
            return await benchmark_stack(parse_outputs(sim.outputs, source="test"), options, log=lambda s: None)

    run_dir = asyncio.run(main())
    data = json.loads((run_dir / "summary.json").read_text())
    data["run_dir"] = run_dir
    return data


def _latency(data: dict[str, Any], model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the pooled impact row, the impact over rounds) of ``model``'s mean latency."""
    (impact,) = data["impact"]
    pooled = next(r for r in impact["per_model"] if r["model"] == model and r["metric"] == "e2e_mean")
    over = next(b for b in impact["rounds"]["between"] if b["model"] == model and b["quantity"] == "latency")
    return pooled, over


def test_interleaved_rounds_hold_the_truth_in_their_interval_where_a_single_pass_under_drift_does_not(
    tmp_path: Path,
) -> None:
    truth_run = _run(tmp_path, "truth", drift=0.0, repeats=1)
    single = _run(tmp_path, "single", drift=DRIFT, repeats=1)
    rounds = _run(tmp_path, "rounds", drift=DRIFT, repeats=3)

    meta = rundir.read_run_meta(rounds["run_dir"])
    assert (meta.repeats, meta.seed) == (3, None)
    order = [(s.round, s.scenario, tuple(s.models)) for s in meta.scenarios]
    alone_large, alone_small, shared = ("alone", ("large",)), ("alone", ("small",)), ("shared", ("small", "large"))
    assert [o[1:] for o in order] == [alone_large, alone_small, shared, alone_small, shared, alone_large,
                                      shared, alone_large, alone_small]  # rotated, round by round
    assert [o[0] for o in order] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    records = read_records(rounds["run_dir"] / rundir.REQUESTS)
    assert {(r.scenario, r.round) for r in records} == {(s, k) for s in ("alone", "shared") for k in (1, 2, 3)}
    assert rounds["impact"][0]["rounds"]["interleaved"] and not rounds["impact"][0]["rounds"]["single_pass"]
    assert single["impact"][0]["rounds"]["single_pass"]

    for model in ("small", "large"):
        truth = _latency(truth_run, model)[0]["change"]
        pooled, _ = _latency(single, model)
        assert not pooled["ci_low"] <= truth <= pooled["ci_high"], (model, truth, pooled)  # drift, not covered
        _, over = _latency(rounds, model)
        assert len(over["per_round"]) == 3
        assert over["ci_low"] <= truth <= over["ci_high"], (model, truth, over)
        assert abs(over["estimate"] - truth) < abs(pooled["change"] - truth), (model, truth, over, pooled)

    # the drift between rounds is in the report, each round's figures beside it
    drift = {(d["scenario"], d["model"]): d for d in rounds["drift"]}
    assert set(drift) == {(s, m) for s in ("alone", "shared") for m in ("small", "large")}
    assert all(d["drift"] > 0.1 for d in drift.values())  # 3 rounds of a GPU that slows 10 % a second
    md = (rounds["run_dir"] / "report.md").read_text()
    assert "## Rounds" in md and "| alone | small | 3 | 10 |" in md
    assert "Impact on small over 3 interleaved rounds (shared vs alone): latency +" in md
    assert "Single pass (shared or alone ran once: --repeats 1)" in (single["run_dir"] / "report.md").read_text()


@pytest.mark.parametrize("seed", [None, 7])
def test_the_order_within_rounds_is_rotated_or_shuffled_reproducibly(seed: int | None) -> None:
    from benchmark.stack.scaling import Scenario, in_rounds

    base = [Scenario("alone", ("b",)), Scenario("alone", ("a",)), Scenario("shared", ("a", "b"))]
    first, again = in_rounds(base, 6, seed), in_rounds(base, 6, seed)
    assert first == again  # the same flags, the same schedule
    rounds = [[dataclasses.replace(s, round=1, rounds=1) for s in first if s.round == r] for r in range(1, 7)]
    assert all(sorted(r, key=base.index) == base for r in rounds)  # every round holds every scenario once
    if seed is None:  # rotated: each scenario in each place of a round twice in 6 rounds
        assert [r[0] for r in rounds] == base * 2
    else:
        assert len({tuple(r) for r in rounds}) > 1  # shuffled: the rounds' orders differ


def test_a_plain_run_series_repeats_its_scenario_and_compares_rounds_with_baselines_from_other_runs(
    tmp_path: Path,
) -> None:
    """Plain runs (no --scenarios): each model alone, then both, each run with --repeats 2. The
    shared run's baselines ran at other times, so its interval over rounds is Welch's, not
    interleaved, and says so."""

    async def main() -> tuple[Path, dict[str, Path]]:
        async with simulated_stack(time_scale=1.0, specs=SPECS) as sim:
            stack = parse_outputs(sim.outputs, source="test")
            base = RunOptions(repeats=2, iterations=1, max_new_tokens=10, warmup=0, results_dir=tmp_path, ready_timeout=20,
                              poll=0.02, progress=False, endpoints=[f"{k}={m.base_url}" for k, m in sim.models.items()])
            alone = {}
            for only in ("small", "large"):
                for key in sim.models:
                    await sim.api.scale(sim.api.deployments[key], 1 if key == only else 0)
                alone[only] = await benchmark_stack(stack, dataclasses.replace(base, models=[only]), log=lambda s: None)
            for key in sim.models:
                await sim.api.scale(sim.api.deployments[key], 1)
            return await benchmark_stack(stack, base, log=lambda s: None), alone

    shared, alone = asyncio.run(main())
    for run_dir in (*alone.values(), shared):
        meta = rundir.read_run_meta(run_dir)
        assert meta.repeats == 2 and [s.round for s in meta.scenarios] == [1, 2]
    meta = rundir.read_run_meta(shared)
    assert meta.label == "shared" and meta.baselines == {k: d.name for k, d in alone.items()}
    assert sorted((s.scenario, s.models[0], s.round) for s in meta.baseline_scenarios) == [
        ("alone", m, r) for m in ("large", "small") for r in (1, 2)]  # both rounds of each baseline
    data = json.loads((shared / "summary.json").read_text())
    (impact,) = data["impact"]
    assert impact["rounds"]["interleaved"] is False and not impact["rounds"]["single_pass"]
    for b in impact["rounds"]["between"]:
        assert b["per_round"] == {} and b["rounds"] == 2 and b["ci_low"] < b["estimate"] < b["ci_high"]
    md = (shared / "report.md").read_text()
    assert "Impact on small over rounds (shared vs alone, 2 or more rounds each, not interleaved)" in md
    assert "Welch's t-interval" in md and "not interleaved: drift between those runs and this one is not covered" in md
