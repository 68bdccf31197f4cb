"""`python -m benchmark demo` (what `make demo` runs): offline, simulated, with the guide's
blocks and impact lines on stdout and a report on disk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.cli import main


def test_demo_prints_the_guide_blocks_and_impact_and_writes_a_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["demo", "--iterations", "1", "--time-scale", "0.05", "--results-dir", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("*** SIMULATED")  # from the servers' /info, before any figure
    scaled = "Time scale x0.05: latencies are 20x shorter and throughput 20x higher than the presets' L40S estimates"
    assert scaled in out.splitlines()[0] and scaled in err  # the time scale the servers reported, and what it means
    assert out.count(scaled) == 2  # the banner, and the closing line
    for model in ("phi35-mini", "deepseek-r1-8b"):
        for scenario in ("alone", "shared"):  # 3 rounds of 5 requests (the default --repeats 3)
            block = out[out.index(f"{model} ({scenario})") :]
            assert re.match(rf"{re.escape(model)} \({scenario}\)\n  Total Requests: 15\n  Successful Requests: 15\n", block)
        assert re.search(rf"Impact on {re.escape(model)} \(shared vs alone\): latency \+\d", out)
        # what the rounds say: each round's change and an interval over the rounds
        assert re.search(rf"Impact on {re.escape(model)} over 3 interleaved rounds \(shared vs alone\): latency \+\d+\.\d% "
                         r"\(95% CI \+\d+\.\d% to \+\d+\.\d%\), throughput -.*; per round: latency \+", out)
    assert "Fairness (Jain's index" in out
    report = Path(re.findall(r"Report: (\S+report\.md)", out)[-1])
    assert report.is_file() and report.parent.parent == tmp_path
    assert "> **SIMULATED**" in report.read_text() and scaled in report.read_text()
    assert "run --outputs" in err and "--scenarios all --repeats 3" in err  # the user-facing command it ran
    assert "## Rounds" in report.read_text() and "Drift between the rounds of a scenario" in report.read_text()
    assert "restored replicas (deepseek-r1-8b -> 1): deepseek-r1-8b=1" in err  # round 3 ends with phi alone
