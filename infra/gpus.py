"""The GPU of each GPU instance type, for the settings, the memory planner, the stack outputs
and the benchmark's simulator (``benchmark/sim/presets.py`` imports this module).

The facts themselves live in ``infra.facts`` (``GpuSpec``, ``INSTANCE_TYPES``), with their
sources; this module only looks them up.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from infra.facts import INSTANCE_TYPES, GpuSpec

__all__ = ["GpuSpec", "GPU_INSTANCE_TYPES", "gpu_for_instance_type"]

# Single-GPU instance types and their card.
GPU_INSTANCE_TYPES: Mapping[str, GpuSpec] = MappingProxyType(
    {name: t.gpu for name, t in INSTANCE_TYPES.items() if t.gpu is not None}
)


def gpu_for_instance_type(instance_type: str) -> GpuSpec | None:
    """The GPU of a known single-GPU instance type, or None."""
    return GPU_INSTANCE_TYPES.get(instance_type)
