"""The memory plan: what each TGI process really gets on a shared GPU, model after model
(pure arithmetic).

The plan replays TGI's warmup in start order (``workloads.warmup``, with the TGI source lines
it models: a process sizes its KV cache from the *device's* free memory, so fractions act
cumulatively in start order), chooses the fractions of an 'auto' catalog, and refuses a
catalog TGI would crash on with the numbers and the setting to change.

Two moments are planned for each model, in start order:
- *first start*: the models before it are idle (their warmup activations were
  released by ``empty_cache``), so it takes that memory into its KV cache; the last
  model leaves ``(1 - 0.9 f) * total`` + its own activations free, and every model's
  activation peak must come back out of that when traffic arrives;
- *restart*: the models before it have served traffic and hold their activation peak
  (PyTorch's caching allocator keeps it): the smaller KV cache, the one reported.

The estimates the plan rests on are the fields of ``Assumptions``, in one place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from config.instances import GpuSpec
from workloads.warmup import (
    GIB,
    TGI_WIGGLE_ROOM,
    Assumptions,
    ModelRequest,
    PlanError,
    Shape,
    block_size,
    check_minimal_fit,
    leave_free,
    shape_of,
    simulate,
)

__all__ = [
    "Assumptions",
    "ModelRequest",
    "ModelPlan",
    "MemoryPlan",
    "PlanError",
    "plan_memory",
    "check_fraction_mode",
    "block_size",
    "GIB",
    "TGI_WIGGLE_ROOM",
]


@dataclass(frozen=True, kw_only=True)
class ModelPlan:
    """What one TGI process gets, in bytes and tokens."""

    key: str
    start_order: int
    cuda_memory_fraction: float
    block_size: int
    kv_bytes_per_token: int
    context_bytes: float
    weights_bytes: float
    warmup_kv_tokens: int
    activation_bytes: float
    free_at_start_bytes: float  # device free memory when it starts (restart case)
    leave_free_bytes: float  # (1 - 0.9 f) * total: what it leaves to the models after it
    kv_tokens: int  # its KV cache (= TGI's max batch total tokens) when restarted after others served traffic
    kv_tokens_first_start: int  # on the first start in order, predecessors idle
    max_batch_total_tokens: int

    @property
    def kv_bytes(self) -> float:
        return self.kv_tokens * self.kv_bytes_per_token


@dataclass(frozen=True, kw_only=True)
class MemoryPlan:
    gpu_model: str
    total_bytes: float
    usable_bytes: float
    assumptions: Assumptions
    models: tuple[ModelPlan, ...]
    warnings: tuple[str, ...] = field(default=())

    def model(self, key: str) -> ModelPlan:
        return next(m for m in self.models if m.key == key)

    def describe(self) -> str:
        """The memory plan as a table, for logs and the README."""
        lines = [
            f"{self.gpu_model}: {self.usable_bytes / GIB:.2f} GiB usable of {self.total_bytes / GIB:.2f} GiB",
            f"{'#':>2} {'model':<24} {'fraction':>8} {'weights':>8} {'warmup':>7} {'act.':>6} {'KV GiB':>7} {'KV tokens':>9}",
        ]
        for m in self.models:
            lines.append(
                f"{m.start_order:>2} {m.key:<24} {m.cuda_memory_fraction:>8.4f} {m.weights_bytes / GIB:>8.2f} "
                f"{m.warmup_kv_tokens * m.kv_bytes_per_token / GIB:>7.2f} {m.activation_bytes / GIB:>6.2f} "
                f"{m.kv_bytes / GIB:>7.2f} {m.kv_tokens:>9}"
            )
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])


def plan_memory(gpu: GpuSpec, models: Sequence[ModelRequest], assumptions: Assumptions | None = None) -> MemoryPlan:
    """Plan ``models`` (in start order) on one ``gpu``; 'auto' fractions are chosen here.

    Raises ``PlanError`` for a memory plan TGI would crash on; returns warnings, with the
    numbers, where a model gets fewer KV tokens than its ``max_batch_total_tokens``.
    """
    a = assumptions or Assumptions()
    check_fraction_mode(models)
    auto = bool(models) and models[0].cuda_memory_fraction is None
    shapes = [shape_of(gpu, m, a) for m in models]
    if auto:
        check_minimal_fit(gpu, models, shapes)
    fractions = (
        _auto_fractions(gpu, models, shapes, a)
        if auto
        else [f for m in models if (f := m.cuda_memory_fraction) is not None]
    )
    restart = simulate(gpu, models, shapes, fractions, predecessors_busy=True)
    first = simulate(gpu, models, shapes, fractions, predecessors_busy=False)

    # Once traffic arrives every process takes its activation peak back out of what the
    # first start left free; a shortfall is an out-of-memory on a live model.
    need = sum(s.activation for s in shapes)
    if models and first.final_free < need:
        last = models[-1]
        raise PlanError(
            last.key,
            "cudaMemoryFraction",
            fractions[-1],
            f"a memory plan that leaves the activation peaks free: after the first start in order "
            f"{first.final_free / GIB:.2f} GiB stay free, but the models' prefill activations need "
            f"{need / GIB:.2f} GiB once traffic arrives; lower the last model's fraction "
            f"({last.key}) or maxBatchPrefillTokens",
        )

    plans: list[ModelPlan] = []
    warnings: list[str] = []
    for i, (m, s) in enumerate(zip(models, shapes)):
        kv = restart.kv_tokens[i]
        if kv < m.max_batch_total_tokens:
            warnings.append(
                f"{m.key}: TGI will size its KV cache to {kv} tokens, fewer than its maxBatchTotalTokens "
                f"{m.max_batch_total_tokens} (TGI then batches at most {kv} tokens): it starts with "
                f"{restart.free_at_start[i] / GIB:.2f} GiB free, takes {s.context / GIB:.2f} context + "
                f"{s.weights / GIB:.2f} weights + {s.warmup_kv_tokens * s.kv_bytes_per_token / GIB:.2f} warmup KV + "
                f"{s.activation / GIB:.2f} activations, and fraction {fractions[i]:.4g} makes it leave "
                f"{leave_free(gpu, fractions[i]) / GIB:.2f} GiB free, so only its warmup batch's "
                f"{s.warmup_kv_tokens} tokens{'' if kv == s.warmup_kv_tokens else f' plus {kv - s.warmup_kv_tokens}'} remain"
            )
        plans.append(
            ModelPlan(
                key=m.key,
                start_order=i + 1,
                cuda_memory_fraction=fractions[i],
                block_size=s.block,
                kv_bytes_per_token=s.kv_bytes_per_token,
                context_bytes=s.context,
                weights_bytes=s.weights,
                warmup_kv_tokens=s.warmup_kv_tokens,
                activation_bytes=s.activation,
                free_at_start_bytes=restart.free_at_start[i],
                leave_free_bytes=leave_free(gpu, fractions[i]),
                kv_tokens=kv,
                kv_tokens_first_start=first.kv_tokens[i],
                max_batch_total_tokens=m.max_batch_total_tokens,
            )
        )
    return MemoryPlan(
        gpu_model=gpu.gpu_model,
        total_bytes=gpu.total_gib * GIB,
        usable_bytes=gpu.usable_gib * GIB,
        assumptions=a,
        models=tuple(plans),
        warnings=tuple(warnings),
    )


def check_fraction_mode(models: Sequence[ModelRequest]) -> None:
    """Every model 'auto', or every model a number: a number is cumulative over the start order,
    so it depends on all the others (``PlanError`` names the first model of the other mode)."""
    autos = [m.cuda_memory_fraction is None for m in models]
    if any(autos) and not all(autos):
        first = models[autos.index(not autos[0])]
        raise PlanError(
            first.key,
            "cudaMemoryFraction",
            first.cuda_memory_fraction if first.cuda_memory_fraction is not None else "auto",
            "the same mode for every model: all 'auto' or all numbers (fractions are cumulative "
            "over the start order, so one model's number depends on all the others)",
        )


def _auto_fractions(
    gpu: GpuSpec, models: Sequence[ModelRequest], shapes: Sequence[Shape], a: Assumptions
) -> list[float]:
    """Fractions that give every model the same multiple (>= 1) of its max_batch_total_tokens.

    Planned in the restart case (predecessors hold their activations): the memory left
    for KV is what the card has after every model's context, weights, activation peak
    and graphs, minus what the last model must leave free: at least 10% of the card
    (fraction <= 1 under TGI's 0.9 factor), and the others' activation peaks for the
    first start plus the headroom.
    """
    total = gpu.total_gib * GIB
    last = shapes[-1]
    leave_last = max(
        (1 - TGI_WIGGLE_ROOM) * total,
        last.graphs + sum(s.activation for s in shapes[:-1]) + a.headroom_gib * GIB,
    )
    fixed = sum(s.context + s.weights + s.activation + s.graphs for s in shapes)
    kv_room = gpu.usable_gib * GIB - fixed - (leave_last - last.graphs)
    targets = [max(m.max_batch_total_tokens, s.warmup_kv_tokens) for m, s in zip(models, shapes)]
    wanted = sum(t * s.kv_bytes_per_token for t, s in zip(targets, shapes))
    if kv_room < wanted:
        worst = max(range(len(models)), key=lambda i: targets[i] * shapes[i].kv_bytes_per_token)
        raise PlanError(
            models[worst].key,
            "maxBatchTotalTokens",
            models[worst].max_batch_total_tokens,
            f"a catalog that fits the card: after every model's context, weights, activations and what "
            f"TGI leaves free, {max(kv_room, 0) / GIB:.2f} GiB remain for KV caches, but the maxBatchTotalTokens "
            f"of the catalog (disabled models included) need {wanted / GIB:.2f} GiB; lower maxBatchTotalTokens, "
            "quantize a model or remove one from the catalog",
        )
    share = kv_room / wanted
    fractions: list[float] = []
    free = gpu.usable_gib * GIB
    for i, (t, s) in enumerate(zip(targets, shapes)):
        kv_bytes = math.floor(t * share / s.block) * s.block * s.kv_bytes_per_token
        extra = kv_bytes - s.warmup_kv_tokens * s.kv_bytes_per_token
        leave = leave_last if i == len(shapes) - 1 else free - s.warmup_fixed - extra
        # Round the fraction down (TGI then leaves a little more free): never over-commit.
        fractions.append(math.floor((1 - leave / total) / TGI_WIGGLE_ROOM * 10_000) / 10_000)
        free -= s.context + s.weights + kv_bytes + s.activation + s.graphs
    return fractions
