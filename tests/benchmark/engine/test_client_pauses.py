"""The client's own pauses: the garbage collector kept out of the measured window, event-loop
stalls reported at their longest and warned about, and each new connection's setup time
recorded per request and shown apart from the schedule lag."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from pathlib import Path

from aiohttp import web
from enginekit import run, tgi_stream_body

from benchmark.engine.patterns import closed_loop
from benchmark.engine.records import RequestRecord
from benchmark.engine.results import ResultsWriter, read_records
from benchmark.engine.runner import Target, run_load
from benchmark.engine.selfcheck import SelfCheck

BODY = tgi_stream_body(3)


async def _stream(request: web.Request) -> web.Response:
    await request.read()
    await asyncio.sleep(0.01)
    return web.Response(body=BODY, content_type="text/event-stream")


class _Writer(ResultsWriter):
    """Writes records; on the third, blocks the event loop for ``block`` s (a stall of the
    client's own making) and notes whether the collector was frozen meanwhile."""

    def __init__(self, path: Path, block: float = 0.0) -> None:
        super().__init__(path)
        self.block = block
        self.frozen: list[int] = []

    def write(self, record: RequestRecord) -> None:
        self.frozen.append(gc.get_freeze_count())
        if self.count == 2 and self.block:
            time.sleep(self.block)
        super().write(record)


def test_the_collector_is_frozen_in_the_window_and_a_stall_is_reported_at_its_longest_and_warned_about(
    tmp_path: Path,
) -> None:
    async def main() -> tuple[SelfCheck, _Writer]:
        app = web.Application()
        app.router.add_post("/generate_stream", _stream)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            with _Writer(tmp_path / "r.jsonl", block=0.06) as writer:
                target = Target(model="m", base_url=url, load=closed_loop(2, max_requests=12, max_new_tokens=3))
                check = await run_load([target], scenario="s", writer=writer, progress=False)
            return check, writer
        finally:
            await runner.cleanup()

    check, writer = run(main())
    assert writer.frozen and all(n > 0 for n in writer.frozen)  # every record was written with the heap frozen
    assert gc.get_freeze_count() == 0  # and unfrozen after the run
    assert check.loop_lag_max >= 0.04 and check.loop_stalls >= 1  # the 60 ms block, less at most one 10 ms sleep
    stall = next(w for w in check.warnings() if w.startswith("event-loop stalls"))
    assert f"the longest {check.loop_lag_max * 1e3:.1f} ms" in stall
    assert f"longest stall {check.loop_lag_max * 1e3:.2f} ms" in check.lines()[0]
    assert len(read_records(tmp_path / "r.jsonl")) == 12


def test_a_long_collection_in_the_window_is_warned_about() -> None:
    check = SelfCheck(scenario="s", started_at=0.0, duration_s=1.0, client_cpu=0.1, loop_lag_p50=0.0005,
                      loop_lag_p99=0.001, loop_lag_max=0.002, gc_collections=5, gc_full=1, gc_pause_max=0.05)
    (warning,) = check.warnings()
    assert warning.startswith("a garbage collection paused the client for 50.0 ms") and "1 of the oldest" in warning
    quiet = SelfCheck(scenario="s", started_at=0.0, duration_s=1.0, client_cpu=0.1, loop_lag_p50=0.0005,
                      loop_lag_p99=0.001, loop_lag_max=0.002, gc_collections=5, gc_pause_max=0.001)
    assert quiet.warnings() == []


def test_connect_time_is_recorded_per_request_and_a_dropped_syn_is_warned_about(tmp_path: Path) -> None:
    """A server whose listen backlog is full when a burst of connects arrives: the kernel drops
    the excess SYNs, and the client sends them again after 1 s (TCP's initial retransmission
    timeout). Those requests' connect time holds that second; their schedule lag does not."""

    async def main() -> SelfCheck:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # room for 2 finished handshakes; nobody accepts for the first 0.3 s
        sock.setblocking(False)
        app = web.Application()
        app.router.add_post("/generate_stream", _stream)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

        async def accept_later() -> None:
            await asyncio.sleep(0.3)
            await web.SockSite(runner, sock).start()

        opener = asyncio.create_task(accept_later())
        try:
            with ResultsWriter(tmp_path / "r.jsonl") as writer:
                target = Target(model="m", base_url=url, load=closed_loop(8, max_requests=16, max_new_tokens=3))
                return await run_load([target], scenario="s", writer=writer, progress=False)
        finally:
            await opener
            await runner.cleanup()

    check = run(main())
    records = read_records(tmp_path / "r.jsonl")
    assert len(records) == 16 and all(r.success for r in records)
    opened = [r for r in records if r.connect is not None]
    assert len(opened) == 8  # each of the 8 lanes opened one connection, then reused it
    assert all(r.connect is not None and r.connect <= (r.ttft or 0) for r in opened)  # inside the TTFT
    late = [r for r in opened if (r.connect or 0) >= 0.9]
    assert late, sorted(r.connect or 0 for r in opened)  # SYNs dropped, sent again a second later
    t = check.targets[0]
    assert (t.connections, t.slow_connects) == (8, len(late)) and t.connect_max >= 0.9
    assert t.schedule_lag_p99 < 0.5  # the send was stamped before the connection existed
    (warning,) = [w for w in check.warnings() if "new connections took over 100 ms" in w]
    assert warning.startswith(f"m: {len(late)} of 8 new connections took over 100 ms to open")
    assert "connection setup: 8 new connection(s)" in "\n".join(check.lines())
