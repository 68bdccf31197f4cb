"""What failed, in words, and the exit status of a run whose models did not answer well enough.

``failure_lines`` renders ``summary.error_samples`` (count and first distinct error texts per
model, scenario and error kind), with what the server said it serves where a name was refused;
``min_success_verdict`` turns ``summary.below_min_success`` into the lines and exit status a
command ends with. The console, ``report.md`` and ``load`` all use these, so they say the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from benchmark.analysis.summary import ErrorSample, below_min_success
from benchmark.errors import EXIT_LOW_SUCCESS

__all__ = ["DEFAULT_MIN_SUCCESS", "failure_lines", "min_success_verdict"]

DEFAULT_MIN_SUCCESS = 0.9


def failure_lines(samples: Sequence[ErrorSample], *, served: Mapping[str, Sequence[str] | None] | None = None,
                  sent: Mapping[str, str] | None = None) -> list[str]:
    """One line per (model, scenario, kind) with its count, then its distinct error texts.

    ``served``/``sent``: per model, the names its server lists at ``GET /v1/models`` and the
    name the client sent; with them an ``http_4xx`` failure says which names would be accepted.
    """
    lines: list[str] = []
    for s in samples:
        lines.append(f"{s.model} ({s.scenario}): {s.count} x {s.kind}")
        lines += [f"    {text}" for text in s.examples]
        names = (served or {}).get(s.model)
        if s.kind == "http_4xx" and names is not None and s.model in (sent or {}):
            listed = ", ".join(repr(n) for n in names) or "none"
            lines.append(f"    model name sent: {(sent or {})[s.model]!r}; the server lists at GET /v1/models: {listed}; "
                         f"pass --model-name {s.model}=NAME to send another")
    return lines


def min_success_verdict(summary: pd.DataFrame, min_success: float) -> tuple[int, list[str]]:
    """(exit status, lines): 0 and no lines when every (model, scenario) reached ``min_success``."""
    low = below_min_success(summary, min_success)
    if not low:
        return 0, []
    groups = ", ".join(f"{m} ({s}) {rate:.1%}" for m, s, rate in low)
    return EXIT_LOW_SUCCESS, [f"success rate below --min-success {min_success:.0%}: {groups}; "
                              f"exit status {EXIT_LOW_SUCCESS} (the errors are listed above)"]
