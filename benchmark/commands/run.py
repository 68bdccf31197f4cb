"""``python -m benchmark [run]``: benchmark the models of a deployed stack.

1. Read the stack's outputs (``--outputs FILE`` or ``pulumi stack output``, ``--stack``).
2. Choose the models: ``--models`` or the stack's active ones.
3. Reach each one: ``--endpoint KEY=URL``, else the benchmark's own port-forward to a pod
   of its Deployment, with the stack's kubeconfig; measure the path's ``/health`` round trip.
   With ``--api openai-chat`` the ``model`` field is the contract's ``model_id`` (or
   ``--model-name KEY=NAME``), and what the server lists at ``GET /v1/models`` is recorded.
   Without port-forwards or ``--plan`` the Kubernetes client is not needed (nor imported).
4. Run the guide's standard suite (5 prompts x ``--iterations``, sequential, per model):
   - plain run: once, labelled by what shares the GPU: one model running = ``alone``,
     several = ``shared``; a shared run imports the latest alone runs of the same models
     and settings under ``--results-dir`` as its baseline;
   - ``--plan all``: each model alone, then all together in the stack's start order,
     scaling the Deployments (``benchmark.stack.scaling``) and always restoring their replicas.
   ``/metrics`` is scraped before and after every scenario. In a scenario of several models,
   a model that has finished its suite keeps sending unrecorded requests (``warmup.jsonl``)
   until every model has finished (``run_load(keep_busy=True)``), so every recorded request
   ran while all of them were loaded; alone scenarios are unchanged.
5. Write ``results/<UTC timestamp>-<label>/``: ``requests.jsonl`` as records arrive (an
   interrupted run keeps them), ``run.json`` (``benchmark.stack.rundir``), and the report files.
   The ``--warmup`` requests run before the ``before`` scrape and go to ``warmup.jsonl``,
   so neither the client's figures nor the server's counts include them.
6. Exit 3 when a model's success rate in a scenario is below ``--min-success`` (0.9), after
   printing its errors (``benchmark.errors`` lists every exit status).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiohttp

from benchmark.analysis.promscrape import scrape
from benchmark.analysis.summary import summarize
from benchmark.commands.flags import parse_endpoints, parse_model_names, served_models
from benchmark.engine.patterns import STANDARD_PROMPTS, closed_loop, standard_suite
from benchmark.engine.protocols import ADAPTERS
from benchmark.engine.records import RunClock
from benchmark.engine.results import ResultsWriter, read_records
from benchmark.engine.runner import Target, run_load
from benchmark.errors import EXIT_STATUSES, BenchmarkError
from benchmark.report.failures import DEFAULT_MIN_SUCCESS, min_success_verdict
from benchmark.stack import rundir
from benchmark.stack.outputs import StackOutputs, load_outputs
from benchmark.stack.portforward import PortForward, health_rtt, wait_healthy
from benchmark.stack.scaling import Orchestrator, Scenario, plan_all, run_plan
from workloads.contract import ModelContract

if TYPE_CHECKING:  # the kubernetes client is imported only where a cluster is reached
    from benchmark.stack.kube import Kube

__all__ = ["RunOptions", "benchmark_stack", "configure", "execute", "options_from_args", "positive_float", "positive_int", "run"]


AccessPath = Literal["port-forward", "endpoint"]
WARMUP = "warmup.jsonl"  # the warmup and keep-busy filler requests, never in the figures, for the curious
T = TypeVar("T")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What to run, independent of where the stack's outputs came from."""

    plan: str | None = None  # None or "all"
    models: list[str] | None = None
    endpoints: list[str] = field(default_factory=list)  # raw --endpoint KEY=URL values
    model_names: list[str] = field(default_factory=list)  # raw --model-name KEY=NAME values
    iterations: int = 10
    max_new_tokens: int = 100
    api: str = "tgi-stream"
    warmup: int = 1
    results_dir: Path = Path("results")
    ready_timeout: float = 900.0
    poll: float = 1.0
    progress: bool = True
    min_success: float = DEFAULT_MIN_SUCCESS

    def model_name(self, model: ModelContract) -> str:
        """The OpenAI ``model`` field for ``model``: ``--model-name``, else the contract's model id."""
        return parse_model_names(self.model_names).get(model.key, model.model_id)

    def settings(self, stack: StackOutputs) -> dict[str, Any]:
        """What must be equal for two runs' figures to be compared (baselines): the load, the
        cluster and GPU, and what each catalog model is (id, token limits). Not what toggling
        models changes (enabled, replicas, the planner's fractions and KV budgets)."""
        return {
            "suite": "standard",
            "prompts": [p.id for p in STANDARD_PROMPTS],
            "iterations": self.iterations,
            "max_new_tokens": self.max_new_tokens,
            "api": self.api,
            "warmup": self.warmup,
            "cluster": stack.cluster_name,
            "gpu": dict(stack.gpu),
            "models": {
                m.key: {"model_id": m.model_id, "max_input_tokens": m.max_input_tokens,
                        "max_total_tokens": m.max_total_tokens, "max_batch_total_tokens": m.max_batch_total_tokens}
                for m in sorted(stack.models.values(), key=lambda m: m.key)
            },  # fmt: skip
        }


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--outputs", type=Path, metavar="FILE",
                        help="the stack outputs saved with `pulumi stack output --json --show-secrets > FILE`")
    source.add_argument("--stack", metavar="NAME", help="read the outputs of this Pulumi stack (default: the selected one)")
    parser.add_argument("--plan", choices=["all"],
                        help="all: each model alone, then all together; scales the Deployments and restores them")
    parser.add_argument("--models", type=lambda s: [k.strip() for k in s.split(",") if k.strip()], metavar="KEY[,KEY]",
                        help="benchmark these catalog models (default: the stack's active ones)")
    parser.add_argument("--endpoint", action="append", default=[], metavar="KEY=URL",
                        help="reach model KEY at URL instead of a port-forward (repeatable)")
    parser.add_argument("--model-name", action="append", default=[], metavar="KEY=NAME",
                        help="openai-chat: the 'model' field sent to model KEY (default: its model_id in the stack "
                             "outputs; servers pinned to one name refuse others) (repeatable)")
    parser.add_argument("--iterations", type=positive_int(), default=10,
                        help="repeats of the 5 standard prompts per model (default 10)")
    parser.add_argument("--max-new-tokens", type=positive_int(), default=100,
                        help="tokens generated per request (default 100)")
    parser.add_argument("--api", choices=sorted(ADAPTERS), default="tgi-stream", help="protocol (default tgi-stream)")
    parser.add_argument("--warmup", type=positive_int(allow_zero=True), default=1,
                        help="requests per model before each scenario, kept out of the figures (default 1)")
    parser.add_argument("--results-dir", type=Path, default=Path("results"), help="root of the results directories")
    parser.add_argument("--ready-timeout", type=positive_float(), default=900.0,
                        help="seconds to wait for a model to be ready (default 900: download + warmup)")
    parser.add_argument("--min-success", type=fraction, default=DEFAULT_MIN_SUCCESS, metavar="F",
                        help=f"exit 3 when a model's success rate in a scenario is below F (default {DEFAULT_MIN_SUCCESS:g})")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")  # fmt: skip
    parser.epilog = EXIT_STATUSES


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a number from 0 to 1")
    return value


def positive_int(*, allow_zero: bool = False) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < (0 if allow_zero else 1):
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: an integer >= {0 if allow_zero else 1}")
        return value

    return parse


def positive_float() -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a number > 0")
        return value

    return parse


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        plan=args.plan, models=args.models, endpoints=args.endpoint, model_names=args.model_name,
        iterations=args.iterations, max_new_tokens=args.max_new_tokens, api=args.api, warmup=args.warmup,
        results_dir=args.results_dir, ready_timeout=args.ready_timeout, progress=not args.no_progress,
        min_success=args.min_success,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        run_dir = execute(args)
    except asyncio.CancelledError:  # SIGTERM (SIGINT arrives as KeyboardInterrupt)
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    status, lines = min_success_verdict(summarize(read_records(run_dir / rundir.REQUESTS)), args.min_success)
    for line in lines:
        _log(line)
    return status


def execute(args: argparse.Namespace) -> Path:
    """The command without its exit status: parsed flags in, results directory out."""
    options = options_from_args(args)
    parse_endpoints(options.endpoints)  # a malformed flag fails before any I/O
    parse_model_names(options.model_names)
    stack = load_outputs(outputs_file=args.outputs, stack=args.stack)
    return asyncio.run(_until_terminated(benchmark_stack(stack, options)))


async def _until_terminated(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; a SIGTERM cancels it like a Ctrl-C does, so its ``finally`` blocks (the
    restore of the replicas) run before the process ends."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (ValueError, RuntimeError):  # not the main thread: signals are not ours to handle
        return await coro
    try:
        return await coro
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _run_dir(root: Path, label: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = root / f"{stamp}-{label}"
    n = 1
    while path.exists():  # two runs in one second
        n += 1
        path = root / f"{stamp}-{label}-{n}"
    return path


class _StackRun:
    """One invocation: the state shared by its scenarios."""

    def __init__(self, options: RunOptions, models: list[ModelContract], endpoints: dict[str, str],
                 kube: Kube | None, run_dir: Path, meta: rundir.RunMeta, log: Callable[[str], None]) -> None:  # fmt: skip
        self.options, self.models, self.endpoints = options, models, endpoints
        self.by_key = {m.key: m for m in models}
        self.kube, self.run_dir, self.meta, self.log = kube, run_dir, meta, log
        self.clock = RunClock()
        self.writer = ResultsWriter(run_dir / rundir.REQUESTS)
        self.warmup_writer = ResultsWriter(run_dir / WARMUP)  # kept apart: never in the figures
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        self.writer.close()
        self.warmup_writer.close()
        await self.session.close()

    async def _open(self, stack: contextlib.AsyncExitStack, model: ModelContract) -> tuple[str, AccessPath]:
        """(url, path) for one model: its override, or a port-forward to a ready pod."""
        if model.key in self.endpoints:
            return self.endpoints[model.key], "endpoint"
        assert self.kube is not None  # checked before any scenario
        state = await self.kube.state(model.deployment)
        if not state.ready_pods:
            raise BenchmarkError(
                f"model {model.key!r}: deployment {model.deployment!r} has no ready pod to port-forward to "
                f"({state.describe()}); is it scaled to 0? use --plan all, or scale it up"
            )
        pod = state.ready_pods[0]
        # one port-forward now, so a refusal (RBAC, a pod gone) is reported as such, not as a timeout
        (await asyncio.to_thread(self.kube.portforward_socket, pod, model.port)).close()
        url = await stack.enter_async_context(PortForward(self.kube, pod, model.port))
        return url, "port-forward"

    async def _info(self, url: str) -> dict[str, Any]:
        try:
            async with self.session.get(url + "/info") as r:
                data = await r.json(content_type=None) if r.status == 200 else {}
                return data if isinstance(data, dict) else {}
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return {}

    async def _scrape(
        self, scenario: Scenario, urls: dict[str, str], phase: Literal["before", "after"]
    ) -> dict[str, str]:
        saved = {}
        for key, url in urls.items():
            try:
                text = await scrape(self.session, url)
            except BenchmarkError as e:
                self.log(f"  warning: no server-side attribution for {key}: {e}")
                continue
            saved[key] = rundir.save_scrape(self.run_dir, scenario.name, key, phase, text)
        return saved

    async def scenario(self, scenario: Scenario) -> None:
        opts = self.options
        async with contextlib.AsyncExitStack() as stack:
            urls: dict[str, str] = {}
            for key in scenario.models:
                model = self.by_key[key]
                url, path = await self._open(stack, model)
                await wait_healthy(self.session, key, url, timeout=opts.ready_timeout, poll=min(opts.poll, 0.5))
                urls[key] = url
                if key not in self.meta.access:  # measured once, idle, before any load
                    rtt = await health_rtt(self.session, url)
                    access = rundir.AccessMeta(path=path, url=url, health_rtt_s=rtt)
                    if opts.api == "openai-chat":
                        access.model_name = opts.model_name(model)
                        access.served_models = await served_models(self.session, url)
                        if access.served_models is not None and access.model_name not in access.served_models:
                            self.log(f"  note: {key}: model name {access.model_name!r} is not among those GET /v1/models "
                                     f"lists ({', '.join(map(repr, access.served_models)) or 'none'}): TGI accepts any "
                                     f"name, a server pinned to one refuses it (--model-name {key}=NAME)")
                    self.meta.access[key] = access
                    info = await self._info(url)
                    if info.get("simulated") is True:
                        self.meta.simulated = True
                        scale = (info.get("simulation") or {}).get("time_scale")
                        self.meta.time_scale = float(scale) if isinstance(scale, int | float) else None
                    self.log(f"  {key}: {path} {url}, GET /health median {rtt * 1000:.2f} ms"
                             + (" [SIMULATED server]" if info.get("simulated") is True else ""))
            meta = rundir.ScenarioMeta(scenario=scenario.name, models=list(scenario.models), started=rundir.utc_now())
            self.meta.scenarios.append(meta)
            rundir.write_run_meta(self.run_dir, self.meta)
            names = {key: opts.model_name(self.by_key[key]) for key in scenario.models}
            if opts.warmup:  # before the "before" scrape, so the server's counts are the measured requests'
                warm = [Target(model=key, base_url=urls[key], api=opts.api, model_name=names[key],
                               load=closed_loop(1, max_requests=opts.warmup, max_new_tokens=opts.max_new_tokens))
                        for key in scenario.models]  # fmt: skip
                await run_load(warm, scenario=f"{scenario.name}-warmup", writer=self.warmup_writer, clock=self.clock,
                               progress=False)  # fmt: skip
            before = await self._scrape(scenario, urls, "before")
            targets = [
                Target(model=key, base_url=urls[key], api=opts.api, model_name=names[key],
                       load=standard_suite(iterations=opts.iterations, max_new_tokens=opts.max_new_tokens))
                for key in scenario.models
            ]  # fmt: skip
            keep_busy = len(targets) > 1  # shared: no recorded request runs alone
            self.log(f"scenario {scenario.title}: {len(targets)} x {opts.iterations * len(STANDARD_PROMPTS)} requests"
                     + ("; a model that finishes first keeps sending unrecorded requests until all are done"
                        if keep_busy else ""))
            report = await run_load(targets, scenario=scenario.name, writer=self.writer, clock=self.clock,
                                    progress=opts.progress, keep_busy=keep_busy,
                                    filler_writer=self.warmup_writer)  # fmt: skip
            after = await self._scrape(scenario, urls, "after")
            meta.finished = rundir.utc_now()
            meta.metrics = {k: {"before": before[k], "after": after[k]} for k in urls if k in before and k in after}
            meta.self_check = report.to_dict()
            rundir.write_run_meta(self.run_dir, self.meta)
            for line in report.lines():
                self.log(line)


async def _running_models(stack: StackOutputs, kube: Kube | None, log: Callable[[str], None]) -> set[str]:
    """Which catalog models run now: live replicas when the cluster answers, else the contract's."""
    if kube is not None:
        try:
            return {m.key for m in stack.models.values() if await kube.replicas(m.deployment) > 0}
        except BenchmarkError as e:
            log(f"note: cannot read the Deployments' replicas ({e}); assuming the stack's active models run")
    return {m.key for m in stack.active_models()}


async def benchmark_stack(
    stack: StackOutputs, options: RunOptions, *, log: Callable[[str], None] = _log
) -> Path:
    """Run the benchmark against ``stack``; returns the results directory."""
    models = stack.select(options.models)
    endpoints = parse_endpoints(options.endpoints, sorted(stack.models))
    parse_model_names(options.model_names, sorted(stack.models))
    planned = plan_all(models) if options.plan == "all" else None
    needs_kube = options.plan is not None or any(m.key not in endpoints for m in models)
    if needs_kube and stack.kubeconfig is None:
        raise BenchmarkError(
            f"{stack.source} has no kubeconfig output: pass --endpoint KEY=URL for every model "
            "(and no --plan), or save the outputs with --show-secrets"
        )
    # also without port-forwards, the cluster tells which models share the GPU (best effort)
    kube = _kube(stack, needed=needs_kube, log=log) if stack.kubeconfig is not None else None
    try:
        if planned is not None:
            scenarios = planned
            label = "plan"
        else:
            others = await _running_models(stack, kube, log) - {m.key for m in models}
            label = "alone" if len(models) == 1 and not others else "shared"
            scenarios = [Scenario(label, tuple(m.key for m in models))]
            if others:
                log(f"note: also running on the GPU, not measured: {', '.join(sorted(others))}")
        run_dir = _run_dir(options.results_dir, label)
        meta = rundir.RunMeta(
            label=label,
            settings=options.settings(stack),
            contract={**dict(stack.raw), "models": {m.key: stack.raw["models"][m.key] for m in models}},
        )
        rundir.write_run_meta(run_dir, meta)
        log(f"results: {run_dir}")
        state = _StackRun(options, models, endpoints, kube, run_dir, meta, log)
        try:
            if options.plan == "all":
                assert kube is not None
                orchestrator = Orchestrator(
                    kube, list(stack.models.values()), ready_timeout=options.ready_timeout, poll=options.poll, log=log
                )
                await run_plan(orchestrator, scenarios, state.scenario)
            else:
                await state.scenario(scenarios[0])
        except (KeyboardInterrupt, asyncio.CancelledError):
            log(f"interrupted: the requests recorded so far are in {run_dir / rundir.REQUESTS}")
            raise
        except BenchmarkError:
            log(f"stopped: the requests recorded so far are in {run_dir / rundir.REQUESTS}")
            raise
        finally:
            await state.close()
        if label == "shared":
            found = rundir.find_baselines(options.results_dir, [m.key for m in models], meta.settings)
            if found:
                rundir.import_baselines(run_dir, found)
                log("baselines (alone): " + ", ".join(f"{k} from {p.name}" for k, p in found.items()))
            missing = [m.key for m in models if m.key not in found]
            if missing:
                log(f"no alone run with the same settings for {', '.join(missing)} under {options.results_dir}: "
                    "no impact for them (run them alone first, or use --plan all)")
        _write_report(run_dir, log)
        return run_dir
    finally:
        if kube is not None:
            kube.close()


def _kube(stack: StackOutputs, *, needed: bool, log: Callable[[str], None]) -> Kube | None:
    """The cluster's API client; where it is only nice to have (every model has an --endpoint
    and there is no --plan), a client that cannot be imported or configured is a note."""
    try:
        from benchmark.stack.kube import Kube

        assert stack.kubeconfig is not None
        return Kube(stack.kubeconfig, stack.namespace)
    except (ImportError, BenchmarkError) as e:
        if needed:
            raise
        log(f"note: not reading the cluster ({type(e).__name__}: {e}); every model has an --endpoint")
        return None


def _write_report(run_dir: Path, log: Callable[[str], None]) -> None:
    """The report files (``benchmark.report.files``); the guide's blocks and impact lines to stdout."""
    from benchmark.report.files import write_report  # matplotlib and friends: only when there is a report

    written = write_report(run_dir)
    print(written.console, flush=True)
    log(f"report: {run_dir / 'report.md'} (rebuild it with `python -m benchmark report {run_dir}`)")
