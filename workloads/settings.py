"""The workloads' part of the stack settings: namespace, model catalog, access.

Read by ``infra.settings.load_settings`` from the same root config section, so the
whole stack config is validated in one pass before any resource is declared.
(Interface placeholder: the model catalog is filled in by the workloads work.)
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.gpus import GpuSpec
from infra.validation import Section

__all__ = ["WorkloadSettings", "load_workloads"]


@dataclass(frozen=True, kw_only=True)
class WorkloadSettings:
    namespace: str


def load_workloads(root: Section, *, gpu: GpuSpec, gpu_slots: int) -> WorkloadSettings:
    """Read the workload keys of the project's root config section.

    ``gpu`` is the GPU node's card; ``gpu_slots`` how many pods asking for one
    ``nvidia.com/gpu`` the GPU node group can hold in all (sharing replicas per GPU x
    GPUs per node x the node group's max size).
    """
    del gpu, gpu_slots
    return WorkloadSettings(namespace=root.dns_label("namespace", "llm-testing"))
