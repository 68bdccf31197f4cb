"""The scenario schedule and the scaling it takes: each model alone, then all together, then the
cluster as it was (``--scenarios all``).

``all_scenarios`` lists the scenarios; ``Orchestrator.prepare`` scales the catalog's Deployments
so that exactly a scenario's models run (every other one at 0 replicas, its pods gone: a
terminating TGI pod still holds its GPU memory), starting them one by one in the stack's
start order and waiting until each is ready, because under time-slicing TGI sizes its KV
cache from the memory left by the processes started before it (and the stack's
start-order gate holds a pod until the enabled models before it are healthy, see
``Orchestrator.prepare``); ``run_scenarios`` runs the scenarios and
restores every touched Deployment's ORIGINAL replicas (read from the cluster before the
first change) in a ``finally``: on success, an exception, a failed wait, Ctrl-C (asyncio
cancels the run and the restore still completes, shielded from further cancellation) or a
``KeyboardInterrupt``. A second Ctrl-C during the restore is answered with a message, not
an abandoned restore.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from benchmark.errors import BenchmarkError
from workloads.contract import ModelContract

if TYPE_CHECKING:  # the kubernetes client only where a cluster is reached
    from benchmark.stack.kube import Kube

__all__ = ["Scenario", "Orchestrator", "all_scenarios", "run_scenarios"]

T = TypeVar("T")


@dataclass(frozen=True)
class Scenario:
    """Models that run together, under a label that goes into every record."""

    name: str  # "alone" | "shared"
    models: tuple[str, ...]  # model keys, in start order

    @property
    def title(self) -> str:
        return f"{self.name}: {' + '.join(self.models)}"


def all_scenarios(models: Sequence[ModelContract]) -> list[Scenario]:
    """Each model alone, then all of them together (``models`` must have at least two).

    The alone scenarios run in reverse start order, so the last one is the first model to
    start and the shared scenario only adds the others after it, in order.
    """
    ordered = sorted(models, key=lambda m: (m.start_order, m.key))
    if len(ordered) < 2:
        raise BenchmarkError(
            f"--scenarios all needs at least two models to compare alone and shared, got "
            f"{', '.join(m.key for m in ordered) or 'none'}; enable another model or drop --scenarios"
        )
    alone = [Scenario("alone", (m.key,)) for m in reversed(ordered)]
    return [*alone, Scenario("shared", tuple(m.key for m in ordered))]


class Orchestrator:
    """Scales the catalog's Deployments; remembers what it found so it can put it back.

    ``catalog`` is every model of the contract, not only the measured ones: "alone" means
    nothing else on the GPU, and the start-order gate may need models outside the schedule.
    """

    def __init__(
        self,
        kube: Kube,
        catalog: Sequence[ModelContract],
        *,
        ready_timeout: float,
        poll: float = 1.0,
        log: Callable[[str], None] = print,
    ) -> None:
        self.kube = kube
        self.models = sorted(catalog, key=lambda m: (m.start_order, m.key))
        self.by_key = {m.key: m for m in self.models}
        self.ready_timeout = ready_timeout
        self.poll = poll
        self.log = log
        self.original: dict[str, int] = {}  # deployment -> replicas found before any change
        self.touched: set[str] = set()

    def replicas_on(self, model: ModelContract) -> int:
        """Replicas a model runs with in a scenario: as found, else as declared, at least 1."""
        return max(1, self.original.get(model.deployment, 0), model.replicas)

    async def snapshot(self) -> dict[str, int]:
        """Read every Deployment's replicas before changing any (the restore target)."""
        for m in self.models:
            if m.deployment not in self.original:
                self.original[m.deployment] = await self.kube.replicas(m.deployment)
        return dict(self.original)

    async def _scale(self, model: ModelContract, replicas: int) -> None:
        self.touched.add(model.deployment)
        self.log(f"  scale {model.deployment} -> {replicas}")
        await self.kube.scale(model.deployment, replicas)

    async def _down(self, models: Sequence[ModelContract]) -> None:
        for m in models:
            await self._scale(m, 0)
        for m in models:
            await self.kube.wait_settled(m.deployment, 0, timeout=self.ready_timeout, poll=self.poll, log=self.log)

    async def _up(self, model: ModelContract) -> None:
        n = self.replicas_on(model)
        await self._scale(model, n)
        await self.kube.wait_settled(model.deployment, n, timeout=self.ready_timeout, poll=self.poll, log=self.log)

    async def prepare(self, scenario: Scenario) -> None:
        """Make exactly ``scenario.models`` run, each started after the models before it.

        Two rules of the stack shape this. Memory: TGI sizes its KV cache from what the
        processes started before it left, so a model never starts while a model later in
        the start order runs (those are stopped first, and restarted in order if wanted).
        The start-order gate: each pod's init container waits until every *enabled* model
        before it answers ``/health`` (workloads/pod.py, ``wait-for-earlier-models``),
        so those run, as helpers, while a later model starts, and are stopped after.
        """
        await self.snapshot()
        wanted = set(scenario.models)
        up = {m.key for m in self.models if await self.kube.replicas(m.deployment) > 0}
        start: list[ModelContract] = []  # wanted models to (re)start: after the first one down, all
        for m in self.models:
            if m.key in wanted and (m.key not in up or start):
                start.append(m)
        if start:
            last = start[-1].start_order
            helpers = [m for m in self.models if m.key not in wanted and m.enabled and m.start_order < last]
            first = min(m.start_order for m in [*start, *(h for h in helpers if h.key not in up)])
            later = [m for m in self.models if m.key in up and m.start_order > first]
            await self._down(later)
            up -= {m.key for m in later}
            for m in self.models:  # in start order, each ready before the next
                if m.key not in up and (m in start or m in helpers or m.key in wanted):
                    await self._up(m)
                    up.add(m.key)
        await self._down([m for m in self.models if m.key in up and m.key not in wanted])
        for m in self.models:
            if m.key in wanted:
                n = self.replicas_on(m)
                await self.kube.wait_settled(m.deployment, n, timeout=self.ready_timeout, poll=self.poll, log=self.log)

    async def restore(self) -> dict[str, int]:
        """Scale every Deployment that differs from what was found back to its original
        replicas; tries them all, and one line names any it could not restore.

        Order matters as in ``prepare``: a model that must start again while a model later
        in the start order runs would find that one's memory taken, so those later models
        are stopped first (and waited for) and started again after it. The ups are issued
        in start order without waiting: the stack's start-order gate sequences them.
        """
        failures: list[str] = []
        restored: dict[str, int] = {}
        steps: list[str] = []
        known = [m for m in self.models if m.deployment in self.original]  # what the snapshot read
        if not self.touched:
            return restored
        now: dict[str, int | None] = {}
        for m in known:
            try:
                now[m.key] = await self.kube.replicas(m.deployment)
            except BenchmarkError:
                now[m.key] = None  # unknown: set it anyway
        was = {m.key: self.original[m.deployment] for m in known}
        touched = [m for m in known if m.deployment in self.touched]
        starting = [m for m in touched if was[m.key] > 0 and now[m.key] == 0]
        first = min((m.start_order for m in starting), default=None)
        downs = [
            m for m in known
            if (m in touched and was[m.key] == 0 and now[m.key] != 0)
            or (first is not None and (now[m.key] or 0) > 0 and m.start_order > first)
        ]  # fmt: skip
        ups = [m for m in known if was[m.key] > 0 and ((m in touched and now[m.key] != was[m.key]) or m in downs)]

        async def scale(m: ModelContract, n: int) -> bool:
            try:
                await self.kube.scale(m.deployment, n)
                restored[m.deployment] = n
                steps.append(f"{m.deployment} -> {n}")
                return True
            except BenchmarkError as e:
                failures.append(f"{m.deployment} to {n} ({e})")
                return False

        stopped = [m for m in downs if await scale(m, 0)]
        if starting:
            for m in stopped:
                try:
                    await self.kube.wait_settled(m.deployment, 0, timeout=self.ready_timeout, poll=self.poll, log=self.log)
                except BenchmarkError as e:
                    failures.append(f"{m.deployment}: {e}")
        for m in ups:
            await scale(m, was[m.key])
        if restored:
            self.log(f"restored replicas ({', '.join(steps)}): " + ", ".join(f"{d}={n}" for d, n in restored.items()))
        elif not failures:
            self.log("replicas are as found: " + ", ".join(f"{d}={n}" for d, n in self.original.items()))
        if failures:
            raise BenchmarkError(
                "could not restore the original replicas of " + "; ".join(failures)
                + f"; restore them with `kubectl -n {self.kube.namespace} scale deployment NAME --replicas N`"
            )
        return restored


async def _finish(coro: Awaitable[T], log: Callable[[str], None]) -> T:
    """Await ``coro`` to the end even if this task is cancelled meanwhile (a Ctrl-C),
    re-raising the cancellation afterwards; a SIGINT meanwhile only prints a message."""
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    previous: Any = None
    try:
        previous = signal.getsignal(signal.SIGINT)
        loop.add_signal_handler(signal.SIGINT, log, "restoring the original replicas first, please wait")
    except (ValueError, RuntimeError, NotImplementedError):
        previous = None  # not the main thread: no handler of ours
    cancelled = False
    try:
        while True:
            try:
                result = await asyncio.shield(task)
                break
            except asyncio.CancelledError:
                if task.done():
                    raise
                cancelled = True
    finally:
        if previous is not None:
            loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, previous)
    if cancelled:
        raise asyncio.CancelledError
    return result


async def run_scenarios(
    orchestrator: Orchestrator,
    scenarios: Sequence[Scenario],
    run_scenario: Callable[[Scenario], Awaitable[None]],
) -> None:
    """Prepare and run each scenario; always restore the original replicas."""
    try:
        await orchestrator.snapshot()
        for scenario in scenarios:
            orchestrator.log(f"scenario {scenario.title}: scaling")
            await orchestrator.prepare(scenario)
            await run_scenario(scenario)
    except BaseException:
        try:
            await _finish(orchestrator.restore(), orchestrator.log)
        except BenchmarkError as e:  # say so, but let the first failure be the one reported
            orchestrator.log(f"error: {e}")
        raise
    await _finish(orchestrator.restore(), orchestrator.log)
