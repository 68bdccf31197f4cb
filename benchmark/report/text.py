"""Plain-text pieces every report format shares: number formats, the SIMULATED banner, the
guide's result blocks and impact lines, the failures. They only format."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from benchmark.analysis.comparison import impact_row
from benchmark.analysis.impact import Impact
from benchmark.analysis.rounds import DriftWarning, RoundsImpact
from benchmark.stack.rundir import RunMeta

__all__ = ["SIMULATED_BANNER", "chg", "dms", "finite", "impact_lines", "ms", "num", "pct", "result_blocks",
           "rounds_lines", "sec", "simulated_banner", "time_scale_note"]


SIMULATED_BANNER = (
    "**SIMULATED**: these numbers come from the TGI simulator (`benchmark/sim`), "
    "not from models on a GPU. They show how the tool works, not how your cluster performs."
)


def time_scale_note(scale: float | None) -> str:
    """What the simulator's time scale (``RunMeta.time_scale``, from its /info) means for the figures."""
    if scale is None:
        return "The simulator's time scale was not recorded: compare only with runs of the same simulator settings."
    if scale == 1:
        return "Time scale x1: latencies and throughput are the presets' L40S estimates (the simulated step times)."
    factor, (latency, throughput) = (1 / scale, ("shorter", "higher")) if scale < 1 else (scale, ("longer", "lower"))
    return (f"Time scale x{scale:g}: latencies are {factor:.3g}x {latency} and throughput {factor:.3g}x {throughput} "
            "than the presets' L40S estimates (the simulated step times at x1).")


def simulated_banner(meta: RunMeta) -> str:
    """The SIMULATED banner with the run's time scale, as the simulator reported it."""
    return f"{SIMULATED_BANNER} {time_scale_note(meta.time_scale)}"


def result_blocks(summary: pd.DataFrame) -> list[str]:
    """The guide's result block for each (model, scenario) row of a summary."""
    lines: list[str] = []
    for row in summary.to_dict("records"):
        lines += [
            f"{row['model']} ({row['scenario']})",
            f"  Total Requests: {row['count']}",
            f"  Successful Requests: {row['successes']}",
            f"  Success Rate: {pct(row['success_rate'])}",
            f"  Average Latency: {sec(row['e2e_mean'])} (±{sec(row['e2e_std'])})",
            f"  Throughput: {num(row['requests_per_min'], 2)} requests/minute",
            f"  Tokens per Second: {num(row['output_tokens_per_s'], 2)}",
        ]
    return lines


def impact_lines(impact: Impact, *, other: str, baseline: str) -> list[str]:
    """One guide-style impact line per model, then the aggregate and fairness lines."""
    level = f"{impact.confidence:.0%} CI"
    lines = []
    for model in impact.models:
        lat, tok = impact_row(impact, model, "e2e_mean"), impact_row(impact, model, "output_tokens_per_s")
        lines.append(
            f"Impact on {model} ({other} vs {baseline}): latency {chg(lat['change'])} "
            f"({level} {chg(lat['ci_low'])} to {chg(lat['ci_high'])}), throughput {chg(tok['change'])} "
            f"({level} {chg(tok['ci_low'])} to {chg(tok['ci_high'])})"
        )
    agg = impact.aggregate
    if impact.models:
        lines.append(
            f"Aggregate throughput ({other}): {num(agg.other, 2)} tokens/s vs {num(agg.baseline, 2)} summed "
            f"{baseline}: {chg(agg.change)} ({level} {chg(agg.ci_low)} to {chg(agg.ci_high)})"
        )
    fair = impact.fairness
    if fair.index is not None:
        lines.append(f"Fairness (Jain's index over tokens/s relative to {baseline}): {num(fair.index, 3)} "
                     f"({level} {num(fair.ci_low, 3)} to {num(fair.ci_high, 3)})")
    for model in impact.only_other:
        lines.append(f"No {baseline} baseline for {model}: no impact computed")
    return lines


def rounds_lines(rounds: RoundsImpact, *, other: str, baseline: str) -> list[str]:
    """What the rounds say about an impact: per model the estimate and interval over rounds (and
    each round's change, interleaved), the method, the drift warnings; or, for a single pass,
    that its interval does not cover drift."""
    level = f"{rounds.confidence:.0%} CI"
    if rounds.single_pass:
        return [f"Single pass ({other} or {baseline} ran once: --repeats 1): the intervals above resample the "
                "requests of one run and do not cover drift between runs (the same server can be 15% slower in the "
                "next run of a scenario); --repeats 3 or more, interleaved with --scenarios all, gives an interval "
                "that does."]
    out = []
    for model in sorted({b.model for b in rounds.between}):
        parts, per_round = [], []
        for quantity in ("latency", "throughput"):
            b = rounds.of(model, quantity)
            assert b is not None
            parts.append(f"{quantity} {chg(b.estimate)} ({level} {chg(b.ci_low)} to {chg(b.ci_high)})")
            if b.per_round:
                per_round.append(f"{quantity} " + ", ".join(chg(v) for _, v in sorted(b.per_round.items())))
        first = rounds.of(model, "latency")
        assert first is not None
        how = (f"over {first.rounds} interleaved rounds ({other} vs {baseline})" if rounds.interleaved
               else f"over rounds ({other} vs {baseline}, {first.rounds} or more rounds each, not interleaved)")
        out.append(f"Impact on {model} {how}: {', '.join(parts)}" + (f"; per round: {'; '.join(per_round)}" if per_round else ""))
    method = ("a Student t-interval over the rounds' log ratios (" + other + " / " + baseline + ", each round's own)"
              if rounds.interleaved else
              f"Welch's t-interval on the two sides' mean log round figures ({baseline} ran in other runs, not "
              "interleaved: drift between those runs and this one is not covered)")
    out.append(f"The first interval of each model resamples requests within the runs; the one over rounds is {method}, "
               "and covers drift between the rounds.")
    out += [f"warning: {drift_warning(w)}" for w in rounds.warnings]
    return out


def drift_warning(w: DriftWarning) -> str:
    needed = (f"about {w.needed} rounds give an interval half as wide as the impact" if w.needed is not None
              else "no number of rounds up to 1000 gives an interval half as wide as an impact this small")
    return (f"{w.model} ({w.scenario}) drifted {pct(w.drift)} between its {w.rounds} rounds, more than its impact "
            f"({chg(w.impact)}): trust the interval over rounds, not the one within them; with the spread seen, "
            f"{needed} (this run has {w.rounds})")


def finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def num(x: Any, digits: int) -> str:
    return f"{x:,.{digits}f}" if finite(x) else "n/a"


def sec(x: Any) -> str:
    return f"{x:.3f}s" if finite(x) else "n/a"


def ms(x: Any) -> str:
    return f"{x * 1e3:.2f} ms" if finite(x) else "n/a"


def dms(x: Any) -> str:
    return f"{x * 1e3:+.1f} ms" if finite(x) else "n/a"


def pct(x: Any) -> str:
    return f"{x:.1%}" if finite(x) else "n/a"


def chg(x: Any) -> str:
    return f"{x:+.1%}" if finite(x) else "n/a"
