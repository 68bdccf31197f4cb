"""Report files: the guide's blocks, impact lines that catch the true slowdown, reproducible rebuilds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from synthetic_records import SLOWDOWN, impact_of, plan_dir, sequential_run, write_dir

from benchmark.cli import main
from benchmark.engine.results import ResultsWriter
from benchmark.report.files import write_report
from benchmark.stack.rundir import RunDirectory, import_baselines


def test_plan_report_has_the_guides_blocks_and_impact_lines_that_contain_the_true_slowdown(tmp_path: Path) -> None:
    report = write_report(plan_dir(tmp_path))
    md = report.markdown
    for model in ("phi", "llama"):
        got = impact_of(md, model)
        change, low, high = got["latency"]
        assert low <= SLOWDOWN[model] - 1 <= high, (model, got)
        change, low, high = got["throughput"]
        assert low <= 1 / SLOWDOWN[model] - 1 <= high, (model, got)
        assert impact_of(report.console, model) == got
    summary = pd.read_csv(tmp_path / "20261126T110000Z-all" / "summary.csv")
    phi_shared = summary[(summary["model"] == "phi") & (summary["scenario"] == "shared")].iloc[0]
    block = md.split("phi (shared)\n", 1)[1].split("\n")[:6]
    assert block == [
        "  Total Requests: 50", "  Successful Requests: 50", "  Success Rate: 100.0%",
        f"  Average Latency: {phi_shared['e2e_mean']:.3f}s (±{phi_shared['e2e_std']:.3f}s)",
        f"  Throughput: {phi_shared['requests_per_min']:.2f} requests/minute",
        f"  Tokens per Second: {phi_shared['output_tokens_per_s']:.2f}",
    ]
    assert "Aggregate throughput (shared)" in md and "Fairness (Jain's index" in md
    assert "| phi | port-forward | http://127.0.0.1:43001 | 3.10 ms |" in md
    assert "SIMULATED" not in md and "SIMULATED" not in report.console
    for heading in ("## Percentiles (seconds)", "## Server-side attribution", "## Client self-check",
                    "## Metric definitions"):
        assert heading in md


def test_every_file_is_written_and_readable(tmp_path: Path) -> None:
    run_dir = plan_dir(tmp_path, simulated=True)
    report = write_report(run_dir)
    assert report.markdown.startswith("# Benchmark report: each model alone, then all together") and "> **SIMULATED**" in report.markdown
    assert report.console.startswith("*** SIMULATED")
    requests = pd.read_csv(run_dir / "requests.csv")
    assert len(requests) == 200 and set(requests["source"]) == {"run"}
    assert json.loads(requests["itl"].iloc[0]) == pytest.approx([0.1 * 0.9 / 99 * 10] * 99, rel=0.5)
    data = json.loads((run_dir / "summary.json").read_text())
    assert data["simulated"] is True and len(data["summary"]) == 4
    assert {row["model"] for row in data["impact"][0]["per_model"]} == {"phi", "llama"}
    for name in ("latency_cdf.png", "throughput.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report.markdown


def test_report_command_rebuilds_the_same_report_from_the_raw_files(tmp_path: Path, capsys) -> None:
    run_dir = plan_dir(tmp_path, simulated=True)
    first = write_report(run_dir).markdown
    for derived in ("report.md", "requests.csv", "summary.csv", "summary.json", "latency_cdf.png", "throughput.png"):
        (run_dir / derived).unlink()
    moved = shutil.move(run_dir, tmp_path / "elsewhere")
    assert main(["report", str(moved)]) == 0
    assert (Path(moved) / "report.md").read_text() == first
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "Impact on phi (shared vs alone)" in out and "report.md" in out


def test_a_shared_run_uses_its_imported_baselines_and_says_where_they_came_from(tmp_path: Path) -> None:
    # (one draw: a 95 % interval misses 1 time in 20; test_impact checks the coverage itself)
    alone = write_dir(tmp_path / "20261126T100000Z-alone", sequential_run("phi", "alone", seed=1),
                      [("alone", ["phi"])], simulated=False, label="alone", created="2026-11-26T10:00:00Z")
    shared = write_dir(tmp_path / "20261126T120000Z-shared",
                       sequential_run("phi", "shared", slowdown=1.8, seed=3)
                       + sequential_run("llama", "shared", seed=7),
                       [("shared", ["phi", "llama"])], simulated=False, label="shared")
    before = write_report(shared).markdown
    assert "No alone baseline with the same settings" in before and "Impact on" not in before
    RunDirectory.open(shared).update(**import_baselines(shared, {"phi": alone}))
    after = write_report(shared)
    change, low, high = impact_of(after.markdown, "phi")["latency"]
    assert low <= 0.8 <= high
    assert f"Baseline for `phi`: the alone run in `{alone.name}`" in after.markdown
    assert "No alone baseline for llama: no impact computed" in after.markdown
    requests = pd.read_csv(shared / "requests.csv")
    assert requests["source"].tolist().count(alone.name) == 50


def test_report_of_a_missing_directory_is_one_clear_line(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_throughput_panels_share_one_y_axis_end_with_their_last_bin_and_show_the_fillers(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from benchmark.analysis.comparison import analyse
    from benchmark.report.plots import throughput_figure
    from benchmark.stack.rundir import load_run

    fast = sequential_run("phi", "shared", iterations=2, seed=3, start=300, noise=0.0)  # done well before llama
    slow = sequential_run("llama", "shared", slowdown=3.0, iterations=2, seed=4, start=300, noise=0.0)
    done = max(r.intended_send + (r.e2e or 0) for r in fast)
    fillers = sequential_run("phi", "shared-filler", iterations=2, seed=5, start=done, noise=0.0)
    run_dir = write_dir(tmp_path / "run", sequential_run("phi", "alone", iterations=2, seed=1, noise=0.0) + fast + slow,
                        [("alone", ["phi"]), ("shared", ["phi", "llama"])], simulated=False, label="all")
    with ResultsWriter(run_dir / "warmup.jsonl") as w:
        for r in fillers:
            w.write(r)
    a = analyse(load_run(run_dir))
    fig = throughput_figure(a)
    try:
        alone_ax, shared_ax = fig.axes
        assert alone_ax.get_shared_y_axes().joined(alone_ax, shared_ax) and alone_ax.get_ylim() == shared_ax.get_ylim()
        lines = {line.get_label(): line for line in shared_ax.get_lines()}
        assert set(lines) == {"phi", "llama", "phi: unrecorded fillers"} and lines["phi: unrecorded fillers"].get_linestyle() == "--"
        filler_x = lines["phi: unrecorded fillers"].get_xdata()
        assert filler_x[0] >= done - 300 - 1  # from the bin where phi's fillers began, after its recorded requests
        part = a.timeline[(a.timeline["scenario"] == "shared") & (a.timeline["model"] == "llama")]
        last = part.iloc[-1]
        assert lines["llama"].get_xdata()[-1] == pytest.approx(last["t"] + last["width"])  # the span's true end
        assert last["width"] >= 0.5 and part["width"].iloc[:-1].eq(1.0).all()
    finally:
        plt.close(fig)
