"""End to end on the simulator: real /metrics scrapes and real records make a report whose
server-side attribution shows the time-slicing (inference time grows, queue time does not)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from benchmark.analysis.promscrape import scrape
from benchmark.engine.patterns import standard_suite
from benchmark.engine.records import RunClock
from benchmark.engine.results import ResultsWriter
from benchmark.engine.runner import Target, run_load
from benchmark.report.files import write_report
from benchmark.sim import ModelSpec, SimulatedGpu, SimulatedModel
from benchmark.stack.rundir import REQUESTS, AccessMeta, RunMeta, ScenarioMeta, save_scrape, write_run_meta

KV_BUDGET = 8192
PLANNED = {"a": 8000, "b": 9000}


def spec(key: str) -> ModelSpec:
    return ModelSpec(key=key, model_id=f"example/{key}", max_input_tokens=512, max_total_tokens=1024,
                     max_batch_total_tokens=KV_BUDGET, prefill_base_s=0.003, prefill_s_per_token=0.0,
                     decode_base_s=0.003, decode_s_per_context_token=0.0, warmup_s=0.0)


async def measure(run_dir: Path) -> None:
    gpu = SimulatedGpu()
    models = {key: SimulatedModel(spec(key), gpu) for key in ("a", "b")}
    scenarios: list[ScenarioMeta] = []
    try:
        for m in models.values():
            await m.start()
            await m.wait_ready()
        access = {k: AccessMeta(path="endpoint", url=m.base_url) for k, m in models.items()}
        clock = RunClock()
        async with aiohttp.ClientSession() as session:
            with ResultsWriter(run_dir / REQUESTS) as writer:
                for scenario, keys in (("alone", ["a"]), ("alone", ["b"]), ("shared", ["a", "b"])):
                    before = {k: save_scrape(run_dir, scenario, k, "before", await scrape(session, models[k].base_url))
                              for k in keys}
                    targets = [Target(model=k, base_url=models[k].base_url, load=standard_suite(iterations=2, max_new_tokens=30))
                               for k in keys]
                    report = await run_load(targets, scenario=scenario, writer=writer, clock=clock, progress=False)
                    after = {k: save_scrape(run_dir, scenario, k, "after", await scrape(session, models[k].base_url))
                             for k in keys}
                    scenarios.append(ScenarioMeta(
                        scenario=scenario, models=keys, self_check=report.to_dict(),
                        metrics={k: {"before": before[k], "after": after[k]} for k in keys}))
    finally:
        for m in models.values():
            await m.stop()
        gpu.close()
    write_run_meta(run_dir, RunMeta(
        label="all", simulated=True, settings={"iterations": 2}, access=access, scenarios=scenarios,
        contract={"models": {k: {"model_id": f"example/{k}", "planned_kv_tokens": v} for k, v in PLANNED.items()}}))


def test_attribution_from_the_simulators_metrics(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(measure(tmp_path), 60))
    report = write_report(tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text())
    rows = {(r["scenario"], r["model"]): r for r in data["attribution"]}
    successes = {(r["scenario"], r["model"]): r["successes"] for r in data["summary"]}
    assert set(rows) == set(successes) == {("alone", "a"), ("alone", "b"), ("shared", "a"), ("shared", "b")}
    for key, row in rows.items():
        # the server counted exactly the requests of this scenario, not the earlier ones
        assert row["requests"] == successes[key] == 10, key
        assert row["kv_tokens_found"] == KV_BUDGET and row["kv_tokens_planned"] == PLANNED[key[1]]
        assert row["batch_size_mean"] is not None and row["batch_size_mean"] >= 1
    for model in ("a", "b"):
        alone, shared = rows[("alone", model)], rows[("shared", model)]
        # one request at a time: no queueing; sharing the GPU stretches inference instead
        assert shared["inference_mean_s"] > 1.3 * alone["inference_mean_s"], (alone, shared)
        assert shared["queue_share"] < 0.5
    # the client's extra latency is the server's extra inference time, give or take the
    # warmup-free client path (a few ms at most on 127.0.0.1)
    (comparison,) = data["impact"]
    for row in comparison["latency_breakdown"]:
        assert row["inference_s"] == pytest.approx(row["e2e_s"], rel=0.2), row
        assert abs(row["queue_s"]) < 0.2 * row["e2e_s"] and abs(row["elsewhere_s"]) < 0.2 * row["e2e_s"], row
    md = report.markdown
    assert "| a | +" in md.split("Where the extra latency went")[1]
    assert "| shared | 1 | a | 10 |" in md and f"8,192 / {PLANNED['a']:,} (+2.4%)" in md
    assert "client self-check (shared)" in md and "> **SIMULATED**" in md
