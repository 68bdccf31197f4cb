"""Simulated time is labelled: the servers say their time scale, and the report says what it means."""

from __future__ import annotations

import aiohttp
import pytest
from simkit import fast_spec, run, serving

from benchmark.report.text import simulated_banner, time_scale_note
from benchmark.sim import SimulatedGpu
from benchmark.stack.rundir import RunMeta


def test_info_says_simulated_with_the_time_scale_and_the_slicing() -> None:
    async def go() -> dict[str, object]:
        gpu = SimulatedGpu(time_scale=0.25, timeslice_s=0.01, context_switch_s=0.0002)
        async with serving(fast_spec(), gpu=gpu) as (_, [m]), aiohttp.ClientSession() as s:
            async with s.get(m.base_url + "/info") as r:
                return await r.json()

    info = run(go())
    assert info["simulated"] is True
    assert info["simulation"] == {"key": "m", "gpu": "NVIDIA L40S (simulated)", "time_scale": 0.25, "timeslice_s": 0.01,
                                  "context_switch_s": 0.0002, "replicas": 1, "max_batch_total_tokens": 8192,
                                  "drift_per_s": 0.0}


@pytest.mark.parametrize(("scale", "says"), [
    (0.1, "Time scale x0.1: latencies are 10x shorter and throughput 10x higher than the presets' L40S estimates"),
    (0.05, "Time scale x0.05: latencies are 20x shorter and throughput 20x higher"),
    (2.0, "Time scale x2: latencies are 2x longer and throughput 2x lower"),
    (1.0, "Time scale x1: latencies and throughput are the presets' L40S estimates"),
    (None, "time scale was not recorded"),
])
def test_the_banner_says_the_time_scale_and_what_it_means(scale: float | None, says: str) -> None:
    assert says in time_scale_note(scale)
    banner = simulated_banner(RunMeta(label="all", simulated=True, time_scale=scale))
    assert banner.startswith("**SIMULATED**") and says in banner


def test_run_json_without_a_time_scale_still_reads() -> None:
    meta = RunMeta.from_dict({"schema": 1, "label": "all", "simulated": True})  # written before time_scale existed
    assert meta.time_scale is None and "not recorded" in simulated_banner(meta)
