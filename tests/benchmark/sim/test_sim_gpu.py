"""One simulated GPU, time-sliced: a model alone runs at full speed, an idle one costs nothing,
a long prefill does not block the other model, two servers whose steps take several slices
are slowed about alike; a model scaled to zero does not serve and puts no load on the GPU.
What sharing costs against the H200 measurements: ``test_sim_gpu_sharing.py``."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import pytest
from simkit import busy_loop, fast_spec, gen_body, run, serving, stream_events

from benchmark.sim import SimulatedGpu, SimulatedModel, TruthRecord

SCALE = 0.1  # the GPU's timeline is simulated: the tests assert on it exactly, ten times faster


def test_a_model_alone_runs_at_full_speed_and_an_idle_one_costs_it_nothing() -> None:
    async def go() -> tuple[SimulatedGpu, float, list[float]]:
        gpu = SimulatedGpu(time_scale=SCALE)
        await busy_loop(gpu, "idle", 0.005, 1, time.perf_counter(), [])  # it ran once, then has no work
        gpu.reset_stats()
        start = time.perf_counter()
        return gpu, start, await busy_loop(gpu, "a", 0.009, 40, start, [])

    gpu, start, ends = run(go())
    switch = gpu.context_switch_s * SCALE  # the GPU moves from the idle context to it, once
    assert ends[-1] - start == pytest.approx(40 * 0.009 * SCALE + switch, rel=1e-6)
    assert gpu.stats["a"].switches == 1 and gpu.stats["a"].wait_s == pytest.approx(0.0, abs=1e-6)
    assert list(gpu.stats) == ["a"]


def test_a_long_prefill_is_interleaved_with_the_other_models_decode() -> None:
    prefill, decode = 0.200, 0.004

    async def go() -> tuple[float, float, list[float]]:
        gpu = SimulatedGpu(time_scale=SCALE)
        start, decode_ends = time.perf_counter(), []
        decoding = asyncio.create_task(busy_loop(gpu, "decoding", decode, 10_000, start, decode_ends))
        prefill_end = await gpu.run("prefilling", "prefilling", prefill, ready_at=start, prefill=True)
        decoding.cancel()
        return start, prefill_end, decode_ends

    start, prefill_end, decode_ends = run(go())
    during = [start] + [e for e in decode_ends if e <= prefill_end]
    longest_gap = max(b - a for a, b in zip(during, during[1:]))
    assert longest_gap < 3 * decode * SCALE  # not blocked for the prefill's 200 ms: it decodes on, about half as fast
    assert len(during) - 1 > 0.4 * prefill / decode
    assert 1.8 < (prefill_end - start) / (prefill * SCALE) < 2.4  # and the prefill shares the GPU too


def _mean_gap(records: list[TruthRecord], before: float = float("inf")) -> float:
    return statistics.fmean(b - a for r in records for a, b in zip(r.emit_times, r.emit_times[1:]) if b <= before)


async def _load(session: aiohttp.ClientSession, model: SimulatedModel, tag: str, tokens: int, rounds: int) -> None:
    """Two concurrent streams of ``tokens`` tokens, ``rounds`` times."""
    for round_ in range(rounds):
        await asyncio.gather(*(
            stream_events(session, model.base_url + "/generate_stream", gen_body(tokens), rid=f"{tag}-{round_}-{i}")
            for i in range(2)))


def test_shared_gpu_slows_both_servers_alike_and_alone_runs_at_full_speed() -> None:
    spec_a, spec_b = fast_spec("a", decode_base_s=0.004), fast_spec("b", decode_base_s=0.010)

    async def go() -> SimulatedGpu:
        gpu = SimulatedGpu(time_scale=0.5)
        async with serving(spec_a, spec_b, gpu=gpu) as (_, [a, b]), aiohttp.ClientSession() as s:
            await _load(s, a, "a-alone", 40, 2)
            alone = gpu.stats["a"]
            assert "b" not in gpu.stats  # an idle model uses no GPU
            assert alone.wait_fraction < 0.05 and alone.switches == 0
            await _load(s, b, "b-alone", 40, 1)

            gpu.reset_stats()
            await asyncio.gather(_load(s, a, "a-shared", 40, 2), _load(s, b, "b-shared", 100, 1))
            assert gpu.stats["a"].wait_fraction > 0.3  # it waited for b about half the time
            assert gpu.stats["a"].switches > 0 and gpu.stats["b"].switches > 0
        return gpu

    gpu = run(go())
    by_tag = lambda tag: [r for r in gpu.truth.records if r.request_id.startswith(tag)]  # noqa: E731
    a_done = max(r.emit_times[-1] for r in by_tag("a-shared"))
    slowdown_a = _mean_gap(by_tag("a-shared")) / _mean_gap(by_tag("a-alone"))
    slowdown_b = _mean_gap(by_tag("b-shared"), before=a_done) / _mean_gap(by_tag("b-alone"))
    # ~2x each: steps of 2 and 5 slices share the GPU about equally; whole steps in turn would
    # give a (4+10)/4 = 3.5x and b 1.4x
    assert 1.6 < slowdown_a < 2.8 and 1.6 < slowdown_b < 2.8, (slowdown_a, slowdown_b)
    assert max(slowdown_a, slowdown_b) / min(slowdown_a, slowdown_b) < 1.35, (slowdown_a, slowdown_b)


def test_scaled_to_zero_model_does_not_serve_then_warms_up() -> None:
    async def go() -> None:
        gpu = SimulatedGpu()
        spec = fast_spec("z", warmup_s=0.2)
        async with SimulatedModel(spec, gpu, replicas=0) as model, aiohttp.ClientSession() as s:
            url = model.base_url
            with pytest.raises(aiohttp.ClientConnectionError):  # the port refuses
                await s.get(url + "/health")
            assert not gpu.stats

            await model.set_replicas(1)
            async with s.get(url + "/health") as r:
                assert r.status == 503 and (await r.json())["error_type"] == "healthcheck"  # warming up
            async with s.post(url + "/generate", json=gen_body(3)) as r:
                assert r.status == 503
            await model.wait_ready()
            async with s.get(url + "/health") as r:
                assert r.status == 200
            status, events = await stream_events(s, url + "/generate_stream", gen_body(3))
            assert status == 200 and events[-1]["details"]["generated_tokens"] == 3

            await model.set_replicas(0)
            steps = gpu.stats["z"].steps
            with pytest.raises(aiohttp.ClientConnectionError):
                async with aiohttp.ClientSession() as fresh:  # a new connection is refused
                    await fresh.get(url + "/health")
            assert gpu.stats["z"].steps == steps

    run(go())


def test_scaling_down_mid_request_drops_the_connection() -> None:
    async def go() -> None:
        async with serving(fast_spec(decode_base_s=0.005)) as (gpu, [m]), aiohttp.ClientSession() as s:
            task = asyncio.create_task(stream_events(s, m.base_url + "/generate_stream", gen_body(200), rid="cut"))
            while not (rec := gpu.truth.get("cut")) or len(rec.emit_times) < 3:
                await asyncio.sleep(0.002)
            await m.set_replicas(0)
            with pytest.raises(aiohttp.ClientPayloadError):
                await task
            rec = gpu.truth.get("cut")
            assert rec is not None and rec.error_type == "aborted" and rec.done
            assert rec.generated_tokens == len(rec.emit_times) < 200

    run(go())


def test_replicas_split_the_requests_and_time_slice_the_gpu() -> None:
    async def go() -> None:
        async with serving(fast_spec()) as (gpu, [m]), aiohttp.ClientSession() as s:
            await m.set_replicas(2)
            while not all(r.ready for r in m.replicas):
                await asyncio.sleep(0.001)
            gpu.reset_stats()
            await asyncio.gather(*(stream_events(s, m.base_url + "/generate_stream", gen_body(20)) for _ in range(4)))
            assert sorted(r.replica for r in gpu.truth.records) == [0, 0, 1, 1]
            assert gpu.stats["m"].switches > 10  # two processes on one GPU take turns
            async with s.get(m.base_url + "/info") as r:
                assert (await r.json())["simulation"]["replicas"] == 2

    run(go())


def test_a_drifting_gpu_slows_every_step_by_the_share_of_the_time_since_it_started() -> None:
    async def go() -> tuple[SimulatedGpu, float, float]:
        gpu = SimulatedGpu(time_scale=SCALE, drift_per_s=2.0)  # 2x slower per second since it started
        await asyncio.sleep(0.25)
        before = time.perf_counter()
        await gpu.run("a", "a", 0.1, ready_at=before)
        return gpu, before, time.perf_counter()

    gpu, before, after = run(go())
    # the one step had 0.1 s x the scale of the moment it was submitted, between before and after
    slower = gpu.stats["a"].busy_s / (0.1 * SCALE)
    assert 1 + 2.0 * (before - gpu.started) <= slower <= 1 + 2.0 * (after - gpu.started)
    assert slower >= 1.5  # at least 0.25 s in
    with pytest.raises(ValueError, match="drift_per_s: got -1; allowed: a number from 0 to 10"):
        SimulatedGpu(drift_per_s=-1)
