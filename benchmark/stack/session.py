"""One benchmark session against a deployed stack: the state its scenarios share, and the steps
of one scenario.

A scenario (``benchmark.stack.scaling.Scenario``: models that run together under one label):

1. ``reach``: each model's URL, its ``--endpoint`` or a port-forward of our own to a ready pod
   of its Deployment, and ``GET /health`` until it answers;
2. ``describe`` (once per model, idle, before any load): the access path's round trip (median
   ``GET /health``), ``GET /info`` (a simulator says so, with its time scale), with
   ``--api openai-chat`` the model name sent and what ``GET /v1/models`` lists;
3. ``warm_up``: ``--warmup`` requests per model, kept apart in ``warmup.jsonl``, before the
   ``/metrics`` scrape so that neither the client's figures nor the server's counts hold them;
4. ``measure``: scrape ``/metrics``, run the standard suite on every model at once (in a shared
   scenario a model that finishes first keeps sending unrecorded requests, into
   ``warmup.jsonl``, until all are done, so every recorded request ran under sharing), scrape
   again.

Each step returns what it found; the session records it in the ``RunDirectory``, the one writer
of ``run.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

from benchmark.analysis.promscrape import scrape
from benchmark.engine.patterns import STANDARD_PROMPTS, closed_loop, standard_suite
from benchmark.engine.probes import health_rtt, read_info, served_models, wait_healthy
from benchmark.engine.records import RunClock
from benchmark.engine.results import ResultsWriter
from benchmark.engine.runner import Target, run_load
from benchmark.engine.selfcheck import SelfCheck
from benchmark.errors import BenchmarkError
from benchmark.stack import rundir
from benchmark.stack.outputs import StackOutputs
from benchmark.stack.portforward import open_port_forward
from benchmark.stack.scaling import Scenario
from workloads.contract import ModelContract

if TYPE_CHECKING:  # the kubernetes client is imported only where a cluster is reached
    from benchmark.stack.kube import Kube

__all__ = ["RunOptions", "Session", "comparable_settings", "open_kube", "running_models"]

AccessPath = Literal["port-forward", "endpoint"]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What to run, independent of where the stack's outputs came from."""

    scenarios: str | None = None  # None (one scenario: what runs now) or "all"
    repeats: int = 1  # rounds of the scenarios (interleaved with "all")
    seed: int | None = None  # the order within each round shuffled with it; None: rotated
    models: list[str] | None = None
    endpoints: list[str] = field(default_factory=list)  # raw --endpoint KEY=URL values
    model_names: Mapping[str, str] = field(default_factory=dict)  # --model-name: key -> the OpenAI "model" field
    iterations: int = 10
    max_new_tokens: int = 100
    api: str = "tgi-stream"
    warmup: int = 1
    results_dir: Path = Path("results")
    ready_timeout: float = 900.0
    poll: float = 1.0
    progress: bool = True

    def model_name(self, model: ModelContract) -> str:
        """The OpenAI ``model`` field for ``model``: ``--model-name``, else the contract's model id."""
        return self.model_names.get(model.key, model.model_id)


def comparable_settings(options: RunOptions, stack: StackOutputs) -> dict[str, Any]:
    """What must be equal for two runs' figures to be compared (a shared run takes as its
    baseline the latest alone runs with equal settings): the load, the cluster and GPU, and what
    each catalog model is (id, token limits). Not what toggling models changes (enabled,
    replicas, the planner's fractions and KV budgets), nor how the models were reached."""
    return {
        "suite": "standard",
        "prompts": [p.id for p in STANDARD_PROMPTS],
        "iterations": options.iterations,
        "max_new_tokens": options.max_new_tokens,
        "api": options.api,
        "warmup": options.warmup,
        "cluster": stack.cluster_name,
        "gpu": dict(stack.gpu),
        "models": {
            m.key: {"model_id": m.model_id, "max_input_tokens": m.max_input_tokens,
                    "max_total_tokens": m.max_total_tokens, "max_batch_total_tokens": m.max_batch_total_tokens}
            for m in sorted(stack.models.values(), key=lambda m: m.key)
        },  # fmt: skip
    }


def open_kube(stack: StackOutputs, *, needed: bool, log: Callable[[str], None]) -> Kube | None:
    """The cluster's API client, or None without a kubeconfig. Where it is only nice to have
    (every model has an --endpoint and one scenario runs), a client that cannot be imported or
    configured is a note, so such a run needs no Kubernetes client at all."""
    if stack.kubeconfig is None:
        return None
    try:
        from benchmark.stack.kube import Kube

        return Kube(stack.kubeconfig, stack.namespace)
    except (ImportError, BenchmarkError) as e:
        if needed:
            raise
        log(f"note: not reading the cluster ({type(e).__name__}: {e}); every model has an --endpoint")
        return None


async def running_models(stack: StackOutputs, kube: Kube | None, log: Callable[[str], None]) -> set[str]:
    """Which catalog models run now: live replicas when the cluster answers, else the contract's."""
    if kube is not None:
        try:
            return {m.key for m in stack.models.values() if await kube.replicas(m.deployment) > 0}
        except BenchmarkError as e:
            log(f"note: cannot read the Deployments' replicas ({e}); assuming the stack's active models run")
    return {m.key for m in stack.active_models()}


class Session:
    """One invocation's shared state: the options, the models, how to reach them, one clock,
    one HTTP session and the writers of the results directory."""

    def __init__(self, options: RunOptions, models: Sequence[ModelContract], endpoints: Mapping[str, str],
                 kube: Kube | None, run_dir: rundir.RunDirectory, log: Callable[[str], None]) -> None:  # fmt: skip
        self.options, self.endpoints, self.kube, self.run_dir, self.log = options, endpoints, kube, run_dir, log
        self.by_key = {m.key: m for m in models}
        self.clock = RunClock()
        self.writer = ResultsWriter(run_dir.path / rundir.REQUESTS)
        self.warmup_writer = ResultsWriter(run_dir.path / rundir.WARMUP)  # kept apart: never in the figures
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        self.writer.close()
        self.warmup_writer.close()
        await self.http.close()

    async def scenario(self, scenario: Scenario) -> None:
        """Reach, describe, warm up and measure ``scenario``'s models (see the module docstring)."""
        async with contextlib.AsyncExitStack() as tunnels:
            urls = await self.reach(scenario, tunnels)
            for key, (url, path) in urls.items():
                if key not in self.run_dir.meta.access:  # measured once, idle, before any load
                    await self.describe(key, url, path)
            started = rundir.ScenarioMeta(scenario=scenario.name, models=list(scenario.models), round=scenario.round,
                                          started=rundir.utc_now())  # fmt: skip
            self.run_dir.add_scenario(started)
            plain = {key: url for key, (url, _) in urls.items()}
            await self.warm_up(scenario, plain)
            metrics, check = await self.measure(scenario, plain)
            self.run_dir.replace_scenario(dataclasses.replace(started, finished=rundir.utc_now(), metrics=metrics,
                                                              self_check=check.to_dict()))  # fmt: skip
            for line in check.lines():
                self.log(line)
        # The engine collects and freezes what exists before each clock starts; this frees what
        # the scenario left (its records, its tunnels) before the next one scales and warms up.
        gc.collect()

    async def reach(self, scenario: Scenario, tunnels: contextlib.AsyncExitStack) -> dict[str, tuple[str, AccessPath]]:
        """Each model's (URL, access path), healthy; port-forwards are closed with ``tunnels``."""
        out: dict[str, tuple[str, AccessPath]] = {}
        for key in scenario.models:
            url, path = await self._open(tunnels, self.by_key[key])
            opts = self.options
            await wait_healthy(self.http, key, url, timeout=opts.ready_timeout, poll=min(opts.poll, 0.5), log=self.log)
            out[key] = (url, path)
        return out

    async def _open(self, tunnels: contextlib.AsyncExitStack, model: ModelContract) -> tuple[str, AccessPath]:
        if model.key in self.endpoints:
            return self.endpoints[model.key], "endpoint"
        assert self.kube is not None  # checked before any scenario
        return await open_port_forward(self.kube, model, tunnels), "port-forward"

    async def describe(self, key: str, url: str, path: AccessPath) -> None:
        """Record how ``key`` is reached and what it is (run.json's ``access``, ``simulated``)."""
        rtt = await health_rtt(self.http, url)
        name = served = None
        if self.options.api == "openai-chat":
            name = self.options.model_name(self.by_key[key])
            served = await served_models(self.http, url)
            if served is not None and name not in served:
                self.log(f"  note: {key}: model name {name!r} is not among those GET /v1/models lists "
                         f"({', '.join(map(repr, served)) or 'none'}): TGI accepts any name, a server pinned to "
                         f"one refuses it (--model-name {key}=NAME)")
        meta = self.run_dir.meta
        changes: dict[str, Any] = {"access": {**meta.access, key: rundir.AccessMeta(
            path=path, url=url, health_rtt_s=rtt, model_name=name, served_models=served)}}  # fmt: skip
        info = await read_info(self.http, url)
        simulated = info.get("simulated") is True
        if simulated:
            scale = (info.get("simulation") or {}).get("time_scale")
            changes |= {"simulated": True, "time_scale": float(scale) if isinstance(scale, int | float) else None}
        self.run_dir.update(**changes)
        self.log(f"  {key}: {path} {url}, GET /health median {rtt * 1000:.2f} ms" + (" [SIMULATED server]" if simulated else ""))

    def _targets(self, scenario: Scenario, urls: Mapping[str, str], *, warmup: bool) -> list[Target]:
        opts = self.options
        load = (closed_loop(1, max_requests=opts.warmup, max_new_tokens=opts.max_new_tokens) if warmup
                else standard_suite(iterations=opts.iterations, max_new_tokens=opts.max_new_tokens))
        return [Target(model=key, base_url=urls[key], api=opts.api, model_name=opts.model_name(self.by_key[key]),
                       load=load) for key in scenario.models]  # fmt: skip

    async def warm_up(self, scenario: Scenario, urls: Mapping[str, str]) -> None:
        if self.options.warmup:
            await run_load(self._targets(scenario, urls, warmup=True), scenario=f"{scenario.name}-warmup",
                           writer=self.warmup_writer, clock=self.clock, progress=False, round=scenario.round)  # fmt: skip

    async def measure(self, scenario: Scenario, urls: Mapping[str, str]) -> tuple[dict[str, dict[str, str]], SelfCheck]:
        """Scrape, run the standard suite, scrape: the scrapes' files by model and phase, and the
        client self-check."""
        before = await self._scrape(scenario, urls, "before")
        targets = self._targets(scenario, urls, warmup=False)
        keep_busy = len(targets) > 1  # shared: no recorded request runs alone
        self.log(f"scenario {scenario.title}: {len(targets)} x {self.options.iterations * len(STANDARD_PROMPTS)} "
                 "requests" + ("; a model that finishes first keeps sending unrecorded requests until all are done"
                               if keep_busy else ""))
        check = await run_load(targets, scenario=scenario.name, writer=self.writer, clock=self.clock,
                               progress=self.options.progress, keep_busy=keep_busy,
                               filler_writer=self.warmup_writer, round=scenario.round)  # fmt: skip
        after = await self._scrape(scenario, urls, "after")
        return {k: {"before": before[k], "after": after[k]} for k in urls if k in before and k in after}, check

    async def _scrape(self, scenario: Scenario, urls: Mapping[str, str], phase: Literal["before", "after"]) -> dict[str, str]:
        saved = {}
        for key, url in urls.items():
            try:
                text = await scrape(self.http, url)
            except BenchmarkError as e:
                self.log(f"  warning: no server-side attribution for {key}: {e}")
                continue
            saved[key] = rundir.save_scrape(self.run_dir.path, scenario.name, key, phase, text, round=scenario.round)
        return saved
