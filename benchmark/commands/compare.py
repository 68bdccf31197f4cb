"""``python -m benchmark compare DIR_A DIR_B``: the impact of run B against run A, per model.

Typically A is an alone run and B a shared one, but any two runs of the same models compare
(e.g. before and after a change of the GPU sharing settings), ``load`` directories included.
Each side uses one scenario of its directory, all its rounds: the only one it holds, or the one
named by ``--a-scenario``/``--b-scenario`` (a ``--scenarios all`` directory holds ``alone`` and
``shared``). Prints the impact lines and what the rounds say (two directories' rounds are not
interleaved: Welch's interval over them, when each side ran at least two), and writes them with
the detail tables to ``DIR_B/compare-<DIR_A's name>.md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.analysis.comparison import compare_records
from benchmark.engine.records import RequestRecord
from benchmark.errors import BenchmarkError
from benchmark.report.markdown import impact_markdown
from benchmark.report.text import impact_lines, rounds_lines, simulated_banner, time_scale_note
from benchmark.stack.rundir import LoadedRun, load_run


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir_a", type=Path, metavar="DIR_A", help="the baseline results directory (e.g. alone)")
    parser.add_argument("dir_b", type=Path, metavar="DIR_B", help="the results directory compared with it (e.g. shared)")
    parser.add_argument("--a-scenario", help="DIR_A's scenario to use, when it holds several")
    parser.add_argument("--b-scenario", help="DIR_B's scenario to use, when it holds several")
    parser.add_argument("--out", type=Path, help="where to write the comparison (default: DIR_B/compare-<DIR_A name>.md)")


def _side(run: LoadedRun, scenario: str | None, flag: str) -> tuple[str, list[RequestRecord]]:
    labels = list(dict.fromkeys(r.scenario for r in run.records))
    if not labels:
        raise BenchmarkError(f"{run.run_dir}: no requests recorded, nothing to compare")
    if scenario is None:
        if len(labels) > 1:
            raise BenchmarkError(
                f"{run.run_dir} holds scenarios {', '.join(map(repr, labels))}: choose one with {flag}"
            )
        scenario = labels[0]
    elif scenario not in labels:
        raise BenchmarkError(f"{flag} {scenario!r}: {run.run_dir} holds {', '.join(map(repr, labels))}")
    return scenario, [r for r in run.records if r.scenario == scenario]


def run(args: argparse.Namespace) -> int:
    a, b = load_run(args.dir_a), load_run(args.dir_b)
    a_scenario, a_records = _side(a, args.a_scenario, "--a-scenario")
    b_scenario, b_records = _side(b, args.b_scenario, "--b-scenario")
    # rounds of one directory ran interleaved (--scenarios all --repeats N); two directories' did not
    same = a.run_dir.resolve() == b.run_dir.resolve()
    impact, rounds = compare_records(a_records, b_records, interleaved=same)
    if not impact.models:
        raise BenchmarkError(
            f"no model in common: {a.run_dir} measured {', '.join(impact.only_baseline) or 'none'}, "
            f"{b.run_dir} measured {', '.join(impact.only_other) or 'none'}"
        )
    baseline, other = f"A {a_scenario}", f"B {b_scenario}"
    simulated = [m for m in (a.meta, b.meta) if m.simulated]
    banner_text = simulated_banner(simulated[0]) if simulated else ""
    notes = []
    if a.meta.settings != b.meta.settings:
        notes.append("note: the two runs used different settings; the comparison mixes their effect with the scenario's")
    if a.meta.simulated != b.meta.simulated:
        notes.append("note: only one of the two runs is simulated; its numbers are not comparable with a GPU's")
    elif simulated and a.meta.time_scale != b.meta.time_scale:
        notes.append(f"note: the simulated runs ran at different time scales (A: {time_scale_note(a.meta.time_scale)} "
                     f"B: {time_scale_note(b.meta.time_scale)}); their latencies are not comparable")
    header = [f"A = {a.run_dir} ({a_scenario}), B = {b.run_dir} ({b_scenario})"] + notes
    lines = impact_lines(impact, other=other, baseline=baseline) + rounds_lines(rounds, other=other, baseline=baseline)
    for model in impact.only_baseline:
        lines.append(f"{model} ran only in A: not compared")
    banner = [f"*** {banner_text.replace('**', '')} ***"] if simulated else []
    print("\n".join(banner + header + [""] + lines))

    out = args.out or b.run_dir / f"compare-{a.run_dir.resolve().name}.md"
    md = [f"# Comparison: {b.run_dir.name} ({b_scenario}) vs {a.run_dir.name} ({a_scenario})", ""]
    md += ([f"> {banner_text}", ""] if simulated else []) + [f"- {h}" for h in header] + [""]
    md += impact_markdown(impact, rounds, other=other, baseline=baseline)
    md += [f"- {model} ran only in A: not compared" for model in impact.only_baseline]
    out.write_text("\n".join(md) + "\n")
    print(f"\nwritten: {out}")
    return 0
