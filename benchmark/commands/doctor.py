"""``python -m benchmark doctor``: is the stack healthy, and if not, why and what to do.

    python -m benchmark doctor                       # the selected Pulumi stack
    python -m benchmark doctor --outputs outputs.json --json

Reads the stack's outputs like ``run`` (``--outputs FILE`` or ``--stack NAME``), then checks in
the guide's order (``benchmark.stack.doctor``): the Kubernetes API and who we are, the GPU nodes,
the GPU Operator's pods, the device plugin's sharing config, and each enabled model (ready, else
why not; its KV-token budget against the memory plan's; its queue and batch). One line per check
as it is decided, ``ok``, ``FAIL`` (what was seen, and the fix) or ``skip`` (why not checked);
``--json`` prints one JSON document instead. Exits 4 when a check FAILed, 0 otherwise; 2 for bad
input (the outputs, an ``--endpoint``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from benchmark.commands.flags import add_stack_source, parse_endpoints
from benchmark.errors import EXIT_DOCTOR_FAILED
from benchmark.stack.doctor import Check, diagnose_stack
from benchmark.stack.outputs import load_outputs

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    add_stack_source(parser)
    parser.add_argument("--endpoint", action="append", default=[], metavar="KEY=URL",
                        help="read model KEY's /metrics and /info at URL instead of through a port-forward (repeatable)")
    parser.add_argument("--json", action="store_true",
                        help='print {"ok": ..., "checks": [{"check", "status", "seen", "fix"}, ...]} instead of lines')
    parser.epilog = (f"exit status: 0 every check ok or skipped; {EXIT_DOCTOR_FAILED} a check FAILed (each FAIL line "
                     "says what was seen and the fix); 2 bad input or setup (one line on stderr); 130 interrupted")  # fmt: skip


def _print(check: Check) -> None:
    print(check.line(), flush=True)


def run(args: argparse.Namespace) -> int:
    parse_endpoints(args.endpoint)  # the form, before any I/O
    stack = load_outputs(outputs_file=args.outputs, stack=args.stack)
    endpoints = parse_endpoints(args.endpoint, sorted(stack.models))
    checks = asyncio.run(diagnose_stack(stack, endpoints, report=(lambda check: None) if args.json else _print))
    failed = [c for c in checks if c.status == "FAIL"]
    if args.json:
        json.dump({"ok": not failed, "checks": [c.to_dict() for c in checks]}, sys.stdout, indent=2)
        print()
    else:
        print(f"{len(failed)} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks ok or skipped")
    return EXIT_DOCTOR_FAILED if failed else 0
