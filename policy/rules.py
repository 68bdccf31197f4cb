"""The policy pack's rules as plain functions over what `pulumi preview` declares.

A resource rule takes ``(resource_type, props)`` and a stack rule a list of ``Resource``;
both return the violation messages (empty when the rule holds). ``props`` are the wire
(camelCase) properties the Pulumi engine hands a policy pack, as Pulumi mocks record them,
so tests run every rule on the real program's resources without the Pulumi CLI.
``policy/__main__.py`` wraps ``RULES`` into a CrossGuard ``PolicyPack``.

Only the standard library, PyYAML and ``config.facts`` (standard library only, where the
image check the settings also apply lives): the pack imports nothing that declares resources.
The EKS components (``eks:index:*``) and the AWS resources they create (``aws:eks/*``)
both reach a policy pack, so the EKS rules read either shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from config.facts import image_pinned

__all__ = ["Resource", "Rule", "RULES", "pod_specs", "rule"]

GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/gpu.shared")
# The labels workloads.pod.model_labels puts on each model's objects.
MODEL_LABELS = {"app.kubernetes.io/component": "model-server"}
EKS_CLUSTERS = ("eks:index:Cluster", "aws:eks/cluster:Cluster")
NODE_GROUPS = ("eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup")
SUBNET = "aws:ec2/subnet:Subnet"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
OPEN = ("0.0.0.0/0", "::/0")
_SEMVER = re.compile(r"v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?")
# A credential-sounding variable name, by whole '_'-separated words (HF_TOKEN, DB_PASSWORD,
# OPENAI_API_KEY), so TOKENIZERS_PARALLELISM or MAX_TOTAL_TOKENS are not taken for one.
_SECRET_NAME = re.compile(
    r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)($|_)|(^|_)(API|ACCESS|PRIVATE|SECRET)_?KEY($|_)", re.I
)
# Values that are credentials whatever the variable is called: Hugging Face and AWS access keys.
_SECRET_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}|\bAKIA[0-9A-Z]{16}\b")
_TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}


@dataclass(frozen=True)
class Resource:
    """One declared resource, as a stack rule sees it."""

    type: str
    name: str
    props: Mapping[str, Any]


ResourceCheck = Callable[[str, Mapping[str, Any]], list[str]]
StackCheck = Callable[[Sequence[Resource]], list[str]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    enforcement: Literal["mandatory", "advisory"]
    check_resource: ResourceCheck | None = None
    check_stack: StackCheck | None = None


# --- reading Kubernetes objects --------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []


def _kind(resource_type: str, props: Mapping[str, Any]) -> str:
    return str(props.get("kind") or resource_type.rsplit(":", 1)[-1])


def _name(props: Mapping[str, Any]) -> str:
    return str(_map(props.get("metadata")).get("name") or "?")


def pod_specs(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], int]]:
    """Each pod template of a Kubernetes workload, with how many pods it makes.

    A DaemonSet counts 1: one pod per node it runs on.
    """
    if not resource_type.startswith("kubernetes:"):
        return
    kind, spec = _kind(resource_type, props), _map(props.get("spec"))
    if kind == "Pod":
        yield spec, 1
    elif kind in ("Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"):
        replicas = spec.get("replicas")
        yield _map(_map(spec.get("template")).get("spec")), 1 if replicas is None else int(replicas)
    elif kind == "DaemonSet":
        yield _map(_map(spec.get("template")).get("spec")), 1
    elif kind == "Job":
        yield _map(_map(spec.get("template")).get("spec")), int(spec.get("parallelism") or 1)
    elif kind == "CronJob":
        job = _map(_map(spec.get("jobTemplate")).get("spec"))
        yield _map(_map(job.get("template")).get("spec")), int(job.get("parallelism") or 1)


def _containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for field in ("initContainers", "containers"):
        yield from (_map(c) for c in _list(pod.get(field)))


def _gpus_per_pod(pod: Mapping[str, Any]) -> int:
    """The GPU shares a pod asks for (extended resources: limits, or requests equal to them)."""
    total = 0
    for c in _containers(pod):
        res = _map(c.get("resources"))
        asked = {**_map(res.get("requests")), **_map(res.get("limits"))}
        total += sum(int(str(asked[r])) for r in GPU_RESOURCES if r in asked)
    return total


def _workload(resource_type: str, props: Mapping[str, Any]) -> str:
    return f"{_kind(resource_type, props)} {_name(props)!r}"


# --- resource rules ---------------------------------------------------------------------


def container_resources(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    out = []
    for pod, _ in pod_specs(resource_type, props):
        for c in _containers(pod):
            res = _map(c.get("resources"))
            missing = [
                f"{kind}.{what}"
                for kind in ("requests", "limits")
                for what in ("cpu", "memory")
                if what not in _map(res.get(kind))
            ]
            if missing:
                out.append(
                    f"{_workload(resource_type, props)}: container {c.get('name')!r} has no {', '.join(missing)}"
                    " (set CPU and memory requests and limits on every container)"
                )
    return out


def model_service_cluster_ip(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if _kind(resource_type, props) != "Service" or not resource_type.startswith("kubernetes:"):
        return []
    labels = _map(_map(props.get("metadata")).get("labels"))
    if any(labels.get(k) != v for k, v in MODEL_LABELS.items()):
        return []
    kind = _map(props.get("spec")).get("type") or "ClusterIP"
    if kind == "ClusterIP":
        return []
    return [
        f"Service {_name(props)!r} of a model server is type {kind!r}: model Services must be ClusterIP "
        "(reach them by port-forward or an authenticated ingress, never straight from outside the cluster)"
    ]


def no_privileged_or_host_namespaces(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    out = []
    for pod, _ in pod_specs(resource_type, props):
        host = [f for f in ("hostNetwork", "hostPID", "hostIPC") if pod.get(f) is True]
        if host:
            out.append(f"{_workload(resource_type, props)} sets {', '.join(host)}: pods must not share the node's namespaces")
        for c in _containers(pod):
            if _map(c.get("securityContext")).get("privileged") is True:
                out.append(f"{_workload(resource_type, props)}: container {c.get('name')!r} is privileged")
    return out


def pinned_versions(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if "helm.sh" in resource_type:
        version = props.get("version")
        if isinstance(version, str) and _SEMVER.fullmatch(version):
            return []
        return [
            f"Helm chart {props.get('chart')!r} ({resource_type.rsplit(':', 1)[-1]} {props.get('name') or ''}) "
            f"has version {version!r}: pin an exact chart version such as v26.7.0"
        ]
    out = []
    for pod, _ in pod_specs(resource_type, props):
        for c in _containers(pod):
            image = str(c.get("image") or "")
            if not image_pinned(image):
                out.append(
                    f"{_workload(resource_type, props)}: container {c.get('name')!r} image {image!r} is not pinned "
                    "(use a version tag other than 'latest', or a digest)"
                )
    return out


def no_plain_secret_env(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    out = []
    for pod, _ in pod_specs(resource_type, props):
        for c in _containers(pod):
            for env in (_map(e) for e in _list(c.get("env"))):
                name, value = str(env.get("name") or ""), env.get("value")
                if not isinstance(value, str) or not value:
                    continue
                if _SECRET_NAME.search(name) or _SECRET_VALUE.search(value):
                    out.append(
                        f"{_workload(resource_type, props)}: container {c.get('name')!r} sets {name} as a plain "
                        "value: read it from a Secret (env valueFrom.secretKeyRef)"
                    )
    return out


def eks_public_endpoint_open(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if resource_type not in EKS_CLUSTERS:
        return []
    # eks:index:Cluster takes the endpoint settings at the top, aws:eks/cluster:Cluster in vpcConfig.
    conf = props if resource_type == "eks:index:Cluster" else _map(props.get("vpcConfig"))
    if conf.get("endpointPublicAccess") is False:
        return []
    cidrs = [str(c) for c in _list(conf.get("publicAccessCidrs"))] or ["0.0.0.0/0"]  # the AWS default
    open_to = [c for c in cidrs if c in OPEN]
    if not open_to:
        return []
    return [
        f"EKS cluster {props.get('name') or '?'!r}: the public API endpoint is open to {', '.join(open_to)}; "
        "set gpu-sharing:publicAccessCidrs to your own CIDRs"
    ]


# --- stack rules ------------------------------------------------------------------------


def _gpu_node_groups(resources: Sequence[Resource]) -> list[Resource]:
    """The GPU node groups, each once: the pulumi-eks components if the engine shows them,
    else the aws:eks node groups they create (the same groups, so never both)."""
    groups = [
        r
        for r in resources
        if r.type in NODE_GROUPS
        and (
            any(_map(t).get("key") in GPU_RESOURCES for t in _list(r.props.get("taints")))
            or re.search("NVIDIA|GPU", str(r.props.get("amiType") or ""))
        )
    ]
    components = [g for g in groups if g.type == NODE_GROUPS[0]]
    return components or groups


def _tolerates(tolerations: list[Any], taint: Mapping[str, Any]) -> bool:
    effect = _TAINT_EFFECTS.get(str(taint.get("effect")), str(taint.get("effect")))
    for t in (_map(x) for x in tolerations):
        key_ok = t.get("key") == taint.get("key") or (t.get("operator") == "Exists" and not t.get("key"))
        value_ok = t.get("operator") == "Exists" or t.get("value") == taint.get("value")
        if key_ok and value_ok and t.get("effect") in (None, "", effect):
            return True
    return False


def _gpu_workloads(resources: Sequence[Resource]) -> Iterator[tuple[Resource, Mapping[str, Any], int, int]]:
    """(resource, pod spec, pods, GPU shares per pod) for each workload asking for a GPU."""
    for r in resources:
        for pod, pods in pod_specs(r.type, r.props):
            gpus = _gpus_per_pod(pod)
            if gpus:
                yield r, pod, pods, gpus


def gpu_pod_placement(resources: Sequence[Resource]) -> list[str]:
    groups = _gpu_node_groups(resources)
    out = []
    for r, pod, _, _ in _gpu_workloads(resources):
        selector = _map(pod.get("nodeSelector"))
        what = _workload(r.type, r.props)
        if groups:
            wanted = [dict(_map(g.props.get("labels"))) for g in groups]
            if not any(w and all(selector.get(k) == v for k, v in w.items()) for w in wanted):
                out.append(f"{what} asks for a GPU but its nodeSelector {dict(selector)} selects no GPU node group (labels {wanted})")
            taints = [
                _map(t)
                for g in groups
                for t in _list(g.props.get("taints"))
                if _map(t).get("effect") in ("NO_SCHEDULE", "NO_EXECUTE", "NoSchedule", "NoExecute")
            ]
        else:  # the node groups live in another stack: ask for the conventional shape
            if not selector:
                out.append(f"{what} asks for a GPU but has no nodeSelector")
            taints = [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
        for taint in taints:
            if not _tolerates(_list(pod.get("tolerations")), taint):
                out.append(f"{what} asks for a GPU but does not tolerate the GPU nodes' taint {taint.get('key')}")
    return out


def _sharing_replicas(resources: Sequence[Resource]) -> int:
    """``nvidia.com/gpu`` advertised per physical GPU: the device plugin config the GPU
    Operator release points at (devicePlugin.config name/default), 1 without sharing."""
    for r in resources:
        if r.type != HELM_RELEASE or r.props.get("chart") != "gpu-operator":
            continue
        conf = _map(_map(_map(r.props.get("values")).get("devicePlugin")).get("config"))
        for cm in resources:
            if cm.type == CONFIG_MAP and _name(cm.props) == conf.get("name"):
                text = _map(cm.props.get("data")).get(str(conf.get("default")))
                sharing = _map(_map(yaml.safe_load(text) if isinstance(text, str) else {}).get("sharing"))
                for strategy in sharing.values():
                    for res in _list(_map(strategy).get("resources")):
                        if _map(res).get("name") == "nvidia.com/gpu":
                            return int(_map(res).get("replicas") or 1)
    return 1


def gpu_pods_within_sharing_replicas(resources: Sequence[Resource]) -> list[str]:
    groups = _gpu_node_groups(resources)
    # Node groups of single-GPU instances (the program allows no others): one GPU per node.
    nodes = sum(int(_map(g.props.get("scalingConfig")).get("maxSize", 1)) for g in groups) if groups else 1
    replicas = _sharing_replicas(resources)
    asked = [(r, pods * gpus) for r, _, pods, gpus in _gpu_workloads(resources)]
    total = sum(n for _, n in asked)
    if total <= replicas * nodes:
        return []
    detail = ", ".join(f"{_workload(r.type, r.props)}: {n}" for r, n in asked)
    return [
        f"{total} GPU shares asked for ({detail}) but the GPU node group offers {replicas * nodes} "
        f"({replicas} sharing replicas x {nodes} node(s)): the extra pods would stay Pending"
    ]


def node_groups_in_private_subnets(resources: Sequence[Resource]) -> list[str]:
    # Subnet IDs are known once the subnets exist; before that the rule has nothing to compare.
    public = {str(s.props.get("id")) for s in resources if s.type == SUBNET and s.props.get("mapPublicIpOnLaunch") is True}
    out = []
    for g in (r for r in resources if r.type in NODE_GROUPS):
        exposed = [s for s in _list(g.props.get("subnetIds")) if str(s) in public]
        if exposed:
            out.append(f"node group {g.name!r} has nodes in public subnets {exposed}: use the private subnets")
    return out


RULES: tuple[Rule, ...] = (
    Rule("container-resources", "Every container has CPU and memory requests and limits.", "mandatory", container_resources),
    Rule("model-service-cluster-ip", "Model Services are ClusterIP.", "mandatory", model_service_cluster_ip),
    Rule(
        "no-privileged-or-host-namespaces",
        "No privileged container, hostNetwork, hostPID or hostIPC.",
        "mandatory",
        no_privileged_or_host_namespaces,
    ),
    Rule("pinned-versions", "Images and Helm charts are pinned to a version (no 'latest', no unpinned chart).", "mandatory", pinned_versions),
    Rule("no-plain-secret-env", "Secrets are not plain environment values.", "mandatory", no_plain_secret_env),
    Rule(
        "gpu-pod-placement",
        "GPU pods carry the GPU node selector and the GPU taint's toleration.",
        "mandatory",
        check_stack=gpu_pod_placement,
    ),
    Rule(
        "gpu-pods-within-sharing-replicas",
        "Pods asking for nvidia.com/gpu do not exceed the sharing replicas of the GPU node group.",
        "mandatory",
        check_stack=gpu_pods_within_sharing_replicas,
    ),
    Rule("eks-public-endpoint-open", "The EKS public API endpoint is not open to 0.0.0.0/0.", "advisory", eks_public_endpoint_open),
    Rule(
        "node-groups-in-private-subnets",
        "Node groups run in private subnets.",
        "advisory",
        check_stack=node_groups_in_private_subnets,
    ),
)


def rule(name: str) -> Rule:
    """The rule called ``name``."""
    (found,) = [r for r in RULES if r.name == name]
    return found
