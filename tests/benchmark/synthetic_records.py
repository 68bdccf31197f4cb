"""Synthetic request records with a known slowdown, and results directories made of them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from benchmark.engine.records import RequestRecord
from benchmark.engine.results import ResultsWriter
from benchmark.stack.rundir import AccessMeta, RunMeta, ScenarioMeta, write_run_meta

PROMPT_SECONDS = {"chat": 1.0, "code": 2.0, "summary": 1.5, "qa": 0.8, "story": 2.5}


def sequential_run(
    model: str,
    scenario: str,
    *,
    slowdown: float = 1.0,
    iterations: int = 10,
    tokens: int = 100,
    noise: float = 0.1,
    seed: int = 0,
    start: float = 0.0,
    failures: int = 0,
) -> list[RequestRecord]:
    """The standard suite's shape: every prompt ``iterations`` times, one request at a time.

    Each E2E latency is the prompt's base time x ``slowdown`` x lognormal noise; the first
    ``failures`` requests fail with a timeout after their latency.
    """
    rng = np.random.default_rng(seed)
    records: list[RequestRecord] = []
    clock = start
    for i in range(iterations):
        for prompt, base in PROMPT_SECONDS.items():
            e2e = float(base * slowdown * rng.lognormal(0.0, noise))
            failed = len(records) < failures
            ttft = e2e * 0.1
            records.append(RequestRecord(
                request_id=f"{model}-{scenario}-{len(records)}", model=model, scenario=scenario,
                prompt_id=prompt, api="tgi-stream", intended_send=clock, sent=clock,
                ttft=None if failed else ttft,
                itl=[] if failed else [(e2e - ttft) / (tokens - 1)] * (tokens - 1),
                e2e=e2e, input_tokens=20, output_tokens=None if failed else tokens,
                finish_reason=None if failed else "length", http_status=200,
                success=not failed, error_kind="timeout" if failed else None,
                error="timed out" if failed else None,
            ))
            clock += e2e
    return records


SETTINGS = {"pattern": "standard-suite", "iterations": 10, "max_new_tokens": 100}
CONTRACT = {"version": 1, "gpu": {"gpu_model": "L40S", "instance_type": "g6e.2xlarge", "memory_gib": 48.0,
                                  "sharing": {"strategy": "time-slicing", "replicas": 10}},
            "models": {"phi": {"model_id": "microsoft/Phi-3.5-mini-instruct", "planned_kv_tokens": 40000},
                       "llama": {"model_id": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "planned_kv_tokens": 20000}}}
SLOWDOWN = {"phi": 1.8, "llama": 1.3}


def write_dir(run_dir: Path, records: list[RequestRecord], scenarios: list[tuple[str, list[str]]], *,
              simulated: bool, label: str, created: str = "2026-11-26T11:00:00Z",
              time_scale: float | None = None) -> Path:
    with ResultsWriter(run_dir / "requests.jsonl") as writer:
        for r in records:
            writer.write(r)
    write_run_meta(run_dir, RunMeta(
        label=label, created=created, simulated=simulated, time_scale=time_scale, settings=SETTINGS, contract=CONTRACT,
        access={"phi": AccessMeta(path="port-forward", url="http://127.0.0.1:43001", health_rtt_s=0.0031)},
        scenarios=[ScenarioMeta(scenario=s, models=m, started="2026-11-26T11:00:01Z",
                                finished="2026-11-26T11:02:00Z") for s, m in scenarios],
    ))
    return run_dir


def plan_dir(tmp_path: Path, *, simulated: bool = False) -> Path:
    records = (sequential_run("phi", "alone", seed=1) + sequential_run("llama", "alone", seed=2, start=100)
               + sequential_run("phi", "shared", slowdown=SLOWDOWN["phi"], seed=3, start=300)
               + sequential_run("llama", "shared", slowdown=SLOWDOWN["llama"], seed=4, start=300))
    scenarios = [("alone", ["phi"]), ("alone", ["llama"]), ("shared", ["phi", "llama"])]
    return write_dir(tmp_path / "20261126T110000Z-all", records, scenarios, simulated=simulated, label="all")


def impact_of(text: str, model: str) -> dict[str, tuple[float, float, float]]:
    """Parse a guide-style impact line back into (change, ci low, ci high) per quantity, as fractions."""
    line = next(line for line in text.splitlines() if line.lstrip("- ").startswith(f"Impact on {model} "))
    pct = r"([+-]\d+\.\d)%"
    found = re.findall(rf"(latency|throughput) {pct} \(95% CI {pct} to {pct}\)", line)
    return {name: tuple(float(v) / 100 for v in values) for name, *values in found}  # type: ignore[misc]
