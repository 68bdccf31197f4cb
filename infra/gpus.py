"""What a GPU instance type gives the models: one table, used by the settings, the
memory planner and the stack outputs.

Sources: AWS's accelerated-computing instance pages (GPU model and count per type),
NVIDIA's product briefs (memory size and bandwidth). ``total_gib`` is what
``nvidia-smi`` reports as the card's total; ``usable_gib`` is what CUDA reports free
on an idle card. The L40S's 44.39 GiB was measured by the guide this project
replaces; for the other cards it is estimated as total minus the same 0.60 GiB the
driver keeps on the L40S, and marked ``measured=False`` so reports can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GpuSpec", "GPU_INSTANCE_TYPES", "gpu_for_instance_type"]

_DRIVER_RESERVED_GIB = 46068 / 1024 - 44.39  # L40S: nvidia-smi total minus the guide's measured free


@dataclass(frozen=True, kw_only=True)
class GpuSpec:
    """One GPU of an instance type."""

    gpu_model: str
    gpus_per_node: int
    total_gib: float
    usable_gib: float
    bandwidth_gb_s: float  # memory bandwidth, GB/s (10^9), for decode-speed estimates
    measured: bool  # usable_gib measured on a real card (True) or estimated (False)


def _card(model: str, total_mib: int, bandwidth: float, *, usable_gib: float | None = None) -> GpuSpec:
    total = total_mib / 1024
    return GpuSpec(
        gpu_model=model,
        gpus_per_node=1,
        total_gib=round(total, 2),
        usable_gib=usable_gib if usable_gib is not None else round(total - _DRIVER_RESERVED_GIB, 2),
        bandwidth_gb_s=bandwidth,
        measured=usable_gib is not None,
    )


_L40S = _card("NVIDIA L40S", 46068, 864.0, usable_gib=44.39)
_A10G = _card("NVIDIA A10G", 23028, 600.0)
_L4 = _card("NVIDIA L4", 23034, 300.0)

# Single-GPU sizes only: the sharing this project sets up is of one card per node.
GPU_INSTANCE_TYPES: dict[str, GpuSpec] = {
    **{f"g6e.{size}": _L40S for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    **{f"g5.{size}": _A10G for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    **{f"g6.{size}": _L4 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
}


def gpu_for_instance_type(instance_type: str) -> GpuSpec | None:
    """The GPU of a known single-GPU instance type, or None."""
    return GPU_INSTANCE_TYPES.get(instance_type)
