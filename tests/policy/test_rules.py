"""Each policy rule on the resources the real program declares (Pulumi mocks): the dev stack
passes every mandatory rule, and one field changed on a recorded resource makes each rule fire."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from config.instances import gpu_for_instance_type
from policy.rules import RULES, Resource, Rule, rule
from tests.pulumi_mocks import ROOT, Recorded, dev_config, run_program

TOKEN = "hf_policyTestTokenNotReal0123456789"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"


@pytest.fixture(scope="module")
def dev() -> Recorded:
    return run_program({**dev_config(), "gpu-sharing:hfToken": TOKEN})


def _resources(rec: Recorded) -> list[Resource]:
    # What a policy pack sees: the type token, the name and the (wire, camelCase) properties.
    return [Resource(r.type, r.name, r.outputs) for r in rec.resources]


def violations(r: Rule, resources: list[Resource]) -> list[str]:
    if r.check_resource is not None:
        return [m for res in resources for m in r.check_resource(res.type, res.props)]
    assert r.check_stack is not None
    return r.check_stack(resources)


Mutation = Callable[[dict[str, Any]], None]


def _changed(resources: list[Resource], select: Callable[[Resource], bool], change: Mutation) -> list[Resource]:
    """The resources with one of them (the first ``select`` picks) changed by ``change``."""
    out, done = [], False
    for r in resources:
        if not done and select(r):
            props = copy.deepcopy(dict(r.props))
            change(props)
            r, done = Resource(r.type, r.name, props), True
        out.append(r)
    assert done, "no resource matched"
    return out


def _deployment(key: str) -> Callable[[Resource], bool]:
    return lambda r: r.type == DEPLOYMENT and r.props["metadata"]["name"] == key


def _pod(props: dict[str, Any]) -> dict[str, Any]:
    return props["spec"]["template"]["spec"]


def _tgi(props: dict[str, Any]) -> dict[str, Any]:
    (c,) = _pod(props)["containers"]
    return c


def _set_env(props: dict[str, Any], name: str, value: str) -> None:
    env = _tgi(props)["env"]
    env[:] = [e for e in env if e["name"] != name] + [{"name": name, "value": value}]


def _is_type(t: str) -> Callable[[Resource], bool]:
    return lambda r: r.type == t


def _release(chart: str) -> Callable[[Resource], bool]:
    return lambda r: r.type == "kubernetes:helm.sh/v3:Release" and r.props["chart"] == chart


# Per rule: changes to one recorded resource, each of which must make the rule fire with a
# message containing the given text.
VIOLATIONS: dict[str, list[tuple[Callable[[Resource], bool], Mutation, str]]] = {
    "container-resources": [
        (_deployment("phi35-mini"), lambda p: _tgi(p)["resources"]["limits"].pop("cpu"), "'tgi' has no limits.cpu"),
        (_deployment("deepseek-r1-8b"), lambda p: _pod(p)["initContainers"][0]["resources"].pop("requests"), "requests.cpu, requests.memory"),
    ],
    "model-service-cluster-ip": [
        (_is_type(SERVICE), lambda p: p["spec"].update(type="LoadBalancer"), "'LoadBalancer'"),
        (_is_type(SERVICE), lambda p: p["spec"].update(type="NodePort"), "'NodePort'"),
    ],
    "no-privileged-or-host-namespaces": [
        (_deployment("phi35-mini"), lambda p: _pod(p).update(hostNetwork=True), "hostNetwork"),
        (_deployment("phi35-mini"), lambda p: _pod(p).update(hostPID=True), "hostPID"),
        (_deployment("phi35-mini"), lambda p: _tgi(p)["securityContext"].update(privileged=True), "'tgi' is privileged"),
    ],
    "pinned-versions": [
        (_deployment("phi35-mini"), lambda p: _tgi(p).update(image="ghcr.io/huggingface/text-generation-inference:latest"), "not pinned"),
        (_deployment("phi35-mini"), lambda p: _tgi(p).update(image="ghcr.io/huggingface/text-generation-inference"), "not pinned"),
        (_release("gpu-operator"), lambda p: p.pop("version"), "'gpu-operator'"),
        (_release("gpu-operator"), lambda p: p.update(version="latest"), "'latest'"),
        (_release("cluster-autoscaler"), lambda p: p.update(version="9.59"), "'cluster-autoscaler'"),
    ],
    "no-plain-secret-env": [
        (_deployment("phi35-mini"), lambda p: _set_env(p, "HF_TOKEN", TOKEN), "sets HF_TOKEN as a plain value"),
        (_deployment("phi35-mini"), lambda p: _set_env(p, "MODEL_OPTS", f"--auth {TOKEN}"), "sets MODEL_OPTS"),
    ],
    "gpu-pod-placement": [
        (_deployment("phi35-mini"), lambda p: _pod(p).pop("nodeSelector"), "selects no GPU node group"),
        (_deployment("phi35-mini"), lambda p: _pod(p).update(nodeSelector={"eks-node": "cpu"}), "selects no GPU node group"),
        (_deployment("deepseek-r1-8b"), lambda p: _pod(p).pop("tolerations"), "does not tolerate"),
    ],
    "gpu-pods-within-sharing-replicas": [
        (_deployment("phi35-mini"), lambda p: p["spec"].update(replicas=10), "11 GPU shares asked for"),
        (
            lambda r: r.type == "kubernetes:core/v1:ConfigMap" and r.name == "gpu-operator-device-plugin-config",
            lambda p: p["data"].update({k: v.replace("replicas: 10", "replicas: 1") for k, v in p["data"].items()}),
            "offers 1 (1 sharing replicas x 1 GPU(s) per node x 1 node(s))",
        ),
        (
            lambda r: r.type == "eks:index:ManagedNodeGroup" and r.name == "cluster-gpu",
            lambda p: p["scalingConfig"].update(maxSize=0),
            "2 GPU shares asked for",
        ),
    ],
    "eks-public-endpoint-open": [],  # the dev stack itself violates it: see below
    "node-groups-in-private-subnets": [
        (
            lambda r: r.type == "eks:index:ManagedNodeGroup" and r.name == "cluster-cpu",
            lambda p: p["subnetIds"].__setitem__(0, "network-public-0-id"),
            "'cluster-cpu' has nodes in public subnets ['network-public-0-id']",
        ),
    ],
}


def test_every_rule_has_violating_cases() -> None:
    assert set(VIOLATIONS) == {r.name for r in RULES}


@pytest.mark.parametrize("name", [r.name for r in RULES if r.enforcement == "mandatory"])
def test_the_dev_stack_passes_every_mandatory_rule(dev: Recorded, name: str) -> None:
    assert violations(rule(name), _resources(dev)) == []


@pytest.mark.parametrize(
    ("name", "case"), [(name, i) for name, cases in VIOLATIONS.items() for i in range(len(cases))]
)
def test_one_field_changed_makes_the_rule_fire(dev: Recorded, name: str, case: int) -> None:
    select, change, expected = VIOLATIONS[name][case]
    found = violations(rule(name), _changed(_resources(dev), select, change))
    assert len(found) == 1 and expected in found[0], found


def test_public_subnet_ids_are_what_the_network_declares(dev: Recorded) -> None:
    # The node-group case above uses a public subnet's real id.
    public = [r.outputs["id"] for r in dev.of_type("aws:ec2/subnet:Subnet") if r.inputs["mapPublicIpOnLaunch"]]
    assert "network-public-0-id" in public


def test_public_endpoint_advice_fires_for_dev_and_not_for_a_narrowed_endpoint(dev: Recorded) -> None:
    open_rule = rule("eks-public-endpoint-open")
    (message,) = violations(open_rule, _resources(dev))
    assert "open to 0.0.0.0/0" in message and "gpu-sharing:publicAccessCidrs" in message
    narrowed = run_program({**dev_config(), "gpu-sharing:publicAccessCidrs": json.dumps(["203.0.113.0/24"])})
    assert violations(open_rule, _resources(narrowed)) == []
    # The aws:eks/cluster:Cluster pulumi-eks creates carries the same settings in vpcConfig.
    cluster = narrowed.one("eks:index:Cluster").inputs
    as_aws = Resource("aws:eks/cluster:Cluster", "c", {"name": "c", "vpcConfig": {"publicAccessCidrs": cluster["publicAccessCidrs"]}})
    assert violations(open_rule, [as_aws]) == []
    opened = Resource("aws:eks/cluster:Cluster", "c", {"name": "c", "vpcConfig": {"publicAccessCidrs": ["0.0.0.0/0"]}})
    assert len(violations(open_rule, [opened])) == 1
    private_only = Resource("aws:eks/cluster:Cluster", "c", {"vpcConfig": {"endpointPublicAccess": False}})
    assert violations(open_rule, [private_only]) == []


def test_gpu_rules_follow_the_stack_settings() -> None:
    # Without the GPU taint the pods need no toleration; with 2 sharing replicas 3 models are too many.
    untainted = run_program({**dev_config(), "gpu-sharing:gpuNodes": json.dumps({**json.loads(dev_config()["gpu-sharing:gpuNodes"]), "taint": False})})
    assert violations(rule("gpu-pod-placement"), _resources(untainted)) == []
    assert all("tolerations" not in r.inputs["spec"]["template"]["spec"] for r in untainted.of_type(DEPLOYMENT))
    rec = run_program({**dev_config(), "gpu-sharing:gpuSharing": json.dumps({"strategy": "time-slicing", "replicas": 2})})
    resources = _resources(rec)
    assert violations(rule("gpu-pods-within-sharing-replicas"), resources) == []  # 2 models, 2 shares
    third = _changed(resources, _deployment("phi35-mini"), lambda p: p["spec"].update(replicas=2))
    (message,) = violations(rule("gpu-pods-within-sharing-replicas"), third)
    assert "3 GPU shares" in message and "offers 2" in message


def test_a_digest_pinned_image_passes() -> None:
    digest = "ghcr.io/huggingface/text-generation-inference@sha256:" + "0" * 64
    pod = {"kind": "Pod", "spec": {"containers": [{"name": "x", "image": digest}]}}
    assert violations(rule("pinned-versions"), [Resource("kubernetes:core/v1:Pod", "p", pod)]) == []
    pod["spec"]["containers"][0]["image"] = digest.split("@")[0]
    assert len(violations(rule("pinned-versions"), [Resource("kubernetes:core/v1:Pod", "p", pod)])) == 1


def test_the_readme_documents_every_rule_at_its_level() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("<!-- section: guardrails -->", 1)[1].split("<!-- /section: guardrails -->", 1)[0]
    for r in RULES:
        assert f"| `{r.name}` | {r.enforcement} |" in section, r.name


def test_a_node_group_seen_twice_counts_once(dev: Recorded) -> None:
    # The engine may show both the pulumi-eks component and the aws:eks node group it creates.
    resources = _resources(dev)
    (gpu,) = [r for r in resources if r.name == "cluster-gpu"]
    child = Resource("aws:eks/nodeGroup:NodeGroup", "cluster-gpu-managedNodeGroup", gpu.props)
    crowded = _changed(resources + [child], _deployment("phi35-mini"), lambda p: p["spec"].update(replicas=10))
    (message,) = violations(rule("gpu-pods-within-sharing-replicas"), crowded)
    assert "offers 10" in message


def test_secret_env_names_are_matched_by_whole_words(dev: Recorded) -> None:
    plain = ("TOKENIZERS_PARALLELISM", "MAX_TOTAL_TOKENS", "KEYCLOAK_URL")
    secret = ("DB_PASSWORD", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "HUGGING_FACE_HUB_TOKEN")
    for name in plain + secret:
        changed = _changed(_resources(dev), _deployment("phi35-mini"), lambda p, n=name: _set_env(p, n, "some-value"))
        assert bool(violations(rule("no-plain-secret-env"), changed)) == (name in secret), name


def test_the_slot_rule_counts_several_gpu_nodes_and_the_pods_kept_on_one() -> None:
    from tests.workloads.test_several_gpus import several_gpus

    rec = run_program(several_gpus())
    resources = _resources(rec)
    slots = rule("gpu-pods-within-sharing-replicas")
    for r in RULES:
        if r.enforcement == "mandatory":
            assert violations(r, resources) == [], r.name
    # 12 shares fit the 30 of three nodes, but qwen7 and deepseek-r1-8b are kept on one node of 10.
    crowded = _changed(resources, _deployment("qwen7"), lambda p: p["spec"].update(replicas=10))
    (message,) = violations(slots, crowded)
    assert message.startswith("11 GPU shares asked for by pods kept on one node (gpu-sharing/gpu-group=1:")
    assert "one GPU node offers 10" in message
    # Two GPU groups, each kept on a node of its own, on a node group of one node.
    one_node = _changed(resources, lambda r: r.name == "cluster-gpu", lambda p: p["scalingConfig"].update(maxSize=1))
    (message,) = violations(slots, one_node)
    assert message.startswith("2 sets of pods each kept on a node of their own") and "at most 1 node(s)" in message
    # The whole group's offer: replicas x GPUs per node (the instance type's, config/instances.py) x maxSize.
    gpus = gpu_for_instance_type("g6e.2xlarge")
    assert gpus is not None and gpus.gpus_per_node == 1
    flooded = _changed(resources, _deployment("phi35-mini"), lambda p: p["spec"].update(replicas=29))
    total, one_node_of_phi = violations(slots, flooded)
    assert total.startswith("31 GPU shares asked for") and "offers 30 (10 sharing replicas x 1 GPU(s) per node x 3 node(s))" in total
    assert one_node_of_phi.startswith("29 GPU shares asked for by pods kept on one node (gpu-sharing/gpu-group=2:")
