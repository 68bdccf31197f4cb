"""The orchestrated plan: each model alone, then all together, then the cluster as it was.

``plan_all`` lists the scenarios; ``Orchestrator.prepare`` scales the Deployments so that
exactly a scenario's models run (the others at 0 replicas, their pods gone: a terminating
TGI pod still holds its GPU memory), starting them one by one in the stack's start order
and waiting until each is ready, because under time-slicing TGI sizes its KV cache from
the memory left by the processes started before it; ``run_plan`` runs the scenarios and
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
from typing import Any, TypeVar

from benchmark.errors import BenchmarkError
from benchmark.kube import Kube
from benchmark.stack_outputs import ModelEntry

__all__ = ["Scenario", "Orchestrator", "plan_all", "run_plan"]

T = TypeVar("T")


@dataclass(frozen=True)
class Scenario:
    """Models that run together, under a label that goes into every record."""

    name: str  # "alone" | "shared"
    models: tuple[str, ...]  # model keys, in start order

    @property
    def title(self) -> str:
        return f"{self.name}: {' + '.join(self.models)}"


def plan_all(models: Sequence[ModelEntry]) -> list[Scenario]:
    """Each model alone, then all of them together (``models`` must have at least two).

    The alone scenarios run in reverse start order, so the last one is the first model to
    start and the shared scenario only adds the others after it, in order.
    """
    ordered = sorted(models, key=lambda m: (m.start_order, m.key))
    if len(ordered) < 2:
        raise BenchmarkError(
            f"--plan all needs at least two models to compare alone and shared, got "
            f"{', '.join(m.key for m in ordered) or 'none'}; enable another model or drop --plan"
        )
    alone = [Scenario("alone", (m.key,)) for m in reversed(ordered)]
    return [*alone, Scenario("shared", tuple(m.key for m in ordered))]


class Orchestrator:
    """Scales the plan's Deployments; remembers what it found so it can put it back."""

    def __init__(
        self,
        kube: Kube,
        models: Sequence[ModelEntry],
        *,
        ready_timeout: float,
        poll: float = 1.0,
        log: Callable[[str], None] = print,
    ) -> None:
        self.kube = kube
        self.models = sorted(models, key=lambda m: (m.start_order, m.key))
        self.by_key = {m.key: m for m in self.models}
        self.ready_timeout = ready_timeout
        self.poll = poll
        self.log = log
        self.original: dict[str, int] = {}  # deployment -> replicas found before any change
        self.touched: set[str] = set()

    def replicas_on(self, model: ModelEntry) -> int:
        """Replicas a model runs with in a scenario: as found, else as declared, at least 1."""
        return max(1, self.original.get(model.deployment, 0), model.replicas)

    async def snapshot(self) -> dict[str, int]:
        """Read every Deployment's replicas before changing any (the restore target)."""
        for m in self.models:
            if m.deployment not in self.original:
                self.original[m.deployment] = await self.kube.replicas(m.deployment)
        return dict(self.original)

    async def _scale(self, model: ModelEntry, replicas: int) -> None:
        self.touched.add(model.deployment)
        self.log(f"  scale {model.deployment} -> {replicas}")
        await self.kube.scale(model.deployment, replicas)

    async def prepare(self, scenario: Scenario) -> None:
        """Make exactly ``scenario.models`` run, started in start order, each ready before the next."""
        await self.snapshot()
        wanted = [self.by_key[k] for k in scenario.models]
        current = {m.key: await self.kube.replicas(m.deployment) for m in self.models}
        # A wanted model already up after a wanted model that is down would have started
        # out of order: it restarts after its predecessors.
        restart: set[str] = set()
        gap = False
        for m in self.models:
            if m in wanted:
                if current[m.key] == 0:
                    gap = True
                elif gap:
                    restart.add(m.key)
        down = [m for m in self.models if current[m.key] > 0 and (m not in wanted or m.key in restart)]
        for m in down:
            await self._scale(m, 0)
        for m in down:
            await self.kube.wait_settled(m.deployment, 0, timeout=self.ready_timeout, poll=self.poll)
        for m in wanted:  # in start order
            n = self.replicas_on(m)
            if current[m.key] != n or m.key in restart:
                await self._scale(m, n)
            await self.kube.wait_settled(m.deployment, n, timeout=self.ready_timeout, poll=self.poll)

    async def restore(self) -> dict[str, int]:
        """Scale every touched Deployment back to its original replicas: downs first, then
        ups in start order. Tries them all; one line names any it could not restore."""
        failures = []
        restored = {}
        ups = [m for m in self.models if m.deployment in self.touched]
        downs = []
        for m in ups:
            try:
                now = await self.kube.replicas(m.deployment)
            except BenchmarkError:
                now = -1  # unknown: set it anyway
            if now > self.original[m.deployment]:
                downs.append(m)
        for m in [*downs, *(m for m in ups if m not in downs)]:
            n = self.original[m.deployment]
            try:
                await self.kube.scale(m.deployment, n)
                restored[m.deployment] = n
            except BenchmarkError as e:
                failures.append(f"{m.deployment} to {n} ({e})")
        if restored:
            self.log("restored replicas: " + ", ".join(f"{d}={n}" for d, n in restored.items()))
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


async def run_plan(
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
