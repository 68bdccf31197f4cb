"""``python -m benchmark [COMMAND] ...``: one entry point, one module per command.

Each command module exposes ``configure(parser)`` and ``run(args) -> int``. Commands are
imported only when chosen, so ``serve-sim`` does not pay for pandas and Kubernetes.
A ``BenchmarkError`` becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from benchmark.errors import BenchmarkError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("benchmark.stack_run", "benchmark the models of a deployed stack (the default command)"),
    "load": ("benchmark.load_cli", "drive a load against explicit endpoints"),
    "report": ("benchmark.report_cli", "rebuild a report from a results directory's raw files"),
    "compare": ("benchmark.compare_cli", "compare two results directories"),
    "serve-sim": ("benchmark.sim.cli", "serve simulated TGI models on 127.0.0.1 (for tests and demos)"),
    "demo": ("benchmark.demo", "offline demo: simulated models alone and shared, with the guide's report"),
}
DEFAULT_COMMAND = "run"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, DEFAULT_COMMAND)
    parser = argparse.ArgumentParser(prog="python -m benchmark", description="Benchmark LLMs sharing one GPU.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    command_parser = argparse.ArgumentParser(prog=f"python -m benchmark {name}", description=COMMANDS[name][1])
    module.configure(command_parser)
    args = command_parser.parse_args(argv[1:])
    try:
        return int(module.run(args))
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
