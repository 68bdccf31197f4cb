"""The console's version of a report: the SIMULATED banner, the guide's result blocks, the
token-count notes, the errors and the impact lines."""

from __future__ import annotations

from benchmark.analysis.comparison import BASELINE_SCENARIO, Analysis
from benchmark.report.markdown import failure_report, tokens_note
from benchmark.report.text import impact_lines, result_blocks, simulated_banner

__all__ = ["console"]


def console(a: Analysis) -> str:
    lines = [f"*** {simulated_banner(a.run.meta).replace('**', '')} ***", ""] if a.run.meta.simulated else []
    lines += result_blocks(a.summary)
    lines += [line for line in tokens_note(a.summary) if line]
    if a.errors:
        lines += ["", "Errors:", *failure_report(a)]
    for c in a.comparisons:
        lines += ["", *impact_lines(c.impact, other=c.scenario, baseline=BASELINE_SCENARIO)]
    return "\n".join(lines)


