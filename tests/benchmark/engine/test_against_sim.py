"""The engine against the simulated TGI server in its own process, compared with the server's
truth log (the emit time of every token event, keyed by X-Request-Id): timings, token counts,
and the error kind of every injected fault.

What these tests prove holds on any machine, loaded or not: every request is joined to the
server's truth by its id, with the server's token count and one ITL per gap between the
server's token events, and the timings agree with the truth to well within one token step.
How precise the client's stamps are on a given machine (the share within 2 ms at concurrency
1, 64 and 256) is a measurement, not a test: ``make bench-client`` prints it beside its target.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from benchmark.engine.patterns import closed_loop
from benchmark.engine.records import RequestRecord, RunClock
from benchmark.engine.results import ResultsWriter, read_records
from benchmark.engine.runner import Target, run_load_sync
from benchmark.sim.process import sim_model, sim_process
from benchmark.sim.truth import read_truth, timing_errors

STEP_S = 0.02  # the simulator's time per token in the timing test
MEDIAN_BOUND_S = 0.003  # the median |client - truth|: a stamp taken at the wrong moment is a step (20 ms) off
MAX_BOUND_S = 0.25  # any single figure: far above a scheduler's or collector's pause on a loaded machine


def drive(url: str, api: str, concurrency: int, requests: int, path: Path, *, tokens: int = 20,
          timeout: float = 30.0) -> tuple[list[RequestRecord], RunClock]:
    clock = RunClock()
    target = Target(model="m", base_url=url, api=api, timeout=timeout,
                    load=closed_loop(concurrency, max_requests=requests, max_new_tokens=tokens))
    with ResultsWriter(path) as w:
        run_load_sync([target], scenario="t", writer=w, clock=clock, progress=False)
    return read_records(path), clock


@pytest.mark.parametrize("api", ["tgi-stream", "openai-chat"])
def test_timings_match_server_truth_at_concurrency_1_and_64(tmp_path: Path, api: str) -> None:
    # 16 tokens of 20 ms each; the simulator (its own process) logs when it wrote every event.
    # timing_errors asserts the structure: every record joined to the truth by its id, a success
    # with the server's token count, one ITL per gap between the server's token events. The
    # bounds are loose enough for a loaded 2-core machine and tight enough to catch a stamp taken
    # at the wrong moment (when a buffer is read rather than when its bytes arrived, at the end
    # of the stream, from the actual rather than the intended send): those are a step or more off.
    with sim_process({"models": [sim_model("m", decode_base_s=STEP_S)]}, tmp_path) as (urls, truth_path):
        for concurrency, requests in ((1, 6), (64, 128)):
            records, clock = drive(urls["m"], api, concurrency, requests, tmp_path / f"c{concurrency}.jsonl", tokens=16)
            assert len(records) == requests and len({r.request_id for r in records}) == requests
            truth = read_truth(truth_path, [r.request_id for r in records])
            errors = timing_errors(records, truth, clock.origin)
            pooled = sorted(e for v in errors.values() for e in v)
            assert statistics.median(pooled) <= MEDIAN_BOUND_S, (concurrency, statistics.median(pooled))
            for kind, values in errors.items():
                assert max(values) <= MAX_BOUND_S, (concurrency, kind, sorted(values)[-3:])


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
    config = {"models": [sim_model(api, faults=faults) for api in EXPECTED_KIND]}
    with sim_process(config, tmp_path) as (urls, truth_path):
        for api, expected in EXPECTED_KIND.items():
            records, _ = drive(urls[api], api, 4, 30, tmp_path / f"{api}.jsonl", tokens=8, timeout=0.75)
            truth = read_truth(truth_path, [r.request_id for r in records])
            assert len(records) == 30  # the run completes, every request recorded
            seen = set()
            for r in records:
                fault = truth[r.request_id].fault
                if fault is None:
                    assert r.success and r.output_tokens == truth[r.request_id].generated_tokens, (api, r.error)
                else:
                    seen.add(fault)
                    assert (r.success, r.error_kind) == (False, expected[fault]), (api, fault, r.error)
            assert seen == set(kinds), api
