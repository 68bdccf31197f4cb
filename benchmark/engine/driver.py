"""One event loop's part of a run: drive one or several targets on one clock from one start
instant and record every request (``drive_targets``); ``benchmark.engine.runner`` is the entry.

- ``Target(model=, base_url=, load=, api="tgi-stream", warmup=0, model_name="tgi",
  timeout=600.0)``: one model's endpoint and its ``LoadPattern`` (``benchmark.engine.patterns``).
- All targets share one ``aiohttp.ClientSession`` whose connector is sized to the load (no
  limit with an open-loop target; aiohttp's default of 100 would silently cap concurrency),
  one ``RunClock`` and one start instant: open-loop schedules are computed before that
  instant, warmup requests (``Target.warmup``, sequential, never written) run before it.
- Every finished request is appended to the writer at once (``benchmark.engine.results``); a
  cancelled run (Ctrl-C) keeps what was written. Records carry ``X-Request-Id`` = their
  ``request_id`` to the server.
- ``keep_busy=True`` (shared runs): a target that has finished its recorded requests keeps
  sending its pattern's requests, unrecorded (counted as ``filler_sent``, written to
  ``filler_writer`` if given, never to the writer), until every target has finished its
  recorded ones; then the fillers in flight are cancelled (not failures; written with what
  had arrived, as stopped, so a timeline shows what the GPU was doing to the end). So every
  recorded request ran while all the targets were loaded. A filler that fails ends its lane
  (no hot loop against a broken server).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
import numpy as np
from yarl import URL

from benchmark.engine.patterns import LoadPattern
from benchmark.engine.progress import Progress
from benchmark.engine.protocols import Adapter, adapter_for
from benchmark.engine.records import FILLER_SUFFIX, RequestRecord, RunClock
from benchmark.engine.selfcheck import CONNECT_BOUND, STALL_BOUND, GcPauses, SelfCheck, TargetCheck, sample_loop_lag
from benchmark.engine.send import connect_trace, send, stamping_connector

__all__ = ["START_LEAD", "STOPPED", "Target", "Writer", "drive_targets", "run_on_uvloop"]

T = TypeVar("T")
START_LEAD = 0.05  # s between computing the start instant and the first send
STOPPED = "stopped in flight"  # the error text of a filler cancelled once every recorded request was done


@dataclass(frozen=True, kw_only=True)
class Target:
    """One model endpoint and the load to drive it with."""

    model: str  # the key that names it in records and reports
    base_url: str  # e.g. http://127.0.0.1:8080
    load: LoadPattern
    api: str = "tgi-stream"  # a benchmark.engine.protocols adapter name
    warmup: int = 0  # requests sent first, not recorded
    model_name: str = "tgi"  # OpenAI "model" field (TGI ignores it; vLLM wants the served name)
    timeout: float = 600.0  # s, whole request

    def __post_init__(self) -> None:
        adapter_for(self.api)  # raises ValueError naming the allowed apis
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {self.base_url!r} for model {self.model!r} must start with http:// or https://")
        if self.warmup < 0:
            raise ValueError(f"warmup {self.warmup!r} for model {self.model!r} must be >= 0")
        if not self.timeout > 0:
            raise ValueError(f"timeout {self.timeout!r} for model {self.model!r} must be > 0 s")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + adapter_for(self.api).path


class _Driver:
    """Issues one target's requests; keeps what the self-check needs."""

    def __init__(self, target: Target, scenario: str, run_id: str, shard: int = 0, shards: int = 1,
                 round: int = 1) -> None:  # fmt: skip
        self.target = target
        self.round = round
        load = target.load
        # a closed loop is shared by at most `concurrency` shards; the others idle
        self.shards = min(shards, load.concurrency) if load.kind == "closed" else shards
        self.shard = shard if shard < self.shards else -1
        self.scenario = scenario
        self.adapter: Adapter = adapter_for(target.api)
        self.url = URL(target.url)  # parsed once, not per request
        self.timeout = aiohttp.ClientTimeout(total=target.timeout)
        # one body per prompt, serialised once
        self.bodies = [self.adapter.body(p.text, load.max_new_tokens, target.model_name) for p in load.prompts]
        # before the clock starts; a shard takes every shards-th arrival of the whole schedule
        self.schedule = load.schedule()[self.shard::self.shards] if load.kind == "open" and self.shard >= 0 else []
        self.concurrency = _share(load.concurrency, self.shard, self.shards)
        self.max_requests = None if load.max_requests is None else _share(load.max_requests, self.shard, self.shards)
        self.prefix = f"{run_id}-{target.model}-"
        self.next_index = 0
        self.sends: list[float] = []
        self.intended: list[float] = []
        self.spans: list[tuple[float, float, float]] = []  # (sent, last byte arrived, record written)
        self.connects: list[float] = []  # s, each new connection a recorded request opened
        self.failed = 0
        self.warmup_failed = 0
        self.stop_issuing = 0.0  # run clock, when the last request was issued
        self.filler_sent = self.filler_failed = self.filler_cancelled = 0

    def _record(self, index: int, intended: float, sent: float, prefix: str | None = None) -> RequestRecord:
        load = self.target.load
        return RequestRecord(
            request_id=(prefix or self.prefix) + str(index), model=self.target.model, scenario=self.scenario,
            round=self.round, prompt_id=load.prompt(index).id, api=self.adapter.name, intended_send=intended, sent=sent,
        )

    async def warmup(self, session: aiohttp.ClientSession, clock: RunClock) -> None:
        for i in range(self.target.warmup if self.shard == 0 else 0):
            now = clock.now()
            rec = self._record(i, now, now, prefix=self.prefix + "warmup-")
            await send(session, self.url, self.adapter, self.bodies[i % len(self.bodies)], rec, clock.origin, self.timeout)
            self.warmup_failed += not rec.success

    async def one(self, index: int, intended: float, ctx: _RunContext) -> None:
        sent = ctx.clock.now()
        rec = self._record(index, intended, sent)
        await send(ctx.session, self.url, self.adapter, self.bodies[index % len(self.bodies)], rec,
                   ctx.clock.origin, self.timeout)
        async with ctx.turn:  # see _RunContext.turn
            await _after_io()
            ctx.writer.write(rec)
            self.sends.append(sent)
            self.intended.append(intended)
            self.spans.append((sent, intended + (rec.e2e or 0.0), ctx.clock.now()))
            if rec.connect is not None:
                self.connects.append(rec.connect)
            self.failed += not rec.success
            if ctx.progress is not None:
                ctx.progress.record(self.target.model, rec.success)

    async def drive(self, ctx: _RunContext) -> None:
        load = self.target.load
        end = ctx.start + load.duration if load.duration is not None else float("inf")
        if load.kind == "open":
            await self._open(ctx, end)
        else:
            await asyncio.gather(*(self._closed_worker(ctx, end) for _ in range(self.concurrency)))

    async def _closed_worker(self, ctx: _RunContext, end: float) -> None:
        limit = self.max_requests
        now = ctx.clock.now()
        if ctx.start > now:
            await asyncio.sleep(ctx.start - now)
        # The workers' first sends take turns, one per pass of the event loop: issuing a request
        # takes the loop ~0.1 ms, so 256 at once would stall it for ~25 ms, and a response that
        # arrived meanwhile would be stamped that late. Their wait shows as schedule lag.
        async with ctx.turn:
            await asyncio.sleep(0)
        intended = ctx.start  # each worker's first request is due at the start instant, later ones
        while True:  # as soon as the previous one completes
            now = ctx.clock.now()
            if now >= end or (limit is not None and self.next_index >= limit):
                return
            index = self.next_index * self.shards + self.shard  # unique and in prompt order over shards
            self.next_index += 1
            self.stop_issuing = now
            await self.one(index, min(intended, now), ctx)
            intended = ctx.clock.now()

    async def _open(self, ctx: _RunContext, end: float) -> None:
        pending: set[asyncio.Task[None]] = set()
        clock = ctx.clock
        for local, offset in enumerate(self.schedule):
            index = local * self.shards + self.shard
            intended = ctx.start + offset
            if intended >= end:
                break
            delay = intended - clock.now()
            if delay > 0:
                await asyncio.sleep(delay)
            self.stop_issuing = clock.now()
            task = asyncio.create_task(self.one(index, intended, ctx))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)

    async def fill(self, ctx: _RunContext, stop: asyncio.Event) -> None:
        """keep_busy: the same pattern's requests, unrecorded, until ``stop`` is set; then the ones
        in flight are cancelled."""
        load = self.target.load
        if load.kind == "closed":
            tasks = [asyncio.create_task(self._filler_lane(ctx)) for _ in range(self.concurrency)]
        else:
            tasks = [asyncio.create_task(self._filler_arrivals(ctx))]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _filler(self, ctx: _RunContext) -> bool:
        """One unrecorded request; False when it failed."""
        index = self.filler_sent
        self.filler_sent += 1
        now = ctx.clock.now()
        rec = self._record(index, now, now, prefix=self.prefix + "filler-")
        rec.scenario = self.scenario + FILLER_SUFFIX
        try:
            await send(ctx.session, self.url, self.adapter, self.bodies[index % len(self.bodies)], rec,
                       ctx.clock.origin, self.timeout)
            async with ctx.turn:  # as recorded requests do, so fillers do not delay their stamps
                await _after_io()
                if ctx.filler_writer is not None:
                    ctx.filler_writer.write(rec)
        except asyncio.CancelledError:
            self.filler_cancelled += 1
            if ctx.filler_writer is not None:  # what it got until then (all of it, if it had finished)
                rec.error = None if rec.success else f"{STOPPED}: every recorded request was done"
                ctx.filler_writer.write(rec)
            raise
        self.filler_failed += not rec.success
        return rec.success

    async def _filler_lane(self, ctx: _RunContext) -> None:
        while await self._filler(ctx):
            pass

    async def _filler_arrivals(self, ctx: _RunContext) -> None:
        """The open loop's schedule again and again from now, until cancelled."""
        offsets = self.target.load.schedule()
        period = offsets[-1] + 1.0 / self.target.load.rate if offsets else 1.0 / self.target.load.rate
        pending: set[asyncio.Task[bool]] = set()
        base = ctx.clock.now()
        try:
            while offsets:
                for offset in offsets:
                    delay = base + offset - ctx.clock.now()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    task = asyncio.create_task(self._filler(ctx))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                base += period
        finally:
            for task in list(pending):
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def report(self, start: float) -> TargetCheck:
        load = self.target.load
        lag = np.asarray(self.sends) - np.asarray(self.intended)
        window = self.stop_issuing - start

        def in_flight(end: int) -> float:  # time-average of requests between sent and spans[end]
            if window <= 0:
                return float(len(self.sends) > 0)
            stop = self.stop_issuing
            return sum(max(0.0, min(s[end], stop) - max(s[0], start)) for s in self.spans) / window

        span = (max(self.sends) - min(self.sends)) if len(self.sends) > 1 else 0.0
        connects = np.asarray(self.connects)
        return TargetCheck(
            model=self.target.model, api=self.adapter.name, load=load.describe(),
            requested_concurrency=self.concurrency if load.kind == "closed" else None,
            requested_rate=load.rate / self.shards if load.kind == "open" else None,
            sent=len(self.sends), failed=self.failed, warmup_failed=self.warmup_failed,
            achieved_concurrency=in_flight(2), wire_concurrency=in_flight(1),
            achieved_rate=(len(self.sends) - 1) / span if span > 0 else float("nan"),
            schedule_lag_p50=float(np.percentile(lag, 50)) if lag.size else float("nan"),
            schedule_lag_p99=float(np.percentile(lag, 99)) if lag.size else float("nan"),
            filler_sent=self.filler_sent, filler_failed=self.filler_failed, filler_cancelled=self.filler_cancelled,
            connections=connects.size, connect_p50=float(np.percentile(connects, 50)) if connects.size else float("nan"),
            connect_max=float(connects.max()) if connects.size else float("nan"),
            slow_connects=int(np.sum(connects > CONNECT_BOUND)),
        )


class Writer(Protocol):
    def write(self, record: RequestRecord) -> None: ...


@dataclass
class _RunContext:
    session: aiohttp.ClientSession
    clock: RunClock
    writer: Writer
    start: float
    progress: Progress | None
    filler_writer: Writer | None = None  # keep_busy's unrecorded requests
    # Finished requests take turns for their bookkeeping (record, self-check, and in a closed
    # loop the replacement's send), one per pass of the event loop and each after the loop has
    # read every socket: a batching server ends many streams at the same instant, and one loop
    # doing all their bookkeeping at once would read the other streams' last events, and stamp
    # them, only after it (measured: E2E 5-25 ms late at concurrency 64-256 on 2 cores).
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)


async def _after_io() -> None:
    """Return after the event loop has polled the sockets (and run their callbacks) once.

    uvloop polls between two passes over the ready callbacks; asyncio's loop polls, then runs
    the callbacks already queued before those of the sockets it found ready: hence two.
    """
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def _share(total: int, shard: int, shards: int) -> int:
    """Shard ``shard``'s part of ``total`` split as evenly as possible (0 for an idle shard)."""
    return 0 if shard < 0 else total // shards + (shard < total % shards)


def _connector_limit(targets: Sequence[Target]) -> int:
    if any(t.load.kind == "open" for t in targets):
        return 0  # unlimited: an open loop must not be throttled by the client
    return max(100, sum(t.load.concurrency for t in targets) + 8)


async def drive_targets(
    targets: Sequence[Target], scenario: str, writer: Writer, clock: RunClock, bar: Progress | None,
    run_id: str, shard: int, shards: int, when: Callable[[], Awaitable[float]],
    *, keep_busy: bool = False, filler_writer: Writer | None = None, round: int = 1,
) -> SelfCheck:
    """One event loop's part of a run: warm up, get the start instant from ``when``, drive."""
    drivers = [_Driver(t, scenario, run_id, shard, shards, round) for t in targets]
    connector = stamping_connector(limit=_connector_limit(targets), limit_per_host=0, ttl_dns_cache=300)
    # read_bufsize: how much the response reader buffers before pausing the socket (default 64 KiB)
    # no cookie jar and no Accept-Encoding (TGI streams uncompressed): less work per request
    async with aiohttp.ClientSession(connector=connector, read_bufsize=2**20, cookie_jar=aiohttp.DummyCookieJar(),
                                     skip_auto_headers=("Accept-Encoding",), trace_configs=[connect_trace()]) as session:
        await asyncio.gather(*(d.warmup(session, clock) for d in drivers))
        # A full garbage collection froze the loop for ~50 ms at concurrency 64-256, stamping every
        # event that arrived meanwhile late: collect now, and keep what exists out of later
        # collections while the clock runs (as vLLM's benchmark client does).
        gc.collect()
        gc.freeze()
        start = await when()
        ctx = _RunContext(session=session, clock=clock, writer=writer, start=start, progress=bar,
                          filler_writer=filler_writer)
        unfinished = len(drivers)
        all_done = asyncio.Event()

        async def drive(d: _Driver) -> None:
            nonlocal unfinished
            await d.drive(ctx)
            unfinished -= 1
            if unfinished == 0:
                all_done.set()
            elif keep_busy:
                await d.fill(ctx, all_done)
        lag: list[float] = []
        helpers = [asyncio.create_task(sample_loop_lag(lag))]
        if bar is not None:
            helpers.append(asyncio.create_task(bar.run()))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        try:
            with GcPauses() as collections:
                await asyncio.gather(*(drive(d) for d in drivers))
        finally:
            gc.unfreeze()
            for h in helpers:
                h.cancel()
            if bar is not None:
                bar.finish()
        wall = time.perf_counter() - wall0
        lags = np.asarray(lag) if lag else np.zeros(1)
        pauses = [seconds for _, seconds in collections.seen]
        return SelfCheck(
            scenario=scenario, started_at=clock.epoch_origin + start, duration_s=wall,
            client_cpu=(time.process_time() - cpu0) / wall if wall > 0 else 0.0,
            loop_lag_p50=float(np.percentile(lags, 50)), loop_lag_p99=float(np.percentile(lags, 99)),
            loop_lag_max=float(lags.max()), targets=[d.report(start) for d in drivers], keep_busy=keep_busy,
            loop_stalls=int(np.sum(lags > STALL_BOUND)), gc_collections=len(pauses),
            gc_full=sum(generation == 2 for generation, _ in collections.seen), gc_pause_max=max(pauses, default=0.0),
        )


def run_on_uvloop(coro: Coroutine[Any, Any, T]) -> T:
    if os.environ.get("BENCHMARK_NO_UVLOOP"):
        return asyncio.run(coro)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
