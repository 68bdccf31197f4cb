"""The scenario schedule and the scaling it takes: each model alone, then all together, then the
cluster as it was (``--scenarios all``).

``all_scenarios`` lists the scenarios, ``in_rounds`` repeats them (``--repeats``) as rounds whose
order is rotated, or shuffled with ``--seed``; ``Orchestrator.prepare`` scales the catalog's Deployments
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

Before the first change the original replicas are also written on each Deployment, as the
annotation ``ORIGINAL_REPLICAS`` (removed once the Deployment is restored): a run killed
before its restore (SIGKILL, a lost machine) leaves them there, and the next run restores
those instead of taking the scaled-down replicas it finds for the originals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from benchmark.errors import BenchmarkError
from workloads.contract import ModelContract

if TYPE_CHECKING:  # the kubernetes client only where a cluster is reached
    from benchmark.stack.kube import Kube

__all__ = ["ORIGINAL_REPLICAS", "Scenario", "Orchestrator", "all_scenarios", "in_rounds", "run_scenarios"]

T = TypeVar("T")
ORIGINAL_REPLICAS = "gpu-sharing/benchmark-original-replicas"  # annotation: replicas before a run changed them


@dataclass(frozen=True)
class Scenario:
    """Models that run together, under a label that goes into every record, in one round of
    ``rounds`` (the records carry the round; the label stays the scenario's)."""

    name: str  # "alone" | "shared"
    models: tuple[str, ...]  # model keys, in start order
    round: int = 1
    rounds: int = 1

    @property
    def title(self) -> str:
        return f"{self.name}: {' + '.join(self.models)}" + (f" (round {self.round} of {self.rounds})" if self.rounds > 1 else "")


def in_rounds(scenarios: Sequence[Scenario], repeats: int, seed: int | None = None) -> list[Scenario]:
    """``scenarios`` run ``repeats`` times, as rounds of all of them, so that drift between runs
    hits every scenario alike. Without ``seed`` the order is rotated: round r starts r - 1
    places later (with as many rounds as scenarios, each scenario runs once in each place of a
    round); with ``seed`` each round is shuffled (``random.Random(seed)``, reproducible)."""
    if repeats < 1:
        raise ValueError(f"repeats: got {repeats!r}; allowed: an integer >= 1")
    rng = random.Random(seed)
    out: list[Scenario] = []
    for r in range(repeats):
        order = list(scenarios)
        if seed is None:
            order = order[r % len(order):] + order[: r % len(order)]
        else:
            rng.shuffle(order)
        out += [dataclasses.replace(s, round=r + 1, rounds=repeats) for s in order]
    return out


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
        note_every: float = 15.0,
    ) -> None:
        self.kube = kube
        self.note_every = note_every  # s between two lines saying what a long wait waits for
        self.models = sorted(catalog, key=lambda m: (m.start_order, m.key))
        self.by_key = {m.key: m for m in self.models}
        self.ready_timeout = ready_timeout
        self.poll = poll
        self.log = log
        self.original: dict[str, int] = {}  # deployment -> replicas found before any change
        self.touched: set[str] = set()
        self.recorded: set[str] = set()  # deployments that carry ORIGINAL_REPLICAS for this run

    def replicas_on(self, model: ModelContract) -> int:
        """Replicas a model runs with in a scenario: as found, else as declared, at least 1."""
        return max(1, self.original.get(model.deployment, 0), model.replicas)

    async def snapshot(self) -> dict[str, int]:
        """Read every Deployment's replicas before changing any (the restore target), and
        record them on it (``ORIGINAL_REPLICAS``). A Deployment that already carries the
        annotation was left so by a run that did not finish: what it recorded are the
        originals, and the Deployment is restored to them even if this run changes nothing."""
        found: dict[str, tuple[int, str | None]] = {}
        for m in self.models:  # read them all before writing anything
            if m.deployment not in self.original:
                found[m.deployment] = (await self.kube.replicas(m.deployment),
                                       await self.kube.annotation(m.deployment, ORIGINAL_REPLICAS))
        for deployment, (now, left) in found.items():
            if left is not None and left.isdigit():
                self.original[deployment] = int(left)
                self.recorded.add(deployment)
                if int(left) != now:
                    self.touched.add(deployment)
                self.log(f"  {deployment}: a run that did not finish recorded {left} original replica(s) on it "
                         f"(annotation {ORIGINAL_REPLICAS}); it has {now} now and gets {left} back at the end")
                continue
            self.original[deployment] = now
            try:
                await self.kube.annotate(deployment, ORIGINAL_REPLICAS, str(now))
                self.recorded.add(deployment)
            except BenchmarkError as e:  # e.g. a Role from before this annotation: go on without it
                self.log(f"  warning: cannot record the original replicas on deployment {deployment} ({e}); "
                         "if this run is killed before its restore, the next run cannot restore them "
                         "(`pulumi up` updates the benchmark's Role)")
        return dict(self.original)

    async def _scale(self, model: ModelContract, replicas: int) -> None:
        self.touched.add(model.deployment)
        self.log(f"  scale {model.deployment} -> {replicas}")
        await self.kube.scale(model.deployment, replicas)

    async def _wait(self, model: ModelContract, replicas: int) -> None:
        gate = [m.key for m in self.models if m.enabled and m.start_order < model.start_order]
        why = "its pods' start-order gate waits for " + ", ".join(gate) if replicas and gate else ""
        await self.kube.wait_settled(model.deployment, replicas, timeout=self.ready_timeout, poll=self.poll,
                                     log=self.log, why=why, every=self.note_every)  # fmt: skip

    async def _down(self, models: Sequence[ModelContract]) -> None:
        for m in models:
            await self._scale(m, 0)
        for m in models:
            await self._wait(m, 0)

    async def prepare(self, scenario: Scenario) -> None:
        """Make exactly ``scenario.models`` run, each started after the models before it.

        Two rules of the stack shape this. Memory: TGI sizes its KV cache from what the
        processes started before it left, so a model never starts while a model later in
        the start order runs (those are stopped first, and restarted in order if wanted).
        The start-order gate: each pod's init container waits until every *enabled* model
        before it answers ``/health`` (workloads/pod.py, ``wait-for-earlier-models``),
        so those run, as helpers, while a later model starts, and are stopped only once
        every wanted model is ready: a step never stops a model that a pod it waits for is
        gated on (a model found scaled up but not ready yet, e.g. just restored by an
        interrupted run, counts as starting).
        """
        await self.snapshot()
        wanted = set(scenario.models)
        found = {m.key: await self.kube.replicas(m.deployment) for m in self.models}
        up = {k for k, n in found.items() if n > 0}
        ready = {m.key for m in self.models if m.key in up and (await self.kube.state(m.deployment)).settled(found[m.key])}
        start: list[ModelContract] = []  # wanted models to (re)start: after the first one not ready, all
        for m in self.models:
            if m.key in wanted and (m.key not in ready or start):
                start.append(m)
        if start:
            last = start[-1].start_order
            helpers = [m for m in self.models if m.key not in wanted and m.enabled and m.start_order < last]
            first = min(m.start_order for m in [*start, *(h for h in helpers if h.key not in up)])
            later = [m for m in self.models if m.key in up and m.start_order > first]
            await self._down(later)
            up -= {m.key for m in later}
            for m in self.models:  # in start order, each ready before the next
                if m in start or (m.key not in up and (m in helpers or m.key in wanted)):
                    n = self.replicas_on(m)
                    if found[m.key] != n or m.key not in up:
                        await self._scale(m, n)
                    await self._wait(m, n)
                    up.add(m.key)
        for m in self.models:  # every wanted model ready before anything is stopped
            if m.key in wanted:
                await self._wait(m, self.replicas_on(m))
        await self._down([m for m in self.models if m.key in up and m.key not in wanted])

    async def restore(self) -> dict[str, int]:
        """Scale every Deployment that differs from what was found back to its original
        replicas, then remove the ``ORIGINAL_REPLICAS`` annotation of each one restored; tries
        them all, and one line names any it could not restore (its annotation stays, so the
        next run restores it).

        Order matters as in ``prepare``: a model that must start again while a model later
        in the start order runs would find that one's memory taken, so those later models
        are stopped first (and waited for) and started again after it. The ups are issued
        in start order without waiting: the stack's start-order gate sequences them.
        """
        failures: dict[str, str] = {}  # deployment -> what failed
        restored: dict[str, int] = {}
        steps: list[str] = []
        # what the snapshot read, if anything changed since
        known = [m for m in self.models if m.deployment in self.original] if self.touched else []
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
                failures[m.deployment] = f"{m.deployment} to {n} ({e})"
                return False

        stopped = [m for m in downs if await scale(m, 0)]
        if starting:
            for m in stopped:
                try:
                    await self.kube.wait_settled(m.deployment, 0, timeout=self.ready_timeout, poll=self.poll, log=self.log)
                except BenchmarkError as e:
                    failures[m.deployment] = f"{m.deployment}: {e}"
        for m in ups:
            await scale(m, was[m.key])
        if restored:
            self.log(f"restored replicas ({', '.join(steps)}): " + ", ".join(f"{d}={n}" for d, n in restored.items()))
        elif not failures and self.touched:
            self.log("replicas are as found: " + ", ".join(f"{d}={n}" for d, n in self.original.items()))
        for deployment in sorted(self.recorded - set(failures)):
            try:
                await self.kube.annotate(deployment, ORIGINAL_REPLICAS, None)
                self.recorded.discard(deployment)
            except BenchmarkError as e:
                self.log(f"  warning: deployment {deployment} is restored, but its annotation {ORIGINAL_REPLICAS} "
                         f"could not be removed ({e}); the next run restores it to {self.original[deployment]} again")
        if failures:
            raise BenchmarkError(
                "could not restore the original replicas of " + "; ".join(failures.values())
                + f"; restore them with `kubectl -n {self.kube.namespace} scale deployment NAME --replicas N` "
                f"(or run the benchmark again: they stay recorded on the Deployments as {ORIGINAL_REPLICAS})"
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
