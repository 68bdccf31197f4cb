"""The whole stack, composed: settings -> components -> the outputs to export.

``__main__`` calls ``build(settings_from_pulumi())`` and exports the result; tests call
``build(load_settings(config))`` under Pulumi mocks (``tests/pulumi_mocks.py``).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.cluster import Cluster, ClusterArgs
from infra.gpu_operator import GpuOperator, GpuOperatorArgs
from infra.network import Network, NetworkArgs
from infra.settings import Settings
from infra.validation import ConfigError

__all__ = ["Stack", "build", "gpu_facts"]


class Stack:
    """What ``build`` declared, for the workloads to build on."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.aws_provider = aws.Provider("aws", region=settings.region)
        zones = _availability_zones(self.aws_provider, settings.availability_zone_count)
        self.network = Network(
            "network",
            NetworkArgs(
                cluster_name=settings.cluster_name,
                vpc_cidr=settings.vpc_cidr,
                availability_zones=zones,
                nat_gateways=settings.nat_gateways,
            ),
            pulumi.ResourceOptions(providers=[self.aws_provider]),
        )
        self.cluster = Cluster(
            "cluster",
            ClusterArgs(
                cluster_name=settings.cluster_name,
                kubernetes_version=settings.kubernetes_version,
                public_access_cidrs=settings.public_access_cidrs,
                vpc_id=self.network.vpc_id,
                public_subnet_ids=self.network.public_subnet_ids,
                private_subnet_ids=self.network.private_subnet_ids,
                cpu_nodes=settings.cpu_nodes,
                gpu_nodes=settings.gpu_nodes,
            ),
            pulumi.ResourceOptions(providers=[self.aws_provider]),
        )
        self.gpu_operator = GpuOperator(
            "gpu-operator",
            GpuOperatorArgs(operator=settings.gpu_operator, sharing=settings.gpu_sharing),
            pulumi.ResourceOptions(providers=[self.cluster.provider], depends_on=list(self.cluster.node_groups)),
        )

    def outputs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "clusterName": self.cluster.name,
            "region": s.region,
            "kubeconfig": self.cluster.kubeconfig,  # a secret output
            "gpu": gpu_facts(s),
        }


def build(settings: Settings) -> dict[str, Any]:
    """Declare the stack; return the outputs ``__main__`` exports."""
    return Stack(settings).outputs()


def gpu_facts(settings: Settings) -> dict[str, Any]:
    """The ``gpu`` part of the stack-outputs contract (shared/DESIGN.md)."""
    return {
        "instance_type": settings.gpu_nodes.instance_type,
        "gpu_model": settings.gpu.gpu_model,
        "memory_gib": settings.gpu.total_gib,
        "sharing": {"strategy": settings.gpu_sharing.strategy, "replicas": settings.gpu_sharing.replicas},
    }


def _availability_zones(provider: aws.Provider, count: int) -> tuple[str, ...]:
    # A synchronous invoke: the zone count decides how many subnets to declare.
    zones = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(provider=provider)).names
    if len(zones) < count:
        raise ConfigError(
            "gpu-sharing:availabilityZoneCount",
            count,
            f"at most the {len(zones)} available zones of this region ({', '.join(zones)})",
        )
    return tuple(sorted(zones)[:count])
