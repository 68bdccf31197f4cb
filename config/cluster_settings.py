"""The cluster's part of the stack settings: node groups, GPU sharing, the GPU Operator chart,
hardening and access entries, each read from its config section by a ``load_*`` function.

``config.settings.load_settings`` calls them from the same root config section as the
workloads' part (``workloads.settings``), so the whole stack config is validated in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, cast

from config.charts import GPU_OPERATOR_CHARTS, newest_chart_for
from config.instances import InstanceType
from config.validation import MISSING, ConfigError, Section

__all__ = [
    "SharingStrategy",
    "NodeGroupSettings",
    "GpuSharingSettings",
    "GpuOperatorSettings",
    "HardeningSettings",
    "AccessSettings",
    "load_node_group",
    "load_gpu_sharing",
    "load_gpu_operator",
    "load_hardening",
    "load_access",
]

SharingStrategy = Literal["time-slicing", "mps", "none"]

_SHARING_STRATEGIES: tuple[SharingStrategy, ...] = ("time-slicing", "mps", "none")
# An IAM role or user ARN: what an EKS access entry takes as its principal (EKS API
# CreateAccessEntry "principalArn"; an STS assumed-role session ARN is refused there).
_IAM_PRINCIPAL_RE = re.compile(r"arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]{1,512}")
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
    node_volume_encryption: bool  # node root volumes encrypted, with the stack's KMS key


@dataclass(frozen=True, kw_only=True)
class AccessSettings:
    """Who reaches the cluster besides the identity that runs ``pulumi up`` (EKS access entries)."""

    cluster_admins: tuple[str, ...]  # IAM role/user ARNs: AmazonEKSClusterAdminPolicy, cluster-wide
    benchmark_users: tuple[str, ...]  # IAM role/user ARNs: the benchmark's Role in the models' namespace


def load_node_group(
    section: Section,
    types: Mapping[str, InstanceType],
    what: str,
    *,
    instance_type: str,
    desired: int,
    min_size: int,
    max_size: int,
    disk: int,
    labels: dict[str, str],
    taint: bool | None,
    never_empty: str | None = None,
) -> NodeGroupSettings:
    """One node group's section; ``never_empty`` is why the group must keep a node (its minSize
    is then at least 1), or None when it may scale to zero."""
    itype = section.str("instanceType", instance_type)
    if itype not in types:
        raise ConfigError(section.key("instanceType"), itype, f"{what}: " + ", ".join(types))
    lo = section.int("minSize", min_size, min=0)
    if never_empty is not None and lo < 1:
        raise ConfigError(section.key("minSize"), lo, f"at least 1: {never_empty}")
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


def load_gpu_sharing(section: Section) -> GpuSharingSettings:
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


def load_gpu_operator(section: Section, kubernetes_version: str) -> GpuOperatorSettings:
    # Default: the newest release whose support matrix lists the cluster's Kubernetes version.
    newest = newest_chart_for(kubernetes_version)
    version = section.str("chartVersion", newest.version if newest else MISSING)
    chart = GPU_OPERATOR_CHARTS.get(version)
    if chart is None:
        raise ConfigError(
            section.key("chartVersion"),
            version,
            "a GPU Operator release whose facts are recorded in config/charts.py: " + ", ".join(GPU_OPERATOR_CHARTS),
        )
    if not chart.supports(kubernetes_version):
        fitting = [c.version for c in GPU_OPERATOR_CHARTS.values() if c.supports(kubernetes_version)]
        raise ConfigError(
            section.key("chartVersion"),
            version,
            f"a release that supports Kubernetes {kubernetes_version} (gpu-sharing:kubernetesVersion): "
            f"{', '.join(fitting) or 'none recorded'}; {version} supports {chart.kubernetes[0]}-{chart.kubernetes[1]}",
        )
    repository = section.str(
        "repository",
        "https://helm.ngc.nvidia.com/nvidia",
        pattern=re.compile(r"https://\S+"),
        what="a Helm chart repository URL (https://...)",
    )
    namespace = section.namespace("namespace", "gpu-operator")
    section.done()
    return GpuOperatorSettings(chart_version=version, repository=repository, namespace=namespace)


def load_hardening(section: Section) -> HardeningSettings:
    hardening = HardeningSettings(
        secrets_encryption=section.bool("secretsEncryption", True),
        control_plane_logging=section.bool("controlPlaneLogging", True),
        imdsv2=section.bool("imdsv2", True),
        network_policy=section.bool("networkPolicy", True),
        node_volume_encryption=section.bool("nodeVolumeEncryption", True),
    )
    section.done()
    return hardening


def load_access(root: Section, partition: str) -> AccessSettings:
    """IAM principals for EKS access entries; one entry per principal (EKS refuses a second)."""
    seen: dict[str, str] = {}
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("clusterAdmins", "benchmarkUsers"):
        arns = root.str_list(name, [], what="an IAM role or user ARN such as arn:aws:iam::111122223333:role/ops")
        for i, arn in enumerate(arns):
            key = f"{root.key(name)}[{i}]"
            if not _IAM_PRINCIPAL_RE.fullmatch(arn):
                raise ConfigError(
                    key,
                    arn,
                    "an IAM role or user ARN (arn:aws:iam::<account>:role/<name> or :user/<name>); for an "
                    "assumed-role session (arn:aws:sts::...:assumed-role/<role>/<session>) give the role's ARN",
                )
            if arn.split(":")[1] != partition:
                raise ConfigError(key, arn, f"an ARN in the {partition!r} partition of the stack's region")
            if arn in seen:
                raise ConfigError(key, arn, f"a principal not already listed (it is in {seen[arn]}): one access entry each")
            seen[arn] = key
        lists[name] = arns
    return AccessSettings(cluster_admins=lists["clusterAdmins"], benchmark_users=lists["benchmarkUsers"])
