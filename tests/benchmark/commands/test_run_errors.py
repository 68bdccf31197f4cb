"""Every error case of `python -m benchmark run` is one clear line on stderr and exit 2."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from stack_helpers import HealthBackend, model_entry, outputs

from benchmark.cli import main
from benchmark.sim.background import BackgroundLoop
from benchmark.sim.kube_api import FakeDeployment, FakeKubeApi


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _file(tmp_path: Path, data: object, name: str = "outputs.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _two(tmp_path: Path, **kw: object) -> str:
    return _file(tmp_path, outputs({"a": model_entry("a", start_order=1), "b": model_entry("b", start_order=2)}, **kw))  # type: ignore[arg-type]


def _one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert "Traceback" not in err
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize(
    ("make_argv", "expected"),
    [
        (lambda t: ["--outputs", str(t / "nope.json")], "--outputs '{t}/nope.json': cannot read it"),
        (lambda t: ["--outputs", _file(t, "{")], "not JSON"),
        (lambda t: ["--outputs", _file(t, outputs({"a": model_entry("a", start_order=1)}, version=7))],
         "--outputs '{t}/outputs.json': contract version 7 is not supported"),
        (lambda t: ["--outputs", _file(t, outputs({"a": model_entry("a", start_order=1, enabled=False)}))],
         "no active models in --outputs '{t}/outputs.json'"),
        (lambda t: ["--outputs", _two(t), "--endpoint", "a:http://x"], "--endpoint 'a:http://x': expected KEY=URL"),
        (lambda t: ["--outputs", _two(t), "--endpoint", "c=http://127.0.0.1:1"],
         "model 'c' is not in the stack's catalog; known models: a, b"),
        (lambda t: ["--outputs", _two(t), "--models", "a,zz"], "--models: 'zz' not in the stack's catalog"),
        (lambda t: ["--outputs", _two(t), "--endpoint", "a=http://127.0.0.1:1"],
         "has no kubeconfig output: pass --endpoint KEY=URL for every model"),
        (lambda t: ["--outputs", _two(t, kubeconfig="[secret]")], "or save the outputs with --show-secrets"),
        (lambda t: ["--outputs", _two(t), "--models", "a", "--scenarios", "all"], "--scenarios all needs at least two models"),
    ],
)  # fmt: skip
def test_error_cases(capsys: pytest.CaptureFixture[str], tmp_path: Path, make_argv, expected: str) -> None:  # noqa: ANN001
    line = _one_error_line(capsys, ["run", *make_argv(tmp_path), "--results-dir", str(tmp_path / "r")])
    assert expected.format(t=tmp_path) in line


def test_pulumi_cli_missing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    line = _one_error_line(capsys, ["--stack", "dev"])  # `run` is the default command
    assert "Pulumi CLI was not found" in line and "--outputs FILE" in line


def test_malformed_endpoint_is_named_before_the_stack_is_read(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no Pulumi CLI: the flag's error must come first
    line = _one_error_line(capsys, ["--endpoint", "phi35"])
    assert "--endpoint 'phi35': expected KEY=URL" in line


def test_readiness_timeout_names_model_and_wait(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    argv = ["run", "--outputs", _file(tmp_path, outputs({"a": model_entry("a", start_order=1)})),
            "--endpoint", f"a={url}", "--ready-timeout", "0.5", "--results-dir", str(tmp_path / "r")]  # fmt: skip
    line = _one_error_line(capsys, argv)
    assert f"timed out after 0.5 s waiting for model 'a' to answer GET {url}/health with 200" in line


def test_kubernetes_api_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bg = BackgroundLoop()
    api = FakeKubeApi("llm-testing", [FakeDeployment(name="a", replicas=1), FakeDeployment(name="b", replicas=1)])
    try:
        bg.call(api.start())
        api.errors["read_scale"] = 403
        argv = ["run", "--outputs", _two(tmp_path, kubeconfig=api.kubeconfig()), "--scenarios", "all",
                "--results-dir", str(tmp_path / "r")]  # fmt: skip
        line = _one_error_line(capsys, argv)
        assert "Kubernetes API: reading the scale of deployment 'a' in namespace 'llm-testing' failed: HTTP 403" in line
    finally:
        bg.call(api.stop())
        bg.close()


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "--outputs", _file(tmp_path, "[1, 2"), "--scenarios", "all"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: --outputs"), proc.stderr


def test_port_forward_refused_is_reported_as_such(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bg = BackgroundLoop()
    backend = HealthBackend()
    bg.call(backend.start())
    api = FakeKubeApi("llm-testing", [FakeDeployment(name="a", replicas=1, backend=backend.url)])
    try:
        bg.call(api.start())
        api.errors["portforward"] = 403  # e.g. RBAC without pods/portforward
        argv = ["run", "--outputs", _file(tmp_path, outputs({"a": model_entry("a", start_order=1)}, kubeconfig=api.kubeconfig())),
                "--results-dir", str(tmp_path / "r")]  # fmt: skip
        line = _one_error_line(capsys, argv)
        assert "Kubernetes API: port-forwarding to pod 'a-" in line
        assert "port 8080 in namespace 'llm-testing' failed: HTTP 403: injected error for portforward" in line
    finally:
        bg.call(api.stop())
        bg.call(backend.stop())
        bg.close()


def test_failing_credential_command_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bg = BackgroundLoop()
    api = FakeKubeApi("llm-testing", [FakeDeployment(name="a", replicas=1), FakeDeployment(name="b", replicas=1)])
    try:
        bg.call(api.start())
        kubeconfig = api.kubeconfig()  # as pulumi-eks writes it: a credential command, here one that fails
        kubeconfig["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                                   "command": "sh", "args": ["-c", "echo no AWS credentials >&2; exit 3"]}}  # fmt: skip
        argv = ["run", "--outputs", _two(tmp_path, kubeconfig=kubeconfig), "--scenarios", "all", "--results-dir", str(tmp_path)]
        line = _one_error_line(capsys, argv)
        assert "HTTP 401" in line and "`aws eks get-token`" in line and "which failed: exec: process returned 3" in line
    finally:
        bg.call(api.stop())
        bg.close()


@pytest.mark.parametrize(("argv", "message"), [
    (["--repeats", "0"], "argument --repeats: got '0'; allowed: an integer >= 1"),
    (["--repeats", "three"], "argument --repeats: got 'three'; allowed: an integer >= 1"),
    (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
])  # fmt: skip
def test_bad_round_flags_name_the_flag_the_value_and_what_is_allowed(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--outputs", "x.json", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
