"""Models on several GPU nodes (issue 15): a dev-like stack whose GPU node group may grow to three
nodes and whose three models do not fit one GPU, through the real program (Pulumi mocks). Each
GPU's models are planned and started together and kept on one node; the GPUs' models are kept
apart; a stack that can have one GPU node declares its models as it always did."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from config.settings import load_settings
from tests.pulumi_mocks import Recorded, dev_config, run_program
from workloads.contract import Contract
from workloads.pod import GPU_GROUP_LABEL

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
QWEN7 = {"modelId": "Qwen/Qwen2.5-7B-Instruct", "startOrder": 3}


def several_gpus(**models: dict[str, Any]) -> dict[str, Any]:
    """The dev stack with a GPU node group of 0 to 3 nodes, plus Qwen2.5-7B (phi35-mini,
    deepseek-r1-8b and qwen7 do not fit one L40S), plus ``models`` changes."""
    config = dev_config()
    catalog = {**json.loads(config["gpu-sharing:models"]), "qwen7": dict(QWEN7)}
    for key, fields in models.items():
        catalog.setdefault(key.replace("_", "-"), {}).update(fields)
    gpu_nodes = {**json.loads(config["gpu-sharing:gpuNodes"]), "minSize": 0, "desiredSize": 0, "maxSize": 3}
    return {**config, "gpu-sharing:models": json.dumps(catalog), "gpu-sharing:gpuNodes": json.dumps(gpu_nodes)}


@pytest.fixture(scope="module")
def stack() -> Recorded:
    return run_program(several_gpus())


def _deployment(rec: Recorded, key: str) -> dict[str, Any]:
    (d,) = [r.inputs for r in rec.of_type(DEPLOYMENT) if r.inputs["metadata"]["name"] == key]
    return d


def _pod(rec: Recorded, key: str) -> dict[str, Any]:
    return _deployment(rec, key)["spec"]["template"]


def test_the_models_are_placed_on_two_gpus_each_with_its_own_memory_plan(stack: Recorded) -> None:
    placement = load_settings(several_gpus()).workloads.placement
    # First-fit decreasing: deepseek-r1-8b (the largest need) opens GPU 1, qwen7 fits beside it, phi35-mini
    # fits beside neither (not in the GPU's memory, nor 3 x 24Gi in one g6e.2xlarge).
    assert {g: placement.keys(g) for g in placement.plans} == {1: ["deepseek-r1-8b", "qwen7"], 2: ["phi35-mini"]}
    models = stack.outputs["contract"]["models"]
    assert {k: m["gpu_group"] for k, m in models.items()} == {"phi35-mini": 2, "deepseek-r1-8b": 1, "qwen7": 1}
    for key, m in models.items():
        planned = placement.model(key)
        assert m["cuda_memory_fraction"] == planned.cuda_memory_fraction
        assert m["planned_kv_tokens"] == planned.kv_tokens >= m["max_batch_total_tokens"]
        args = _pod(stack, key)["spec"]["containers"][0]["args"]
        assert float(args[args.index("--cuda-memory-fraction") + 1]) == m["cuda_memory_fraction"]
    # Alone on its GPU, phi35-mini is the last model of its start order: it takes the card to TGI's 10% floor.
    assert models["phi35-mini"]["cuda_memory_fraction"] == 1.0
    assert placement.warnings == ()


def test_a_gpus_models_share_a_node_and_the_gpus_are_kept_apart(stack: Recorded) -> None:
    for key, group in (("deepseek-r1-8b", "1"), ("qwen7", "1"), ("phi35-mini", "2")):
        template = _pod(stack, key)
        assert template["metadata"]["labels"][GPU_GROUP_LABEL] == group
        affinity = template["spec"]["affinity"]
        (together,) = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert together == {"labelSelector": {"matchLabels": {GPU_GROUP_LABEL: group}}, "topologyKey": "kubernetes.io/hostname"}
        (apart,) = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert apart["topologyKey"] == "kubernetes.io/hostname"
        assert apart["labelSelector"]["matchExpressions"] == [
            {"key": GPU_GROUP_LABEL, "operator": "Exists"},
            {"key": GPU_GROUP_LABEL, "operator": "NotIn", "values": [group]},
        ]
        # The selector still picks the Deployment's own pods only: the group label is extra.
        assert GPU_GROUP_LABEL not in _deployment(stack, key)["spec"]["selector"]["matchLabels"]


def test_the_start_order_is_per_gpu(stack: Recorded) -> None:
    def waits_for(key: str) -> list[str]:
        init = _pod(stack, key)["spec"]["initContainers"]
        waits = [c for c in init if c["name"] == "wait-for-earlier-models"]
        return waits[0]["command"][7:] if waits else []

    # phi35-mini starts first overall but is alone on GPU 2; qwen7 waits for deepseek-r1-8b, not for phi35-mini.
    assert (waits_for("phi35-mini"), waits_for("deepseek-r1-8b"), waits_for("qwen7")) == ([], [], ["deepseek-r1-8b"])
    # Pulumi waits for a model's rollout as long as its own GPU's start order may take.
    timeouts = {k: int(_deployment(stack, k)["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]) for k in ("phi35-mini", "qwen7")}
    assert timeouts == {"phi35-mini": 30 * 60, "qwen7": 60 * 60}
    (order,) = [r.inputs for r in stack.of_type("kubernetes:core/v1:ConfigMap") if r.name == "models-start-order"]
    assert order["data"]["enabled"].split() == ["phi35-mini", "deepseek-r1-8b", "qwen7"]


def test_every_object_is_strictly_valid(stack: Recorded) -> None:
    objects = [r for r in stack.resources if r.type.startswith("kubernetes:") and r.name.startswith("models-")]
    assert len([r for r in objects if r.type == DEPLOYMENT]) == 3
    for r in objects:
        for version in ("1.33", load_settings({}).kubernetes_version):
            kubernetes_validate.validate({k: v for k, v in r.inputs.items() if v is not None}, version, strict=True)


def test_a_stack_with_one_gpu_node_declares_its_models_as_before() -> None:
    # One GPU node (maxSize 1): nothing to keep together or apart, so no affinity and no group label:
    # the Deployments of a single-GPU stack are what they were before several GPUs.
    dev = run_program(dev_config())
    for key in ("phi35-mini", "deepseek-r1-8b"):
        template = _pod(dev, key)
        assert "affinity" not in template["spec"] and GPU_GROUP_LABEL not in template["metadata"]["labels"]
    assert {m["gpu_group"] for m in dev.outputs["contract"]["models"].values()} == {1}
    # The pair on a node group that may grow: one GPU still, its models kept together.
    config = dev_config()
    grow = {**json.loads(config["gpu-sharing:gpuNodes"]), "maxSize": 2}
    pair = run_program({**config, "gpu-sharing:gpuNodes": json.dumps(grow)})
    for key in ("phi35-mini", "deepseek-r1-8b"):
        assert _pod(pair, key)["metadata"]["labels"][GPU_GROUP_LABEL] == "1"
        # The same memory plan as on the one-node group.
        assert _pod(pair, key)["spec"]["containers"][0]["args"] == _pod(dev, key)["spec"]["containers"][0]["args"]


def test_a_pinned_model_goes_to_its_gpu_and_the_others_fill_around_it() -> None:
    rec = run_program(several_gpus(phi35_mini={"gpuGroup": 1}))
    groups = {k: m["gpu_group"] for k, m in rec.outputs["contract"]["models"].items()}
    # phi35-mini holds GPU 1; deepseek-r1-8b fits beside it, qwen7 does not: GPU 2.
    assert groups == {"phi35-mini": 1, "deepseek-r1-8b": 1, "qwen7": 2}


def test_toggling_a_model_changes_only_its_replicas_and_the_start_list() -> None:
    on = run_program(several_gpus())
    off = run_program(several_gpus(qwen7={"enabled": False}))
    before = {(r.type, r.name): r.inputs for r in on.resources}
    after = {(r.type, r.name): r.inputs for r in off.resources}
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {(DEPLOYMENT, "models-qwen7-deployment"), ("kubernetes:core/v1:ConfigMap", "models-start-order")}


def test_the_contract_says_which_models_share_a_gpu(stack: Recorded) -> None:
    contract = Contract.from_dict(json.loads(json.dumps(stack.outputs["contract"])))
    assert {g: [m.key for m in ms] for g, ms in contract.gpu_groups().items()} == {1: ["deepseek-r1-8b", "qwen7"], 2: ["phi35-mini"]}
    assert contract.gpu["nodes"] == {"min": 0, "max": 3}
    # A contract written before several GPUs has no gpu_group: every model shares GPU 1.
    old = json.loads(json.dumps(stack.outputs["contract"]))
    for m in old["models"].values():
        del m["gpu_group"]
    assert list(Contract.from_dict(old).gpu_groups()) == [1]
