"""``workers=N``: one run's load shared over N client processes, each with its own event loop
and session, on the same clock (``perf_counter`` is the system's monotonic clock): a closed
loop's concurrency and request count are split, an open loop's precomputed schedule is dealt
out arrival by arrival. Records come back to the parent's writer; warmup runs in the first
worker only. For rates one event loop cannot drive, and to stamp more promptly when many
streams finish at once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection

import numpy as np
import orjson

from benchmark.engine.driver import START_LEAD, Target, drive_targets, run_on_uvloop
from benchmark.engine.progress import Progress
from benchmark.engine.records import RequestRecord, RunClock
from benchmark.engine.results import ResultsWriter
from benchmark.engine.selfcheck import SelfCheck, TargetCheck

__all__ = ["run_sharded"]


class _PipeWriter:
    """A worker's writer: each record goes to the parent as one message (b"R" + JSON line)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.count = 0

    def write(self, record: RequestRecord) -> None:
        self.conn.send_bytes(b"R" + orjson.dumps(record))
        self.count += 1


def _worker_main(conn: Connection, targets: list[Target], scenario: str, run_id: str, shard: int, shards: int,
                 origin: float, epoch_origin: float, round: int) -> None:  # fmt: skip
    """A worker process: its shard of every target; b"ready", then the start instant from the
    parent; records as they complete; finally b"S" + its SelfCheck as JSON."""
    clock = RunClock()
    clock.origin, clock.epoch_origin = origin, epoch_origin

    async def when() -> float:
        conn.send_bytes(b"ready")
        return float(await asyncio.to_thread(conn.recv))

    report = run_on_uvloop(drive_targets(targets, scenario, _PipeWriter(conn), clock, None, run_id, shard, shards, when,
                                         round=round))
    conn.send_bytes(b"S" + orjson.dumps(report.to_dict()))
    conn.close()


async def run_sharded(targets: Sequence[Target], scenario: str, writer: ResultsWriter, clock: RunClock,
                      progress: bool, workers: int, run_id: str, round: int = 1) -> SelfCheck:
    context = multiprocessing.get_context("spawn")  # no fork of a process with a running event loop
    pipes = [context.Pipe() for _ in range(workers)]
    procs = [context.Process(target=_worker_main, daemon=True, name=f"benchmark worker {i}",
                             args=(child, list(targets), scenario, run_id, i, workers, clock.origin, clock.epoch_origin,
                                   round))
             for i, (_, child) in enumerate(pipes)]
    bar = Progress([t.model for t in targets]) if progress else None
    lock = threading.Lock()

    def collect(conn: Connection) -> SelfCheck:
        while True:
            try:
                message = conn.recv_bytes()
            except EOFError:
                raise RuntimeError("a benchmark worker process exited early (its traceback is above)") from None
            if message[:1] == b"S":
                check = SelfCheck.from_dict(orjson.loads(message[1:]))
                assert check is not None  # the same engine wrote it
                return check
            with lock:
                writer.write_line(message[1:])
            if bar is not None:
                bar.record(orjson.loads(message[1:])["model"], b'"success":true' in message)

    try:
        for p in procs:
            p.start()
        for conn, _ in pipes:
            try:
                ready = await asyncio.to_thread(conn.recv_bytes)
            except EOFError:
                ready = b""
            if ready != b"ready":
                raise RuntimeError("a benchmark worker process did not start (its traceback is above)")
        start = clock.now() + START_LEAD
        for conn, _ in pipes:
            conn.send(start)
        printer = asyncio.create_task(bar.run()) if bar is not None else None
        try:
            reports = await asyncio.gather(*(asyncio.to_thread(collect, conn) for conn, _ in pipes))
        finally:
            if printer is not None:
                printer.cancel()
                bar.finish()  # type: ignore[union-attr]
    finally:
        for p in procs:
            if p.pid is None:
                continue  # never started
            if p.is_alive():
                p.terminate()
            p.join(5)
    return _merge(reports, targets)


def _merge(reports: Sequence[SelfCheck], targets: Sequence[Target]) -> SelfCheck:
    """One self-check from the workers': counts, concurrency, rate, connections, collections and
    CPU add up; lags, stalls and connect times are the worst worker's (a p50 included)."""
    merged: list[TargetCheck] = []
    for i, target in enumerate(targets):
        parts = [r.targets[i] for r in reports]
        load = target.load
        merged.append(TargetCheck(
            model=target.model, api=parts[0].api, load=load.describe(),
            requested_concurrency=load.concurrency if load.kind == "closed" else None,
            requested_rate=load.rate if load.kind == "open" else None,
            sent=sum(p.sent for p in parts), failed=sum(p.failed for p in parts),
            warmup_failed=sum(p.warmup_failed for p in parts),
            achieved_concurrency=sum(p.achieved_concurrency for p in parts if p.sent),
            wire_concurrency=sum(p.wire_concurrency for p in parts if p.sent),
            achieved_rate=float(np.nansum([p.achieved_rate for p in parts if p.sent])),
            schedule_lag_p50=max((p.schedule_lag_p50 for p in parts if p.sent), default=float("nan")),
            schedule_lag_p99=max((p.schedule_lag_p99 for p in parts if p.sent), default=float("nan")),
            connections=sum(p.connections for p in parts), slow_connects=sum(p.slow_connects for p in parts),
            connect_p50=max((p.connect_p50 for p in parts if p.connections), default=float("nan")),
            connect_max=max((p.connect_max for p in parts if p.connections), default=float("nan")),
        ))
    return SelfCheck(
        scenario=reports[0].scenario, started_at=reports[0].started_at,
        duration_s=max(r.duration_s for r in reports), client_cpu=sum(r.client_cpu for r in reports),
        loop_lag_p50=max(r.loop_lag_p50 for r in reports), loop_lag_p99=max(r.loop_lag_p99 for r in reports),
        loop_lag_max=max(r.loop_lag_max for r in reports), targets=merged, workers=len(reports),
        loop_stalls=sum(r.loop_stalls for r in reports), gc_collections=sum(r.gc_collections for r in reports),
        gc_full=sum(r.gc_full for r in reports), gc_pause_max=max(r.gc_pause_max for r in reports),
    )


