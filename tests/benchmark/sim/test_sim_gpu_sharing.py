"""What sharing one time-sliced GPU costs, as the simulator plays it, against what was measured
ON AN H200 (the figures below; ``benchmark/sim/gpu.py`` says how they were taken).

Every figure asserted here is read from the GPU's own timeline (the step end times that
``SimulatedGpu.run`` returns), never from the wall clock, so a loaded machine changes nothing.
A slowdown is a loop's period shared over its period alone (step + host time), as in the
measurements."""

from __future__ import annotations

import asyncio
import time

import pytest
from simkit import busy_loop, run

from benchmark.sim import SimulatedGpu, preset

SCALE = 0.1  # simulated durations ten times shorter; periods below are given back unscaled

# Measured ON AN H200. Issue 13's table: batch-1 decode loops (CUDA graphs) of the reference pair,
# host time per step -> (Phi, 8B) period shared / alone.
ISSUE_STEPS_S = (0.00441, 0.00609)
ISSUE = {0.0: (2.59, 1.93), 0.003: (1.48, 1.21), 0.010: (1.25, 1.13)}
# The simulator's calibration (gpu.py): CUDA graphs of bf16 GEMVs, ((low, high) small, (low, high) large)
# over the runs, for steps like issue 13's, a short step beside a long one, and the L40S presets' ratio.
GEMV_4_6 = {0.003: ((1.73, 1.95), (1.41, 1.58)), 0.010: ((1.36, 1.36), (1.22, 1.22))}  # 4.2 / 5.9 ms
GEMV_4_40_STEPS_S, GEMV_4_40 = (0.0042, 0.0400), (2.74, 1.93)
GEMV_11_20_STEPS_S = (0.01096, 0.02024)
GEMV_11_20 = {0.0: ((2.25, 2.34), (2.16, 2.24)), 0.003: ((1.88, 1.91), (1.80, 1.89)),
              0.006: ((1.61, 1.68), (1.64, 1.67))}


def _period(ends: list[float]) -> float:
    """Mean unscaled time between step ends, past the first third (the lock settles)."""
    steady = ends[len(ends) // 3:]
    return (steady[-1] - steady[0]) / (len(steady) - 1) / SCALE


def _alone(step_s: float, host_s: float, n: int = 30) -> float:
    async def go() -> list[float]:
        return await busy_loop(SimulatedGpu(time_scale=SCALE), "alone", step_s, n, time.perf_counter(), [], host_s)

    return _period(run(go()))


def _shared(small_s: float, large_s: float, host_s: float, n: int = 90) -> tuple[float, float]:
    """The periods of two loops sharing one GPU, while the small one runs ``n`` steps."""

    async def go() -> tuple[list[float], list[float]]:
        gpu = SimulatedGpu(time_scale=SCALE)
        start, large_ends = time.perf_counter(), []
        other = asyncio.create_task(busy_loop(gpu, "large", large_s, 1_000_000, start, large_ends, host_s))
        small_ends = await busy_loop(gpu, "small", small_s, n, start, [], host_s)
        other.cancel()
        return small_ends, [e for e in large_ends if e <= small_ends[-1]]

    small_ends, large_ends = run(go())
    return _period(small_ends), _period(large_ends)


def _slowdowns(small_s: float, large_s: float, host_s: float) -> tuple[float, float, float, float]:
    """(slowdown small, slowdown large, period small, period large)."""
    shared_small, shared_large = _shared(small_s, large_s, host_s)
    return shared_small / _alone(small_s, host_s), shared_large / _alone(large_s, host_s), shared_small, shared_large


def test_alone_a_step_takes_its_gpu_time_plus_its_host_time_and_waits_for_nobody() -> None:
    async def go() -> tuple[SimulatedGpu, float, list[float]]:
        gpu = SimulatedGpu(time_scale=SCALE)
        start = time.perf_counter()
        return gpu, start, await busy_loop(gpu, "a", 0.004, 20, start, [], host_s=0.003)

    gpu, start, ends = run(go())
    assert ends[-1] - start == pytest.approx(20 * (0.004 + 0.003) * SCALE, rel=1e-6)
    stats = gpu.stats["a"]
    assert stats.busy_s == pytest.approx(20 * 0.004 * SCALE, rel=1e-6)  # host time is not GPU time
    assert stats.host_s == pytest.approx(20 * 0.003 * SCALE, rel=1e-6)
    assert stats.wait_s == pytest.approx(0.0, abs=1e-6) and stats.switches == 0


def test_two_gpu_bound_loops_lock_to_one_period_and_the_smaller_model_pays_more() -> None:
    """Issue 13's first row: 4.41 / 6.09 ms steps, +159 % / +93 %, periods ~1.1 x the sum."""
    small_s, large_s = ISSUE_STEPS_S
    slow_small, slow_large, period_small, period_large = _slowdowns(small_s, large_s, 0.0)
    assert period_small == pytest.approx(period_large, rel=0.01)  # one common period
    assert 1.05 < period_small / (small_s + large_s) < 1.2  # the sum of both steps, plus the switches
    # equal shares of GPU time would slow both about alike; the smaller one pays more, as measured
    assert slow_small - slow_large > 0.5, (slow_small, slow_large)
    measured_small, measured_large = ISSUE[0.0]
    assert slow_small == pytest.approx(measured_small, abs=0.2)
    assert slow_large == pytest.approx(measured_large, abs=0.15)


def test_host_time_is_hidden_in_the_other_models_turns_then_lowers_the_cost_in_one_period() -> None:
    """Issue 13's rows at 4.41 / 6.09 ms steps with 0, 3 and 10 ms of host time per step."""
    small_s, large_s = ISSUE_STEPS_S
    rows = {host_s: _slowdowns(small_s, large_s, host_s) for host_s in (0.0, 0.001, 0.002, 0.003, 0.010)}
    for host_s, (slow_small, slow_large, period_small, period_large) in rows.items():
        assert period_small == pytest.approx(period_large, rel=0.01), host_s  # both still share one period
        assert slow_small > slow_large > 1.0, host_s  # the smaller model pays more, and sharing still costs
    no_host = rows[0.0][2]
    for host_s in (0.001, 0.002):  # shorter than one of the other's turns: hidden entirely
        assert rows[host_s][2] == pytest.approx(no_host, rel=0.01), host_s
    # 3 ms, shorter than the other's step: of the 6 ms of host time a period holds, under a quarter shows
    assert rows[0.003][2] - no_host < 0.25 * 2 * 0.003
    # the cost falls as host time grows
    assert rows[0.0][0] > rows[0.003][0] > rows[0.010][0] and rows[0.0][1] > rows[0.003][1] > rows[0.010][1]
    # between the two measurements of these rows (issue 13's hid 3 ms entirely, the GEMV runs did not)
    for host_s, ((gemv_small_low, gemv_small_high), (gemv_large_low, gemv_large_high)) in GEMV_4_6.items():
        issue_small, issue_large = ISSUE[host_s]
        slow_small, slow_large = rows[host_s][:2]
        assert min(issue_small, gemv_small_low) - 0.03 <= slow_small <= max(issue_small, gemv_small_high) + 0.03
        assert min(issue_large, gemv_large_low) - 0.03 <= slow_large <= max(issue_large, gemv_large_high) + 0.03


def test_a_step_longer_than_a_slice_is_preempted_so_a_short_one_beside_it_waits_one_turn() -> None:
    small_s, large_s = GEMV_4_40_STEPS_S
    slow_small, slow_large, period_small, _ = _slowdowns(small_s, large_s, 0.0)
    assert period_small < large_s  # stepping in turn, whole steps, would make it wait 40 ms per step
    measured_small, measured_large = GEMV_4_40
    assert slow_small == pytest.approx(measured_small, abs=0.15)
    assert slow_large == pytest.approx(measured_large, abs=0.1)


@pytest.mark.parametrize("host_s", sorted(GEMV_11_20))
def test_steps_many_slices_long_share_the_gpu_about_equally(host_s: float) -> None:
    """11 / 20 ms steps (the L40S presets' ratio), measured on an H200 with 0, 3 and 6 ms of host time."""
    slow_small, slow_large, _, _ = _slowdowns(*GEMV_11_20_STEPS_S, host_s)
    (small_low, small_high), (large_low, large_high) = GEMV_11_20[host_s]
    assert abs(slow_small - slow_large) < 0.25, (slow_small, slow_large)
    assert small_low - 0.08 <= slow_small <= small_high + 0.08, slow_small
    assert large_low - 0.08 <= slow_large <= large_high + 0.08, slow_large


def test_the_l40s_presets_decode_loops_are_slowed_as_the_guide_measured() -> None:
    """The guide's L40S table: +56.8 % and +71.2 % latency when the pair shares the card;
    the issue asks for +40 % to +90 % from the presets' stated step and host times."""
    phi, r1 = preset("phi35-mini"), preset("deepseek-r1-8b")
    assert phi.host_s_per_step == r1.host_s_per_step > 0

    def step(spec_key: str) -> float:  # one decode step at a 100-token context
        spec = preset(spec_key)
        return spec.decode_base_s + 100 * spec.decode_s_per_context_token

    slow_phi, slow_r1, _, _ = _slowdowns(step("phi35-mini"), step("deepseek-r1-8b"), phi.host_s_per_step)
    assert 1.4 < slow_phi < 1.9 and 1.4 < slow_r1 < 1.9, (slow_phi, slow_r1)


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"timeslice_s": 0}, "timeslice_s: got 0; allowed: a number greater than 0"),
    ({"timeslice_s": True}, "timeslice_s: got True"),
    ({"context_switch_s": -0.001}, "context_switch_s: got -0.001; allowed: seconds from 0 to 600"),
    ({"time_scale": "fast"}, "time_scale: got 'fast'"),
])
def test_bad_gpu_knobs_name_the_knob_and_what_is_allowed(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        SimulatedGpu(**kwargs)  # type: ignore[arg-type]


def test_bad_host_time_names_the_key_and_what_is_allowed() -> None:
    async def go() -> None:
        await SimulatedGpu().run("a", "a", 0.001, ready_at=time.perf_counter(), host_s=-0.001)

    with pytest.raises(ValueError, match=r"host_s: got -0.001; allowed: seconds from 0 to 600"):
        run(go())
    with pytest.raises(ValueError, match=r"phi35-mini.host_s_per_step: got -1; allowed: seconds from 0 to 600"):
        preset("phi35-mini").replace(host_s_per_step=-1)
