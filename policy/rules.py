"""The policy pack's rules as plain functions over what `pulumi preview` declares.

A resource rule takes ``(resource_type, props)`` and a stack rule a list of ``Resource``;
both return the violation messages (empty when the rule holds). ``props`` are the wire
(camelCase) properties the Pulumi engine hands a policy pack, as Pulumi mocks record them,
so tests run every rule on the real program's resources without the Pulumi CLI.
``policy/__main__.py`` wraps ``RULES`` into a CrossGuard ``PolicyPack``.

Only the standard library, PyYAML, ``config.facts`` (standard library only, where the image
check the settings also apply lives) and ``config.instances`` (the GPUs of an instance type):
the pack imports nothing that declares resources. Reading the declared objects is
``policy.objects``.
The EKS components (``eks:index:*``) and the AWS resources they create (``aws:eks/*``)
both reach a policy pack, so the EKS rules read either shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from config.facts import image_pinned
from policy.objects import (
    NODE_GROUPS,
    Resource,
    as_list,
    as_map,
    containers,
    gpu_node_groups,
    gpu_workloads,
    gpus_per_node,
    kind_of,
    name_of,
    node_mates,
    pod_specs,
    sharing_replicas,
    tolerates,
    workload_name,
)

__all__ = ["Resource", "Rule", "RULES", "rule"]

# The labels workloads.pod.model_labels puts on each model's objects.
MODEL_LABELS = {"app.kubernetes.io/component": "model-server"}
EKS_CLUSTERS = ("eks:index:Cluster", "aws:eks/cluster:Cluster")
SUBNET = "aws:ec2/subnet:Subnet"
OPEN = ("0.0.0.0/0", "::/0")
_SEMVER = re.compile(r"v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?")
# A credential-sounding variable name, by whole '_'-separated words (HF_TOKEN, DB_PASSWORD,
# OPENAI_API_KEY), so TOKENIZERS_PARALLELISM or MAX_TOTAL_TOKENS are not taken for one.
_SECRET_NAME = re.compile(
    r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)($|_)|(^|_)(API|ACCESS|PRIVATE|SECRET)_?KEY($|_)", re.I
)
# Values that are credentials whatever the variable is called: Hugging Face and AWS access keys.
_SECRET_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}|\bAKIA[0-9A-Z]{16}\b")


ResourceCheck = Callable[[str, Mapping[str, Any]], list[str]]
StackCheck = Callable[[Sequence[Resource]], list[str]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    enforcement: Literal["mandatory", "advisory"]
    check_resource: ResourceCheck | None = None
    check_stack: StackCheck | None = None


# --- resource rules ---------------------------------------------------------------------


def container_resources(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    out = []
    for pod, _ in pod_specs(resource_type, props):
        for c in containers(pod):
            res = as_map(c.get("resources"))
            missing = [
                f"{kind}.{what}"
                for kind in ("requests", "limits")
                for what in ("cpu", "memory")
                if what not in as_map(res.get(kind))
            ]
            if missing:
                out.append(
                    f"{workload_name(resource_type, props)}: container {c.get('name')!r} has no {', '.join(missing)}"
                    " (set CPU and memory requests and limits on every container)"
                )
    return out


def model_service_cluster_ip(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if kind_of(resource_type, props) != "Service" or not resource_type.startswith("kubernetes:"):
        return []
    labels = as_map(as_map(props.get("metadata")).get("labels"))
    if any(labels.get(k) != v for k, v in MODEL_LABELS.items()):
        return []
    kind = as_map(props.get("spec")).get("type") or "ClusterIP"
    if kind == "ClusterIP":
        return []
    return [
        f"Service {name_of(props)!r} of a model server is type {kind!r}: model Services must be ClusterIP "
        "(reach them by port-forward or an authenticated ingress, never straight from outside the cluster)"
    ]


def no_privileged_or_host_namespaces(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    out = []
    for pod, _ in pod_specs(resource_type, props):
        host = [f for f in ("hostNetwork", "hostPID", "hostIPC") if pod.get(f) is True]
        if host:
            out.append(f"{workload_name(resource_type, props)} sets {', '.join(host)}: pods must not share the node's namespaces")
        for c in containers(pod):
            if as_map(c.get("securityContext")).get("privileged") is True:
                out.append(f"{workload_name(resource_type, props)}: container {c.get('name')!r} is privileged")
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
        for c in containers(pod):
            image = str(c.get("image") or "")
            if not image_pinned(image):
                out.append(
                    f"{workload_name(resource_type, props)}: container {c.get('name')!r} image {image!r} is not pinned "
                    "(use a version tag other than 'latest', or a digest)"
                )
    return out


def no_plain_secret_env(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    out = []
    for pod, _ in pod_specs(resource_type, props):
        for c in containers(pod):
            for env in (as_map(e) for e in as_list(c.get("env"))):
                name, value = str(env.get("name") or ""), env.get("value")
                if not isinstance(value, str) or not value:
                    continue
                if _SECRET_NAME.search(name) or _SECRET_VALUE.search(value):
                    out.append(
                        f"{workload_name(resource_type, props)}: container {c.get('name')!r} sets {name} as a plain "
                        "value: read it from a Secret (env valueFrom.secretKeyRef)"
                    )
    return out


def eks_public_endpoint_open(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if resource_type not in EKS_CLUSTERS:
        return []
    # eks:index:Cluster takes the endpoint settings at the top, aws:eks/cluster:Cluster in vpcConfig.
    conf = props if resource_type == "eks:index:Cluster" else as_map(props.get("vpcConfig"))
    if conf.get("endpointPublicAccess") is False:
        return []
    cidrs = [str(c) for c in as_list(conf.get("publicAccessCidrs"))] or ["0.0.0.0/0"]  # the AWS default
    open_to = [c for c in cidrs if c in OPEN]
    if not open_to:
        return []
    return [
        f"EKS cluster {props.get('name') or '?'!r}: the public API endpoint is open to {', '.join(open_to)}; "
        "set gpu-sharing:publicAccessCidrs to your own CIDRs"
    ]


# --- stack rules ------------------------------------------------------------------------


def gpu_pod_placement(resources: Sequence[Resource]) -> list[str]:
    groups = gpu_node_groups(resources)
    out = []
    for r, pod, _, _ in gpu_workloads(resources):
        selector = as_map(pod.get("nodeSelector"))
        what = workload_name(r.type, r.props)
        if groups:
            # A nodeSelector selects the nodes that carry every label it names.
            wanted = [dict(as_map(g.props.get("labels"))) for g in groups]
            if not selector or not any(all(w.get(k) == v for k, v in selector.items()) for w in wanted):
                out.append(f"{what} asks for a GPU but its nodeSelector {dict(selector)} selects no GPU node group (labels {wanted})")
            taints = [
                as_map(t)
                for g in groups
                for t in as_list(g.props.get("taints"))
                if as_map(t).get("effect") in ("NO_SCHEDULE", "NO_EXECUTE", "NoSchedule", "NoExecute")
            ]
        else:  # the node groups live in another stack: ask for the conventional shape
            if not selector:
                out.append(f"{what} asks for a GPU but has no nodeSelector")
            taints = [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
        for taint in taints:
            if not tolerates(as_list(pod.get("tolerations")), taint):
                out.append(f"{what} asks for a GPU but does not tolerate the GPU nodes' taint {taint.get('key')}")
    return out


def gpu_pods_within_sharing_replicas(resources: Sequence[Resource]) -> list[str]:
    groups = gpu_node_groups(resources)
    replicas = sharing_replicas(resources)
    # What the GPU node groups offer: sharing replicas x GPUs per node x their maxSize nodes.
    shapes = [(gpus_per_node(g), int(as_map(g.props.get("scalingConfig")).get("maxSize", 1))) for g in groups] or [(1, 1)]
    offer = sum(replicas * gpus * nodes for gpus, nodes in shapes)
    per_node = max(replicas * gpus for gpus, _ in shapes)
    nodes = sum(n for _, n in shapes)
    gpus_text = "/".join(sorted({str(g) for g, _ in shapes}))
    asked = [(r, pod, pods * gpus) for r, pod, pods, gpus in gpu_workloads(resources)]
    out = []
    total = sum(n for _, _, n in asked)
    if total > offer:
        detail = ", ".join(f"{workload_name(r.type, r.props)}: {n}" for r, _, n in asked)
        out.append(
            f"{total} GPU shares asked for ({detail}) but the GPU node group offers {offer} ({replicas} sharing "
            f"replicas x {gpus_text} GPU(s) per node x {nodes} node(s)): the extra pods would stay Pending"
        )
    # Pods a required pod affinity keeps on one node share that node's GPUs; each such set of pods
    # (one GPU group, workloads.pod.gpu_affinity) takes a node of its own.
    together: dict[frozenset[tuple[str, str]], list[tuple[Resource, int]]] = {}
    for r, pod, n in asked:
        mates = node_mates(pod)
        if mates is not None:
            together.setdefault(mates, []).append((r, n))
    for mates, members in together.items():
        shares = sum(n for _, n in members)
        if shares > per_node:
            detail = ", ".join(f"{workload_name(r.type, r.props)}: {n}" for r, n in members)
            out.append(
                f"{shares} GPU shares asked for by pods kept on one node ({', '.join(f'{k}={v}' for k, v in sorted(mates))}: "
                f"{detail}) but one GPU node offers {per_node}: the extra pods would stay Pending"
            )
    if len(together) > nodes:
        out.append(
            f"{len(together)} sets of pods each kept on a node of their own, but the GPU node group has at most {nodes} "
            "node(s): the pods of the sets beyond it would stay Pending"
        )
    return out


def node_groups_in_private_subnets(resources: Sequence[Resource]) -> list[str]:
    # Subnet IDs are known once the subnets exist; before that the rule has nothing to compare.
    public = {str(s.props.get("id")) for s in resources if s.type == SUBNET and s.props.get("mapPublicIpOnLaunch") is True}
    out = []
    for g in (r for r in resources if r.type in NODE_GROUPS):
        exposed = [s for s in as_list(g.props.get("subnetIds")) if str(s) in public]
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
