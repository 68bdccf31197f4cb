"""One simulated GPU shared by time-slicing: it runs one model's step at a time.

Every replica of every model asks the GPU for each of its steps (a prefill or a decode
step of its whole batch) with ``await gpu.run(owner, seconds)``. Requests are served in
arrival order (``asyncio.Lock`` is FIFO), and a replica asks for its next step only after
its last one finished, so replicas with work take turns round-robin. Switching from one
replica to another costs ``context_switch_s`` more, as a time-sliced GPU pays for a
context switch. A replica alone never waits and runs at full speed; replicas sharing the
GPU wait for each other's steps, in proportion to the others' load.

The GPU keeps its own timeline: a step starts when both the GPU and the step's work were
ready (``ready_at``: the end of the replica's previous step, or when its new requests
arrived) and ends ``seconds`` later. So a busy event loop, which wakes a replica late,
does not stretch the simulated speed: a late replica catches up (its tokens then reach
the clients in a burst, and the truth log records when they really were written).
``time_scale`` multiplies every simulated duration (0.1 runs ten times faster).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from benchmark.sim.truth import TruthLog

__all__ = ["GpuStats", "SimulatedGpu"]


@dataclass(slots=True)
class GpuStats:
    """What one model (all its replicas) got from the GPU; seconds are scaled wall time."""

    steps: int = 0
    prefill_steps: int = 0
    busy_s: float = 0.0  # sum of its steps' durations, switches included
    wait_s: float = 0.0  # sum of the time its steps waited for other models' steps
    switches: int = 0  # steps that began with a context switch to it

    @property
    def wait_fraction(self) -> float:
        """Share of its GPU time spent waiting for others: 0 alone, grows when shared."""
        total = self.busy_s + self.wait_s
        return self.wait_s / total if total > 0 else 0.0


class SimulatedGpu:
    """A GPU that executes one step at a time; shared by ``SimulatedModel`` instances."""

    def __init__(
        self,
        *,
        name: str = "NVIDIA L40S (simulated)",
        context_switch_s: float = 0.0005,
        time_scale: float = 1.0,
        truth_log: TruthLog | str | None = None,
    ) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale: got {time_scale!r}; allowed: a number greater than 0")
        if not context_switch_s >= 0:
            raise ValueError(f"context_switch_s: got {context_switch_s!r}; allowed: seconds >= 0")
        self.name = name
        self.context_switch_s = context_switch_s
        self.time_scale = time_scale
        self.truth = truth_log if isinstance(truth_log, TruthLog) else TruthLog(truth_log)
        self.stats: dict[str, GpuStats] = {}
        self._lock = asyncio.Lock()
        self._last_owner: str | None = None
        self._free_at = 0.0  # perf_counter when the last step is due to end

    async def run(self, owner: str, model: str, seconds: float, *, ready_at: float, prefill: bool = False) -> float:
        """Run one step of ``seconds`` (unscaled) for replica ``owner`` of ``model``.

        ``ready_at`` (perf_counter, not in the future) is when the step's work was ready;
        returns when the step ended on the GPU's timeline.
        """
        asked = min(ready_at, time.perf_counter())
        async with self._lock:
            switch = self._last_owner is not None and self._last_owner != owner
            duration = (seconds + (self.context_switch_s if switch else 0.0)) * self.time_scale
            start = max(asked, self._free_at)
            end = start + duration
            self._free_at = end
            self._last_owner = owner
            stats = self.stats.setdefault(model, GpuStats())
            stats.steps += 1
            stats.prefill_steps += prefill
            stats.busy_s += duration
            stats.wait_s += start - asked
            stats.switches += switch
            await asyncio.sleep(max(0.0, end - time.perf_counter()))  # yields even when behind
        return end

    def reset_stats(self) -> None:
        self.stats.clear()

    def close(self) -> None:
        """Close the truth log's file (the in-memory log stays readable)."""
        self.truth.close()

    async def __aenter__(self) -> SimulatedGpu:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
