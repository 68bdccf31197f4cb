"""Synthetic request records with a known slowdown, for the impact/report/timeline tests."""

from __future__ import annotations

import numpy as np

from benchmark.records import RequestRecord

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
