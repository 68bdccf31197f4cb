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
        for scenario in ("alone", "shared"):
            block = out[out.index(f"{model} ({scenario})") :]
            assert re.match(rf"{re.escape(model)} \({scenario}\)\n  Total Requests: 5\n  Successful Requests: 5\n", block)
        assert re.search(rf"Impact on {re.escape(model)} \(shared vs alone\): latency \+\d", out)
    assert "Fairness (Jain's index" in out
    report = Path(re.findall(r"Report: (\S+report\.md)", out)[-1])
    assert report.is_file() and report.parent.parent == tmp_path
    assert "> **SIMULATED**" in report.read_text() and scaled in report.read_text()
    assert "run --outputs" in err and "--scenarios all" in err  # the user-facing command it ran
    assert "replicas are as found: phi35-mini=1, deepseek-r1-8b=1" in err
