"""The console's version of a report: the SIMULATED banner, the guide's result blocks, the
token-count notes, the errors, the impact lines and what the rounds say about them."""

from __future__ import annotations

from benchmark.analysis.comparison import BASELINE_SCENARIO, Analysis
from benchmark.report.markdown import failure_report, tokens_note
from benchmark.report.text import impact_lines, pct, result_blocks, rounds_lines, simulated_banner

__all__ = ["console"]


def console(a: Analysis) -> str:
    lines = [f"*** {simulated_banner(a.run.meta).replace('**', '')} ***", ""] if a.run.meta.simulated else []
    lines += result_blocks(a.summary)
    lines += [line for line in tokens_note(a.summary) if line]
    if a.errors:
        lines += ["", "Errors:", *failure_report(a)]
    if a.drift:
        lines += ["", "Drift between rounds (E2E mean, largest round over smallest): "
                  + ", ".join(f"{d.model} ({d.scenario}) {pct(d.drift)}" for d in a.drift)]
    for c in a.comparisons:
        lines += ["", *impact_lines(c.impact, other=c.scenario, baseline=BASELINE_SCENARIO)]
        lines += rounds_lines(c.rounds, other=c.scenario, baseline=BASELINE_SCENARIO)
    return "\n".join(lines)


