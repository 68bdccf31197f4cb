"""Reading what `pulumi preview` declares, for the policy rules (``policy.rules``): the wire
(camelCase) properties of Kubernetes objects (pod templates, containers, the GPU shares pods ask
for, the node a pod must share) and of the GPU node groups (their GPUs, the sharing replicas the
GPU Operator's device plugin advertises). Anything missing or malformed reads as empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from config.facts import EKS_TAINT_EFFECTS
from config.instances import gpu_for_instance_type

__all__ = [
    "Resource",
    "GPU_RESOURCES",
    "NODE_GROUPS",
    "as_map",
    "as_list",
    "kind_of",
    "name_of",
    "pod_specs",
    "containers",
    "gpus_per_pod",
    "workload_name",
    "gpu_node_groups",
    "tolerates",
    "gpu_workloads",
    "sharing_replicas",
    "gpus_per_node",
    "node_mates",
]

GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/gpu.shared")
NODE_GROUPS = ("eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup")
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
NODE_TOPOLOGY = "kubernetes.io/hostname"


@dataclass(frozen=True)
class Resource:
    """One declared resource, as a stack rule sees it."""

    type: str
    name: str
    props: Mapping[str, Any]




# --- reading Kubernetes objects --------------------------------------------------------


def as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []


def kind_of(resource_type: str, props: Mapping[str, Any]) -> str:
    return str(props.get("kind") or resource_type.rsplit(":", 1)[-1])


def name_of(props: Mapping[str, Any]) -> str:
    return str(as_map(props.get("metadata")).get("name") or "?")


def pod_specs(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], int]]:
    """Each pod template of a Kubernetes workload, with how many pods it makes.

    A DaemonSet counts 1: one pod per node it runs on.
    """
    if not resource_type.startswith("kubernetes:"):
        return
    kind, spec = kind_of(resource_type, props), as_map(props.get("spec"))
    if kind == "Pod":
        yield spec, 1
    elif kind in ("Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"):
        replicas = spec.get("replicas")
        yield as_map(as_map(spec.get("template")).get("spec")), 1 if replicas is None else int(replicas)
    elif kind == "DaemonSet":
        yield as_map(as_map(spec.get("template")).get("spec")), 1
    elif kind == "Job":
        yield as_map(as_map(spec.get("template")).get("spec")), int(spec.get("parallelism") or 1)
    elif kind == "CronJob":
        job = as_map(as_map(spec.get("jobTemplate")).get("spec"))
        yield as_map(as_map(job.get("template")).get("spec")), int(job.get("parallelism") or 1)


def containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for field in ("initContainers", "containers"):
        yield from (as_map(c) for c in as_list(pod.get(field)))


def gpus_per_pod(pod: Mapping[str, Any]) -> int:
    """The GPU shares a pod asks for (extended resources: limits, or requests equal to them)."""
    total = 0
    for c in containers(pod):
        res = as_map(c.get("resources"))
        asked = {**as_map(res.get("requests")), **as_map(res.get("limits"))}
        total += sum(int(str(asked[r])) for r in GPU_RESOURCES if r in asked)
    return total


def workload_name(resource_type: str, props: Mapping[str, Any]) -> str:
    return f"{kind_of(resource_type, props)} {name_of(props)!r}"


def gpu_node_groups(resources: Sequence[Resource]) -> list[Resource]:
    """The GPU node groups, each once: the pulumi-eks components if the engine shows them,
    else the aws:eks node groups they create (the same groups, so never both)."""
    groups = [
        r
        for r in resources
        if r.type in NODE_GROUPS
        and (
            any(as_map(t).get("key") in GPU_RESOURCES for t in as_list(r.props.get("taints")))
            or re.search("NVIDIA|GPU", str(r.props.get("amiType") or ""))
        )
    ]
    components = [g for g in groups if g.type == NODE_GROUPS[0]]
    return components or groups


def tolerates(tolerations: list[Any], taint: Mapping[str, Any]) -> bool:
    effect = EKS_TAINT_EFFECTS.get(str(taint.get("effect")), str(taint.get("effect")))
    for t in (as_map(x) for x in tolerations):
        key_ok = t.get("key") == taint.get("key") or (t.get("operator") == "Exists" and not t.get("key"))
        value_ok = t.get("operator") == "Exists" or t.get("value") == taint.get("value")
        if key_ok and value_ok and t.get("effect") in (None, "", effect):
            return True
    return False


def gpu_workloads(resources: Sequence[Resource]) -> Iterator[tuple[Resource, Mapping[str, Any], int, int]]:
    """(resource, pod spec, pods, GPU shares per pod) for each workload asking for a GPU."""
    for r in resources:
        for pod, pods in pod_specs(r.type, r.props):
            gpus = gpus_per_pod(pod)
            if gpus:
                yield r, pod, pods, gpus


def sharing_replicas(resources: Sequence[Resource]) -> int:
    """``nvidia.com/gpu`` advertised per physical GPU: the device plugin config the GPU
    Operator release points at (devicePlugin.config name/default), 1 without sharing."""
    for r in resources:
        if r.type != HELM_RELEASE or r.props.get("chart") != "gpu-operator":
            continue
        conf = as_map(as_map(as_map(r.props.get("values")).get("devicePlugin")).get("config"))
        for cm in resources:
            if cm.type == CONFIG_MAP and name_of(cm.props) == conf.get("name"):
                text = as_map(cm.props.get("data")).get(str(conf.get("default")))
                sharing = as_map(as_map(yaml.safe_load(text) if isinstance(text, str) else {}).get("sharing"))
                for strategy in sharing.values():
                    for res in as_list(as_map(strategy).get("resources")):
                        if as_map(res).get("name") == "nvidia.com/gpu":
                            return int(as_map(res).get("replicas") or 1)
    return 1


def gpus_per_node(group: Resource) -> int:
    """Physical GPUs of a node group's instance type (config.instances); 1 for a type it does not know."""
    types = [str(t) for t in as_list(group.props.get("instanceTypes"))]
    gpu = gpu_for_instance_type(types[0]) if types else None
    return gpu.gpus_per_node if gpu is not None else 1


def node_mates(pod: Mapping[str, Any]) -> frozenset[tuple[str, str]] | None:
    """The labels of the pods a pod must share a node with (a required pod affinity term on
    kubernetes.io/hostname), or None: pods with the same term run on one node."""
    affinity = as_map(as_map(pod.get("affinity")).get("podAffinity"))
    for term in (as_map(t) for t in as_list(affinity.get("requiredDuringSchedulingIgnoredDuringExecution"))):
        labels = as_map(as_map(term.get("labelSelector")).get("matchLabels"))
        if term.get("topologyKey") == NODE_TOPOLOGY and labels:
            return frozenset((str(k), str(v)) for k, v in labels.items())
    return None
