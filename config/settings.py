"""The stack's settings: read once from the Pulumi config, validated, immutable.

``load_settings`` takes the flat config mapping Pulumi hands the program
(``{"gpu-sharing:clusterName": "...", "aws:region": "...", ...}``; top-level scalars as
strings, objects and lists as JSON text) and returns a ``Settings`` or raises
``ConfigError`` naming the key, the value and what is allowed. Nothing else in the
program reads ``pulumi.Config``. Every key and its default is listed in the README's
"Configuration" section; the defaults reproduce the reference deployment.

It composes the cluster's part (``config.cluster_settings``) and the workloads' part
(``workloads.settings``), read from one root section, then checks what crosses the two: the GPUs
the enabled models are placed on must be within the GPU node group's ``maxSize``, and each GPU
node's disk must hold its models' weights.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from config.charts import CLUSTER_AUTOSCALER_CHART, AutoscalerRelease, autoscaler_for
from config.cluster_settings import (
    AccessSettings,
    GpuOperatorSettings,
    GpuSharingSettings,
    HardeningSettings,
    NodeGroupSettings,
    load_access,
    load_gpu_operator,
    load_gpu_sharing,
    load_hardening,
    load_node_group,
)
from config.facts import (
    DEFAULT_KUBERNETES_VERSION,
    EKS_KUBERNETES_VERSIONS,
    VPC_PRIVATE_RANGES,
    aws_regions,
    is_private_vpc_cidr,
    partition_of,
)
from config.instances import CPU_NODE_TYPES, GPU_NODE_TYPES, NODEFS_EVICTION_FRACTION, GpuSpec
from config.validation import MISSING, ConfigError, SecretText, Section
from workloads.placement import GpuNode
from workloads.settings import WorkloadSettings, checkpoint_bytes, load_workloads

__all__ = [
    "PROJECT",
    "NatGateways",
    "default_cluster_name",
    "Settings",
    "load_settings",
    "settings_from_pulumi",
]

PROJECT = "gpu-sharing"
DEV_STACK = "dev"  # the one stack whose API endpoint may default to 0.0.0.0/0

NatGateways = Literal["single", "perAz"]

_NAT_GATEWAYS: tuple[NatGateways, ...] = ("single", "perAz")
# EKS cluster names: 1-100 characters, alphanumerics, '-' and '_', starting alphanumeric
# (EKS API reference, CreateCluster "name").
_CLUSTER_NAME_RE = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}")
_GIB = 1024**3


@dataclass(frozen=True, kw_only=True)
class Settings:
    cluster_name: str
    region: str
    kubernetes_version: str
    public_access_cidrs: tuple[str, ...]
    vpc_cidr: str
    availability_zone_count: int
    nat_gateways: NatGateways
    cpu_nodes: NodeGroupSettings
    gpu_nodes: NodeGroupSettings
    gpu: GpuSpec  # the GPU of gpu_nodes.instance_type
    gpu_sharing: GpuSharingSettings
    gpu_operator: GpuOperatorSettings
    autoscaler: AutoscalerRelease  # the Cluster Autoscaler of the cluster's Kubernetes minor
    hardening: HardeningSettings
    access: AccessSettings
    workloads: WorkloadSettings

    @property
    def gpu_slots(self) -> int:
        return _gpu_slots(self.gpu_sharing, self.gpu, self.gpu_nodes)


def _gpu_slots(sharing: GpuSharingSettings, gpu: GpuSpec, gpu_nodes: NodeGroupSettings) -> int:
    """Pods asking for one ``nvidia.com/gpu`` the GPU node group can hold at its max size."""
    return sharing.replicas * gpu.gpus_per_node * gpu_nodes.max_size


def default_cluster_name(stack: str) -> str:
    """The EKS cluster name a stack gets when it sets no ``clusterName``: one per stack, so two
    environments in one account and region do not collide (EKS cluster names, and the
    control-plane log group named after them, are unique per account and region)."""
    return ("gpusharing-" + re.sub(r"[^A-Za-z0-9_-]", "-", stack))[:100]


def load_settings(raw: Mapping[str, Any], *, stack: str = DEV_STACK) -> Settings:
    """Validate the flat Pulumi config mapping into ``Settings`` (or raise ``ConfigError``).

    ``stack`` is the stack's name: it names the cluster unless ``clusterName`` is set, and
    outside the ``dev`` stack the API endpoint's ``publicAccessCidrs`` must be set explicitly.
    """
    prefix = f"{PROJECT}:"
    root = Section(
        {k[len(prefix) :]: _decode(v) for k, v in raw.items() if k.startswith(prefix)}, prefix
    )
    regions = aws_regions()
    region = Section({"region": raw.get("aws:region")}, "aws:").str(
        "region", "us-west-2", choices=regions
    )

    cluster_name = root.str(
        "clusterName",
        default_cluster_name(stack),
        pattern=_CLUSTER_NAME_RE,
        what="an EKS cluster name: 1-100 letters, digits, '-' or '_', starting with a letter or digit",
    )
    kubernetes_version = root.str(
        "kubernetesVersion",
        DEFAULT_KUBERNETES_VERSION,
        choices=EKS_KUBERNETES_VERSIONS,
    )
    autoscaler = autoscaler_for(kubernetes_version)
    if autoscaler is None:
        raise ConfigError(
            root.key("kubernetesVersion"),
            kubernetes_version,
            f"a version the Cluster Autoscaler chart {CLUSTER_AUTOSCALER_CHART.version} is pinned for "
            f"(config/charts.py): {', '.join(CLUSTER_AUTOSCALER_CHART.releases)}",
        )
    if stack != DEV_STACK and not root.has("publicAccessCidrs"):
        raise ConfigError(
            root.key("publicAccessCidrs"),
            MISSING,
            f"an explicit list of IPv4 CIDRs that may reach the public API endpoint (required outside the "
            f"{DEV_STACK!r} stack; this is stack {stack!r}), such as [\"203.0.113.0/24\"]",
        )
    public_access_cidrs = root.cidr_list("publicAccessCidrs", ["0.0.0.0/0"], min_items=1)
    vpc_cidr = root.cidr("vpcCidr", "10.0.0.0/16")
    prefix_len = ipaddress.ip_network(vpc_cidr).prefixlen
    if not 16 <= prefix_len <= 20 or not is_private_vpc_cidr(vpc_cidr):
        # Subnets are carved at prefix+4 (a /16 gives /20s of 4,091 usable addresses each).
        raise ConfigError(
            root.key("vpcCidr"),
            vpc_cidr,
            "an IPv4 CIDR with a prefix from /16 to /20 inside a private range (RFC 1918: "
            + ", ".join(VPC_PRIVATE_RANGES)
            + ")",
        )
    az_count = root.int("availabilityZoneCount", 2, min=2, max=4)
    nat_gateways = cast(NatGateways, root.str("natGateways", "single", choices=_NAT_GATEWAYS))

    cpu_nodes = load_node_group(
        root.section("cpuNodes", {}),
        CPU_NODE_TYPES,
        "an x86_64 CPU instance type this project knows (config/instances.py)",
        instance_type="t3.large",
        desired=2,
        min_size=2,
        max_size=4,
        disk=20,
        labels={},
        taint=None,
        never_empty="the Cluster Autoscaler, CoreDNS and the GPU Operator run on the CPU nodes: with none, "
        "nothing would be left to add a node",
    )
    gpu_section = root.section("gpuNodes", {})
    gpu_nodes = load_node_group(
        gpu_section,
        GPU_NODE_TYPES,
        "a single-GPU instance type with a known GPU (config/instances.py)",
        instance_type="g6e.2xlarge",
        desired=1,
        min_size=1,
        max_size=1,
        disk=200,
        labels={"eks-node": "gpu"},
        taint=True,
    )
    gpu_type = GPU_NODE_TYPES[gpu_nodes.instance_type]
    gpu = cast(GpuSpec, gpu_type.gpu)
    sharing = load_gpu_sharing(root.section("gpuSharing", {}))
    operator = load_gpu_operator(root.section("gpuOperator", {}), kubernetes_version)
    hardening = load_hardening(root.section("hardening", {}))
    access = load_access(root, partition_of(region))

    max_gpus = gpu.gpus_per_node * gpu_nodes.max_size
    workloads = load_workloads(root, node=GpuNode(type=gpu_type, gpu=gpu, slots=sharing.replicas), max_gpus=max_gpus)
    root.done()
    if operator.namespace == workloads.namespace:
        raise ConfigError(
            f"{prefix}gpuOperator.namespace",
            operator.namespace,
            f"a namespace other than the models' (gpu-sharing:namespace is {workloads.namespace!r}): "
            "each namespace is declared by the component that owns it",
        )
    _check_gpu_count(workloads, max_gpus, gpu_section.key("maxSize"))
    _check_gpu_disk(workloads, gpu_nodes.disk_size_gib, gpu_section.key("diskSizeGib"))
    return Settings(
        cluster_name=cluster_name,
        region=region,
        kubernetes_version=kubernetes_version,
        public_access_cidrs=public_access_cidrs,
        vpc_cidr=vpc_cidr,
        availability_zone_count=az_count,
        nat_gateways=nat_gateways,
        cpu_nodes=cpu_nodes,
        gpu_nodes=gpu_nodes,
        gpu=gpu,
        gpu_sharing=sharing,
        gpu_operator=operator,
        autoscaler=autoscaler,
        hardening=hardening,
        access=access,
        workloads=workloads,
    )


def settings_from_pulumi() -> Settings:
    """``load_settings`` over the running stack's config (``pulumi up`` / ``preview``).

    Secret config values (``pulumi config set --secret``) arrive as ``SecretText``: a
    ``str`` whose ``repr`` is masked, so a ``ConfigError`` never prints them; wrap them
    in ``pulumi.Output.secret`` before they reach a resource.
    """
    import pulumi
    from pulumi.runtime import config as pulumi_config

    # `pulumi up` hands config to the program in PULUMI_CONFIG; the Automation API's
    # inline programs through set_all_config. Read both, the explicit one winning.
    raw: dict[str, Any] = {**pulumi_config.get_config_env(), **pulumi_config.CONFIG.get()}
    secret_keys = set(pulumi_config.get_config_secret_keys_env())
    secret_keys.update(k for k in raw if pulumi_config.is_config_secret(k))
    return load_settings(
        {k: SecretText(v) if k in secret_keys and isinstance(v, str) else v for k, v in raw.items()},
        stack=pulumi.get_stack(),
    )


def _decode(value: Any) -> Any:
    """Pulumi hands structured config values over as JSON text: turn them back into data."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value  # left as text: the reader then names the key and what it wanted
    return value


def _check_gpu_count(workloads: WorkloadSettings, max_gpus: int, key: str) -> None:
    """Each GPU group that holds an enabled model needs a GPU, hence a node, of its own: no more of
    them than the GPU node group can hold (groups of disabled models only need none)."""
    p = workloads.placement
    needed = {g: [k for k in p.keys(g) if workloads.models[k].enabled] for g in p.plans}
    needed = {g: keys for g, keys in needed.items() if keys}
    if len(needed) <= max_gpus:
        return
    gpus = [
        f"GPU {g} {', '.join(keys)}" + "".join(f" ({k}: {p.why[k]})" for k in keys if k in p.why)
        for g, keys in needed.items()
    ]
    raise ConfigError(
        key,
        max_gpus,
        f"at least {len(needed)}: the enabled models need {len(needed)} GPUs, a node each: {'; '.join(gpus)}; raise it "
        "(the Cluster Autoscaler adds GPU nodes up to it), disable models, or make them fit fewer GPUs",
    )


def _check_gpu_disk(workloads: WorkloadSettings, disk_gib: int, disk_key: str) -> None:
    """A GPU node's root volume holds the TGI images and the weights of its GPU's enabled models
    (the hostPath cache); kubelet evicts pods when less than 10% of it is free."""
    p = workloads.placement
    for g in p.plans:
        models = [workloads.models[k] for k in p.keys(g) if workloads.models[k].enabled]
        images = {m.image: m.image_disk_gib for m in models}
        weights = {m.key: checkpoint_bytes(m) / _GIB for m in models}
        need = sum(images.values()) + sum(weights.values())
        usable = disk_gib * (1 - NODEFS_EVICTION_FRACTION)
        if need > usable:
            raise ConfigError(
                disk_key,
                disk_gib,
                f"at least {need / (1 - NODEFS_EVICTION_FRACTION):.0f} GiB: the enabled models' weights ("
                + ", ".join(f"{k} {gib:.1f} GiB" for k, gib in weights.items())
                + f") and their images ({sum(images.values()):.0f} GiB) must fit in the {1 - NODEFS_EVICTION_FRACTION:.0%} "
                "of the disk kubelet lets pods fill (evictionHard nodefs.available 10%)"
                + (f", on the node of GPU {g}" if len(p.plans) > 1 else ""),
            )
