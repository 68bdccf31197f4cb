"""keep_busy (shared runs): a model that has finished its recorded requests keeps sending
unrecorded ones until every model has finished, then stops by itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web
from enginekit import run, serving, tgi_stream_body

from benchmark.engine.driver import STOPPED
from benchmark.engine.patterns import LoadPattern, closed_loop, open_loop
from benchmark.engine.records import RunClock
from benchmark.engine.results import ResultsWriter, read_records
from benchmark.engine.runner import Target, run_load
from benchmark.engine.selfcheck import SelfCheck


class StampingServer:
    """A /generate_stream answering after ``delay`` s; keeps (perf_counter at arrival, request id)."""

    def __init__(self, delay: float) -> None:
        self.body = tgi_stream_body(3)
        self.delay = delay
        self.arrivals: list[tuple[float, str]] = []
        self.in_flight = 0
        self.app = web.Application()
        self.app.router.add_post("/generate_stream", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.arrivals.append((time.perf_counter(), request.headers.get("X-Request-Id", "")))
        self.in_flight += 1
        try:
            await asyncio.sleep(self.delay)
            return web.Response(body=self.body, content_type="text/event-stream")
        finally:
            self.in_flight -= 1


def shared_run(fast_load: LoadPattern, tmp_path: Path, *, keep_busy: bool = True
               ) -> tuple[SelfCheck, StampingServer, StampingServer, RunClock, list[tuple[float, str]]]:
    fast, slow = StampingServer(0.005), StampingServer(0.04)
    clock = RunClock()

    async def go() -> tuple[SelfCheck, list[tuple[float, str]]]:
        async with serving(fast.app) as fast_url, serving(slow.app) as slow_url:
            targets = [Target(model="fast", base_url=fast_url, load=fast_load),
                       Target(model="slow", base_url=slow_url, load=closed_loop(1, max_requests=8))]
            with ResultsWriter(tmp_path / "requests.jsonl") as w, ResultsWriter(tmp_path / "fillers.jsonl") as f:
                report = await run_load(targets, scenario="shared", writer=w, clock=clock, progress=False,
                                        keep_busy=keep_busy, filler_writer=f)
            seen = list(fast.arrivals)
            await asyncio.sleep(0.2)  # nothing more may arrive once run_load has returned
            return report, seen

    report, seen_at_return = run(go())
    return report, fast, slow, clock, seen_at_return


@pytest.mark.parametrize("fast_load", [closed_loop(2, max_requests=4), open_loop(200, max_requests=4)],
                         ids=["closed", "open"])
def test_the_fast_model_keeps_sending_unrecorded_requests_until_the_slow_one_is_done(
        tmp_path: Path, fast_load: LoadPattern) -> None:
    report, fast, slow, clock, seen_at_return = shared_run(fast_load, tmp_path)
    records = read_records(tmp_path / "requests.jsonl")
    fillers = read_records(tmp_path / "fillers.jsonl")
    # the results hold exactly the recorded requests, all under the run's scenario
    assert sorted((r.model, r.scenario) for r in records) == [("fast", "shared")] * 4 + [("slow", "shared")] * 8
    assert not any("filler" in r.request_id for r in records)
    assert all(r.success for r in records)
    # fillers: the fast model's, labelled, and counted: every one sent is written, those stopped in
    # flight with what had arrived (not a success, not a failure either)
    by_model = {t.model: t for t in report.targets}
    assert {r.model for r in fillers} == {"fast"} and {r.scenario for r in fillers} == {"shared-filler"}
    assert by_model["fast"].filler_sent == len(fillers) > 0
    stopped = [r for r in fillers if not r.success]
    assert len(stopped) <= by_model["fast"].filler_cancelled
    assert all(r.error_kind is None and (r.error or "").startswith(STOPPED) and r.e2e is not None for r in stopped)
    assert by_model["fast"].filler_failed == 0 and by_model["fast"].failed == 0
    assert by_model["slow"].filler_sent == 0 and by_model["fast"].sent == 4 and by_model["slow"].sent == 8
    # the fast server was busy while the slow model's last recorded request ran...
    slow_last = max(records, key=lambda r: r.sent if r.model == "slow" else -1)
    assert slow_last.e2e is not None
    last_start, last_end = clock.origin + slow_last.sent, clock.origin + slow_last.intended_send + slow_last.e2e
    assert any(last_start <= t <= last_end for t, _ in fast.arrivals)
    # ...and stopped by itself: nothing arrived after run_load returned, nothing left open
    assert fast.arrivals == seen_at_return and fast.in_flight == 0 and slow.in_flight == 0
    assert len(fast.arrivals) == 4 + by_model["fast"].filler_sent and len(slow.arrivals) == 8
    # the self-check says what happened, with the count
    text = "\n".join(report.lines())
    assert report.keep_busy and f"every recorded request ran under sharing; {by_model['fast'].filler_sent} such requests" in text


def test_without_keep_busy_the_fast_model_stops_after_its_recorded_requests(tmp_path: Path) -> None:
    report, fast, _, _, _ = shared_run(closed_loop(1, max_requests=3), tmp_path, keep_busy=False)
    assert len(fast.arrivals) == 3 and not read_records(tmp_path / "fillers.jsonl")
    assert all(t.filler_sent == 0 for t in report.targets) and report.filler_note() is None
    assert "under sharing" not in "\n".join(report.lines())


def test_keep_busy_needs_one_worker(tmp_path: Path) -> None:
    target = Target(model="m", base_url="http://127.0.0.1:9", load=closed_loop(1, max_requests=1))
    with ResultsWriter(tmp_path / "r.jsonl") as w, pytest.raises(ValueError, match="keep_busy needs workers=1.*workers=2"):
        run(run_load([target], scenario="shared", writer=w, keep_busy=True, workers=2))
