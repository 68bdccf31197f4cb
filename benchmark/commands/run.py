"""``python -m benchmark [run]``: benchmark the models of a deployed stack.

1. Read the stack's outputs (``--outputs FILE`` or ``pulumi stack output``, ``--stack``).
2. Choose the models: ``--models`` or the stack's active ones.
3. Run the scenarios (``benchmark.stack.session``: reach each model, through ``--endpoint
   KEY=URL`` or a port-forward of our own, describe it, warm it up, measure it):
   - a plain run: one scenario, labelled by what shares the GPU: one model running =
     ``alone``, several = ``shared``; a shared run imports the latest alone runs of the same
     models and settings under ``--results-dir`` as its baseline;
   - ``--scenarios all``: each model alone, then all together in the stack's start order,
     scaling the Deployments (``benchmark.stack.scaling``) and always restoring their replicas;
   - ``--repeats N``: the scenarios run N times, as rounds (with ``--scenarios all``: each model
     alone and all together in every round, their order rotated, or shuffled with ``--seed``),
     so that the report can show each round, the drift between rounds and an interval over
     them.
   Without port-forwards or ``--scenarios all`` the Kubernetes client is not needed (nor
   imported).
4. Write ``results/<UTC timestamp>-<label>/``: ``requests.jsonl`` as records arrive (an
   interrupted run keeps them), ``run.json`` (``benchmark.stack.rundir``), and the report
   files (``benchmark.report``); the guide's result blocks and impact lines to stdout.
5. Exit 3 when a model's success rate in a scenario is below ``--min-success`` (0.9), after
   printing its errors (``benchmark.errors`` lists every exit status).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from benchmark.analysis.summary import summarize
from benchmark.commands.flags import add_stack_source, fraction, parse_endpoints, parse_model_names, positive_float, positive_int
from benchmark.engine.protocols import ADAPTERS
from benchmark.engine.results import read_records
from benchmark.errors import EXIT_STATUSES, BenchmarkError
from benchmark.report.failures import DEFAULT_MIN_SUCCESS, min_success_verdict
from benchmark.stack import rundir
from benchmark.stack.outputs import StackOutputs, load_outputs
from benchmark.stack.scaling import Orchestrator, Scenario, all_scenarios, in_rounds, run_scenarios
from benchmark.stack.session import RunOptions, Session, comparable_settings, open_kube, running_models

__all__ = ["benchmark_stack", "configure", "execute", "options_from_args", "run"]

T = TypeVar("T")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def configure(parser: argparse.ArgumentParser) -> None:
    add_stack_source(parser)
    parser.add_argument("--scenarios", "--plan", dest="scenarios", choices=["all"],
                        help="all: each model alone, then all together; scales the Deployments and restores them "
                             "(--plan all is the older spelling)")
    parser.add_argument("--models", type=lambda s: [k.strip() for k in s.split(",") if k.strip()], metavar="KEY[,KEY]",
                        help="benchmark these catalog models (default: the stack's active ones)")
    parser.add_argument("--endpoint", action="append", default=[], metavar="KEY=URL",
                        help="reach model KEY at URL instead of a port-forward (repeatable)")
    parser.add_argument("--model-name", action="append", default=[], metavar="KEY=NAME",
                        help="openai-chat: the 'model' field sent to model KEY (default: its model_id in the stack "
                             "outputs; servers pinned to one name refuse others) (repeatable)")
    parser.add_argument("--iterations", type=positive_int(), default=10,
                        help="repeats of the 5 standard prompts per model and scenario (default 10)")
    parser.add_argument("--repeats", type=positive_int(), default=1, metavar="N",
                        help="run the scenarios N times, as rounds (with --scenarios all each round holds every "
                             "scenario): the report shows each round, the drift between rounds and an interval over "
                             "them that covers drift (default 1: a single pass, whose interval does not)")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="shuffle the order of the scenarios within each round with this seed (default: rotate "
                             "it, each round starting one scenario later)")
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


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The flags as options; a malformed ``--endpoint`` or ``--model-name`` fails here, before any I/O."""
    parse_endpoints(args.endpoint)
    return RunOptions(
        scenarios=args.scenarios, repeats=args.repeats, seed=args.seed, models=args.models, endpoints=args.endpoint,
        model_names=parse_model_names(args.model_name), iterations=args.iterations,
        max_new_tokens=args.max_new_tokens, api=args.api, warmup=args.warmup, results_dir=args.results_dir,
        ready_timeout=args.ready_timeout, progress=not args.no_progress,
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


async def benchmark_stack(stack: StackOutputs, options: RunOptions, *, log: Callable[[str], None] = _log) -> Path:
    """Run the benchmark against ``stack``; returns the results directory, report written."""
    models = stack.select(options.models)
    endpoints = parse_endpoints(options.endpoints, sorted(stack.models))
    for key, name in options.model_names.items():
        if key not in stack.models:
            raise BenchmarkError(f"--model-name '{key}={name}': model {key!r} is not in the stack's catalog; "
                                 f"known models: {', '.join(sorted(stack.models))}")
    schedule = in_rounds(all_scenarios(models), options.repeats, options.seed) if options.scenarios == "all" else None
    needs_kube = schedule is not None or any(m.key not in endpoints for m in models)
    if needs_kube and stack.kubeconfig is None:
        raise BenchmarkError(
            f"{stack.source} has no kubeconfig output: pass --endpoint KEY=URL for every model "
            "(and no --scenarios), or save the outputs with --show-secrets"
        )
    # also without port-forwards, the cluster tells which models share the GPU (best effort)
    kube = open_kube(stack, needed=needs_kube, log=log)
    try:
        if schedule is not None:
            label = "all"
        else:
            others = await running_models(stack, kube, log) - {m.key for m in models}
            label = "alone" if len(models) == 1 and not others else "shared"
            schedule = in_rounds([Scenario(label, tuple(m.key for m in models))], options.repeats, options.seed)
            if others:
                log(f"note: also running on the GPU, not measured: {', '.join(sorted(others))}")
        run_dir = rundir.RunDirectory.create(options.results_dir, rundir.RunMeta(
            label=label, repeats=options.repeats, seed=options.seed, settings=comparable_settings(options, stack),
            contract={**dict(stack.raw), "models": {m.key: stack.raw["models"][m.key] for m in models}},
        ))  # fmt: skip
        log(f"results: {run_dir.path}")
        session = Session(options, models, endpoints, kube, run_dir, log)
        try:
            if options.scenarios == "all":
                assert kube is not None
                orchestrator = Orchestrator(
                    kube, list(stack.models.values()), ready_timeout=options.ready_timeout, poll=options.poll, log=log
                )
                await run_scenarios(orchestrator, schedule, session.scenario)
            else:
                for scenario in schedule:
                    await session.scenario(scenario)
        except (KeyboardInterrupt, asyncio.CancelledError):
            log(f"interrupted: the requests recorded so far are in {run_dir.path / rundir.REQUESTS}")
            raise
        except BenchmarkError:
            log(f"stopped: the requests recorded so far are in {run_dir.path / rundir.REQUESTS}")
            raise
        finally:
            await session.close()
        if label == "shared":
            _adopt_baselines(run_dir, [m.key for m in models], options.results_dir, log)
        _write_report(run_dir.path, log)
        return run_dir.path
    finally:
        if kube is not None:
            kube.close()


def _adopt_baselines(run_dir: rundir.RunDirectory, models: list[str], root: Path, log: Callable[[str], None]) -> None:
    """A shared run's baseline: the latest alone runs of its models with the same settings."""
    found = rundir.find_baselines(root, models, run_dir.meta.settings)
    if found:
        run_dir.update(**rundir.import_baselines(run_dir.path, found))
        log("baselines (alone): " + ", ".join(f"{k} from {p.name}" for k, p in found.items()))
    missing = [m for m in models if m not in found]
    if missing:
        log(f"no alone run with the same settings for {', '.join(missing)} under {root}: "
            "no impact for them (run them alone first, or use --scenarios all)")


def _write_report(run_dir: Path, log: Callable[[str], None]) -> None:
    """The report files; the guide's blocks and impact lines to stdout."""
    from benchmark.report.files import write_report  # matplotlib: only when there is a report

    written = write_report(run_dir)
    print(written.console, flush=True)
    log(f"report: {run_dir / 'report.md'} (rebuild it with `python -m benchmark report {run_dir}`)")
