"""``python -m benchmark load``: what it writes and prints, and how it refuses bad flags."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.engine.results import read_records
from benchmark.sim.process import sim_process


def test_load_writes_records_summary_and_self_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = [{"key": k, "model_id": f"example/{k}", "warmup_s": 0.0, "prefill_base_s": 0.002,
               "decode_base_s": 0.002} for k in ("a", "b")]
    with sim_process({"models": models}, tmp_path) as (urls, _):
        out = tmp_path / "run"
        code = main(["load", "--endpoint", f"a={urls['a']}", "--endpoint", f"b={urls['b']}", "--concurrency", "3",
                     "--requests", "9", "--max-new-tokens", "5", "--warmup", "1", "--scenario", "shared", "--workers", "2",
                     "--out", str(out), "--no-progress"])
    assert code == 0
    records = read_records(out / "requests.jsonl")
    assert sorted(r.model for r in records) == ["a"] * 9 + ["b"] * 9
    assert all(r.success and r.scenario == "shared" and r.output_tokens == 5 for r in records)
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["scenario"], r["count"], r["success_rate"]) for r in rows] == [
        ("a", "shared", "9", "1.0"), ("b", "shared", "9", "1.0")]
    check = json.loads((out / "self_check.json").read_text())
    assert [(t["model"], t["requested_concurrency"], t["sent"]) for t in check["targets"]] == [("a", 3, 9), ("b", 3, 9)]
    printed = capsys.readouterr().out
    assert "closed loop, concurrency 3, 9 requests" in printed and "client self-check" in printed


@pytest.mark.parametrize(("argv", "message"), [
    (["--endpoint", "phi"], "error: --endpoint 'phi': expected KEY=URL"),
    (["--endpoint", "phi=localhost:80"], "error: --endpoint 'phi=localhost:80'"),
    (["--endpoint", "a=http://x", "--endpoint", "a=http://y", "--concurrency", "2", "--requests", "3"],
     "error: --endpoint 'a=http://y': model 'a' is given twice"),
    (["--endpoint", "a=http://x", "--concurrency", "2"], "error: --concurrency/--rate need a limit: --requests N, --duration S"),
    (["--endpoint", "a=http://x", "--requests", "5"], "error: --requests/--duration limit a --concurrency or --rate load"),
])
def test_bad_combinations_exit_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err


@pytest.mark.parametrize(("argv", "message"), [
    (["--api", "vllm"], "argument --api: invalid choice: 'vllm' (choose from 'tgi-stream', 'tgi-generate', 'openai-chat')"),
    (["--concurrency", "0", "--requests", "3"], "argument --concurrency: got '0'; allowed: an integer >= 1"),
    (["--rate", "-2", "--requests", "3"], "argument --rate: got '-2'; allowed: a number > 0"),
    (["--rate", "2", "--arrival", "burst", "--requests", "3"], "argument --arrival: invalid choice: 'burst'"),
    (["--workers", "0"], "argument --workers: got '0'; allowed: an integer >= 1"),
    (["--min-success", "1.5"], "argument --min-success: got '1.5'; allowed: a number from 0 to 1"),
])
def test_bad_values_exit_2_naming_flag_value_and_allowed(argv: list[str], message: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["load", "--endpoint", "a=http://x", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_refuses_to_append_to_an_earlier_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "requests.jsonl").write_text("")
    assert main(["load", "--endpoint", "a=http://127.0.0.1:9", "--out", str(tmp_path)]) == 2
    assert "already holds requests.jsonl" in capsys.readouterr().err
