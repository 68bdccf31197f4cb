"""Malformed stack configs: each fails with a message naming the key and the value, through
the same entry as the program, and declares no resource at all."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.gpus import GPU_INSTANCE_TYPES
from infra.validation import ConfigError
from tests.pulumi_mocks import Recorded, dev_config, run_program


def _with(key: str, **changes: Any) -> dict[str, Any]:
    """The dev stack with some fields of object key ``gpu-sharing:<key>`` changed."""
    config = dev_config()
    full = f"gpu-sharing:{key}"
    config[full] = json.dumps({**json.loads(config[full]), **changes})
    return config


def _set(key: str, value: Any) -> dict[str, Any]:
    return {**dev_config(), key: value}


BAD = [
    # (config, the key the error must name, the value it must quote)
    (_with("gpuSharing", strategy="vgpu"), "gpu-sharing:gpuSharing.strategy", "'vgpu'"),
    (_with("gpuSharing", replicas=0), "gpu-sharing:gpuSharing.replicas", "0"),
    (_with("gpuSharing", replicas=-4), "gpu-sharing:gpuSharing.replicas", "-4"),
    (_with("gpuSharing", strategy="none"), "gpu-sharing:gpuSharing.replicas", "10"),
    (_with("gpuSharing", strategy="mps"), "gpu-sharing:gpuSharing.failRequestsGreaterThanOne", "False"),
    (_with("cpuNodes", minSize=5), "gpu-sharing:cpuNodes.minSize", "5"),
    (_with("gpuNodes", desiredSize=3), "gpu-sharing:gpuNodes.desiredSize", "3"),
    (_with("cpuNodes", maxSize="four"), "gpu-sharing:cpuNodes.maxSize", "'four'"),
    (_with("gpuNodes", taint="yes"), "gpu-sharing:gpuNodes.taint", "'yes'"),
    (_with("gpuNodes", diskSizeGib=10), "gpu-sharing:gpuNodes.diskSizeGib", "10"),
    (_with("gpuNodes", labels={"eks-node": "gpu node"}), "gpu-sharing:gpuNodes.labels.eks-node", "'gpu node'"),
    (_with("cpuNodes", instancetype="t3.large"), "gpu-sharing:cpuNodes.instancetype", "'t3.large'"),
    (_with("gpuOperator", chartVersion="latest"), "gpu-sharing:gpuOperator.chartVersion", "'latest'"),
    (_with("hardening", imdsv2="required"), "gpu-sharing:hardening.imdsv2", "'required'"),
    (_with("hardening", secretEncryption=False), "gpu-sharing:hardening.secretEncryption", "False"),
    (_set("gpu-sharing:gpuSharing", "time-slicing"), "gpu-sharing:gpuSharing", "'time-slicing'"),
    (_set("gpu-sharing:publicAccessCidrs", json.dumps([])), "gpu-sharing:publicAccessCidrs", "[]"),
    (_set("gpu-sharing:publicAccessCidrs", json.dumps(["10.0.0.0/33"])), "gpu-sharing:publicAccessCidrs[0]", "'10.0.0.0/33'"),
    (_set("gpu-sharing:vpcCidr", "10.0.0.1/16"), "gpu-sharing:vpcCidr", "'10.0.0.1/16'"),
    (_set("gpu-sharing:vpcCidr", "10.0.0.0/24"), "gpu-sharing:vpcCidr", "'10.0.0.0/24'"),
    (_set("gpu-sharing:natGateways", "two"), "gpu-sharing:natGateways", "'two'"),
    (_set("gpu-sharing:kubernetesVersion", "1.33.1"), "gpu-sharing:kubernetesVersion", "'1.33.1'"),
    (_set("gpu-sharing:availabilityZoneCount", "5"), "gpu-sharing:availabilityZoneCount", "'5'"),
    (_set("gpu-sharing:clusterName", ""), "gpu-sharing:clusterName", "''"),
    (_set("gpu-sharing:clustername", "typo"), "gpu-sharing:clustername", "'typo'"),
    (_set("aws:region", "mars-north-1a"), "aws:region", "'mars-north-1a'"),
]


@pytest.mark.parametrize(("config", "key", "quoted"), BAD, ids=[f"{k}={q}" for _, k, q in BAD])
def test_bad_config_names_key_and_value_and_declares_nothing(config: dict[str, Any], key: str, quoted: str) -> None:
    rec = Recorded()
    with pytest.raises(ConfigError) as caught:
        run_program(config, into=rec)
    message = str(caught.value)
    assert caught.value.key == key, message
    assert message.startswith(f"stack config {key}: got {quoted};"), message
    assert "allowed: " in message
    assert rec.resources == [], f"{key}: declared {[r.name for r in rec.resources]} before failing"


def test_unknown_gpu_instance_type_lists_the_known_ones() -> None:
    rec = Recorded()
    with pytest.raises(ConfigError) as caught:
        run_program(_with("gpuNodes", instanceType="p4d.24xlarge"), into=rec)
    assert caught.value.key == "gpu-sharing:gpuNodes.instanceType"
    assert "'p4d.24xlarge'" in str(caught.value)
    assert all(t in caught.value.allowed for t in GPU_INSTANCE_TYPES)
    assert rec.resources == []


def test_unknown_key_error_lists_the_known_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        run_program(_with("gpuSharing", replica=4))
    for known in ("strategy", "replicas", "renameByDefault", "failRequestsGreaterThanOne"):
        assert known in caught.value.allowed


def test_unknown_model_key_lists_every_key_a_model_accepts() -> None:
    # Optional keys nobody set (quantize, dtype, revision, architecture, startOrder) are keys
    # the section accepts too: the list is the README's table of model keys, whole.
    from tests.infra.test_readme import _section

    models = json.loads(dev_config()["gpu-sharing:models"])
    models["phi35-mini"]["maxInputLength"] = 256
    with pytest.raises(ConfigError) as caught:
        run_program({**dev_config(), "gpu-sharing:models": json.dumps(models)})
    assert caught.value.key == "gpu-sharing:models.phi35-mini.maxInputLength"
    table = _section("models").split("| key (under `models.<key>`) |", 1)[1].split("\n\n", 1)[0]
    documented = {key for row in table.splitlines() if row.startswith("| `") for key in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert {"quantize", "dtype", "revision", "architecture", "startOrder", "cpuLimit"} <= documented
    known = set(caught.value.allowed.split("known keys: ", 1)[1].split(", "))
    assert documented <= known, documented - known
