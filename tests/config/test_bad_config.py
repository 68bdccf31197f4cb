"""Malformed stack configs: each fails with a message naming the key and the value, through
the same entry as the program, and declares no resource at all."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from config.instances import GPU_NODE_TYPES
from config.validation import ConfigError
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
    (_with("cpuNodes", minSize=0, desiredSize=0), "gpu-sharing:cpuNodes.minSize", "0"),
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


def _refused(config: dict[str, Any], key: str, quoted: str) -> ConfigError:
    """The error the program stops with: it names ``key`` and quotes the value, and nothing
    was declared before it."""
    rec = Recorded()
    with pytest.raises(ConfigError) as caught:
        run_program(config, into=rec)
    message = str(caught.value)
    assert caught.value.key == key, message
    assert message.startswith(f"stack config {key}: got {quoted}; allowed: "), message
    assert rec.resources == [], f"{key}: declared {[r.name for r in rec.resources]} before failing"
    return caught.value


@pytest.mark.parametrize(("config", "key", "quoted"), BAD, ids=[f"{k}={q}" for _, k, q in BAD])
def test_bad_config_names_key_and_value_and_declares_nothing(config: dict[str, Any], key: str, quoted: str) -> None:
    _refused(config, key, quoted)


def test_unknown_gpu_instance_type_lists_the_known_ones() -> None:
    rec = Recorded()
    with pytest.raises(ConfigError) as caught:
        run_program(_with("gpuNodes", instanceType="p4d.24xlarge"), into=rec)
    assert caught.value.key == "gpu-sharing:gpuNodes.instanceType"
    assert "'p4d.24xlarge'" in str(caught.value)
    assert all(t in caught.value.allowed for t in GPU_NODE_TYPES)
    assert rec.resources == []


def test_unknown_key_error_lists_the_known_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        run_program(_with("gpuSharing", replica=4))
    for known in ("strategy", "replicas", "renameByDefault", "failRequestsGreaterThanOne"):
        assert known in caught.value.allowed


def test_unknown_model_key_lists_every_key_a_model_accepts() -> None:
    # Optional keys nobody set (quantize, dtype, revision, architecture, startOrder) are keys
    # the section accepts too: the list is the README's table of model keys, whole.
    from tests.config.test_readme import _section

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


def _models(**changes: dict[str, Any]) -> dict[str, Any]:
    """The dev stack with fields of some catalog entries changed (or entries added)."""
    config = dev_config()
    models = json.loads(config["gpu-sharing:models"])
    for key, fields in changes.items():
        models.setdefault(key.replace("_", "-"), {}).update(fields)
    return {**config, "gpu-sharing:models": json.dumps(models)}


_ARCH_30B = {
    "parameters": 30_000_000_000, "layers": 48, "kvHeads": 8, "headDim": 128, "hiddenSize": 5120,
    "intermediateSize": 25600, "vocabSize": 151936, "dtype": "bfloat16",
}  # fmt: skip
_LLAMA = "meta-llama/Llama-3.1-8B-Instruct"

# Settings `pulumi preview` accepted and AWS or Kubernetes would refuse, or that would harm
# (issue 10, section 4): (config, the key the error must name, the value it must quote, text
# the message must show).
ACCEPTED_BEFORE = [
    (_set("gpu-sharing:kubernetesVersion", "1.99"), "gpu-sharing:kubernetesVersion", "'1.99'", "'1.32', '1.33', '1.34', '1.35'"),
    (_set("gpu-sharing:kubernetesVersion", "1.20"), "gpu-sharing:kubernetesVersion", "'1.20'", "'1.35'"),
    (_set("aws:region", "us-west-9"), "aws:region", "'us-west-9'", "'us-west-2'"),
    (_set("gpu-sharing:vpcCidr", "224.0.0.0/16"), "gpu-sharing:vpcCidr", "'224.0.0.0/16'", "private range (RFC 1918: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)"),
    (_set("gpu-sharing:vpcCidr", "127.0.0.0/16"), "gpu-sharing:vpcCidr", "'127.0.0.0/16'", "private range (RFC 1918"),
    (_with("cpuNodes", instanceType="t3.huge"), "gpu-sharing:cpuNodes.instanceType", "'t3.huge'", "t3.large"),
    (_with("cpuNodes", instanceType="m7g.large"), "gpu-sharing:cpuNodes.instanceType", "'m7g.large'", "x86_64"),
    (_set("gpu-sharing:namespace", "kube-system"), "gpu-sharing:namespace", "'kube-system'", "not one every cluster has"),
    (_set("gpu-sharing:namespace", "default"), "gpu-sharing:namespace", "'default'", "not one every cluster has"),
    (_with("gpuOperator", namespace="llm-testing"), "gpu-sharing:gpuOperator.namespace", "'llm-testing'", "other than the models' (gpu-sharing:namespace is 'llm-testing')"),
    (_set("gpu-sharing:models", json.dumps({"llama": {"modelId": _LLAMA}})), "gpu-sharing:hfToken", "nothing (the key is required)", f"gated model(s) {_LLAMA} (models.llama)"),
    (_models(phi35_mini={"image": "ghcr.io/huggingface/text-generation-inference:latest"}), "gpu-sharing:models.phi35-mini.image", "'ghcr.io/huggingface/text-generation-inference:latest'", "pinned by a version tag other than 'latest'"),
    (_models(phi35_mini={"image": "ghcr.io/huggingface/text-generation-inference"}), "gpu-sharing:models.phi35-mini.image", "'ghcr.io/huggingface/text-generation-inference'", "pinned by a version tag"),
    (_models(phi35_mini={"memory": "0"}), "gpu-sharing:models.phi35-mini.memory", "'0'", "at least 1Gi"),
    (_models(phi35_mini={"cpu": "0"}), "gpu-sharing:models.phi35-mini.cpu", "'0'", "above zero"),
    (_models(phi35_mini={"shmSize": "64Gi"}), "gpu-sharing:models.phi35-mini.shmSize", "'64Gi'", "below memory (24Gi)"),
    (_with("gpuNodes", diskSizeGib=20), "gpu-sharing:gpuNodes.diskSizeGib", "20", "the enabled models' weights (phi35-mini 7.1 GiB, deepseek-r1-8b 15.0 GiB)"),
    # A third model at 24Gi: 3 x 24 GiB > the 58.23 GiB a g6e.2xlarge has allocatable, so it needs a
    # second GPU node, which gpuNodes.maxSize 1 does not allow; a model that fits no node even alone
    # names its own request.
    (_models(qwen={"modelId": "Qwen/Qwen2.5-1.5B-Instruct"}), "gpu-sharing:gpuNodes.maxSize", "1", "72.00 GiB, more than the 58.23 GiB one g6e.2xlarge node has allocatable"),
    (_models(qwen={"modelId": "Qwen/Qwen2.5-1.5B-Instruct", "memory": "4Gi", "cpu": "4"}), "gpu-sharing:gpuNodes.maxSize", "1", "8.00 CPU, more than the 7.91 CPU"),
    (_models(qwen={"modelId": "Qwen/Qwen2.5-1.5B-Instruct", "memory": "64Gi"}), "gpu-sharing:models.qwen.memory", "'64Gi'", "58.23 GiB allocatable"),
    (_models(qwen={"modelId": "Qwen/Qwen2.5-1.5B-Instruct", "memory": "4Gi", "cpu": "8", "cpuLimit": "8"}), "gpu-sharing:models.qwen.cpu", "'8'", "7.91 CPU allocatable"),
    # Misleading before: the model's weights, not its maxBatchTotalTokens; the first model's
    # fraction, not the second model's maxBatchPrefillTokens (the pair then needs two GPUs, and
    # the error says why they do not share one).
    (_set("gpu-sharing:models", json.dumps({"big": {"modelId": "acme/big-30b", "architecture": _ARCH_30B}})), "gpu-sharing:models.big.modelId", "30000000000", "55.88 GiB weights"),
    (_models(phi35_mini={"cudaMemoryFraction": 0.7}, deepseek_r1_8b={"cudaMemoryFraction": 0.7}), "gpu-sharing:gpuNodes.maxSize", "1", "lower phi35-mini's cudaMemoryFraction"),
    # Related: facts the settings now check.
    (_models(phi35_mini={"image": "ghcr.io/huggingface/text-generation-inference:3.0.1"}), "gpu-sharing:models.phi35-mini.image", "'ghcr.io/huggingface/text-generation-inference:3.0.1'", "whose facts config/facts.py records (3.3.6, 3.3.7)"),
    (_models(phi35_mini={"runAsUser": 10001}), "gpu-sharing:models.phi35-mini.runAsUser", "10001", "huggingface/text-generation-inference#3082"),
    (_with("gpuOperator", chartVersion="v26.3.0"), "gpu-sharing:gpuOperator.chartVersion", "'v26.3.0'", "v26.3.1, v26.3.2, v26.3.3, v26.7.0"),
    ({**_with("gpuOperator", chartVersion="v26.7.0"), "gpu-sharing:kubernetesVersion": "1.32"}, "gpu-sharing:gpuOperator.chartVersion", "'v26.7.0'", "supports Kubernetes 1.32 (gpu-sharing:kubernetesVersion): v26.3.1, v26.3.2, v26.3.3"),
    (_set("gpu-sharing:clusterAdmins", json.dumps(["arn:aws:sts::123456789012:assumed-role/ops/me"])), "gpu-sharing:clusterAdmins[0]", "'arn:aws:sts::123456789012:assumed-role/ops/me'", "give the role's ARN"),
    (_set("gpu-sharing:benchmarkUsers", json.dumps(["arn:aws-cn:iam::123456789012:role/bench"])), "gpu-sharing:benchmarkUsers[0]", "'arn:aws-cn:iam::123456789012:role/bench'", "'aws' partition"),
    ({**_set("gpu-sharing:clusterAdmins", json.dumps(["arn:aws:iam::123456789012:role/ops"])), "gpu-sharing:benchmarkUsers": json.dumps(["arn:aws:iam::123456789012:role/ops"])}, "gpu-sharing:benchmarkUsers[0]", "'arn:aws:iam::123456789012:role/ops'", "it is in gpu-sharing:clusterAdmins[0]"),
]


@pytest.mark.parametrize(("config", "key", "quoted", "shows"), ACCEPTED_BEFORE, ids=[f"{k}={q}" for _, k, q, _ in ACCEPTED_BEFORE])
def test_settings_aws_or_kubernetes_would_refuse_stop_the_preview(config: dict[str, Any], key: str, quoted: str, shows: str) -> None:
    error = _refused(config, key, quoted)
    assert shows in error.allowed, str(error)


def test_what_the_checks_accept_still_deploys() -> None:
    # The counterparts of the refusals above: a gated model with a token, a third model that
    # fits the node, a derived non-root image, a disk that holds the weights and the image.
    ok = [
        {**_set("gpu-sharing:models", json.dumps({"llama": {"modelId": _LLAMA}})), "gpu-sharing:hfToken": "hf_notARealToken0123456789"},
        _models(qwen={"modelId": "Qwen/Qwen2.5-1.5B-Instruct", "memory": "8Gi", "cpu": "1"}),
        _models(phi35_mini={"image": "registry.example.com/tgi-nonroot:3.3.6", "runAsUser": 1000}),
        _with("gpuNodes", diskSizeGib=60),
    ]
    for config in ok:
        assert run_program(config).of_type("kubernetes:apps/v1:Deployment")


def test_without_a_chart_version_the_newest_chart_for_the_kubernetes_version_is_pinned() -> None:
    config = {k: v for k, v in dev_config().items() if k != "gpu-sharing:gpuOperator"}
    release = run_program({**config, "gpu-sharing:kubernetesVersion": "1.32"}).one("kubernetes:helm.sh/v3:Release", "gpu-operator-release")
    assert release.inputs["version"] == "v26.3.3"  # v26.7.0 lists 1.33-1.36 for EKS; 26.3.x 1.32-1.36


# Several GPU nodes (issue 15): every combination the placement cannot honour stops the preview,
# naming the key.
_QWEN7 = {"modelId": "Qwen/Qwen2.5-7B-Instruct"}
_GROW = {"minSize": 0, "desiredSize": 0, "maxSize": 2}
SEVERAL_GPUS = [
    (_models(phi35_mini={"gpuGroup": 2}), "gpu-sharing:models.phi35-mini.gpuGroup", "2", "an integer from 1 to 1"),
    (_models(phi35_mini={"gpuGroup": 0}), "gpu-sharing:models.phi35-mini.gpuGroup", "0", "an integer of at least 1"),
    (_models(phi35_mini={"gpuGroup": "two"}), "gpu-sharing:models.phi35-mini.gpuGroup", "'two'", "an integer of at least 1"),
    ({**_models(phi35_mini={"gpuGroup": 3}), "gpu-sharing:gpuNodes": json.dumps(_GROW)}, "gpu-sharing:models.phi35-mini.gpuGroup", "3", "an integer from 1 to 2"),
    # Three models that do not fit one GPU on a group of one node.
    (_models(qwen7=_QWEN7), "gpu-sharing:gpuNodes.maxSize", "1", "GPU 1 deepseek-r1-8b, qwen7; GPU 2 phi35-mini (phi35-mini: not beside"),
    # Three models pinned to one GPU whose node holds two of them.
    (_models(phi35_mini={"gpuGroup": 1}, deepseek_r1_8b={"gpuGroup": 1}, qwen7={**_QWEN7, "gpuGroup": 1}) | {"gpu-sharing:gpuNodes": json.dumps(_GROW)}, "gpu-sharing:models.qwen7.gpuGroup", "1", "on GPU 1 with phi35-mini, deepseek-r1-8b, their memory requests (24Gi, 24Gi, 24Gi) add up to 72.00 GiB"),
    # Three models at 30Gi: one per g6e.2xlarge node, on a group of two nodes.
    (_models(phi35_mini={"memory": "30Gi"}, deepseek_r1_8b={"memory": "30Gi"}, qwen7={**_QWEN7, "memory": "30Gi"}) | {"gpu-sharing:gpuNodes": json.dumps(_GROW)}, "gpu-sharing:gpuNodes.maxSize", "2", "at least 3: the enabled models need 3 GPUs"),
]


@pytest.mark.parametrize(("config", "key", "quoted", "shows"), SEVERAL_GPUS, ids=[f"{k}={q}" for _, k, q, _ in SEVERAL_GPUS])
def test_what_several_gpus_cannot_hold_stops_the_preview(config: dict[str, Any], key: str, quoted: str, shows: str) -> None:
    error = _refused(config, key, quoted)
    assert shows in error.allowed, str(error)


def test_the_gpu_group_may_scale_to_zero_with_or_without_enabled_models() -> None:
    grow = {"gpu-sharing:gpuNodes": json.dumps({**json.loads(dev_config()["gpu-sharing:gpuNodes"]), **_GROW})}
    for models in ({}, {"phi35_mini": {"enabled": False}, "deepseek_r1_8b": {"enabled": False}}):
        rec = run_program({**_models(**models), **grow})
        scaling = rec.one("eks:index:ManagedNodeGroup", "cluster-gpu").inputs["scalingConfig"]
        assert scaling == {"minSize": 0, "desiredSize": 0, "maxSize": 2}
    # Two models pinned to the two GPUs of a group of two nodes fit.
    pinned = _models(phi35_mini={"gpuGroup": 2}, deepseek_r1_8b={"gpuGroup": 1})
    groups = {k: m["gpu_group"] for k, m in run_program({**pinned, **grow}).outputs["contract"]["models"].items()}
    assert groups == {"phi35-mini": 2, "deepseek-r1-8b": 1}
