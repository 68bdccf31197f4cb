"""``python -m benchmark load``: drive a load against explicit endpoints, no stack needed.

    python -m benchmark load --endpoint phi=http://127.0.0.1:8080 --endpoint r1=http://127.0.0.1:8081
    python -m benchmark load --endpoint m=http://host:8080 --concurrency 64 --duration 60
    python -m benchmark load --endpoint m=http://host:8000 --api openai-chat --model-name m=my/model \\
        --rate 5 --arrival poisson --requests 500

Every endpoint gets the same pattern and all run at once on one clock. Without a pattern flag
the guide's standard suite runs (5 prompts x ``--iterations``, sequential). Writes ``run.json``
first (``benchmark.stack.rundir``: the settings, the endpoints, whether their ``/info`` says
simulated, the scenario and, at the end, its self-check), ``requests.jsonl`` as requests
complete, then ``summary.csv`` and ``self_check.json`` into ``--out``, and prints the summary
and the client self-check; ``report`` and ``compare`` read such a directory like a ``run``'s,
also one whose load was interrupted. With ``--api openai-chat`` the ``model`` field is
``--model-name`` (``NAME`` for every endpoint, or ``KEY=NAME``), else the one model the
endpoint lists at ``GET /v1/models``, else ``tgi`` (TGI accepts any name). Exits 3 when an
endpoint's success rate is below ``--min-success``, after printing its errors.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd

from benchmark.analysis.summary import error_samples, summarize
from benchmark.commands.flags import fraction, parse_endpoints, parse_model_names, positive_float, positive_int
from benchmark.engine.patterns import LoadPattern, closed_loop, open_loop, standard_suite
from benchmark.engine.probes import read_info, served_models
from benchmark.engine.protocols import ADAPTERS
from benchmark.engine.results import ResultsWriter, read_records
from benchmark.engine.runner import Target, run_load_sync
from benchmark.errors import EXIT_STATUSES, BenchmarkError
from benchmark.report.failures import DEFAULT_MIN_SUCCESS, failure_lines, min_success_verdict
from benchmark.stack.rundir import REQUESTS as REQUESTS_FILE
from benchmark.stack.rundir import AccessMeta, RunDirectory, RunMeta, ScenarioMeta, utc_now

__all__ = ["configure", "run", "pattern_from_args", "format_summary"]
DEFAULT_MODEL_NAME = "tgi"  # what TGI's own examples send; TGI ignores the field


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", action="append", default=[], metavar="KEY=URL", required=True,
                        help="a model key and its base URL, e.g. phi=http://127.0.0.1:8080 (repeatable)")
    parser.add_argument("--api", choices=list(ADAPTERS), default="tgi-stream", help="protocol (default tgi-stream)")
    parser.add_argument("--model-name", action="append", default=[], metavar="[KEY=]NAME",
                        help="openai-chat: the 'model' field, for every endpoint or for KEY's (repeatable; default: the "
                             f"one model GET /v1/models lists, else {DEFAULT_MODEL_NAME!r})")
    parser.add_argument("--min-success", type=fraction, default=DEFAULT_MIN_SUCCESS, metavar="F",
                        help=f"exit 3 when an endpoint's success rate is below F (default {DEFAULT_MIN_SUCCESS:g})")
    pattern = parser.add_mutually_exclusive_group()
    pattern.add_argument("--concurrency", type=positive_int(), metavar="N", help="closed loop: N requests in flight")
    pattern.add_argument("--rate", type=positive_float(), metavar="R", help="open loop: R requests/s")
    parser.add_argument("--arrival", choices=["poisson", "constant"], default="poisson",
                        help="open loop arrivals (default poisson)")
    parser.add_argument("--requests", type=positive_int(), metavar="N", help="stop after N requests")
    parser.add_argument("--duration", type=positive_float(), metavar="S", help="start no request after S seconds")
    parser.add_argument("--iterations", type=positive_int(), default=10,
                        help="standard suite: passes over the 5 prompts (default 10)")
    parser.add_argument("--max-new-tokens", type=positive_int(), default=100, help="tokens per request (default 100)")
    parser.add_argument("--warmup", type=positive_int(allow_zero=True), default=0, metavar="N",
                        help="unrecorded requests per endpoint first")
    parser.add_argument("--seed", type=int, default=0, help="open-loop schedule seed (default 0)")
    parser.add_argument("--timeout", type=positive_float(), default=600.0, metavar="S",
                        help="per-request timeout (default 600)")
    parser.add_argument("--workers", type=positive_int(), default=1, metavar="N",
                        help="share the load over N client processes, for rates one event loop cannot drive (default 1)")
    parser.add_argument("--scenario", default="load", help="the label records carry (default load)")
    parser.add_argument("--out", type=Path, help="results directory (default results/<UTC time>-load)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line")
    parser.epilog = EXIT_STATUSES


def model_names(args: argparse.Namespace, endpoints: dict[str, str],
                served: dict[str, list[str] | None]) -> dict[str, str]:  # fmt: skip
    """The OpenAI ``model`` field per endpoint (see the module docstring), from the flags and what
    each endpoint lists at ``GET /v1/models`` (``served``; None: no such route); empty unless the
    api is openai-chat."""
    plain = [v for v in args.model_name if "=" not in v]
    if len(plain) > 1:
        raise BenchmarkError(f"--model-name: got {plain!r} without KEY=; allowed: one NAME for every endpoint, "
                             "or KEY=NAME per endpoint")
    names = parse_model_names([v for v in args.model_name if "=" in v], sorted(endpoints), "the --endpoint keys")
    if args.api != "openai-chat":
        return {}
    for key, listing in served.items():
        if key in names:
            continue
        if plain:
            names[key] = plain[0]
            continue
        one = listing is not None and len(listing) == 1
        names[key] = listing[0] if listing is not None and one else DEFAULT_MODEL_NAME
        where = ("the one model GET /v1/models lists" if one else "no GET /v1/models" if listing is None
                 else f"GET /v1/models lists {len(listing)}: pass --model-name {key}=NAME to choose")
        print(f"{key}: model name {names[key]!r} ({where})")
    return names


def _ask(endpoints: dict[str, str], openai: bool) -> tuple[dict[str, dict[str, Any]], dict[str, list[str] | None]]:
    """Each endpoint's ``GET /info`` ({} without one) and, for openai-chat, ``GET /v1/models``."""

    async def ask() -> tuple[list[dict[str, Any]], list[list[str] | None]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            infos = await asyncio.gather(*(read_info(session, url) for url in endpoints.values()))
            listed = await asyncio.gather(*(served_models(session, url) for url in endpoints.values())) if openai else []
            return list(infos), list(listed)

    infos, listed = asyncio.run(ask())
    return dict(zip(endpoints, infos)), (dict(zip(endpoints, listed)) if openai else {})


def pattern_from_args(args: argparse.Namespace) -> LoadPattern:
    if args.concurrency is None and args.rate is None:
        if args.requests is not None or args.duration is not None:
            raise BenchmarkError("--requests/--duration limit a --concurrency or --rate load; "
                                 "the standard suite's size is --iterations")
        return standard_suite(iterations=args.iterations, max_new_tokens=args.max_new_tokens)
    if args.requests is None and args.duration is None:
        raise BenchmarkError("--concurrency/--rate need a limit: --requests N, --duration S, or both")
    if args.concurrency is not None:
        return closed_loop(args.concurrency, max_requests=args.requests, duration=args.duration,
                           max_new_tokens=args.max_new_tokens)
    return open_loop(args.rate, arrival=args.arrival, max_requests=args.requests, duration=args.duration,
                     max_new_tokens=args.max_new_tokens, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    endpoints = parse_endpoints(args.endpoint)
    load = pattern_from_args(args)
    out: Path = args.out or Path("results") / (datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-load")
    if (out / REQUESTS_FILE).exists():
        raise BenchmarkError(f"--out {str(out)!r} already holds {REQUESTS_FILE}; choose a new directory")
    infos, served = _ask(endpoints, args.api == "openai-chat")
    names = model_names(args, endpoints, served)
    targets = [Target(model=k, base_url=u, load=load, api=args.api, warmup=args.warmup,
                      model_name=names.get(k, DEFAULT_MODEL_NAME), timeout=args.timeout) for k, u in endpoints.items()]
    simulated = [info for info in infos.values() if info.get("simulated") is True]
    scale = (simulated[0].get("simulation") or {}).get("time_scale") if simulated else None
    run_dir = RunDirectory(out, RunMeta(
        label="load", simulated=bool(simulated), time_scale=float(scale) if isinstance(scale, int | float) else None,
        settings={"pattern": load.describe(), "api": args.api, "warmup": args.warmup, "timeout": args.timeout,
                  "workers": args.workers},
        access={k: AccessMeta(path="endpoint", url=u, model_name=names.get(k), served_models=served.get(k))
                for k, u in endpoints.items()},
    ))  # fmt: skip
    started = ScenarioMeta(scenario=args.scenario, models=list(endpoints), started=utc_now())
    run_dir.add_scenario(started)
    print(f"load: {load.describe()}, api {args.api}, {len(targets)} endpoint(s) -> {out}")
    try:
        with ResultsWriter(out / REQUESTS_FILE) as writer:
            report = run_load_sync(targets, scenario=args.scenario, writer=writer, progress=not args.no_progress,
                                   workers=args.workers)
    except KeyboardInterrupt:
        print(f"interrupted: the requests recorded so far are in {out / REQUESTS_FILE}; "
              f"`python -m benchmark report {out}` rebuilds the summary and the report from them", file=sys.stderr)
        raise
    run_dir.replace_scenario(dataclasses.replace(started, finished=utc_now(), self_check=report.to_dict()))
    records = read_records(out / REQUESTS_FILE)  # rebuilt from the file, as a later reader would
    summary = summarize(records)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "self_check.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    print(format_summary(summary))
    print("\n".join(report.lines()))
    errors = error_samples(records)
    if errors:
        print("errors:\n" + "\n".join(failure_lines(errors, served=served, sent=names)))
    print(f"results: {out} (`python -m benchmark report {out}` writes the full report, with plots)")
    status, lines = min_success_verdict(summary, args.min_success)
    for line in lines:
        print(line, file=sys.stderr)
    return status


def format_summary(summary: pd.DataFrame) -> str:
    """A compact terminal view: the columns a reader looks at first, latencies in ms."""
    from benchmark.engine.records import ERROR_KINDS

    cols = ["model", "scenario", "count", "success_rate", "requests_per_min", "output_tokens_per_s"]
    ms = ["e2e_mean", "e2e_p99", "ttft_mean", "ttft_p99", "itl_mean", "tpot_mean"]
    view = summary[cols].copy()
    for c in ms:
        view[c + "_ms"] = summary[c] * 1e3
    counts = {k: summary[f"errors_{k}"].tolist() for k in ERROR_KINDS}
    view["errors"] = [", ".join(f"{k}={n[i]}" for k, n in counts.items() if n[i]) or "-" for i in range(len(view))]
    return view.round(2).to_string(index=False)
