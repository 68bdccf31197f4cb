"""What each TGI process really gets on a shared GPU, model after model (pure arithmetic).

TGI does not give a process ``--cuda-memory-fraction`` of the card. At warmup it runs
its largest prefill batch, then sizes the KV cache from the *device's* free memory
(text-generation-inference, ``server/text_generation_server/models/flash_causal_lm.py``
``warmup`` with ``utils/import_utils.py`` ``get_cuda_free_memory``)::

    free = max(0, mem_get_info().free - (1 - fraction * TGI_WIGGLE_ROOM) * total)
    num_blocks = free // (BLOCK_SIZE * kv_bytes_per_token) + warmup_batch_blocks

with ``TGI_WIGGLE_ROOM = 0.90`` (``models/globals.py``). So ``(1 - 0.9 f) * total`` is the
memory a process leaves free for those that start after it: fractions act
*cumulatively* in start order, and a process that finds less than that free gets only
its warmup batch's blocks. The router then uses that KV size as the batch budget: for
flash-attention models it ignores a larger ``--max-batch-total-tokens`` and refuses to
start when one request (``--max-total-tokens``) does not fit
(``backends/v3/src/lib.rs``, ``NotEnoughMemory``).

The warmup batch is built by the router (``backends/v3/src/client/grpc_client.rs``
``warmup``): ``ceil(max_batch_prefill_tokens / max_input_tokens)`` requests, each
truncated to at most ``max_input_tokens`` with ``max_new_tokens = max_total_tokens -
truncate``; the server maps ``prompt + max_new_tokens - 1`` tokens of each to blocks
(``FlashCausalLMBatch.from_pb``). Block size follows the attention backend the
launcher picks (``launcher/src/main.rs`` ``resolve_attention``; ``globals.py``):
flashinfer (1 token) when the head dim is 64, 128 or 256, else flashdecoding (256).

Two moments are planned for each model, in start order:
- *first start*: the models before it are idle (their warmup activations were
  released by ``empty_cache``), so it takes that memory into its KV cache; the last
  model leaves ``(1 - 0.9 f) * total`` + its own activations free, and every model's
  activation peak must come back out of that when traffic arrives;
- *restart*: the models before it have served traffic and hold their activation peak
  (PyTorch's caching allocator keeps it): the smaller KV cache, the one reported.

Everything the planner cannot read from TGI's code is an ``Assumptions`` field. The card's
``total`` and idle free memory are ``config.instances.GpuSpec.total_gib`` (nvidia-smi's total)
and ``usable_gib``; if torch's ``total_memory`` is lower on a real card, each process
leaves ``(1 - 0.9 f)`` times the difference less free than planned for those after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from config.instances import GpuSpec
from workloads.catalog import DTYPE_BYTES, QUANTIZED_BYTES_PER_PARAM, ModelFacts

__all__ = [
    "Assumptions",
    "ModelRequest",
    "ModelPlan",
    "MemoryPlan",
    "PlanError",
    "plan_memory",
    "block_size",
    "GIB",
    "TGI_WIGGLE_ROOM",
]

GIB = 1024**3
TGI_WIGGLE_ROOM = 0.90  # server/text_generation_server/models/globals.py default


@dataclass(frozen=True, kw_only=True)
class Assumptions:
    """The estimates that are not in TGI's code: calibrate them here, in one place."""

    # CUDA context + kernels of one process, outside PyTorch's allocator (seen by
    # mem_get_info, so it counts against the next model). ~0.5 GiB on Ada with torch 2.x.
    cuda_context_gib: float = 0.5
    # CUDA graphs TGI captures after sizing the KV cache (default batch sizes up to 32).
    cuda_graphs_gib: float = 0.25
    # Activation peak of a prefill of P tokens, in elements of the model dtype per token:
    # logits and their log-softmax (warmup asks for prefill logprobs) are 2 x vocab;
    # the MLP's gate/up and activation ~3 x intermediate; attention, norms and residual
    # ~8 x hidden. It is held at warmup and again after the first full prefill.
    logits_copies: float = 2.0
    intermediate_copies: float = 3.0
    hidden_copies: float = 8.0
    # What 'auto' leaves unallocated on the card at the end, for fragmentation.
    headroom_gib: float = 0.5


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    """One model as the planner sees it, in start order."""

    key: str
    facts: ModelFacts
    quantize: str | None
    dtype: str | None
    max_input_tokens: int
    max_total_tokens: int
    max_batch_prefill_tokens: int
    max_batch_total_tokens: int
    cuda_memory_fraction: float | None  # None: 'auto'


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


class PlanError(ValueError):
    """A memory plan TGI would crash on; names the model, the setting to change and the numbers."""

    def __init__(self, key: str, setting: str, value: object, message: str) -> None:
        self.key = key
        self.setting = setting
        self.value = value
        super().__init__(message)


def block_size(facts: ModelFacts) -> int:
    """KV block size of the attention backend TGI's launcher picks on an Ampere+ card."""
    return 1 if facts.head_dim in (64, 128, 256) else 256


def plan_memory(gpu: GpuSpec, models: Sequence[ModelRequest], assumptions: Assumptions | None = None) -> MemoryPlan:
    """Plan ``models`` (in start order) on one ``gpu``; 'auto' fractions are chosen here.

    Raises ``PlanError`` for a memory plan TGI would crash on; returns warnings, with the
    numbers, where a model gets fewer KV tokens than its ``max_batch_total_tokens``.
    """
    a = assumptions or Assumptions()
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
    shapes = [_shape(gpu, m, a) for m in models]
    if models and autos[0]:
        _check_minimal_fit(gpu, models, shapes)
    fractions = (
        _auto_fractions(gpu, models, shapes, a)
        if models and autos[0]
        else [f for m in models if (f := m.cuda_memory_fraction) is not None]
    )
    restart = _simulate(gpu, models, shapes, fractions, predecessors_busy=True)
    first = _simulate(gpu, models, shapes, fractions, predecessors_busy=False)

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
                f"{_leave_free(gpu, fractions[i]) / GIB:.2f} GiB free, so only its warmup batch's "
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
                leave_free_bytes=_leave_free(gpu, fractions[i]),
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


# --- internals -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    block: int
    kv_bytes_per_token: int
    context: float
    weights: float
    warmup_kv_tokens: int
    activation: float
    graphs: float

    @property
    def warmup_fixed(self) -> float:
        """What the process holds at the moment TGI measures free memory, KV beyond warmup aside."""
        return self.context + self.weights + self.warmup_kv_tokens * self.kv_bytes_per_token + self.activation


@dataclass(frozen=True)
class _Run:
    free_at_start: list[float]
    kv_tokens: list[int]
    final_free: float


def _shape(gpu: GpuSpec, m: ModelRequest, a: Assumptions) -> _Shape:
    f = m.facts
    dtype_bytes = DTYPE_BYTES[m.dtype or f.dtype]
    if m.quantize is None:
        weights = f.parameters * dtype_bytes
    else:
        embeddings = f.embedding_parameters
        weights = embeddings * dtype_bytes + (f.parameters - embeddings) * QUANTIZED_BYTES_PER_PARAM[m.quantize]
    block = block_size(f)
    requests = math.ceil(m.max_batch_prefill_tokens / m.max_input_tokens)
    warmup_kv = requests * math.ceil((m.max_total_tokens - 1) / block) * block
    per_token = dtype_bytes * (
        a.logits_copies * f.vocab_size + a.intermediate_copies * f.intermediate_size + a.hidden_copies * f.hidden_size
    )
    return _Shape(
        block=block,
        kv_bytes_per_token=f.kv_bytes_per_token(dtype_bytes),
        context=a.cuda_context_gib * GIB,
        weights=float(weights),
        warmup_kv_tokens=warmup_kv,
        activation=m.max_batch_prefill_tokens * per_token,
        graphs=a.cuda_graphs_gib * GIB,
    )


def _leave_free(gpu: GpuSpec, fraction: float) -> float:
    return (1 - fraction * TGI_WIGGLE_ROOM) * gpu.total_gib * GIB


def _minimal(s: _Shape) -> float:
    """What a started process holds at the least: context, weights, warmup KV, activation peak,
    CUDA graphs (its KV cache no bigger than its warmup batch's)."""
    return s.warmup_fixed + s.graphs


def _does_not_fit(m: ModelRequest, s: _Shape, free: float, *, first: bool) -> PlanError | None:
    """The error of a model that cannot load (weights) or warm up in ``free`` bytes, if any."""
    loaded = free - s.context - s.weights
    if loaded < 0:
        return PlanError(
            m.key,
            "modelId",
            m.facts.parameters,
            f"a model whose weights fit: {m.key} finds {free / GIB:.2f} GiB free when it starts"
            f"{'' if first else ' (after the models before it)'}, but needs {s.context / GIB:.2f} GiB CUDA context + "
            f"{s.weights / GIB:.2f} GiB weights; quantize it, "
            + ("or pick a GPU instance type with more memory" if first else "start it earlier, or remove a model before it"),
        )
    if free - s.warmup_fixed < 0:
        return PlanError(
            m.key,
            "maxBatchPrefillTokens",
            m.max_batch_prefill_tokens,
            f"a warmup that fits: {m.key}'s warmup batch ({m.max_batch_prefill_tokens} prefill tokens, "
            f"{s.warmup_kv_tokens} KV tokens = {s.warmup_kv_tokens * s.kv_bytes_per_token / GIB:.2f} GiB, "
            f"activations {s.activation / GIB:.2f} GiB) needs {(s.warmup_fixed - s.context - s.weights) / GIB:.2f} GiB "
            f"but only {loaded / GIB:.2f} GiB are free after its weights; lower maxBatchPrefillTokens "
            "or maxTotalTokens (TGI fails: 'Not enough memory to handle ... prefill tokens')",
        )
    return None


def _check_minimal_fit(gpu: GpuSpec, models: Sequence[ModelRequest], shapes: Sequence[_Shape]) -> None:
    """Every model loads and warms up with the ones before it at their least: otherwise no
    fraction helps, and the model (its weights or its warmup) is what to change."""
    free = gpu.usable_gib * GIB
    for i, (m, s) in enumerate(zip(models, shapes)):
        error = _does_not_fit(m, s, free, first=i == 0)
        if error is not None:
            raise error
        free -= _minimal(s)


def _simulate(
    gpu: GpuSpec,
    models: Sequence[ModelRequest],
    shapes: Sequence[_Shape],
    fractions: Sequence[float],
    *,
    predecessors_busy: bool,
) -> _Run:
    """Start the models in order on an idle card, as TGI's warmup would size each one."""
    free = gpu.usable_gib * GIB
    starts: list[float] = []
    kvs: list[int] = []
    for i, (m, s, f) in enumerate(zip(models, shapes, fractions)):
        starts.append(free)
        error = _does_not_fit(m, s, free, first=i == 0)
        if error is not None:
            raise _blame_predecessor(gpu, models, shapes, fractions, kvs, i, free) or error
        measured = free - s.warmup_fixed
        extra = max(0.0, measured - _leave_free(gpu, f))
        block_bytes = s.block * s.kv_bytes_per_token
        kv = (int(extra // block_bytes) * s.block) + s.warmup_kv_tokens
        if kv < m.max_total_tokens:
            raise PlanError(
                m.key,
                "cudaMemoryFraction",
                f,
                f"a KV cache of at least maxTotalTokens ({m.max_total_tokens}): {m.key} would get {kv} "
                "(TGI refuses to start: NotEnoughMemory)",
            )
        kvs.append(kv)
        free -= s.context + s.weights + kv * s.kv_bytes_per_token + s.graphs
        if predecessors_busy:
            free -= s.activation
    return _Run(free_at_start=starts, kv_tokens=kvs, final_free=free)


def _blame_predecessor(
    gpu: GpuSpec,
    models: Sequence[ModelRequest],
    shapes: Sequence[_Shape],
    fractions: Sequence[float],
    kvs: Sequence[int],
    i: int,
    free: float,
) -> PlanError | None:
    """When model ``i`` would fit had the models before it kept their KV caches at their warmup
    size, the fraction of the last one that took more is what left it no room."""
    grown = [j for j in range(i) if kvs[j] > shapes[j].warmup_kv_tokens]
    extra = sum((kvs[j] - shapes[j].warmup_kv_tokens) * shapes[j].kv_bytes_per_token for j in grown)
    if not grown or _does_not_fit(models[i], shapes[i], free + extra, first=False) is not None:
        return None
    j = grown[-1]
    return PlanError(
        models[j].key,
        "cudaMemoryFraction",
        fractions[j],
        f"a fraction that leaves room for the models after it: with {fractions[j]:.4g}, {models[j].key} takes KV cache "
        f"until {_leave_free(gpu, fractions[j]) / GIB:.2f} GiB of the card are free ((1 - 0.9 x {fractions[j]:.4g}) x "
        f"{gpu.total_gib:.2f} GiB), and {models[i].key}, started after it, then finds {free / GIB:.2f} GiB but needs "
        f"{shapes[i].warmup_fixed / GIB:.2f} GiB to load and warm up ({shapes[i].context / GIB:.2f} context + "
        f"{shapes[i].weights / GIB:.2f} weights + {(shapes[i].warmup_fixed - shapes[i].context - shapes[i].weights) / GIB:.2f} "
        f"warmup); lower {models[j].key}'s cudaMemoryFraction, or set every fraction to 'auto'",
    )


def _auto_fractions(
    gpu: GpuSpec, models: Sequence[ModelRequest], shapes: Sequence[_Shape], a: Assumptions
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
