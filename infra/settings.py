"""The stack's settings: read once from the Pulumi config, validated, immutable.

``load_settings`` takes the flat config mapping Pulumi hands the program
(``{"gpu-sharing:clusterName": "...", "aws:region": "...", ...}``; top-level scalars as
strings, objects and lists as JSON text) and returns a ``Settings`` or raises
``ConfigError`` naming the key, the value and what is allowed. Nothing else in the
program reads ``pulumi.Config``. Every key and its default is listed in the README's
"Configuration" section; the defaults reproduce the reference deployment.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, cast

from infra.gpus import GPU_INSTANCE_TYPES, GpuSpec, gpu_for_instance_type
from infra.validation import MISSING, ConfigError, SecretText, Section
from workloads.settings import WorkloadSettings, load_workloads

__all__ = [
    "PROJECT",
    "NodeGroupSettings",
    "GpuSharingSettings",
    "GpuOperatorSettings",
    "HardeningSettings",
    "Settings",
    "load_settings",
    "settings_from_pulumi",
]

PROJECT = "gpu-sharing"
DEV_STACK = "dev"  # the one stack whose API endpoint may default to 0.0.0.0/0

SharingStrategy = Literal["time-slicing", "mps", "none"]
NatGateways = Literal["single", "perAz"]

_SHARING_STRATEGIES: tuple[SharingStrategy, ...] = ("time-slicing", "mps", "none")
_NAT_GATEWAYS: tuple[NatGateways, ...] = ("single", "perAz")
# EKS cluster names: 1-100 characters, alphanumerics, '-' and '_', starting alphanumeric
# (EKS API reference, CreateCluster "name").
_CLUSTER_NAME_RE = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}")
_K8S_VERSION_RE = re.compile(r"1\.[0-9]{2}")
_INSTANCE_TYPE_RE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")
_REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]")
_CHART_VERSION_RE = re.compile(r"v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?")
# Kubernetes label keys ([prefix/]name) and values (apimachinery validation).
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_LABEL_KEY_RE = re.compile(rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}")
_LABEL_VALUE_RE = re.compile(rf"{_LABEL_NAME}?")


@dataclass(frozen=True, kw_only=True)
class NodeGroupSettings:
    """One EKS managed node group."""

    instance_type: str
    desired_size: int
    min_size: int
    max_size: int
    disk_size_gib: int
    labels: Mapping[str, str]
    taint: bool  # GPU nodes only: the ``nvidia.com/gpu=true:NoSchedule`` taint


@dataclass(frozen=True, kw_only=True)
class GpuSharingSettings:
    """How the device plugin advertises each GPU (NVIDIA k8s-device-plugin config v1)."""

    strategy: SharingStrategy
    replicas: int  # pods per GPU that ask for one nvidia.com/gpu; 1 for "none"
    rename_by_default: bool
    fail_requests_greater_than_one: bool

    @property
    def resource_name(self) -> str:
        """The extended resource a GPU pod asks for: renamed ``<name>.shared`` under
        ``renameByDefault`` (k8s-device-plugin README, "Shared Access to GPUs")."""
        return "nvidia.com/gpu.shared" if self.rename_by_default and self.strategy != "none" else "nvidia.com/gpu"


@dataclass(frozen=True, kw_only=True)
class GpuOperatorSettings:
    chart_version: str
    repository: str
    namespace: str


@dataclass(frozen=True, kw_only=True)
class HardeningSettings:
    """Cluster defaults a production cluster wants; each one can be turned off (README, "Guardrails")."""

    secrets_encryption: bool  # envelope-encrypt Kubernetes Secrets with a KMS key of the stack
    control_plane_logging: bool  # api, audit and authenticator logs to CloudWatch Logs
    imdsv2: bool  # nodes require IMDSv2 session tokens (hop limit 2 for pods)
    network_policy: bool  # the VPC CNI's network policy agent enforces NetworkPolicies


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
    hardening: HardeningSettings
    workloads: WorkloadSettings

    @property
    def gpu_slots(self) -> int:
        return _gpu_slots(self.gpu_sharing, self.gpu, self.gpu_nodes)


def _gpu_slots(sharing: GpuSharingSettings, gpu: GpuSpec, gpu_nodes: NodeGroupSettings) -> int:
    """Pods asking for one ``nvidia.com/gpu`` the GPU node group can hold at its max size."""
    return sharing.replicas * gpu.gpus_per_node * gpu_nodes.max_size


def load_settings(raw: Mapping[str, Any], *, stack: str = DEV_STACK) -> Settings:
    """Validate the flat Pulumi config mapping into ``Settings`` (or raise ``ConfigError``).

    ``stack`` is the stack's name: outside the ``dev`` stack the API endpoint's
    ``publicAccessCidrs`` must be set explicitly.
    """
    prefix = f"{PROJECT}:"
    root = Section(
        {k[len(prefix) :]: _decode(v) for k, v in raw.items() if k.startswith(prefix)}, prefix
    )
    region = Section({"region": raw.get("aws:region")}, "aws:").str(
        "region", "us-west-2", pattern=_REGION_RE, what="an AWS region name such as us-west-2"
    )

    cluster_name = root.str(
        "clusterName",
        "gpusharing-demo",
        pattern=_CLUSTER_NAME_RE,
        what="an EKS cluster name: 1-100 letters, digits, '-' or '_', starting with a letter or digit",
    )
    # 1.35: in EKS standard support until 2027-03-27 (EKS user guide, "Kubernetes version
    # lifecycle"); 1.33 has been in extended support ($0.60/h instead of $0.10/h) since 2026-07-29.
    kubernetes_version = root.str(
        "kubernetesVersion", "1.35", pattern=_K8S_VERSION_RE, what='a Kubernetes minor version such as "1.35"'
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
    if not 16 <= prefix_len <= 20:
        # Subnets are carved at prefix+4 (a /16 gives /20s of 4,091 usable addresses each).
        raise ConfigError(root.key("vpcCidr"), vpc_cidr, "an IPv4 CIDR with a prefix from /16 to /20")
    az_count = root.int("availabilityZoneCount", 2, min=2, max=4)
    nat_gateways = cast(NatGateways, root.str("natGateways", "single", choices=_NAT_GATEWAYS))

    cpu_nodes = _node_group(
        root.section("cpuNodes", {}),
        instance_type="t3.large",
        desired=2,
        min_size=2,
        max_size=4,
        disk=20,
        labels={},
        taint=None,
    )
    gpu_section = root.section("gpuNodes", {})
    gpu_nodes = _node_group(
        gpu_section,
        instance_type="g6e.2xlarge",
        desired=1,
        min_size=1,
        max_size=1,
        disk=200,
        labels={"eks-node": "gpu"},
        taint=True,
    )
    gpu = gpu_for_instance_type(gpu_nodes.instance_type)
    if gpu is None:
        raise ConfigError(
            gpu_section.key("instanceType"),
            gpu_nodes.instance_type,
            "a single-GPU instance type with a known GPU: " + ", ".join(sorted(GPU_INSTANCE_TYPES)),
        )
    sharing = _gpu_sharing(root.section("gpuSharing", {}))
    operator = _gpu_operator(root.section("gpuOperator", {}))
    hardening = _hardening(root.section("hardening", {}))

    workloads = load_workloads(root, gpu=gpu, gpu_slots=_gpu_slots(sharing, gpu, gpu_nodes))
    root.done()
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
        hardening=hardening,
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


def _node_group(
    section: Section,
    *,
    instance_type: str,
    desired: int,
    min_size: int,
    max_size: int,
    disk: int,
    labels: dict[str, str],
    taint: bool | None,
) -> NodeGroupSettings:
    itype = section.str(
        "instanceType", instance_type, pattern=_INSTANCE_TYPE_RE, what="an EC2 instance type such as t3.large"
    )
    lo = section.int("minSize", min_size, min=0)
    hi = section.int("maxSize", max_size, min=1)
    if lo > hi:
        raise ConfigError(section.key("minSize"), lo, f"at most maxSize ({hi})")
    want = section.int("desiredSize", desired, min=0)
    if not lo <= want <= hi:
        raise ConfigError(section.key("desiredSize"), want, f"an integer from minSize ({lo}) to maxSize ({hi})")
    # 16 TiB is the gp3 volume limit.
    disk_gib = section.int("diskSizeGib", disk, min=20, max=16384)
    node_labels = section.str_map("labels", labels)
    for k, v in node_labels.items():
        if not _LABEL_KEY_RE.fullmatch(k):
            raise ConfigError(f"{section.key('labels')}.{k}", k, "a Kubernetes label key ([prefix/]name, name at most 63 characters)")
        if not _LABEL_VALUE_RE.fullmatch(v):
            raise ConfigError(f"{section.key('labels')}.{k}", v, "a Kubernetes label value (at most 63 letters, digits, '-', '_', '.')")
    node_taint = section.bool("taint", taint) if taint is not None else False
    section.done()
    return NodeGroupSettings(
        instance_type=itype,
        desired_size=want,
        min_size=lo,
        max_size=hi,
        disk_size_gib=disk_gib,
        labels=MappingProxyType(dict(node_labels)),
        taint=node_taint,
    )


def _gpu_sharing(section: Section) -> GpuSharingSettings:
    strategy = cast(SharingStrategy, section.str("strategy", "time-slicing", choices=_SHARING_STRATEGIES))
    if strategy == "none":
        replicas = section.int("replicas", 1)
        if replicas != 1:
            raise ConfigError(section.key("replicas"), replicas, "1 or unset (strategy 'none' shares nothing)")
    else:
        # One replica would share nothing: that is strategy "none".
        replicas = section.int("replicas", 10, min=2)
    rename = section.bool("renameByDefault", False)
    fail_many = section.bool("failRequestsGreaterThanOne", strategy == "mps")
    if strategy == "mps" and not fail_many:
        # k8s-device-plugin api/config/v1/config.go forces it to true under MPS.
        raise ConfigError(
            section.key("failRequestsGreaterThanOne"), fail_many, "true (the device plugin always sets it under mps)"
        )
    section.done()
    return GpuSharingSettings(
        strategy=strategy, replicas=replicas, rename_by_default=rename, fail_requests_greater_than_one=fail_many
    )


def _gpu_operator(section: Section) -> GpuOperatorSettings:
    version = section.str(
        "chartVersion", "v26.3.1", pattern=_CHART_VERSION_RE, what="a chart version such as v26.3.1"
    )
    repository = section.str(
        "repository",
        "https://helm.ngc.nvidia.com/nvidia",
        pattern=re.compile(r"https://\S+"),
        what="a Helm chart repository URL (https://...)",
    )
    namespace = section.dns_label("namespace", "gpu-operator")
    section.done()
    return GpuOperatorSettings(chart_version=version, repository=repository, namespace=namespace)


def _hardening(section: Section) -> HardeningSettings:
    hardening = HardeningSettings(
        secrets_encryption=section.bool("secretsEncryption", True),
        control_plane_logging=section.bool("controlPlaneLogging", True),
        imdsv2=section.bool("imdsv2", True),
        network_policy=section.bool("networkPolicy", True),
    )
    section.done()
    return hardening
