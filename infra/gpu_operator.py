"""The NVIDIA GPU Operator (Helm release) and the device plugin's sharing config.

The AL2023 NVIDIA AMI ships the driver and the container toolkit, so the operator runs
with ``driver.enabled=false`` and ``toolkit.enabled=false`` and brings the device plugin,
GPU feature discovery, DCGM and the validator.

The sharing config is a ConfigMap in the device plugin's config format (NVIDIA
k8s-device-plugin, ``api/config/v1``; cloud-native-docs ``gpu-operator/gpu-sharing.rst``)
that the chart's ``devicePlugin.config.name/default`` point at. The operator does not
watch that ConfigMap (the same doc: "The Operator does not monitor the time-slicing
config maps"), so its name carries a hash of its content: a changed config is a new
ConfigMap, hence a changed ClusterPolicy, and the operator rolls the device plugin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from config.cluster_settings import GpuOperatorSettings, GpuSharingSettings

__all__ = ["GpuOperatorArgs", "GpuOperator", "device_plugin_config", "config_map_name", "helm_values"]

_CONFIG_MAP_PREFIX = "device-plugin-config"


def device_plugin_config(sharing: GpuSharingSettings) -> dict[str, Any]:
    """The device plugin config (version v1) for a sharing setting."""
    config: dict[str, Any] = {"version": "v1", "flags": {"migStrategy": "none"}}
    if sharing.strategy == "none":
        return config
    key = "timeSlicing" if sharing.strategy == "time-slicing" else "mps"
    config["sharing"] = {
        key: {
            "renameByDefault": sharing.rename_by_default,
            "failRequestsGreaterThanOne": sharing.fail_requests_greater_than_one,
            "resources": [{"name": "nvidia.com/gpu", "replicas": sharing.replicas}],
        }
    }
    return config


def _render(sharing: GpuSharingSettings) -> str:
    return yaml.safe_dump(device_plugin_config(sharing), sort_keys=False)


def config_map_name(sharing: GpuSharingSettings) -> str:
    """The ConfigMap's name: fixed prefix plus a hash of the rendered config."""
    return f"{_CONFIG_MAP_PREFIX}-{hashlib.sha256(_render(sharing).encode()).hexdigest()[:10]}"


def helm_values(config_map: str, config_key: str) -> dict[str, Any]:
    """The chart values we set (chart deployments/gpu-operator/values.yaml; the same keys in
    every release config/charts.py records, GPU_OPERATOR_CHARTS)."""
    return {
        "driver": {"enabled": False},
        "toolkit": {"enabled": False},
        "devicePlugin": {"config": {"create": False, "name": config_map, "default": config_key}},
    }


@dataclass(frozen=True, kw_only=True)
class GpuOperatorArgs:
    operator: GpuOperatorSettings
    sharing: GpuSharingSettings


class GpuOperator(pulumi.ComponentResource):
    """Namespace, sharing ConfigMap and the ``gpu-operator`` Helm release.

    Pass the cluster's Kubernetes provider in ``opts`` (``providers=[...]``) and the node
    groups in ``depends_on``: the release waits for the operator's pods.
    """

    namespace: pulumi.Output[str]
    config_map: pulumi.Output[str]

    def __init__(self, name: str, args: GpuOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-sharing:infra:GpuOperator", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.operator.namespace),
            opts=child,
        )
        config_key = args.sharing.strategy
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-device-plugin-config",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=config_map_name(args.sharing),
                namespace=namespace.metadata.name,
                labels={"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "gpu-sharing"},
            ),
            data={config_key: _render(args.sharing)},
            immutable=True,  # a change makes a new ConfigMap (new name) anyway
            opts=child,
        )
        release = k8s.helm.v3.Release(
            f"{name}-release",
            name="gpu-operator",
            chart="gpu-operator",
            version=args.operator.chart_version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=args.operator.repository),
            namespace=namespace.metadata.name,
            values=helm_values(config_map_name(args.sharing), config_key),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[config_map]),
        )

        self.namespace = namespace.metadata.name
        self.config_map = config_map.metadata.name
        self.release_status = release.status
        self.register_outputs({"namespace": self.namespace, "config_map": self.config_map})
