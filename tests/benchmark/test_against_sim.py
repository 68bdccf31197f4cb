"""The engine against the simulated TGI server in its own process, compared with the server's
truth log (the emit time of every token event, keyed by X-Request-Id): timings, token counts,
and the error kind of every injected fault."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from enginekit import read_truth, sim_process

from benchmark.load import closed_loop
from benchmark.records import RequestRecord, RunClock
from benchmark.results import ResultsWriter, read_records
from benchmark.runner import Target, run_load_sync

TOLERANCE = 0.002  # s: the bound on the client's timing error


def busy_share(seconds: float = 0.5) -> float:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat; 0.0 where there is none)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def model(key: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "model_id": f"example/{key}", "warmup_s": 0.0, "prefill_base_s": 0.004,
            "prefill_s_per_token": 0.0, "decode_base_s": 0.01, "decode_s_per_context_token": 0.0,
            "max_concurrent_requests": 512, **extra}


def drive(url: str, api: str, concurrency: int, requests: int, path: Path, *, tokens: int = 20,
          timeout: float = 30.0) -> tuple[list[RequestRecord], RunClock]:
    clock = RunClock()
    target = Target(model="m", base_url=url, api=api, timeout=timeout,
                    load=closed_loop(concurrency, max_requests=requests, max_new_tokens=tokens))
    with ResultsWriter(path) as w:
        run_load_sync([target], scenario="t", writer=w, clock=clock, progress=False)
    return read_records(path), clock


def errors_against_truth(records: list[RequestRecord], truth: dict[str, dict[str, Any]], clock: RunClock) -> list[float]:
    """|client - server| for every TTFT, ITL and E2E; asserts token counts on the way."""
    errors: list[float] = []
    for r in records:
        t = truth[r.request_id]
        assert r.success, (r.error_kind, r.error)
        assert r.output_tokens == t["generated_tokens"], r.request_id
        emits = t["emit_times"]
        assert len(r.itl) == len(emits) - 1, r.request_id  # one stamp per token event
        assert r.ttft is not None and r.e2e is not None
        start = clock.origin + r.intended_send
        errors.append(abs(start + r.ttft - emits[0]))
        errors += [abs(c - (b - a)) for c, a, b in zip(r.itl, emits, emits[1:])]
        errors.append(abs(start + r.e2e - t["end"]))
    return errors


@pytest.mark.parametrize("api", ["tgi-stream", "openai-chat"])
def test_timings_match_server_truth_at_concurrency_1_and_64(tmp_path: Path, api: str) -> None:
    # 20 ms per token, as the bound is stated. The share of figures within 2 ms is the
    # assertion: a 2-core CI machine running the simulator beside the client deschedules one
    # of them now and then. On a quiet machine (16 cores, client on one) every figure was
    # within 0.2 ms at concurrency 1, and 99.7% of TTFT/ITL and 95% of E2E figures at 64.
    if (busy := busy_share()) > 0.3:  # other processes hold the CPUs: a 2 ms bound is not testable now
        pytest.skip(f"machine busy ({busy:.0%} of CPUs used by other processes)")
    with sim_process({"models": [model("m", decode_base_s=0.02)]}, tmp_path) as (urls, truth_path):
        for concurrency, requests, share in ((1, 6, 0.98), (64, 128, 0.95)):
            records, clock = drive(urls["m"], api, concurrency, requests, tmp_path / f"c{concurrency}.jsonl", tokens=16)
            truth = read_truth(truth_path, [r.request_id for r in records])
            assert len(records) == requests
            errors = sorted(errors_against_truth(records, truth, clock))
            within = sum(e <= TOLERANCE for e in errors) / len(errors)
            if within < share and (busy := busy_share()) > 0.3:
                pytest.skip(f"machine became busy ({busy:.0%} of CPUs used by other processes): "
                            f"{within:.1%} of figures within 2 ms at concurrency {concurrency}")
            assert within >= share, (concurrency, within, errors[-5:])
            assert errors[len(errors) // 2] <= TOLERANCE / 2, (concurrency, errors[len(errors) // 2])


EXPECTED_KIND = {
    "tgi-stream": {"http_5xx": "http_5xx", "overloaded": "overloaded", "stall": "timeout",
                   "disconnect": "connection", "malformed": "protocol", "error_event": "stream_error"},
    "openai-chat": {"http_5xx": "http_5xx", "overloaded": "overloaded", "stall": "timeout",
                    "disconnect": "connection", "malformed": "protocol", "error_event": "stream_error"},
    # /generate: TGI answers a generation error with 424 and overload with 429
    "tgi-generate": {"http_5xx": "http_5xx", "overloaded": "overloaded", "stall": "timeout",
                     "disconnect": "connection", "malformed": "protocol", "error_event": "http_4xx"},
}


def test_every_injected_fault_is_counted_under_its_kind(tmp_path: Path) -> None:
    kinds = list(EXPECTED_KIND["tgi-stream"])
    faults = {"schedule": {str(i + 1): k for i, k in enumerate(kinds)}, "stall_s": 1.5, "after_tokens": 2,
              "rates": {k: 0.05 for k in kinds}, "seed": 5}
    config = {"models": [model(api, faults=faults) for api in EXPECTED_KIND]}
    with sim_process(config, tmp_path) as (urls, truth_path):
        for api, expected in EXPECTED_KIND.items():
            records, _ = drive(urls[api], api, 4, 30, tmp_path / f"{api}.jsonl", tokens=8, timeout=0.75)
            truth = read_truth(truth_path, [r.request_id for r in records])
            assert len(records) == 30  # the run completes, every request recorded
            seen = set()
            for r in records:
                fault = truth[r.request_id]["fault"]
                if fault is None:
                    assert r.success and r.output_tokens == truth[r.request_id]["generated_tokens"], (api, r.error)
                else:
                    seen.add(fault)
                    assert (r.success, r.error_kind) == (False, expected[fault]), (api, fault, r.error)
            assert seen == set(kinds), api
