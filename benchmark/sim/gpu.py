"""One simulated GPU shared by CUDA time-slicing: busy contexts take turns in time slices.

Every replica of every model is one process, so one CUDA context. It asks the GPU for
each of its steps (a prefill, or one decode step of its whole batch) with
``await gpu.run(owner, model, seconds, ready_at=..., host_s=...)``, and asks for its next
step only after the last one ended; its work reaches the GPU ``host_s`` after ``ready_at``
(the host time of a step: TGI reads the last step's tokens back, samples, answers the router),
and the GPU serves the other contexts meanwhile. The GPU shares itself as time-slicing does: the contexts that
have work get the whole GPU in turn, round-robin, one time slice (``timeslice_s``) each,
and a step ends once it has had ``seconds`` of GPU time, however many slices that takes.
A context whose step has ended yields the GPU to one that waits (TGI reads each step's
tokens back before it launches the next, so its queue is empty meanwhile). So two
contexts that are always busy get half the GPU each: each one's steps take about twice as
long as alone (plus the switches), whatever their size as long as it is at least a slice,
and one model's long prefill is interleaved with the other's decode steps instead of
blocking them. A context alone keeps the GPU (its slices renew while nobody else waits)
and runs at full speed; a context without work costs nothing; handing the GPU to another
context costs ``context_switch_s`` of GPU time (charged to the context switched to).

Both lengths are ASSUMPTIONS (constructor arguments). NVIDIA documents the time-slice
*levels* (``nvidia-smi compute-policy --set-timeslice`` 0=DEFAULT, 1=SHORT, 2=MEDIUM,
3=LONG, since CUDA 11.1 / R455: NVIDIA's blog "Improving GPU Utilization in Kubernetes",
developer.nvidia.com/blog/improving-gpu-utilization-in-kubernetes; the same four in
NVIDIA/k8s-dra-driver-gpu ``api/nvidia.com/resource/v1beta1/sharing.go``) but not their
lengths; a third-party guide (Red Hat AI services, "GPU Timeslicing",
redhat-ai-services.github.io/etx-serving-at-scale/modules/module-02-timeslicing.html) gives
SHORT 2 ms, MEDIUM 10 ms, LONG 30 ms. The default slice, 2 ms, is the shortest of those;
the 0.1 ms switch (5% of a slice) is a round figure, not a measurement.

The GPU keeps its own timeline: the schedule is played forward in simulated time
(``_Timeline``) from when each step's work was ready (``ready_at``: the end of the
replica's previous step, or when its new requests arrived), and a waiting step sleeps
until its projected end, then commits the schedule up to there. So a busy event loop,
which wakes a replica late, does not stretch the simulated speed: a late replica catches
up (its tokens then reach the clients in a burst, and the truth log records when they
really were written). ``time_scale`` multiplies every simulated duration (0.1 runs ten
times faster), the slice and the switch included.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from dataclasses import dataclass, field

from benchmark.sim.truth import TruthLog

__all__ = ["GpuStats", "SimulatedGpu"]

_EPS = 1e-7  # seconds: above float noise on perf_counter's scale (~1e-9), far below any step


@dataclass(slots=True)
class GpuStats:
    """What one model (all its replicas) got from the GPU; seconds are scaled wall time."""

    steps: int = 0
    prefill_steps: int = 0
    busy_s: float = 0.0  # GPU time its steps had, switches to it included
    wait_s: float = 0.0  # time its steps were ready but other contexts had the GPU
    host_s: float = 0.0  # host time before its steps reached the GPU (the GPU served others meanwhile)
    switches: int = 0  # context switches to it

    @property
    def wait_fraction(self) -> float:
        """Share of its GPU time spent waiting for others: 0 alone, about 0.5 beside one busy peer."""
        total = self.busy_s + self.wait_s
        return self.wait_s / total if total > 0 else 0.0


@dataclass(slots=True)
class _Step:
    owner: str
    ready: float  # when its work was ready, on the GPU's timeline
    left: float  # scaled GPU seconds it still needs
    busy: float = 0.0  # scaled GPU seconds it has had, switches to it included
    switches: int = 0
    end: float | None = None


@dataclass(slots=True)
class _Timeline:
    """The GPU's schedule, final up to ``t``; ``queue`` holds the pending steps, round-robin order."""

    quantum: float
    switch: float
    t: float = 0.0
    on: str | None = None  # the context on the GPU
    switched_in: float = 0.0  # when it got the GPU: its slices end at switched_in + k * quantum
    queue: list[_Step] = field(default_factory=list)
    yielding: bool = False  # the context on the GPU has just run out of work
    held: _Step | None = None  # a step that has ended, its owner not yet told

    def copy(self) -> _Timeline:
        return dataclasses.replace(self, queue=[dataclasses.replace(s) for s in self.queue])

    def play(self, until: float, target: _Step | None = None) -> None:
        """Play the schedule forward to ``until``, or until ``target`` has ended.

        Without ``target`` (committing), it also stops when a step ends: nothing more is
        committed until that step's owner has been told (``held``) and has asked for its
        next step, which is ready at once, so a late-woken owner loses no GPU time.
        """
        while self.queue and self.t < until and (self.held is None if target is None else target.end is None):
            ready = [s for s in self.queue if s.ready <= self.t]
            if not ready:  # idle until the next step is ready
                self.t = min(until, min(s.ready for s in self.queue))
                continue
            step = next((s for s in ready if s.owner == self.on), None)
            if step is not None and len(ready) > 1 and (self.yielding or self._slice_end() - self.t <= _EPS):
                self.queue.remove(step)  # its slice is over, or its last step ended, and others wait
                self.queue.append(step)
                step = None
            self.yielding = False
            if step is None:
                step = next(s for s in self.queue if s.ready <= self.t)
                if self.on is not None:
                    self.t += self.switch
                    step.busy += self.switch
                    step.switches += 1
                self.on, self.switched_in = step.owner, self.t
            end = self.t + step.left
            if any(s is not step for s in ready):
                end = min(end, self._slice_end())  # preempted when its slice ends
            else:  # alone until another step is ready
                end = min(end, min((s.ready for s in self.queue if s is not step), default=math.inf))
            end = max(self.t, min(end, until))
            step.left -= end - self.t
            step.busy += end - self.t
            self.t = end
            if step.left <= _EPS:
                step.end = self.t
                self.queue.remove(step)
                self.yielding = True  # its process reads the step's tokens back before it launches the next
                if target is None:
                    self.held = step

    def _slice_end(self) -> float:
        """The end of the slice the context on the GPU is in (slices renew while it is alone)."""
        k = math.ceil((self.t - self.switched_in - _EPS) / self.quantum)
        return self.switched_in + max(k, 1) * self.quantum


class SimulatedGpu:
    """A GPU time-sliced between the ``SimulatedModel`` replicas that use it."""

    def __init__(
        self,
        *,
        name: str = "NVIDIA L40S (simulated)",
        timeslice_s: float = 0.002,
        context_switch_s: float = 0.0001,
        time_scale: float = 1.0,
        truth_log: TruthLog | str | None = None,
    ) -> None:
        for key, value, low in (("time_scale", time_scale, 0.0), ("timeslice_s", timeslice_s, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= 600:
                raise ValueError(f"{key}: got {value!r}; allowed: a number greater than 0 (at most 600)")
        if isinstance(context_switch_s, bool) or not isinstance(context_switch_s, (int, float)) \
                or not 0 <= context_switch_s <= 600:
            raise ValueError(f"context_switch_s: got {context_switch_s!r}; allowed: seconds from 0 to 600")
        self.name = name
        self.timeslice_s = timeslice_s
        self.context_switch_s = context_switch_s
        self.time_scale = time_scale
        self.truth = truth_log if isinstance(truth_log, TruthLog) else TruthLog(truth_log)
        self.stats: dict[str, GpuStats] = {}
        self._timeline = _Timeline(quantum=timeslice_s * time_scale, switch=context_switch_s * time_scale)

    async def run(self, owner: str, model: str, seconds: float, *, ready_at: float, host_s: float = 0.0,
                  prefill: bool = False) -> float:
        """Run one step needing ``seconds`` (unscaled) of GPU time for replica ``owner`` of ``model``.

        ``ready_at`` (perf_counter, not in the future) is when the process could start the
        step (the end of its previous step, or when new requests arrived); ``host_s``
        (unscaled) is the host time it spends before the step's work reaches the GPU, during
        which the GPU serves other contexts. Returns when the step ended on the GPU's timeline.
        """
        if isinstance(host_s, bool) or not isinstance(host_s, (int, float)) or not 0.0 <= host_s <= 600.0:
            raise ValueError(f"host_s: got {host_s!r}; allowed: seconds from 0 to 600")
        timeline = self._timeline
        asked = min(ready_at, time.perf_counter())
        host = host_s * self.time_scale
        step = _Step(owner, ready=max(asked + host, timeline.t), left=seconds * self.time_scale)
        timeline.queue.append(step)
        try:
            while (end := step.end) is None:
                projected = timeline.copy()
                projected.play(math.inf, target=projected.queue[timeline.queue.index(step)])
                until = projected.t  # its end if no other step comes before then
                await asyncio.sleep(max(0.0, until - time.perf_counter()))  # yields even when behind
                timeline.play(until)  # final: a step submitted from now on is ready after it
        finally:
            if step.end is None:  # cancelled: the replica went away
                timeline.queue.remove(step)
            if timeline.held is step:
                timeline.held = None
        stats = self.stats.setdefault(model, GpuStats())
        stats.steps += 1
        stats.prefill_steps += prefill
        stats.busy_s += step.busy
        stats.host_s += host
        stats.wait_s += max(0.0, end - asked - host - step.busy)
        stats.switches += step.switches
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
