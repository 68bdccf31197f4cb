"""``python -m benchmark load``: what it writes and prints, and how it refuses bad flags."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from enginekit import benchmark_argv

from benchmark.cli import main
from benchmark.engine.results import read_records
from benchmark.report.files import write_report
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


def _sim_models(*keys: str, **extra: object) -> dict[str, object]:
    return {"models": [{"key": k, "model_id": f"example/{k}", "warmup_s": 0.0, "prefill_base_s": 0.002,
                        "decode_base_s": 0.002, **extra} for k in keys]}


def test_report_and_compare_read_load_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sim_process(_sim_models("a"), tmp_path) as (urls, _):
        for scenario in ("alone", "shared"):
            assert main(["load", "--endpoint", f"a={urls['a']}", "--iterations", "2", "--max-new-tokens", "4",
                         "--scenario", scenario, "--out", str(tmp_path / scenario), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "alone" / "run.json").read_text())
    assert (meta["label"], meta["simulated"]) == ("load", True)  # from the server's /info
    assert [s["scenario"] for s in meta["scenarios"]] == ["alone"] and meta["scenarios"][0]["self_check"]["targets"]
    capsys.readouterr()
    assert main(["report", str(tmp_path / "shared")]) == 0
    assert (tmp_path / "shared" / "report.md").is_file() and (tmp_path / "shared" / "throughput.png").is_file()
    assert "a (shared)\n  Total Requests: 10" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "alone"), str(tmp_path / "shared")]) == 0
    assert "Impact on a (B shared vs A alone): latency" in capsys.readouterr().out


def test_a_killed_load_keeps_its_records_and_report_rebuilds_its_summary(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    with sim_process(_sim_models("a", decode_base_s=0.01), tmp_path) as (urls, _):
        proc = subprocess.Popen([*benchmark_argv("load"), "--endpoint", f"a={urls['a']}", "--concurrency", "2",
                                 "--requests", "10000", "--max-new-tokens", "5", "--out", str(out), "--no-progress"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not ((out / "requests.jsonl").is_file() and len(read_records(out / "requests.jsonl")) >= 6):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.kill()
        proc.wait(30)
    assert not (out / "summary.csv").exists()
    kept = read_records(out / "requests.jsonl")
    assert main(["report", str(out)]) == 0
    with open(out / "summary.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["model"], row["scenario"], int(row["count"])) == ("a", "load", len(kept))
    assert "interrupted" in (out / "report.md").read_text()  # its scenario never finished


def test_an_older_load_directory_without_run_json_is_read_from_its_records(tmp_path: Path) -> None:
    with sim_process(_sim_models("a"), tmp_path) as (urls, _):
        assert main(["load", "--endpoint", f"a={urls['a']}", "--iterations", "1", "--max-new-tokens", "4",
                     "--out", str(tmp_path / "old"), "--no-progress"]) == 0
    (tmp_path / "old" / "run.json").unlink()  # as `load` wrote it before it wrote run.json
    report = write_report(tmp_path / "old")
    assert "a (load)\n  Total Requests: 5" in report.console
    assert "client self-check (load)" in report.markdown  # from its self_check.json


def test_every_request_failing_exits_3_and_is_not_blamed_on_the_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens
    code = main(["load", "--endpoint", f"m={url}", "--concurrency", "4", "--requests", "40", "--out",
                 str(tmp_path / "r"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 3, captured
    assert "m: 40 of 40 requests failed: its concurrency, rate and lag figures describe failures" in captured.out
    assert "achieved concurrency" not in captured.out.split("warning:", 1)[1]
    assert "the client may be the bottleneck" not in captured.out
    assert "success rate below --min-success 90%: m (load) 0.0%" in captured.err
