"""One simulated GPU: a model alone runs at full speed, shared models slow each other;
a model scaled to zero does not serve and puts no load on the GPU."""

from __future__ import annotations

import asyncio
import statistics

import aiohttp
import pytest
from simkit import fast_spec, gen_body, run, serving, stream_events

from benchmark.sim import SimulatedGpu, SimulatedModel, TruthRecord


def _mean_gap(records: list[TruthRecord]) -> float:
    return statistics.fmean(b - a for r in records for a, b in zip(r.emit_times, r.emit_times[1:]))


async def _load(session: aiohttp.ClientSession, model: SimulatedModel, tag: str) -> None:
    """Two concurrent streams of 40 tokens, twice."""
    for round_ in range(2):
        await asyncio.gather(*(
            stream_events(session, model.base_url + "/generate_stream", gen_body(40), rid=f"{tag}-{round_}-{i}")
            for i in range(2)))


def test_shared_gpu_slows_each_model_and_alone_runs_at_full_speed() -> None:
    spec_a, spec_b = fast_spec("a", decode_base_s=0.004), fast_spec("b", decode_base_s=0.004)

    async def go() -> None:
        gpu = SimulatedGpu(context_switch_s=0.0005)
        async with serving(spec_a, spec_b, gpu=gpu) as (_, [a, b]), aiohttp.ClientSession() as s:
            await _load(s, a, "alone")
            alone = gpu.stats["a"]
            assert "b" not in gpu.stats  # an idle model uses no GPU
            assert alone.wait_fraction < 0.05 and alone.switches == 0

            gpu.reset_stats()
            await asyncio.gather(_load(s, a, "shared"), _load(s, b, "other"))
            shared = gpu.stats["a"]
            assert shared.wait_fraction > 0.3  # it waited for b's steps about half the time
            assert shared.switches > 0 and gpu.stats["b"].switches > 0

        by_tag = lambda tag: [r for r in gpu.truth.records if r.request_id.startswith(tag)]  # noqa: E731
        slowdown = _mean_gap(by_tag("shared")) / _mean_gap(by_tag("alone"))
        assert slowdown > 1.4  # ~2x in theory: each decode step waits for one of b's

    run(go())


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
