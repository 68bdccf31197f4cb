"""``python -m benchmark [COMMAND] ...``: one argparse tree over the commands in ``benchmark.commands``.

Each command module exposes ``configure(parser)`` and ``run(args) -> int`` (its exit status).
A ``BenchmarkError`` becomes one line on stderr and exit status 2, never a traceback; the
other statuses are listed in ``benchmark.errors``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from benchmark.commands import compare, demo, doctor, load, report, run, serve_sim
from benchmark.errors import EXIT_STATUSES, BenchmarkError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[ModuleType, str]] = {
    "run": (run, "benchmark the models of a deployed stack (the default command)"),
    "load": (load, "drive a load against explicit endpoints"),
    "report": (report, "rebuild a report from a results directory's raw files"),
    "compare": (compare, "compare two results directories"),
    "doctor": (doctor, "check a deployed stack in the guide's troubleshooting order: nodes, GPU Operator, sharing, models"),
    "serve-sim": (serve_sim, "serve simulated TGI models on 127.0.0.1 (for tests and demos)"),
    "demo": (demo, "offline demo: simulated models alone and shared, with the guide's report"),
}
DEFAULT_COMMAND = "run"


def parser() -> argparse.ArgumentParser:
    """The whole command line: one subparser per command, each configured by its module."""
    top = argparse.ArgumentParser(prog="python -m benchmark", description="Benchmark LLMs sharing one GPU.",
                                  epilog=f"Without a COMMAND, {DEFAULT_COMMAND!r} runs. {EXIT_STATUSES}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(command)
        command.set_defaults(handler=module.run)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, DEFAULT_COMMAND)
    args = parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args))
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
