"""The client self-check printed with every summary, so a reader can see whether the client
itself shaped the numbers.

``SelfCheck`` (one run) holds a ``TargetCheck`` per target: the requested vs achieved
concurrency (time-average of requests open, from their send until their record is written,
while the load was issuing; "on the wire": until their last byte arrived, which leaves out the
time a response waits for the client to read it) and rate, schedule lag (actual minus intended
send) p50/p99, and the connections its requests opened (how many, how long each took: a connect
happens after the send is stamped, so schedule lag cannot show it). For the whole run: the
event-loop lag (p50/p99 of a 10 ms sleeper's oversleep) and its longest stall (the most it
woke late; a stall that begins during its sleep shows up to 10 ms shorter), the garbage
collector's collections in the measured window and the longest pause (``GcPauses``), and the
client CPU (process CPU time / wall time, in cores). ``SelfCheck.warnings()`` says in words
where the client may have been the bottleneck, and where failures, not the client, explain the
figures. ``OthersLoad`` measures the share of the CPUs other processes took meanwhile (for
``make bench-client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CONNECT_BOUND", "LAG_PERIOD", "STALL_BOUND", "GcPauses", "OthersLoad", "SelfCheck", "TargetCheck",
           "sample_loop_lag"]

LAG_PERIOD = 0.01  # s, the event-loop lag probe's sleep
STALL_BOUND = 0.005  # s: a loop stall or collection longer than this is warned about
CONNECT_BOUND = 0.1  # s: a connect longer than this is warned about (a dropped SYN costs 1 s)


@dataclass(kw_only=True)
class TargetCheck:
    model: str
    api: str
    load: str  # LoadPattern.describe()
    requested_concurrency: int | None
    requested_rate: float | None  # req/s
    sent: int
    failed: int
    warmup_failed: int
    achieved_concurrency: float  # time-average of requests open (sent, record not yet written) while issuing
    wire_concurrency: float = float("nan")  # the same up to each response's last byte arriving (nan: older files)
    achieved_rate: float  # req/s over the span of send times
    schedule_lag_p50: float  # s, sent - intended_send
    schedule_lag_p99: float
    filler_sent: int = 0  # keep_busy: unrecorded requests sent after its recorded ones
    filler_failed: int = 0
    filler_cancelled: int = 0  # in flight when the last target finished: stopped, not written
    connections: int = 0  # new connections its recorded requests opened (the others reused one)
    connect_p50: float = float("nan")  # s to open one
    connect_max: float = float("nan")
    slow_connects: int = 0  # connects over CONNECT_BOUND

    def mostly_failed(self) -> bool:
        """Half or more of its requests failed: its concurrency and rate describe failures."""
        return self.sent > 0 and self.failed * 2 >= self.sent


@dataclass(kw_only=True)
class SelfCheck:
    scenario: str
    started_at: float  # epoch s of the run's start instant
    duration_s: float
    client_cpu: float  # process CPU s / wall s (1.0 = one core busy)
    loop_lag_p50: float  # s
    loop_lag_p99: float
    loop_lag_max: float
    targets: list[TargetCheck] = field(default_factory=list)
    workers: int = 1  # client processes; client_cpu adds theirs up
    keep_busy: bool = False  # targets that finished first sent fillers until all were done
    loop_stalls: int = 0  # lag samples over STALL_BOUND
    gc_collections: int = 0  # garbage collections inside the measured window
    gc_full: int = 0  # of which of the oldest generation
    gc_pause_max: float = 0.0  # s, the longest

    def filler_note(self) -> str | None:
        """What keep_busy did, in one line (None when it was off)."""
        if not self.keep_busy:
            return None
        return ("models that finished first kept sending unrecorded requests until all were done, so every "
                f"recorded request ran under sharing; {sum(t.filler_sent for t in self.targets)} such requests")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def warnings(self) -> list[str]:
        """Where the client itself may have shaped the numbers, and where failures explain them."""
        out: list[str] = []
        for t in self.targets:
            if t.mostly_failed():
                out.append(f"{t.model}: {t.failed} of {t.sent} requests failed: its concurrency, rate and lag "
                           "figures describe failures (see the errors), not the client's ceiling")
                continue
            if t.requested_concurrency and t.achieved_concurrency < 0.95 * t.requested_concurrency:
                out.append(f"{t.model}: achieved concurrency {t.achieved_concurrency:.1f} is below 95% "
                           f"of the requested {t.requested_concurrency}")
            if t.requested_rate and t.achieved_rate < 0.95 * t.requested_rate:
                out.append(f"{t.model}: achieved rate {t.achieved_rate:.2f} req/s is below 95% "
                           f"of the requested {t.requested_rate:g}")
            if t.schedule_lag_p99 > 0.005:
                out.append(f"{t.model}: schedule lag p99 {t.schedule_lag_p99 * 1e3:.1f} ms (> 5 ms)")
            if t.slow_connects:
                out.append(f"{t.model}: {t.slow_connects} of {t.connections} new connections took over "
                           f"{CONNECT_BOUND * 1e3:.0f} ms to open (longest {_duration(t.connect_max)}): a full listen "
                           "backlog (its SYNs dropped and sent again after 1 s) or a slow network; those requests' "
                           "TTFT and E2E include it, their schedule lag does not")
        if self.loop_lag_max > STALL_BOUND:
            out.append(f"event-loop stalls: the longest {self.loop_lag_max * 1e3:.1f} ms, {self.loop_stalls} over "
                       f"{STALL_BOUND * 1e3:g} ms (lag p99 {self.loop_lag_p99 * 1e3:.1f} ms): events that arrived "
                       "during a stall were stamped up to that late")
        if self.gc_pause_max > STALL_BOUND:
            out.append(f"a garbage collection paused the client for {self.gc_pause_max * 1e3:.1f} ms in the measured "
                       f"window ({self.gc_collections} collections, {self.gc_full} of the oldest generation)")
        if self.client_cpu > 0.9 * self.workers and not all(t.mostly_failed() for t in self.targets):
            out.append(f"client CPU {self.client_cpu:.0%} of a core over {self.workers} process(es): "
                       "the client may be the bottleneck")
        return out

    def lines(self) -> list[str]:
        """The self-check block, for terminals and reports."""
        out = [f"client self-check ({self.scenario}): CPU {self.client_cpu:.0%} of a core"
               + (f" over {self.workers} processes" if self.workers > 1 else "") + ", event-loop lag "
               f"p50 {self.loop_lag_p50 * 1e3:.2f} ms p99 {self.loop_lag_p99 * 1e3:.2f} ms, "
               f"longest stall {self.loop_lag_max * 1e3:.2f} ms; garbage collector: {self.gc_collections} "
               f"collections ({self.gc_full} full), longest {self.gc_pause_max * 1e3:.2f} ms"]
        for t in self.targets:
            want = (f"concurrency {t.achieved_concurrency:.1f}/{t.requested_concurrency} "
                    f"({t.wire_concurrency:.1f} on the wire)" if t.requested_concurrency
                    else f"rate {t.achieved_rate:.2f}/{t.requested_rate:g} req/s")
            out.append(f"  {t.model}: {t.sent} sent, {t.failed} failed; achieved/requested {want}; "
                       f"schedule lag p50 {t.schedule_lag_p50 * 1e3:.2f} ms p99 {t.schedule_lag_p99 * 1e3:.2f} ms"
                       + (f"; unrecorded fillers: {t.filler_sent} sent, {t.filler_failed} failed, "
                          f"{t.filler_cancelled} stopped in flight" if self.keep_busy else ""))
            out.append(f"    connection setup: {t.connections} new connection(s)"
                       + (f", connect p50 {_duration(t.connect_p50)} max {_duration(t.connect_max)}" if t.connections
                          else "") + " (after the send is stamped; inside TTFT and E2E)")
        note = self.filler_note()
        if note:
            out.append(f"  {note}")
        out += [f"  warning: {w}" for w in self.warnings()]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelfCheck | None:
        """Read back ``to_dict()``'s output (run.json); None if another version of the engine wrote it."""
        try:
            return cls(**{**data, "targets": [TargetCheck(**t) for t in data.get("targets", [])]})
        except TypeError:
            return None


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


class GcPauses:
    """``with GcPauses() as pauses:``: every garbage collection the block saw, as
    ``(generation, seconds it paused the process)`` in ``pauses.seen`` (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seen.append((info.get("generation", 0), time.perf_counter() - self._started))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)


async def sample_loop_lag(samples: list[float]) -> None:
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(LAG_PERIOD)
        samples.append(time.perf_counter() - t0 - LAG_PERIOD)


class OthersLoad:
    """Share of all CPUs that processes other than this one and its descendants (the simulator,
    nginx) used while the block ran, from /proc (0.0 where there is none)."""

    share = 0.0

    @staticmethod
    def _sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        times = os.times()
        # this process, its children that ended (and were waited for), then the live descendants
        ours = round(sum(times[:4]) * os.sysconf("SC_CLK_TCK"))
        todo = ["self"]
        while todo:
            for children in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
                for pid in children.read_text().split():
                    with contextlib.suppress(OSError):  # a process that just ended
                        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                        ours += int(stat[11]) + int(stat[12])  # utime, stime
                        todo.append(pid)
        # busy: all but idle, iowait, irq and softirq (the loopback traffic is mostly ours)
        return sum(fields), sum(fields) - sum(fields[3:7]) - ours

    def __enter__(self) -> OthersLoad:
        try:
            self._start: tuple[int, int] | None = self._sample()
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._start is not None:
            total, others = self._sample()
            self.share = max(0.0, others - self._start[1]) / max(1, total - self._start[0])
