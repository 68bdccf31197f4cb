"""The engine's entry: drive one or several models on one clock and record every request.

API (what ``benchmark.commands`` and ``benchmark.stack.session`` call)::

    check = await run_load(targets, scenario="shared", writer=ResultsWriter(path))
    check = run_load_sync(targets, scenario="alone", writer=writer)   # uvloop, for CLIs

``run_load`` returns the client self-check (``benchmark.engine.selfcheck``). One event loop
drives the targets (``benchmark.engine.driver``: sessions, warmup, keep-busy fillers), or
``workers=N`` processes share the load (``benchmark.engine.workers``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from benchmark.engine.driver import START_LEAD, Target, Writer, drive_targets, run_on_uvloop
from benchmark.engine.progress import Progress
from benchmark.engine.records import RunClock
from benchmark.engine.results import ResultsWriter
from benchmark.engine.selfcheck import SelfCheck
from benchmark.engine.workers import run_sharded

__all__ = ["Target", "run_load", "run_load_sync"]


async def run_load(
    targets: Sequence[Target],
    *,
    scenario: str,
    writer: ResultsWriter,
    clock: RunClock | None = None,
    progress: bool = True,
    workers: int = 1,
    keep_busy: bool = False,
    filler_writer: Writer | None = None,
    round: int = 1,
) -> SelfCheck:
    """Drive every target at once from one start instant; return the client self-check. Records
    carry ``scenario`` and ``round`` (which run of that scenario this is).

    ``workers > 1`` shares each load over that many processes, each with its own event loop
    and session, on the same clock (``perf_counter`` is the system's monotonic clock): a
    closed loop's concurrency and request count are split, an open loop's precomputed
    schedule is dealt out arrival by arrival. Records come back to this process's ``writer``.
    """
    if not targets:
        raise ValueError("run_load needs at least one target")
    keys = [t.model for t in targets]
    if len(set(keys)) != len(keys):
        raise ValueError(f"model keys must be unique in one run, got {keys!r}")
    if workers < 1:
        raise ValueError(f"workers {workers!r} must be >= 1")
    if keep_busy and workers > 1:
        raise ValueError(f"keep_busy needs workers=1 (one event loop knows when every target is done), got workers={workers!r}")
    clock = clock or RunClock()
    run_id = uuid.uuid4().hex[:8]
    if workers > 1:
        return await run_sharded(targets, scenario, writer, clock, progress, workers, run_id, round)
    bar = Progress(keys) if progress else None

    async def start_now() -> float:
        return clock.now() + START_LEAD

    return await drive_targets(targets, scenario, writer, clock, bar, run_id, 0, 1, start_now,
                               keep_busy=keep_busy, filler_writer=filler_writer, round=round)


def run_load_sync(targets: Sequence[Target], **kwargs: Any) -> SelfCheck:
    """``run_load`` on a fresh uvloop event loop (the CLI edge)."""
    return run_on_uvloop(run_load(targets, **kwargs))


