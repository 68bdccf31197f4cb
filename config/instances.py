"""The EC2 instance types the node groups may use, with their GPU and what kubelet leaves to pods.

The settings accept only these types (``GPU_NODE_TYPES`` for the GPU node group, ``CPU_NODE_TYPES``
for the CPU one); the memory planner plans on a type's ``GpuSpec``; the settings check that the
enabled models' requests fit a node's allocatable CPU and memory. Each figure names its source,
read on ``config.facts.CHECKED`` like the other facts about things this project does not build.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from config.facts import EKS_AMI_SOURCE

__all__ = [
    "ACCELERATOR_LABEL",
    "GpuSpec",
    "InstanceType",
    "INSTANCE_TYPES",
    "GPU_NODE_TYPES",
    "CPU_NODE_TYPES",
    "NODEFS_EVICTION_FRACTION",
    "gpu_for_instance_type",
    "kube_reserved_cpu_millis",
    "kube_reserved_memory_mib",
]



@dataclass(frozen=True, kw_only=True)
class GpuSpec:
    """One GPU of an instance type. ``total_gib`` is what ``nvidia-smi`` reports as the card's
    total; ``usable_gib`` what CUDA reports free on an idle card. The L40S's 44.39 GiB was
    measured by the guide this project replaces; for the other cards it is estimated as total
    minus the same 0.60 GiB the driver keeps on the L40S, and marked ``measured=False``."""

    gpu_model: str
    gpus_per_node: int
    total_gib: float
    usable_gib: float
    bandwidth_gb_s: float  # memory bandwidth, GB/s (10^9), for decode-speed estimates
    measured: bool  # usable_gib measured on a real card (True) or estimated (False)
    # The GPU nodes' ACCELERATOR_LABEL value: the Cluster Autoscaler's name for the card.
    accelerator: str


_DRIVER_RESERVED_GIB = 46068 / 1024 - 44.39  # L40S: nvidia-smi total minus the guide's measured free


def _card(model: str, total_mib: int, bandwidth: float, accelerator: str, *, usable_gib: float | None = None) -> GpuSpec:
    total = total_mib / 1024
    return GpuSpec(
        gpu_model=model,
        accelerator=accelerator,
        gpus_per_node=1,
        total_gib=round(total, 2),
        usable_gib=usable_gib if usable_gib is not None else round(total - _DRIVER_RESERVED_GIB, 2),
        bandwidth_gb_s=bandwidth,
        measured=usable_gib is not None,
    )


# The node label the Cluster Autoscaler's AWS provider reads as "this node has a GPU": a node that
# carries it but advertises no GPU yet (the device plugin starts after the node is Ready) is
# counted as unready instead of as a node the pending GPU pods do not fit, which would scale up
# again (kubernetes/autoscaler@cluster-autoscaler-1.35.2: cloudprovider/aws/aws_cloud_provider.go
# GPULabel and availableGPUTypes, processors/customresources/gpu_processor.go
# FilterOutNodesWithUnreadyResources; cloudprovider/aws/README.md "Special note on GPU instances").
ACCELERATOR_LABEL: Final = "k8s.amazonaws.com/accelerator"

# NVIDIA product briefs (memory size, bandwidth); nvidia-smi totals; the autoscaler's GPU type names.
_L40S = _card("NVIDIA L40S", 46068, 864.0, "nvidia-l40s", usable_gib=44.39)
_A10G = _card("NVIDIA A10G", 23028, 600.0, "nvidia-a10g")
_L4 = _card("NVIDIA L4", 23034, 300.0, "nvidia-l4")

# What kubelet keeps from the pods on an AL2023 node (nodeadm/internal/kubelet/config.go):
# kube-reserved CPU 6% of the first core, 1% of the second, 0.5% of the next two and 0.25% of
# the rest (getCPUMillicoresToReserve); kube-reserved memory 11 MiB per max pod + 255 MiB
# (getMemoryMebibytesToReserve), with max pods = ENIs x (IPv4 per ENI - 1) + 2 for the VPC CNI
# (eni_max_pods.go calculateStandardMaxPods); evictionHard memory.available 100Mi and
# nodefs.available 10%.
_KUBELET_SOURCE = f"{EKS_AMI_SOURCE}:nodeadm/internal/kubelet/config.go, eni_max_pods.go, instance-info.jsonl"
_EVICTION_MEMORY_MIB = 100
NODEFS_EVICTION_FRACTION: Final = 0.10
# A node's memory capacity is below the instance's nominal memory (kernel, firmware); Karpenter
# estimates the gap as 7.5% (its vmMemoryOverheadPercent default, aws/karpenter#1953,
# aws/karpenter-provider-aws#5161): an estimate, not a measurement of these types.
_VM_MEMORY_OVERHEAD = 0.075


def kube_reserved_cpu_millis(vcpus: int) -> int:
    """nodeadm getCPUMillicoresToReserve: 6% of the first core, 1% of the second, 0.5% of the
    next two, 0.25% of the rest."""
    total, reserved = vcpus * 1000, 0
    for lo, hi, per_10k in ((0, 1000, 600), (1000, 2000, 100), (2000, 4000, 50), (4000, total, 25)):
        if total > lo:
            reserved += (min(total, hi) - lo) * per_10k // 10000
    return reserved


def kube_reserved_memory_mib(max_pods: int) -> int:
    """nodeadm getMemoryMebibytesToReserve."""
    return 11 * max_pods + 255


@dataclass(frozen=True, kw_only=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float  # nominal, as EC2 lists it
    architecture: str
    enis: int  # default network card's ENIs (nodeadm instance-info.jsonl defaultMaxENIs)
    ipv4_per_eni: int
    gpu: GpuSpec | None = None

    @property
    def max_pods(self) -> int:
        return self.enis * (self.ipv4_per_eni - 1) + 2

    @property
    def allocatable_cpu_millis(self) -> int:
        return self.vcpus * 1000 - kube_reserved_cpu_millis(self.vcpus)

    @property
    def allocatable_memory_mib(self) -> int:
        capacity = self.memory_gib * 1024 * (1 - _VM_MEMORY_OVERHEAD)
        return int(capacity - kube_reserved_memory_mib(self.max_pods) - _EVICTION_MEMORY_MIB)


_INSTANCE_SOURCES = (
    "vCPUs and memory: AWS, Amazon EC2 instance type specifications "
    "(https://docs.aws.amazon.com/ec2/latest/instancetypes/gp.html, co.html, mo.html, ac.html); "
    "g5/g6e cross-checked against meta-pytorch/torchx torchx/specs/named_resources_aws.py",
    f"ENIs and IPv4 addresses per ENI: {EKS_AMI_SOURCE}:nodeadm/internal/kubelet/instance-info.jsonl",
)
# (vCPUs, GiB) per size, per family shape.
_SIZES = {
    "t": {"medium": (2, 4), "large": (2, 8), "xlarge": (4, 16), "2xlarge": (8, 32)},
    "m": {"large": (2, 8), "xlarge": (4, 16), "2xlarge": (8, 32), "4xlarge": (16, 64)},
    "c": {"large": (2, 4), "xlarge": (4, 8), "2xlarge": (8, 16), "4xlarge": (16, 32)},
    "r": {"large": (2, 16), "xlarge": (4, 32), "2xlarge": (8, 64), "4xlarge": (16, 128)},
    # single-GPU sizes only: the sharing this project sets up is of one card per node
    "g5": {"xlarge": (4, 16), "2xlarge": (8, 32), "4xlarge": (16, 64), "8xlarge": (32, 128), "16xlarge": (64, 256)},
    "g6": {"xlarge": (4, 16), "2xlarge": (8, 32), "4xlarge": (16, 64), "8xlarge": (32, 128), "16xlarge": (64, 256)},
    "g6e": {"xlarge": (4, 32), "2xlarge": (8, 64), "4xlarge": (16, 128), "8xlarge": (32, 256), "16xlarge": (64, 512)},
}
# (ENIs, IPv4 per ENI) per size, from instance-info.jsonl.
_ENIS_T = {"medium": (3, 6), "large": (3, 12), "xlarge": (4, 15), "2xlarge": (4, 15)}
_ENIS_MCR = {"large": (3, 10), "xlarge": (4, 15), "2xlarge": (4, 15), "4xlarge": (8, 30)}
_ENIS_G = {"xlarge": (4, 15), "2xlarge": (4, 15), "4xlarge": (8, 30), "8xlarge": (8, 30)}
_FAMILIES: tuple[tuple[str, str, dict[str, tuple[int, int]], GpuSpec | None], ...] = (
    ("t3", "t", _ENIS_T, None),
    ("t3a", "t", _ENIS_T, None),
    ("m5", "m", _ENIS_MCR, None),
    ("m6i", "m", _ENIS_MCR, None),
    ("m6a", "m", _ENIS_MCR, None),
    ("m7i", "m", _ENIS_MCR, None),
    ("m7a", "m", _ENIS_MCR, None),
    ("c5", "c", _ENIS_MCR, None),
    ("c6i", "c", _ENIS_MCR, None),
    ("c7i", "c", _ENIS_MCR, None),
    ("r5", "r", _ENIS_MCR, None),
    ("r6i", "r", _ENIS_MCR, None),
    ("g5", "g5", {**_ENIS_G, "16xlarge": (8, 30)}, _A10G),
    ("g6", "g6", {**_ENIS_G, "16xlarge": (15, 50)}, _L4),
    ("g6e", "g6e", {**_ENIS_G, "16xlarge": (15, 50)}, _L40S),
)

# x86_64 types only: both node groups run x86_64 AMIs (CPU_AMI_TYPE, GPU_AMI_TYPE).
INSTANCE_TYPES: Final[Mapping[str, InstanceType]] = MappingProxyType(
    {
        f"{family}.{size}": InstanceType(
            name=f"{family}.{size}",
            vcpus=vcpus,
            memory_gib=gib,
            architecture="x86_64",
            enis=enis[size][0],
            ipv4_per_eni=enis[size][1],
            gpu=gpu,
        )
        for family, shape, enis, gpu in _FAMILIES
        for size, (vcpus, gib) in _SIZES[shape].items()
    }
)
GPU_NODE_TYPES: Final[Mapping[str, InstanceType]] = MappingProxyType(
    {k: t for k, t in INSTANCE_TYPES.items() if t.gpu is not None}
)
CPU_NODE_TYPES: Final[Mapping[str, InstanceType]] = MappingProxyType(
    {k: t for k, t in INSTANCE_TYPES.items() if t.gpu is None}
)


def gpu_for_instance_type(instance_type: str) -> GpuSpec | None:
    """The GPU of a known single-GPU instance type, or None."""
    node = GPU_NODE_TYPES.get(instance_type)
    return node.gpu if node is not None else None
