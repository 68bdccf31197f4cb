"""The engine against the simulated TGI server in its own process, compared with the server's
truth log (the emit time of every token event, keyed by X-Request-Id): timings, token counts,
and the error kind of every injected fault."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from enginekit import OthersLoad, read_truth, sim_model, sim_process, timing_errors

from benchmark.load import closed_loop
from benchmark.records import RequestRecord, RunClock
from benchmark.results import ResultsWriter, read_records
from benchmark.runner import Target, run_load_sync

TOLERANCE = 0.002  # s: the bound on the client's timing error
SHARE = 0.97  # of the figures within it; see the timing test
OTHERS = 0.05  # share of the CPUs other processes may use during a timing run that counts


def busy_share(seconds: float = 0.5) -> float:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat; 0.0 where there is none)."""
    with OthersLoad() as load:
        time.sleep(seconds)
    return load.share


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
    # 20 ms per token, as the bound is stated; the simulator (in its own process) logs
    # when it wrote every event. The engine stamps each chunk when the event loop reads its
    # socket, and finished streams take turns for their bookkeeping, so a figure is late by at
    # most one pass of the loop (well under 2 ms here) plus any time the OS (or a garbage
    # collection) stopped the client or the simulator. That last part a 2-core VM cannot rule
    # out: an idle vCPU wakes up late now and then (here about 1% of events arrive 2-6 ms late
    # at concurrency 1, also to a plain blocking socket client), and at 64 the simulator and the
    # client each need most of a core while a batch of 64 events goes out. So 3% may miss: of
    # all figures at 1 (6 TTFTs alone cannot carry a share), of each kind at 64. As the 64
    # streams end together, one pause can make many E2Es late at once. So a run below that is
    # repeated, up to 3 runs; the last one decides, and if other processes (another test run,
    # a compiler) used more than 5% of the CPUs during it, the test is skipped, naming that
    # share. Measured on quiet 2 cores at 64: 99.8% of ITLs and 100% of TTFTs and E2Es within
    # 2 ms; without the turns E2E was 79-92% in every run (66% at 256).
    if (busy := busy_share()) > 0.3:  # other processes hold the CPUs: a 2 ms bound is not testable now
        pytest.skip(f"machine busy ({busy:.0%} of CPUs used by other processes)")
    with sim_process({"models": [sim_model("m", decode_base_s=0.02)]}, tmp_path) as (urls, truth_path):
        for concurrency, requests in ((1, 6), (64, 128)):
            for attempt in (1, 2, 3):
                path = tmp_path / f"c{concurrency}-{attempt}.jsonl"
                with OthersLoad() as load:
                    records, clock = drive(urls["m"], api, concurrency, requests, path, tokens=16)
                truth = read_truth(truth_path, [r.request_id for r in records])
                assert len(records) == requests
                errors = timing_errors(records, truth, clock.origin)
                if concurrency == 1:
                    errors = {"all": [e for v in errors.values() for e in v]}
                within = {k: sum(e <= TOLERANCE for e in v) / len(v) for k, v in errors.items()}
                if min(within.values()) >= SHARE:
                    break
            if min(within.values()) < SHARE and load.share > OTHERS:
                pytest.skip(f"other processes used {load.share:.0%} of the CPUs during the last of 3 runs: "
                            f"shares within 2 ms at concurrency {concurrency}: {within}")
            for kind, share_within in within.items():
                worst = sorted(errors[kind])[-3:]
                assert share_within >= SHARE, (f"c={concurrency} {kind}: {share_within:.1%} within 2 ms, worst {worst}, "
                                               f"others used {load.share:.1%} of the CPUs")
            pooled = sorted(e for v in errors.values() for e in v)
            assert pooled[len(pooled) // 2] <= TOLERANCE / 4, (concurrency, pooled[len(pooled) // 2])


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
                fault = truth[r.request_id]["fault"]
                if fault is None:
                    assert r.success and r.output_tokens == truth[r.request_id]["generated_tokens"], (api, r.error)
                else:
                    seen.add(fault)
                    assert (r.success, r.error_kind) == (False, expected[fault]), (api, fault, r.error)
            assert seen == set(kinds), api
