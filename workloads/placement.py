"""Which GPU each model runs on: the catalog's models assigned to GPUs, and each GPU's memory plan
(pure arithmetic, like ``workloads.planner``, which plans one GPU).

A *GPU group* is the set of models planned together on one GPU, hence on one node: the GPU
instance types the settings accept have one GPU each (``config.instances``). A model is never
split. Every catalog model is placed, enabled or not, as every one is in the memory plan: toggling
a model then changes its replicas only, never where the others run or what they get.

The assignment, deterministic:

1. Models pinned with ``models.<key>.gpuGroup`` go to that GPU, in start order; a pinned model
   that does not fit there is an error naming its ``gpuGroup``.
2. The others go largest first (their memory need, ``need_bytes``: CUDA context, weights,
   activation peak, CUDA graphs and the KV cache of their ``maxBatchTotalTokens``; ties in start
   order) to the lowest-numbered GPU they fit on beside the models already there, else to the
   lowest-numbered free one: first-fit decreasing.

A model *fits* a GPU when the GPU's memory plan with it succeeds (``plan_memory`` over the
group in start order, 'auto' fractions chosen anew for the group: TGI's start-order arithmetic
is per GPU), when the group stays within the sharing replicas of one GPU, and when the group's
CPU and memory requests stay within one node's allocatable. A model that fits no GPU even alone
is an error naming its own setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from config.instances import GpuSpec, InstanceType
from workloads.planner import (
    GIB,
    Assumptions,
    MemoryPlan,
    ModelPlan,
    ModelRequest,
    PlanError,
    check_fraction_mode,
    plan_memory,
)
from workloads.warmup import shape_of

__all__ = ["GpuNode", "Candidate", "Placement", "need_bytes", "place"]


@dataclass(frozen=True, kw_only=True)
class GpuNode:
    """What one GPU node offers the models: its instance type (allocatable CPU and memory), its
    GPU, and how many pods asking for one GPU share that GPU."""

    type: InstanceType
    gpu: GpuSpec
    slots: int  # gpuSharing.replicas: pods per GPU


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One catalog model as the placement sees it."""

    request: ModelRequest
    pinned: int | None  # models.<key>.gpuGroup, or None
    cpu: str  # the CPU request as configured (messages quote it)
    cpu_millis: int
    memory: str  # the memory request as configured
    memory_bytes: int

    @property
    def key(self) -> str:
        return self.request.key


@dataclass(frozen=True, kw_only=True)
class Placement:
    """The models of each GPU group with its memory plan, groups numbered from 1."""

    plans: Mapping[int, MemoryPlan]  # GPU group -> its memory plan (its models in start order)
    # A model that opened a GPU of its own -> why it fits none of the GPUs before it.
    why: Mapping[str, str]

    def group(self, key: str) -> int:
        return next(g for g, plan in self.plans.items() if any(m.key == key for m in plan.models))

    def model(self, key: str) -> ModelPlan:
        return self.plans[self.group(key)].model(key)

    def keys(self, group: int) -> list[str]:
        """The models of a GPU group, in start order."""
        return [m.key for m in self.plans[group].models]

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for plan in self.plans.values() for w in plan.warnings)

    def describe(self) -> str:
        """Each GPU's memory plan as a table, for logs."""
        return "\n".join(f"GPU {g}: {', '.join(self.keys(g))}\n{plan.describe()}" for g, plan in self.plans.items())


def need_bytes(gpu: GpuSpec, m: ModelRequest, a: Assumptions | None = None) -> float:
    """What a model holds on a GPU at the least an 'auto' plan gives it: context, weights, activation
    peak, CUDA graphs and the KV tokens of its maxBatchTotalTokens (or of its warmup batch, if more)."""
    s = shape_of(gpu, m, a or Assumptions())
    return s.context + s.weights + s.activation + s.graphs + max(m.max_batch_total_tokens, s.warmup_kv_tokens) * s.kv_bytes_per_token


def place(node: GpuNode, models: Sequence[Candidate], assumptions: Assumptions | None = None) -> Placement:
    """Assign ``models`` (in start order) to GPUs and plan each GPU; see the module docstring.

    Raises ``PlanError`` naming the model and the setting to change when a model fits no GPU even
    alone, or a pinned model does not fit its GPU.
    """
    check_fraction_mode([c.request for c in models])
    order = {c.key: i for i, c in enumerate(models)}
    groups: dict[int, list[Candidate]] = {}
    why: dict[str, str] = {}

    def add(group: int, c: Candidate) -> None:
        groups[group] = sorted([*groups.get(group, []), c], key=lambda m: order[m.key])

    for c in models:
        if c.pinned is not None:
            _alone(node, c, assumptions)
            reason = _misfit(node, groups.get(c.pinned, []), c, order, assumptions)
            if reason is not None:
                raise PlanError(
                    c.key,
                    "gpuGroup",
                    c.pinned,
                    f"a GPU whose models {c.key} fits beside: on GPU {c.pinned} with "
                    f"{', '.join(m.key for m in groups[c.pinned])}, {reason}; pin {c.key} to another GPU or unpin it",
                )
            add(c.pinned, c)
    free = sorted((c for c in models if c.pinned is None), key=lambda c: (-need_bytes(node.gpu, c.request, assumptions), order[c.key]))
    for c in free:
        _alone(node, c, assumptions)
        tried: list[str] = []
        for group in sorted(groups):
            reason = _misfit(node, groups[group], c, order, assumptions)
            if reason is None:
                add(group, c)
                break
            tried.append(f"not beside GPU {group}'s {', '.join(m.key for m in groups[group])}: {reason}")
        else:
            add(next(g for g in range(1, len(groups) + 2) if g not in groups), c)
            if tried:
                why[c.key] = "; ".join(tried)
    plans = {g: plan_memory(node.gpu, [m.request for m in groups[g]], assumptions) for g in sorted(groups)}
    return Placement(plans=MappingProxyType(plans), why=MappingProxyType(why))


def _alone(node: GpuNode, c: Candidate, assumptions: Assumptions | None) -> None:
    """Raise the model's own error when it fits no GPU node even alone."""
    t = node.type
    for field, asked, allocatable, unit, size in _requests(node, [c]):
        if asked > allocatable:
            raise PlanError(
                c.key,
                field,
                getattr(c, field),
                f"at most {allocatable / size:.2f} {unit}: one {t.name} node ({t.vcpus} vCPUs, {t.memory_gib:g} GiB) "
                f"has {allocatable / size:.2f} {unit} allocatable after kubelet's reservations; lower it or pick a "
                "larger gpu-sharing:gpuNodes.instanceType",
            )
    plan_memory(node.gpu, [c.request], assumptions)


def _requests(node: GpuNode, models: Sequence[Candidate]) -> list[tuple[str, int, int, str, int]]:
    """(setting, what ``models`` ask for together, what one node has allocatable after kubelet's
    reservations, unit, unit size) for CPU and memory."""
    t = node.type
    return [
        ("cpu", sum(m.cpu_millis for m in models), t.allocatable_cpu_millis, "CPU", 1000),
        ("memory", sum(m.memory_bytes for m in models), t.allocatable_memory_mib * 2**20, "GiB", GIB),
    ]


def _misfit(
    node: GpuNode, group: Sequence[Candidate], c: Candidate, order: Mapping[str, int], assumptions: Assumptions | None
) -> str | None:
    """Why ``c`` does not fit a GPU beside ``group``, or None when it does."""
    if not group:
        return None
    together = sorted([*group, c], key=lambda m: order[m.key])
    t = node.type
    if len(together) > node.slots:
        return f"one GPU takes {node.slots} pods (gpuSharing.replicas)"
    for field, asked, allocatable, unit, size in _requests(node, together):
        if asked > allocatable:
            return (
                f"their {field if field == 'memory' else 'CPU'} requests ({', '.join(getattr(m, field) for m in together)}) "
                f"add up to {asked / size:.2f} {unit}, more than the {allocatable / size:.2f} {unit} one {t.name} node has "
                "allocatable"
            )
    try:
        plan_memory(node.gpu, [m.request for m in together], assumptions)
    except PlanError as e:
        return f"the GPU's memory plan fails: {e}"
    return None
