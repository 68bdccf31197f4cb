"""The real entry point: `__main__.py` reads the running stack's config and declares the stack."""

from __future__ import annotations

import json
import runpy
from typing import Any

import pulumi
import pytest

from config.settings import settings_from_pulumi
from config.validation import ConfigError
from tests.pulumi_mocks import ROOT, dev_config, run_program


def test_main_declares_the_same_stack_as_build() -> None:
    def main(_settings: Any) -> dict[str, Any]:
        runpy.run_path(str(ROOT / "__main__.py"))  # reads the config itself
        return {}

    via_main = run_program(dev_config(), build=main)
    via_build = run_program(dev_config())
    assert sorted((r.type, r.name) for r in via_main.resources) == sorted((r.type, r.name) for r in via_build.resources)


def test_settings_from_pulumi_reads_the_config_and_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # `pulumi up` hands the config to the program in these two variables.
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**dev_config(), "gpu-sharing:hfToken": "hf_abc123"}))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["gpu-sharing:hfToken"]))
    pulumi.runtime.set_all_config({}, [])
    s = settings_from_pulumi()
    assert s.workloads.hf_token == "hf_abc123"
    assert "hf_abc123" not in repr(s.workloads.hf_token)
    assert s.cluster_name == "gpusharing-demo"


def test_outside_dev_the_entry_point_wants_public_access_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {k: v for k, v in dev_config().items() if k != "gpu-sharing:publicAccessCidrs"}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    pulumi.runtime.set_all_config({}, [])
    monkeypatch.setattr(pulumi, "get_stack", lambda: "dev")
    assert settings_from_pulumi().public_access_cidrs == ("0.0.0.0/0",)
    monkeypatch.setattr(pulumi, "get_stack", lambda: "prod")
    with pytest.raises(ConfigError) as caught:
        settings_from_pulumi()
    assert caught.value.key == "gpu-sharing:publicAccessCidrs" and "'prod'" in str(caught.value)


def test_a_bad_config_stops_the_program_with_one_message_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {**dev_config(), "gpu-sharing:gpuSharing": json.dumps({"strategy": "vgpu", "replicas": 10})}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    pulumi.runtime.set_all_config({}, [])
    # pulumi.RunError is the SDK's exception for a clean stop: the CLI shows its message, no traceback.
    with pytest.raises(pulumi.RunError) as caught:
        runpy.run_path(str(ROOT / "__main__.py"))
    assert "gpu-sharing:gpuSharing.strategy" in str(caught.value) and "'vgpu'" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_each_stack_gets_its_own_cluster_name_unless_it_sets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # A prod stack next to dev in one account and region: its EKS cluster (and the control-plane
    # log group named after it) must not take the dev stack's name.
    config = {k: v for k, v in dev_config().items() if k != "gpu-sharing:clusterName"}
    config["gpu-sharing:publicAccessCidrs"] = json.dumps(["203.0.113.0/24"])
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    pulumi.runtime.set_all_config({}, [])
    monkeypatch.setattr(pulumi, "get_stack", lambda: "prod")
    assert settings_from_pulumi().cluster_name == "gpusharing-prod"
    monkeypatch.setattr(pulumi, "get_stack", lambda: "team.a")  # stack names may hold '.'
    assert settings_from_pulumi().cluster_name == "gpusharing-team-a"
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**config, "gpu-sharing:clusterName": "shared-gpus"}))
    assert settings_from_pulumi().cluster_name == "shared-gpus"
