"""The runner: several models on one clock, limits, warmup, open-loop schedules, no hidden
connection cap, records on disk as they complete, and progress output."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from aiohttp import web
from enginekit import run, serving, tgi_stream_body

from benchmark.engine.patterns import closed_loop, open_loop
from benchmark.engine.progress import Progress
from benchmark.engine.records import RunClock
from benchmark.engine.results import ResultsWriter, read_records
from benchmark.engine.runner import Target, run_load
from benchmark.engine.selfcheck import SelfCheck


class CountingServer:
    """A /generate_stream that answers ``tokens`` tokens after ``delay`` s and counts what it saw."""

    def __init__(self, tokens: int = 5, delay: float = 0.0) -> None:
        self.body = tgi_stream_body(tokens)
        self.delay = delay
        self.ids: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.app = web.Application()
        self.app.router.add_post("/generate_stream", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.ids.append(request.headers.get("X-Request-Id", ""))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(body=self.body, content_type="text/event-stream")
        finally:
            self.in_flight -= 1


def drive(targets_for: list[tuple[CountingServer, dict[str, object]]], path: Path, scenario: str = "shared",
          clock: RunClock | None = None) -> SelfCheck:
    async def go() -> SelfCheck:
        async with serving(targets_for[0][0].app) as url0:
            urls = [url0]
            extra = [serving(s.app) for s, _ in targets_for[1:]]
            for cm in extra:
                urls.append(await cm.__aenter__())
            try:
                targets = [Target(base_url=u, **kw) for u, (_, kw) in zip(urls, targets_for)]  # type: ignore[arg-type]
                with ResultsWriter(path) as w:
                    return await run_load(targets, scenario=scenario, writer=w, clock=clock, progress=False)
            finally:
                for cm in extra:
                    await cm.__aexit__(None, None, None)

    return run(go())


def test_two_models_one_clock_warmup_excluded(tmp_path: Path) -> None:
    a, b = CountingServer(tokens=4), CountingServer(tokens=6, delay=0.01)
    path = tmp_path / "requests.jsonl"
    report = drive([(a, dict(model="a", load=closed_loop(3, max_requests=12), warmup=2)),
                    (b, dict(model="b", load=closed_loop(2, max_requests=8), warmup=1))], path)
    records = read_records(path)
    by_model = {m: [r for r in records if r.model == m] for m in ("a", "b")}
    assert len(by_model["a"]) == 12 and len(by_model["b"]) == 8
    assert all(r.success and r.scenario == "shared" for r in records)
    assert {r.output_tokens for r in by_model["a"]} == {4} and {r.output_tokens for r in by_model["b"]} == {6}
    # the servers saw warmups too; the file has none of them
    assert len(a.ids) == 14 and len(b.ids) == 9
    recorded = {r.request_id for r in records}
    assert len(recorded) == 20 and recorded <= set(a.ids) | set(b.ids)
    assert sum("warmup" in i for i in a.ids + b.ids) == 3 and not any("warmup" in i for i in recorded)
    # one clock: both models' first sends share the start instant
    starts = [min(r.intended_send for r in by_model[m]) for m in ("a", "b")]
    assert abs(starts[0] - starts[1]) < 1e-9
    assert [t.model for t in report.targets] == ["a", "b"]
    assert (report.targets[0].sent, report.targets[1].sent, report.targets[1].warmup_failed) == (12, 8, 0)
    assert a.max_in_flight <= 3 and b.max_in_flight <= 2


def test_concurrency_above_aiohttp_default_limit_is_reached(tmp_path: Path) -> None:
    want = 150  # aiohttp's default connector would hold this at 100
    server = CountingServer(tokens=2)
    gate = asyncio.Event()

    async def held(request: web.Request) -> web.StreamResponse:
        server.in_flight += 1  # held here until `want` requests are in flight at once
        server.max_in_flight = max(server.max_in_flight, server.in_flight)
        if server.in_flight >= want:
            gate.set()
        try:
            await asyncio.wait_for(gate.wait(), 10)
        finally:
            server.in_flight -= 1
        await request.read()
        return web.Response(body=server.body, content_type="text/event-stream")

    server.app = web.Application()
    server.app.router.add_post("/generate_stream", held)
    report = drive([(server, dict(model="m", load=closed_loop(want, max_requests=want)))], tmp_path / "r.jsonl")
    assert server.max_in_flight == want
    assert report.targets[0].sent == want and report.targets[0].failed == 0


def test_open_loop_sends_on_the_precomputed_schedule(tmp_path: Path) -> None:
    load = open_loop(40.0, max_requests=12, seed=3)
    clock = RunClock()
    drive([(CountingServer(), dict(model="m", load=load))], tmp_path / "r.jsonl", clock=clock)
    records = sorted(read_records(tmp_path / "r.jsonl"), key=lambda r: int(r.request_id.rsplit("-", 1)[1]))
    offsets = load.schedule()
    start = records[0].intended_send - offsets[0]
    assert [r.intended_send - start for r in records] == pytest.approx(offsets, abs=1e-9)
    assert all(r.sent >= r.intended_send for r in records)
    assert [r.prompt_id for r in records] == [load.prompt(i).id for i in range(12)]


def test_duration_limit_stops_issuing(tmp_path: Path) -> None:
    server = CountingServer(delay=0.05)
    drive([(server, dict(model="m", load=closed_loop(2, duration=0.3)))], tmp_path / "r.jsonl")
    records = read_records(tmp_path / "r.jsonl")
    first = min(r.intended_send for r in records)
    assert records and all(r.intended_send - first < 0.3 for r in records)
    assert len(records) == len(server.ids)  # whatever was started, finished and was recorded


def test_cancelled_run_keeps_what_completed(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    server = CountingServer(delay=0.02)

    async def go() -> None:
        async with serving(server.app) as url:
            with ResultsWriter(path) as w:
                task = asyncio.create_task(run_load(
                    [Target(model="m", base_url=url, load=closed_loop(2, max_requests=10_000))],
                    scenario="s", writer=w, progress=False))
                while w.count < 6:
                    await asyncio.sleep(0.01)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                assert read_records(path) and len(read_records(path)) == w.count

    run(go())
    assert 6 <= len(read_records(path)) < 10_000


def test_progress_line_counts_per_model() -> None:
    out = io.StringIO()
    bar = Progress(["a", "b"], stream=out, quiet_for=0.0)
    for ok in (True, True, False):
        bar.record("a", ok)
    bar.record("b", True)
    line = bar.line()
    assert "a: 3 done, 1 failed" in line and "b: 1 done, 0 failed" in line

    async def tick() -> None:
        task = asyncio.create_task(bar.run())
        await asyncio.sleep(0.05)
        task.cancel()

    run(tick())
    bar.finish()
    printed = out.getvalue().splitlines()
    assert len(printed) == 2 and all("a: 3 done" in p for p in printed)


def test_load_shared_over_worker_processes(tmp_path: Path) -> None:
    opened, server = CountingServer(tokens=3), CountingServer(tokens=3, delay=0.01)
    path = tmp_path / "r.jsonl"
    load = open_loop(200.0, arrival="constant", max_requests=40)
    closed = closed_loop(5, max_requests=30)

    async def go() -> SelfCheck:
        async with serving(opened.app) as url_open, serving(server.app) as url:
            targets = [Target(model="open", base_url=url_open, load=load),
                       Target(model="closed", base_url=url, load=closed, warmup=2)]
            with ResultsWriter(path) as w:
                return await run_load(targets, scenario="s", writer=w, progress=False, workers=2)

    report = run(go(), timeout=60)
    records = read_records(path)
    by_model = {m: sorted((r for r in records if r.model == m), key=lambda r: int(r.request_id.rsplit("-", 1)[1]))
                for m in ("open", "closed")}
    assert len(by_model["open"]) == 40 and len(by_model["closed"]) == 30
    assert len({r.request_id for r in records}) == 70 and all(r.success for r in records)
    # the whole open-loop schedule was kept, dealt out over the two processes
    start = by_model["open"][0].intended_send
    assert [r.intended_send - start for r in by_model["open"]] == pytest.approx(load.schedule(), abs=1e-9)
    # prompts in the same order as one process would send them, warmup once, concurrency capped
    assert [r.prompt_id for r in by_model["closed"]] == [closed.prompt(i).id for i in range(30)]
    assert sum("warmup" in i for i in server.ids) == 2 and server.max_in_flight <= 5
    merged = {t.model: t for t in report.targets}
    assert (merged["open"].sent, merged["closed"].sent, merged["closed"].requested_concurrency) == (40, 30, 5)


def test_achieved_concurrency_and_on_the_wire(tmp_path: Path) -> None:
    # A server that holds every request 50 ms: both figures are the requested 8 (the client's
    # own share of each cycle is tiny). Their difference is the time finished responses waited
    # for the client; it can only be >= 0.
    slow = CountingServer(tokens=5, delay=0.05)
    report = drive([(slow, dict(model="m", load=closed_loop(8, duration=0.6)))], tmp_path / "slow.jsonl")
    t = report.targets[0]
    assert slow.max_in_flight == 8
    assert 0.95 * 8 <= t.achieved_concurrency <= 8.0 and 0.9 * 8 <= t.wire_concurrency <= t.achieved_concurrency
    assert (f"concurrency {t.achieved_concurrency:.1f}/8 ({t.wire_concurrency:.1f} on the wire)"
            in report.lines()[1]), report.lines()
