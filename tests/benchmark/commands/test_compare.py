"""``python -m benchmark compare DIR_A DIR_B``: run B's impact against run A, printed and written."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_records import impact_of, plan_dir, sequential_run, write_dir

from benchmark.cli import main


def test_compare_prints_and_writes_the_impact_of_b_against_a(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_dir(tmp_path / "a", sequential_run("phi", "alone", seed=1) + sequential_run("llama", "alone", seed=2),
                  [("alone", ["phi"]), ("alone", ["llama"])], simulated=False, label="alone")
    b = write_dir(tmp_path / "b", sequential_run("phi", "shared", slowdown=1.8, seed=3),
                  [("shared", ["phi"])], simulated=True, label="shared")
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    change, low, high = impact_of(out, "phi")["latency"]
    assert low <= 0.8 <= high and "Impact on phi (B shared vs A alone)" in out
    assert "llama ran only in A: not compared" in out
    assert out.startswith("*** SIMULATED")
    assert "only one of the two runs is simulated" in out
    written = (b / "compare-a.md").read_text()
    assert impact_of(written, "phi")["latency"] == (change, low, high)
    assert "| phi | E2E p95 |" in written


def test_a_directory_with_several_scenarios_needs_a_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_dir(tmp_path)
    other = write_dir(tmp_path / "b", sequential_run("phi", "shared", slowdown=1.2, seed=8),
                      [("shared", ["phi"])], simulated=False, label="shared")
    assert main(["compare", str(plan), str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'alone', 'shared'" in err[0] and "--a-scenario" in err[0]

    assert main(["compare", str(plan), str(other), "--a-scenario", "alonee"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--a-scenario 'alonee'" in err[0] and "'alone', 'shared'" in err[0]

    out_file = tmp_path / "cmp.md"
    assert main(["compare", str(plan), str(other), "--a-scenario", "shared", "--out", str(out_file)]) == 0
    assert "Impact on phi (B shared vs A shared)" in out_file.read_text()


def test_runs_without_a_model_in_common_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_dir(tmp_path / "a", sequential_run("phi", "alone"), [("alone", ["phi"])], simulated=False, label="alone")
    b = write_dir(tmp_path / "b", sequential_run("llama", "alone"), [("alone", ["llama"])], simulated=False, label="alone")
    assert main(["compare", str(a), str(b)]) == 2
    assert "no model in common" in capsys.readouterr().err


def test_simulated_runs_at_different_time_scales_are_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_dir(tmp_path / "a", sequential_run("phi", "alone", seed=1), [("alone", ["phi"])],
                  simulated=True, label="alone", time_scale=0.1)
    b = write_dir(tmp_path / "b", sequential_run("phi", "shared", slowdown=1.8, seed=3), [("shared", ["phi"])],
                  simulated=True, label="shared", time_scale=1.0)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "different time scales" in out and "10x shorter" in out
    assert "different time scales" in (b / "compare-a.md").read_text()


def _rounds(model: str, scenario: str, slowdowns: list[float], seed: int) -> list:
    out = []
    for r, slowdown in enumerate(slowdowns, start=1):
        for rec in sequential_run(model, scenario, slowdown=slowdown, iterations=2, seed=seed + r, start=1000.0 * r):
            rec.round = r
            out.append(rec)
    return out


def test_compare_says_what_the_rounds_of_each_side_say(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A's alone rounds drift by 30 % each, more than B's shared ones (1.5x the first) differ from them
    a = write_dir(tmp_path / "a", _rounds("phi", "alone", [1.0, 1.3, 1.6], seed=1), [("alone", ["phi"])],
                  simulated=False, label="alone")
    b = write_dir(tmp_path / "b", _rounds("phi", "shared", [1.5, 1.5, 1.5], seed=9), [("shared", ["phi"])],
                  simulated=False, label="shared")
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "Impact on phi over rounds (B shared vs A alone, 3 or more rounds each, not interleaved): latency +" in out
    assert "Welch's t-interval" in out
    assert "warning: phi (alone) drifted " in out and "rounds give an interval half as wide as the impact" in out
    assert "| phi | latency | +" in (b / "compare-a.md").read_text()

    plan = write_dir(tmp_path / "plan", _rounds("phi", "alone", [1.0, 1.1, 1.2], seed=1)
                     + _rounds("phi", "shared", [1.5, 1.65, 1.8], seed=9), [("alone", ["phi"]), ("shared", ["phi"])],
                     simulated=False, label="all")
    assert main(["compare", str(plan), str(plan), "--a-scenario", "alone", "--b-scenario", "shared"]) == 0
    out = capsys.readouterr().out  # one directory's rounds ran interleaved: each round's own ratio
    assert "Impact on phi over 3 interleaved rounds (B shared vs A alone): latency +" in out and "per round: latency +" in out
