"""`python -m benchmark run --api openai-chat` against servers that behave like the OpenAI-compatible
servers in the field (the simulator's ``openai`` flavours: a pinned model name, no ``[DONE]``, no
``usage`` unless asked, never any ``usage``, ``finish_reason`` in its own empty-delta chunk), each
through the real command, checked against the server's truth log."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import model_entry, outputs

from benchmark.cli import main
from benchmark.engine.results import read_records
from benchmark.sim.process import sim_model, sim_process
from benchmark.sim.truth import read_truth

ROOT = Path(__file__).resolve().parents[3]
TOKENS = 8
STEP_S = 0.01
REQUESTS = 10  # --iterations 2 x the 5 standard prompts

FLAVOURS: dict[str, tuple[Any, str]] = {  # id -> (the sim's openai setting, where the token count comes from)
    "tgi": ("tgi", "usage"),
    "pinned-400": ({"pinned": True, "refusal": 400}, "usage"),
    "pinned-404": ({"pinned": True, "refusal": 404}, "usage"),
    "no-done": ({"done": False, "usage": "last"}, "usage"),
    "no-done-no-usage": ({"done": False, "usage": "never"}, "chunks"),
    "usage-never": ({"usage": "never"}, "chunks"),
    "usage-only-when-asked": ({"usage": "asked"}, "usage"),
    "finish-chunk": ({"finish_chunk": True}, "usage"),
    "exclude-none": ({"exclude_none": True, "space": True}, "usage"),
    "vllm": ("vllm", "usage"),
    "transformers-serve": ("transformers-serve", "usage"),
    "openai": ("openai", "usage"),
}


def _outputs_file(tmp_path: Path, model_id: str) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs({"m": model_entry("m", start_order=1, model_id=model_id)})))
    return path


def _run(tmp_path: Path, url: str, *extra: str) -> tuple[int, Path]:
    results = tmp_path / "results"
    rc = main(["run", "--outputs", str(_outputs_file(tmp_path, "org/m")), "--endpoint", f"m={url}",
               "--api", "openai-chat", "--iterations", "2", "--max-new-tokens", str(TOKENS), "--warmup", "0",
               "--results-dir", str(results), "--no-progress", *extra])
    (run_dir,) = results.iterdir()
    return rc, run_dir


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_run_succeeds_against_each_flavour_with_the_servers_counts_and_timings(
    tmp_path: Path, flavour: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setting, tokens_from = FLAVOURS[flavour]
    model = sim_model("m", model_id="org/m", decode_base_s=STEP_S, openai=setting)
    with sim_process({"models": [model]}, tmp_path) as (urls, truth_path):
        rc, run_dir = _run(tmp_path, urls["m"])
        records = read_records(run_dir / "requests.jsonl")
        truth = read_truth(truth_path, [r.request_id for r in records])
    assert rc == 0, capsys.readouterr().err
    assert len(records) == REQUESTS and all(r.success for r in records), [r.error for r in records if not r.success]
    errors: list[float] = []
    for r in records:
        t = truth[r.request_id]
        assert t.status == 200 and t.generated_tokens == TOKENS
        assert (r.output_tokens, r.tokens_from) == (TOKENS, tokens_from)
        emits = t.emit_times
        assert len(r.itl) == len(emits) - 1
        # durations on the server's clock vs the client's: every gap, and first token to the end
        errors += [abs(c - (b - a)) for c, a, b in zip(r.itl, emits, emits[1:])]
        assert r.e2e is not None and r.ttft is not None
        errors.append(abs((r.e2e - r.ttft) - (t.end - emits[0])))
    assert statistics.median(errors) <= 0.003 and max(errors) <= 0.25, sorted(errors)[-3:]
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["access"]["m"]["model_name"] == "org/m"  # the contract's model id was sent
    assert run_json["access"]["m"]["served_models"] == ["org/m"]
    if tokens_from == "chunks":
        assert "counted from the stream's content chunks" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize(("refusal", "server_text"), [
    (400, 'HTTP 400: {"detail":"Server is pinned to org/m'),  # transformers serve
    (404, 'HTTP 404: {"object":"error","message":"The model `org/other` does not exist."'),  # vLLM
])
def test_a_refused_model_name_exits_3_with_the_servers_error_and_the_names_it_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], refusal: int, server_text: str
) -> None:
    model = sim_model("m", model_id="org/m", openai={"flavour": "transformers-serve", "refusal": refusal})
    with sim_process({"models": [model]}, tmp_path) as (urls, _):
        results = tmp_path / "results"
        rc = main(["run", "--outputs", str(_outputs_file(tmp_path, "org/other")), "--endpoint", f"m={urls['m']}",
                   "--api", "openai-chat", "--iterations", "1", "--max-new-tokens", "4", "--results-dir", str(results),
                   "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 3
    assert "m (alone): 5 x http_4xx" in out and server_text in out
    assert "model name sent: 'org/other'; the server lists at GET /v1/models: 'org/m'" in out
    assert "pass --model-name m=NAME" in out
    assert "success rate below --min-success 90%: m (alone) 0.0%" in err and "exit status 3" in err
    assert "note: m: model name 'org/other' is not among those GET /v1/models lists ('org/m')" in err
    (run_dir,) = results.iterdir()
    report = (run_dir / "report.md").read_text()
    assert "## Errors" in report and server_text in report


def test_model_name_override_reaches_a_pinned_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = sim_model("m", model_id="served/name", decode_base_s=STEP_S, openai="vllm")
    with sim_process({"models": [model]}, tmp_path) as (urls, _):
        rc, run_dir = _run(tmp_path, urls["m"], "--model-name", "m=served/name")
    assert rc == 0, capsys.readouterr().err
    assert all(r.success for r in read_records(run_dir / "requests.jsonl"))
    assert json.loads((run_dir / "run.json").read_text())["access"]["m"]["model_name"] == "served/name"


def test_min_success_zero_accepts_a_failing_run(tmp_path: Path) -> None:
    model = sim_model("m", model_id="org/m", openai="vllm")
    with sim_process({"models": [model]}, tmp_path) as (urls, _):
        results = tmp_path / "results"
        rc = main(["run", "--outputs", str(_outputs_file(tmp_path, "org/other")), "--endpoint", f"m={urls['m']}",
                   "--api", "openai-chat", "--iterations", "1", "--results-dir", str(results), "--no-progress",
                   "--min-success", "0"])
    assert rc == 0


def test_run_with_endpoints_and_no_kubeconfig_needs_no_kubernetes_client(tmp_path: Path) -> None:
    # the `kubernetes` package made unimportable: a run that reaches every model by --endpoint
    # and has no kubeconfig must not touch it
    model = sim_model("m", model_id="org/m", decode_base_s=STEP_S, openai="transformers-serve")
    code = ("import sys; sys.modules['kubernetes'] = None; from benchmark.cli import main; "
            "raise SystemExit(main(sys.argv[1:]))")
    with sim_process({"models": [model]}, tmp_path) as (urls, _):
        proc = subprocess.run(
            [sys.executable, "-c", code, "run", "--outputs", str(_outputs_file(tmp_path, "org/m")),
             "--endpoint", f"m={urls['m']}", "--api", "openai-chat", "--iterations", "1", "--max-new-tokens", "4",
             "--results-dir", str(tmp_path / "results"), "--no-progress"],
            capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Success Rate: 100.0%" in proc.stdout


def test_load_takes_the_one_served_model_name_and_refusals_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = sim_model("m", model_id="served/name", decode_base_s=STEP_S, openai="vllm")
    with sim_process({"models": [model]}, tmp_path) as (urls, _):
        common = ["load", "--endpoint", f"m={urls['m']}", "--api", "openai-chat", "--iterations", "1",
                  "--max-new-tokens", "4", "--no-progress"]
        assert main([*common, "--out", str(tmp_path / "a")]) == 0
        assert "m: model name 'served/name' (the one model GET /v1/models lists)" in capsys.readouterr().out
        assert all(r.success for r in read_records(tmp_path / "a" / "requests.jsonl"))
        assert main([*common, "--out", str(tmp_path / "b"), "--model-name", "nope"]) == 3
    out = capsys.readouterr().out
    assert "m (load): 5 x http_4xx" in out and "The model `nope` does not exist." in out
