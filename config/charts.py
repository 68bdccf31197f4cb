"""The Helm charts the stack installs, each release with its source, the date read (``config.facts.CHECKED``)
and the Kubernetes versions it serves: the NVIDIA GPU Operator (``infra.gpu_operator``) and the
Kubernetes Cluster Autoscaler (``infra.autoscaler``).

The settings pin one release of each and refuse a Kubernetes version the release does not serve;
``tests/config/test_facts.py`` fails when a version the stack pins has no entry here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "minor",
    "GpuOperatorChart",
    "GPU_OPERATOR_CHARTS",
    "newest_chart_for",
    "AutoscalerRelease",
    "ClusterAutoscalerChart",
    "CLUSTER_AUTOSCALER_CHART",
    "autoscaler_for",
]


def minor(version: str) -> tuple[int, int]:
    """(major, minor) of a Kubernetes version such as ``1.35`` or ``v1.35.2``."""
    major, minor_ = version.lstrip("v").split(".")[:2]
    return int(major), int(minor_)


# --- the NVIDIA GPU Operator chart --------------------------------------------------------

_GPU_OPERATOR_DOCS = "NVIDIA/cloud-native-docs"
# The chart values this program sets, as the chart reads them (deployments/gpu-operator/
# values.yaml and templates/clusterpolicy.yaml of each version below): driver.enabled and
# toolkit.enabled (false: the AL2023 NVIDIA AMI brings both, the "Pre-Installed NVIDIA GPU
# Drivers and NVIDIA Container Toolkit" case of gpu-operator/getting-started.rst), and
# devicePlugin.config.{create,name,default} (create=false points the device plugin at our
# ConfigMap; templates/validations.yaml only checks name/data when create=true). The chart's
# daemonsets.tolerations default tolerates the nvidia.com/gpu:NoSchedule taint.


@dataclass(frozen=True, kw_only=True)
class GpuOperatorChart:
    version: str  # as the Helm repository names it (helm.ngc.nvidia.com/nvidia)
    released: str
    # Kubernetes minor versions NVIDIA lists for Amazon EKS in the release's support matrix
    # (gpu-operator/platform-support.rst, "Cloud Service Providers"; the rows are Ubuntu: NVIDIA
    # does not list Amazon Linux 2023, which runs here with the preinstalled driver and toolkit).
    kubernetes: tuple[str, str]
    device_plugin: str
    sources: tuple[str, ...]

    def supports(self, kubernetes_version: str) -> bool:
        lo, hi = (minor(v) for v in self.kubernetes)
        return lo <= minor(kubernetes_version) <= hi


def _chart(version: str, released: str, kubernetes: tuple[str, str], device_plugin: str, *sources: str) -> GpuOperatorChart:
    return GpuOperatorChart(
        version=version, released=released, kubernetes=kubernetes, device_plugin=device_plugin, sources=sources
    )


# (version, release date, Kubernetes on EKS, device plugin, sources)
GPU_OPERATOR_CHARTS: Final[Mapping[str, GpuOperatorChart]] = MappingProxyType(
    {
        c.version: c
        for c in (
            _chart(
                "v26.3.1", "2026-04-17", ("1.32", "1.35"), "v0.19.x",
                "NVIDIA/gpu-operator tag v26.3.1",
                f"{_GPU_OPERATOR_DOCS}@adfe9224:gpu-operator/platform-support.rst (26.3 docs: EKS 1.32-1.35)",
            ),
            _chart(
                "v26.3.2", "2026-05-27", ("1.32", "1.36"), "v0.19.2",
                "NVIDIA/gpu-operator tag v26.3.2",
                f"{_GPU_OPERATOR_DOCS}@de99f9d3:gpu-operator/platform-support.rst (EKS 1.32-1.36)",
                f'{_GPU_OPERATOR_DOCS}:gpu-operator/release-notes.rst 26.3.2 ("Added support for Kubernetes 1.36")',
            ),
            _chart(
                "v26.3.3", "2026-06-23", ("1.32", "1.36"), "v0.19.3",
                "NVIDIA/gpu-operator tag v26.3.3",
                f"{_GPU_OPERATOR_DOCS}@922e549f:gpu-operator/platform-support.rst (EKS 1.32-1.36)",
            ),
            _chart(
                "v26.7.0", "2026-08-20", ("1.33", "1.36"), "v0.20.0",
                "NVIDIA/gpu-operator@v26.7.0:deployments/gpu-operator/values.yaml (driver, toolkit, "
                "devicePlugin.config, daemonsets.tolerations) and tests/plugin-config.yaml (a timeSlicing "
                "config with replicas 10, the format we render)",
                f"{_GPU_OPERATOR_DOCS}@52dcb7b8:gpu-operator/platform-support.rst (26.7 docs: EKS 1.33-1.36)",
                f"{_GPU_OPERATOR_DOCS}@52dcb7b8:gpu-operator/release-notes.rst 26.7.0",
            ),
        )
    }
)  # fmt: skip


def newest_chart_for(kubernetes_version: str) -> GpuOperatorChart | None:
    """The newest chart release whose support matrix lists ``kubernetes_version``."""
    fitting = [c for c in GPU_OPERATOR_CHARTS.values() if c.supports(kubernetes_version)]
    return max(fitting, key=lambda c: c.released) if fitting else None


# --- the Kubernetes Cluster Autoscaler chart ----------------------------------------------

# The stored snapshot of kubernetes/autoscaler read on CHECKED: its last commit is of 2026-08-22,
# so releases after that date were not seen.
_AUTOSCALER = "kubernetes/autoscaler"
_AUTOSCALER_CHART_DIR = "cluster-autoscaler/charts/cluster-autoscaler"


@dataclass(frozen=True, kw_only=True)
class AutoscalerRelease:
    """One Cluster Autoscaler release: its minor is the Kubernetes minor it is for."""

    version: str  # the image tag, registry.k8s.io/autoscaling/cluster-autoscaler:<version>
    released: str
    source: str


@dataclass(frozen=True, kw_only=True)
class ClusterAutoscalerChart:
    version: str  # as the Helm repository names it
    released: str
    repository: str
    image: str  # values.yaml image.repository
    app_version: str  # the autoscaler the chart runs unless image.tag says otherwise
    # The autoscaler of each Kubernetes minor the chart serves, set as image.tag: the autoscaler
    # is meant to run with the control plane of its own minor ("versioning scheme was changed to
    # match Kubernetes minor releases exactly"; other pairs are not tested: cluster-autoscaler/
    # README.md, "Releases"), and the chart pins only one (its appVersion).
    releases: Mapping[str, AutoscalerRelease]
    sources: tuple[str, ...]

    @property
    def kubernetes(self) -> tuple[str, str]:
        """The oldest and newest Kubernetes minor the chart is pinned for."""
        ordered = sorted(self.releases, key=minor)
        return ordered[0], ordered[-1]


def _release(version: str, released: str) -> AutoscalerRelease:
    return AutoscalerRelease(
        version=f"v{version}",
        released=released,
        source=f"{_AUTOSCALER} tag cluster-autoscaler-{version} ({released}), the newest {version.rsplit('.', 1)[0]}.x "
        "in the snapshot read; its image in registry.k8s.io was not pulled here (no registry access)",
    )


CLUSTER_AUTOSCALER_CHART: Final = ClusterAutoscalerChart(
    version="9.59.0",
    released="2026-07-21",
    repository="https://kubernetes.github.io/autoscaler",
    image="registry.k8s.io/autoscaling/cluster-autoscaler",
    app_version="1.35.0",
    releases=MappingProxyType(
        {
            "1.32": _release("1.32.7", "2026-02-13"),
            "1.33": _release("1.33.6", "2026-07-22"),
            "1.34": _release("1.34.5", "2026-07-22"),
            "1.35": _release("1.35.2", "2026-07-22"),
        }
    ),
    sources=(
        f"{_AUTOSCALER}@5a0b98e4 (tag cluster-autoscaler-chart-9.59.0):{_AUTOSCALER_CHART_DIR}/Chart.yaml "
        "(version 9.59.0, appVersion 1.35.0) and values.yaml (image.repository, image.tag v1.35.0, autoDiscovery."
        "clusterName/tags, awsRegion, rbac.serviceAccount.name/annotations, extraArgs, resources, securityContext, "
        "containerSecurityContext, affinity, priorityClassName system-cluster-critical, fullnameOverride)",
        f"{_AUTOSCALER}@5a0b98e4:{_AUTOSCALER_CHART_DIR}/templates/deployment.yaml (--cloud-provider, --namespace, "
        "--node-group-auto-discovery=asg:tag=<autoDiscovery.tags>, extraArgs as --key=value, AWS_REGION from awsRegion)",
        f"{_AUTOSCALER}@5a0b98e4:{_AUTOSCALER_CHART_DIR}/README.md (helm repo add autoscaler "
        "https://kubernetes.github.io/autoscaler; IRSA through rbac.serviceAccount.annotations eks.amazonaws.com/role-arn)",
        f"{_AUTOSCALER}@55c37cd5:cluster-autoscaler/README.md \"Releases\" (Kubernetes 1.32 with chart 9.45.0+, 1.33 "
        "with 9.47.0+, 1.34 with 9.51.0+; charts from 9.54.0 default to 1.35.0)",
    ),
)


def autoscaler_for(kubernetes_version: str) -> AutoscalerRelease | None:
    """The Cluster Autoscaler release of the cluster's Kubernetes minor, if the pinned chart has one."""
    wanted = minor(kubernetes_version)
    return next((r for v, r in CLUSTER_AUTOSCALER_CHART.releases.items() if minor(v) == wanted), None)
