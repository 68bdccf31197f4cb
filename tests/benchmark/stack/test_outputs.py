"""Reading the stack's outputs: the contract from a file or from the Pulumi CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from stack_helpers import model_entry, outputs

from benchmark.errors import BenchmarkError
from benchmark.stack.outputs import load_outputs

KUBECONFIG = {"apiVersion": "v1", "clusters": [{"name": "c", "cluster": {"server": "https://example.invalid"}}],
              "users": [{"name": "u", "user": {"token": "s3cret-token"}}], "contexts": []}  # fmt: skip


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(data))
    return path


def test_reads_the_contract_and_orders_active_models_by_start_order(tmp_path: Path) -> None:
    models = {
        "big": model_entry("big", start_order=2, future_field="ignored"),
        "small": model_entry("small", start_order=1),
        "off": model_entry("off", start_order=0, enabled=False),
    }
    data = outputs(models, kubeconfig=KUBECONFIG)
    data["contract"]["new_top_level"] = {"anything": True}  # a newer stack may add fields
    stack = load_outputs(outputs_file=_write(tmp_path, data))
    assert [m.key for m in stack.active_models()] == ["small", "big"]
    assert stack.models["big"].deployment == "big" and stack.models["big"].port == 8080
    assert stack.namespace == "llm-testing" and stack.cluster_name == "gpusharing-demo"
    assert stack.kubeconfig is not None and stack.kubeconfig["users"][0]["user"]["token"] == "s3cret-token"
    assert "s3cret-token" not in repr(stack)  # the secret never reaches a log line


def test_what_doctor_checks_the_cluster_against_reads_back_and_is_optional(tmp_path: Path) -> None:
    data = outputs({"a": model_entry("a", start_order=1, planned_kv_tokens_first_start=24000)})
    older = load_outputs(outputs_file=_write(tmp_path, data)).contract  # a stack exported before doctor
    assert older.gpu_nodes is None and older.gpu_operator_namespace is None and older.benchmark_group is None
    taint = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
    data["contract"] |= {"gpu_nodes": {"labels": {"eks-node": "gpu"}, "taint": taint, "resource": "nvidia.com/gpu",
                                       "gpus_per_node": 1},
                         "gpu_operator": {"namespace": "gpu-operator"}, "access": {"benchmark_group": "g"}}  # fmt: skip
    contract = load_outputs(outputs_file=_write(tmp_path, data)).contract
    assert contract.gpu_nodes is not None and contract.gpu_nodes.taint == taint
    assert contract.models["a"].planned_kv_tokens_first_start == 24000
    written = contract.to_dict()  # written back as read
    assert {k: written[k] for k in ("gpu_nodes", "gpu_operator", "access")} == {
        k: data["contract"][k] for k in ("gpu_nodes", "gpu_operator", "access")}


def test_kubeconfig_as_json_text_is_accepted(tmp_path: Path) -> None:
    data = outputs({"a": model_entry("a", start_order=1)}, kubeconfig=json.dumps(KUBECONFIG))
    stack = load_outputs(outputs_file=_write(tmp_path, data))
    assert stack.kubeconfig is not None and stack.kubeconfig["clusters"][0]["name"] == "c"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["contract"].update(version=2), "contract version 2"),
        (lambda d: d.pop("contract"), "no 'contract' output"),
        (lambda d: d["contract"]["models"]["a"].pop("deployment"), "contract.models.a.deployment is missing"),
        (lambda d: d["contract"]["models"]["a"].update(port="8080"), "contract.models.a.port must be int"),
        (lambda d: d["contract"]["models"]["a"].update(enabled=False), "no active models"),
        (lambda d: d.update(kubeconfig="clusters: [\n"), "neither JSON nor YAML"),
        (lambda d: d["contract"].update(gpu_nodes={"labels": {"eks-node": "gpu"}, "taint": {"key": "nvidia.com/gpu"},
                                                   "resource": "nvidia.com/gpu", "gpus_per_node": 1}),
         "contract.gpu_nodes.taint.value is missing"),
        (lambda d: d["contract"].update(gpu_operator={"namespace": 7}), "contract.gpu_operator.namespace must be str"),
    ],
)
def test_bad_outputs_name_the_problem(tmp_path: Path, mutate, expected: str) -> None:  # noqa: ANN001
    data = outputs({"a": model_entry("a", start_order=1)})
    mutate(data)
    with pytest.raises(BenchmarkError, match=expected) as err:
        load_outputs(outputs_file=_write(tmp_path, data)).select(None)
    assert "\n" not in str(err.value)


def test_unreadable_and_non_json_files(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="cannot read it"):
        load_outputs(outputs_file=tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("contract = 1\n")
    with pytest.raises(BenchmarkError, match="not JSON"):
        load_outputs(outputs_file=bad)


def test_unknown_model_selection_lists_the_known_ones(tmp_path: Path) -> None:
    stack = load_outputs(outputs_file=_write(tmp_path, outputs({"a": model_entry("a", start_order=1)})))
    with pytest.raises(BenchmarkError, match=r"--models: 'zz' not in the stack's catalog; known models: a"):
        stack.select(["zz"])


def _fake_pulumi(tmp_path: Path, script: str) -> None:
    """Put an executable `pulumi` first on PATH (the real CLI is not installed here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "pulumi"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def test_pulumi_cli_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    with pytest.raises(BenchmarkError, match=r"Pulumi CLI was not found.*--outputs FILE"):
        load_outputs()


def test_pulumi_no_stack_selected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", os.environ["PATH"])
    # the CLI's own message (pkg/cmd/pulumi: chooseStack, non-interactive)
    _fake_pulumi(tmp_path, "echo 'error: no stack selected; please use `pulumi stack select` or "
                           "`pulumi stack init` to choose one' >&2\nexit 255\n")
    with pytest.raises(BenchmarkError, match=r"the selected stack failed: no stack selected") as err:
        load_outputs()
    assert "--stack NAME" in str(err.value)


def test_pulumi_stack_named_and_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", os.environ["PATH"])
    data = outputs({"a": model_entry("a", start_order=1)})
    (tmp_path / "out.json").write_text(json.dumps(data))
    # answers only when called as `pulumi stack output --json --show-secrets ... --stack prod`
    _fake_pulumi(tmp_path, f'''case "$*" in
  "stack output --json --show-secrets --non-interactive --stack prod") cat {tmp_path / "out.json"};;
  *) echo "error: no stack named 'other' found" >&2; exit 255;;
esac
''')
    assert [m.key for m in load_outputs(stack="prod").active_models()] == ["a"]
    with pytest.raises(BenchmarkError, match=r"stack 'other' failed: no stack named 'other' found"):
        load_outputs(stack="other")
