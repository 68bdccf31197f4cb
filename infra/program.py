"""The whole stack, composed: settings -> components -> the outputs to export.

``__main__`` calls ``build(settings_from_pulumi())`` and exports the result; tests call
``build(load_settings(config))`` under Pulumi mocks (``tests/pulumi_mocks.py``).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from config.settings import Settings
from config.validation import ConfigError
from infra.autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from infra.cluster import GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, Cluster, ClusterArgs
from infra.gpu_operator import GpuOperator, GpuOperatorArgs
from infra.network import Network, NetworkArgs
from workloads.component import BENCHMARK_GROUP, ModelWorkloads, ModelWorkloadsArgs
from workloads.contract import GpuNodes
from workloads.export import contract_output

__all__ = ["Stack", "build", "gpu_facts", "gpu_nodes_facts"]


class Stack:
    """What ``build`` declared, for the workloads to build on."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.aws_provider = aws.Provider("aws", region=settings.region)
        zones, gpu_zones = _availability_zones(self.aws_provider, settings)
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
                region=settings.region,
                kubernetes_version=settings.kubernetes_version,
                public_access_cidrs=settings.public_access_cidrs,
                vpc_id=self.network.vpc_id,
                public_subnet_ids=self.network.public_subnet_ids,
                private_subnet_ids=self.network.private_subnet_ids,
                gpu_subnet_ids=[self.network.private_subnet_ids[zones.index(z)] for z in gpu_zones],
                cpu_nodes=settings.cpu_nodes,
                gpu_nodes=settings.gpu_nodes,
                gpu_accelerator=settings.gpu.accelerator,
                # What a GPU node offers pods: the sharing replicas of each of its GPUs.
                gpu_node_resources={
                    settings.gpu_sharing.resource_name: str(settings.gpu_sharing.replicas * settings.gpu.gpus_per_node)
                },
                hardening=settings.hardening,
                access=settings.access,
                benchmark_group=BENCHMARK_GROUP,
            ),
            pulumi.ResourceOptions(providers=[self.aws_provider]),
        )
        # Keeps each node group between its minSize and maxSize: GPU nodes for the models'
        # pending pods, none when no model is enabled and minSize is 0.
        self.autoscaler = ClusterAutoscaler(
            "cluster-autoscaler",
            ClusterAutoscalerArgs(
                cluster_name=settings.cluster_name,
                region=settings.region,
                release=settings.autoscaler,
                oidc_provider_arn=self.cluster.oidc_provider_arn,
                oidc_issuer=self.cluster.oidc_issuer,
                node_groups=self.cluster.node_groups,
            ),
            pulumi.ResourceOptions(providers=[self.aws_provider, self.cluster.provider]),
        )
        self.gpu_operator = GpuOperator(
            "gpu-operator",
            GpuOperatorArgs(operator=settings.gpu_operator, sharing=settings.gpu_sharing),
            pulumi.ResourceOptions(providers=[self.cluster.provider], depends_on=list(self.cluster.node_groups)),
        )
        self.models = ModelWorkloads(
            "models",
            ModelWorkloadsArgs(
                settings=settings.workloads,
                node_selector=settings.gpu_nodes.labels,
                tolerate_gpu_taint=settings.gpu_nodes.taint,
                gpu_resource=settings.gpu_sharing.resource_name,
                operator_namespace=settings.gpu_operator.namespace,
            ),
            # The GPU Operator's device plugin advertises the shared nvidia.com/gpu replicas.
            pulumi.ResourceOptions(providers=[self.cluster.provider], depends_on=[self.gpu_operator]),
        )

    def outputs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "clusterName": self.cluster.name,
            "region": s.region,
            "kubeconfig": self.cluster.kubeconfig,  # a secret output
            "gpu": gpu_facts(s),
            "contract": contract_output(
                cluster_name=self.cluster.name, region=s.region, gpu=gpu_facts(s), workloads=s.workloads,
                gpu_nodes=gpu_nodes_facts(s), gpu_operator_namespace=s.gpu_operator.namespace,
                benchmark_group=BENCHMARK_GROUP,
            ),
        }


def build(settings: Settings) -> dict[str, Any]:
    """Declare the stack; return the outputs ``__main__`` exports."""
    return Stack(settings).outputs()


def gpu_facts(settings: Settings) -> dict[str, Any]:
    """The ``gpu`` part of the stack-outputs contract (``workloads.contract``; the README's
    "Deploying" lists the stack outputs): the GPU node's instance type, its card, how it is shared,
    and how many GPU nodes the group may have (the Cluster Autoscaler keeps it in that range)."""
    return {
        "instance_type": settings.gpu_nodes.instance_type,
        "gpu_model": settings.gpu.gpu_model,
        "memory_gib": settings.gpu.total_gib,
        "sharing": {"strategy": settings.gpu_sharing.strategy, "replicas": settings.gpu_sharing.replicas},
        "nodes": {"min": settings.gpu_nodes.min_size, "max": settings.gpu_nodes.max_size},
    }


def gpu_nodes_facts(settings: Settings) -> GpuNodes:
    """What every GPU node carries (the contract's ``gpu_nodes``, which ``doctor`` checks the nodes
    against): the node group's labels and taint, and what the device plugin advertises."""
    taint = {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}
    return GpuNodes(
        labels=dict(settings.gpu_nodes.labels),
        taint=taint if settings.gpu_nodes.taint else None,
        resource=settings.gpu_sharing.resource_name,
        gpus_per_node=settings.gpu.gpus_per_node,
    )


def _availability_zones(provider: aws.Provider, settings: Settings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the zones to use, those of them that offer the GPU instance type).

    Zones offering the GPU type come first: a GPU type is often offered in only some zones
    of a region, and the GPU node group only gets subnets in zones that offer it.
    Synchronous invokes: the zone count decides how many subnets to declare.
    """
    invoke = pulumi.InvokeOptions(provider=provider)
    # Availability Zones only: an opted-in Local or Wavelength Zone is also "available" and
    # sorts first (us-west-2-lax-1a < us-west-2a), but EKS refuses subnets there for the
    # control plane (EC2 DescribeAvailabilityZones filter zone-type: availability-zone |
    # local-zone | wavelength-zone).
    available = sorted(
        aws.get_availability_zones(
            state="available", filters=[{"name": "zone-type", "values": ["availability-zone"]}], opts=invoke
        ).names
    )
    count = settings.availability_zone_count
    if len(available) < count:
        raise ConfigError(
            "gpu-sharing:availabilityZoneCount",
            count,
            f"at most the {len(available)} available zones of {settings.region} ({', '.join(available)})",
        )
    offering = aws.ec2.get_instance_type_offerings(
        location_type="availability-zone",
        filters=[{"name": "instance-type", "values": [settings.gpu_nodes.instance_type]}],
        opts=invoke,
    ).locations
    gpu_capable = [z for z in available if z in offering]
    if not gpu_capable:
        raise ConfigError(
            "gpu-sharing:gpuNodes.instanceType",
            settings.gpu_nodes.instance_type,
            f"an instance type offered in a zone of {settings.region}; it is offered in none of {', '.join(available)}",
        )
    zones = tuple((gpu_capable + [z for z in available if z not in gpu_capable])[:count])
    return zones, tuple(z for z in zones if z in gpu_capable)
