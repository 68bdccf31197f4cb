"""The flag types every command shares: where the stack's outputs come from (``--outputs`` or
``--stack``), ``KEY=VALUE`` flags (how to reach each model, ``--endpoint``; what to call it,
``--model-name``) and numbers in range.

One parser for every such flag of every command, so ``run``, ``load`` and ``demo`` accept and
refuse the same things with the same words.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmark.errors import BenchmarkError

__all__ = ["add_stack_source", "fraction", "parse_assignments", "parse_endpoints", "parse_model_names", "positive_float",
           "positive_int"]


def add_stack_source(parser: argparse.ArgumentParser) -> None:
    """``--outputs FILE`` or ``--stack NAME``: where the stack's outputs are read from."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--outputs", type=Path, metavar="FILE",
                        help="the stack outputs saved with `pulumi stack output --json --show-secrets > FILE`")
    source.add_argument("--stack", metavar="NAME", help="read the outputs of this Pulumi stack (default: the selected one)")


def parse_assignments(flag: str, values: Sequence[str] | None, *, form: str, known: Sequence[str] | None,
                      example: str, check: Callable[[str], bool] = bool, allowed: str = "",
                      known_as: str = "the stack's catalog") -> dict[str, str]:
    """``FLAG KEY=VALUE`` (repeatable) into ``{key: value}``. ``form`` names it (``KEY=URL``);
    ``known``: the model keys allowed, ``known_as`` what they are (None: check the form only,
    before the stack outputs are read); ``check`` tests a value, ``allowed`` says what passes."""
    out: dict[str, str] = {}
    for raw in values or []:
        key, sep, value = raw.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not check(value):
            raise BenchmarkError(f"{flag} {raw!r}: expected {form}{f' ({allowed})' if allowed else ''}, "
                                 f"e.g. {flag} {example}, where KEY is a model key")
        if known is not None and key not in known:
            raise BenchmarkError(f"{flag} {raw!r}: model {key!r} is not in {known_as}; known models: {', '.join(known)}")
        if key in out:
            raise BenchmarkError(f"{flag} {raw!r}: model {key!r} is given twice")
        out[key] = value
    return out


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://")) and not value.endswith("://")


def parse_endpoints(values: Sequence[str] | None, known: Sequence[str] | None = None) -> dict[str, str]:
    """``--endpoint KEY=URL`` flags into ``{key: base URL without a trailing slash}``."""
    urls = parse_assignments("--endpoint", values, form="KEY=URL", known=known, example="phi35=http://127.0.0.1:8080",
                             check=_is_url, allowed="an http:// or https:// URL")
    return {k: u.rstrip("/") for k, u in urls.items()}


def parse_model_names(values: Sequence[str] | None, known: Sequence[str] | None = None,
                      known_as: str = "the stack's catalog") -> dict[str, str]:
    """``--model-name KEY=NAME`` flags: the OpenAI ``model`` field to send to model KEY."""
    return parse_assignments("--model-name", values, form="KEY=NAME", known=known, known_as=known_as,
                             example="phi35=microsoft/Phi-3.5-mini-instruct")


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


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a number from 0 to 1")
    return value
