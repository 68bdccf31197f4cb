"""checkov's Kubernetes checks over every Kubernetes object the program declares, rendered
from the mocked program: no failures; each check that cannot apply is skipped on the object
itself (``checkov.io/skip<N>`` annotations) with a reason. checkov runs from its own
virtualenv (``make`` creates ``.venv-scan`` from ``requirements-scan.txt``)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pulumi_mocks import ROOT, run_program
from tests.workloads.test_several_gpus import several_gpus

CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".venv-scan" / "bin" / "checkov"))


def _manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object of the dev stack with every optional object on (the token
    Secret, extra model access CIDRs), both ways to run TGI (phi35-mini from a derived image
    as uid 1000, with its cache-owner init container; deepseek-r1-8b from the stock image, as
    root) and several GPU nodes (a third model, Qwen2.5-7B, that does not fit the pair's GPU:
    the pod affinities), as it would be applied. The GPU Operator's and the Cluster Autoscaler's
    Helm releases are not manifests: their charts cannot be fetched offline (only their values
    are tested)."""
    config = several_gpus()
    models = json.loads(config["gpu-sharing:models"])
    models["phi35-mini"].update(image="registry.example.com/ml/tgi-nonroot:3.3.6-1", runAsUser=1000)
    rec = run_program(
        {
            **config,
            "gpu-sharing:models": json.dumps(models),
            "gpu-sharing:hfToken": "hf_scanTestTokenNotReal0123456789",
            "gpu-sharing:modelAccessCidrs": '["10.20.0.0/16"]',
        }
    )
    objects = {
        r.name: {k: v for k, v in r.inputs.items() if v is not None}
        for r in rec.resources
        if r.type.startswith("kubernetes:") and not r.type.startswith(("kubernetes:helm.sh", "pulumi:providers"))
    }
    assert {o["kind"] for o in objects.values()} >= {"Namespace", "Deployment", "Service", "ConfigMap", "Secret", "NetworkPolicy"}
    assert all("affinity" in o["spec"]["template"]["spec"] for o in objects.values() if o["kind"] == "Deployment")
    return objects


def _scan(directory: Path) -> list[dict[str, Any]]:
    if not CHECKOV.exists():
        pytest.fail(f"checkov not found at {CHECKOV}: run `make .venv-scan/.installed` (or set CHECKOV=path)")
    run = subprocess.run(
        [str(CHECKOV), "-d", str(directory), "--framework", "kubernetes", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode in (0, 1), run.stderr[-2000:]  # 1: some check failed
    report = json.loads(run.stdout)
    return report if isinstance(report, list) else [report]


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("manifests")
    objects = _manifests()
    (root / "stack").mkdir()
    for name, obj in objects.items():
        (root / "stack" / f"{name}.yaml").write_text(yaml.safe_dump(obj, sort_keys=False))
    # A canary: a model Deployment without its security context must fail, or the scan is vacuous.
    canary = copy.deepcopy(next(o for o in objects.values() if o["kind"] == "Deployment"))
    for c in canary["spec"]["template"]["spec"]["containers"]:
        c.pop("securityContext")
    (root / "canary").mkdir()
    (root / "canary" / "deployment.yaml").write_text(yaml.safe_dump(canary))
    return objects, _scan(root)


def _results(report: list[dict[str, Any]], kind: str, folder: str) -> list[dict[str, Any]]:
    return [
        r for part in report for r in part["results"][kind] if Path(r["file_abs_path"]).parent.name == folder
    ]


def test_every_object_passes_or_is_skipped_with_a_reason(scan: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    objects, report = scan
    failed = _results(report, "failed_checks", "stack")
    assert failed == [], [(f["check_id"], f["resource"], f["check_name"]) for f in failed]
    assert all(part["summary"]["parsing_errors"] == 0 for part in report)
    scanned = {Path(r["file_abs_path"]).stem for r in _results(report, "passed_checks", "stack")}
    # checkov read the model workloads (their checks ran) and no object outside the render.
    assert {n for n, o in objects.items() if o["kind"] in ("Deployment", "Service")} <= scanned <= set(objects)
    skipped = _results(report, "skipped_checks", "stack")
    assert skipped, "expected the documented skips"
    for s in skipped:
        reason = s["check_result"]["suppress_comment"]
        assert len(reason) > 20, s["check_id"]
        (obj,) = [o for n, o in objects.items() if Path(s["file_abs_path"]).stem == n]
        assert f"{s['check_id']}={reason}" in obj["metadata"]["annotations"].values()


def test_the_scan_catches_a_deployment_without_security_context(scan: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, report = scan
    failed = {f["check_id"] for f in _results(report, "failed_checks", "canary")}
    # No readOnlyRootFilesystem, no dropped capabilities, privilege escalation allowed.
    assert {"CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_20"} <= failed, failed
