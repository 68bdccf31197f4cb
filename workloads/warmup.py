"""TGI's warmup on a shared GPU, replayed: what one process takes and what it leaves to the
next (pure arithmetic, for the memory planner in ``workloads.planner``).

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

Everything that cannot be read from TGI's code is an ``Assumptions`` field. The card's
``total`` and idle free memory are ``config.instances.GpuSpec.total_gib`` (nvidia-smi's total)
and ``usable_gib``; if torch's ``total_memory`` is lower on a real card, each process
leaves ``(1 - 0.9 f)`` times the difference less free than planned for those after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from config.instances import GpuSpec
from workloads.catalog import DTYPE_BYTES, QUANTIZED_BYTES_PER_PARAM, ModelFacts

__all__ = [
    "Assumptions",
    "ModelRequest",
    "PlanError",
    "block_size",
    "Shape",
    "Run",
    "shape_of",
    "leave_free",
    "check_minimal_fit",
    "simulate",
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


class PlanError(ValueError):
    """A memory plan TGI would crash on, or a model that fits no GPU (``workloads.placement``);
    names the model, the setting to change and the numbers."""

    def __init__(self, key: str, setting: str, value: object, message: str) -> None:
        self.key = key
        self.setting = setting
        self.value = value
        super().__init__(message)


def block_size(facts: ModelFacts) -> int:
    """KV block size of the attention backend TGI's launcher picks on an Ampere+ card."""
    return 1 if facts.head_dim in (64, 128, 256) else 256


@dataclass(frozen=True)
class Shape:
    """What one TGI process holds on the card, in bytes (its KV cache beyond the warmup batch aside)."""

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
class Run:
    """The models started in order: the free memory each found, the KV tokens each got, what is left."""

    free_at_start: list[float]
    kv_tokens: list[int]
    final_free: float


def shape_of(gpu: GpuSpec, m: ModelRequest, a: Assumptions) -> Shape:
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
    return Shape(
        block=block,
        kv_bytes_per_token=f.kv_bytes_per_token(dtype_bytes),
        context=a.cuda_context_gib * GIB,
        weights=float(weights),
        warmup_kv_tokens=warmup_kv,
        activation=m.max_batch_prefill_tokens * per_token,
        graphs=a.cuda_graphs_gib * GIB,
    )


def leave_free(gpu: GpuSpec, fraction: float) -> float:
    return (1 - fraction * TGI_WIGGLE_ROOM) * gpu.total_gib * GIB


def _minimal(s: Shape) -> float:
    """What a started process holds at the least: context, weights, warmup KV, activation peak,
    CUDA graphs (its KV cache no bigger than its warmup batch's)."""
    return s.warmup_fixed + s.graphs


def _does_not_fit(m: ModelRequest, s: Shape, free: float, *, first: bool) -> PlanError | None:
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


def check_minimal_fit(gpu: GpuSpec, models: Sequence[ModelRequest], shapes: Sequence[Shape]) -> None:
    """Every model loads and warms up with the ones before it at their least: otherwise no
    fraction helps, and the model (its weights or its warmup) is what to change."""
    free = gpu.usable_gib * GIB
    for i, (m, s) in enumerate(zip(models, shapes)):
        error = _does_not_fit(m, s, free, first=i == 0)
        if error is not None:
            raise error
        free -= _minimal(s)


def simulate(
    gpu: GpuSpec,
    models: Sequence[ModelRequest],
    shapes: Sequence[Shape],
    fractions: Sequence[float],
    *,
    predecessors_busy: bool,
) -> Run:
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
        extra = max(0.0, measured - leave_free(gpu, f))
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
    return Run(free_at_start=starts, kv_tokens=kvs, final_free=free)


def _blame_predecessor(
    gpu: GpuSpec,
    models: Sequence[ModelRequest],
    shapes: Sequence[Shape],
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
        f"until {leave_free(gpu, fractions[j]) / GIB:.2f} GiB of the card are free ((1 - 0.9 x {fractions[j]:.4g}) x "
        f"{gpu.total_gib:.2f} GiB), and {models[i].key}, started after it, then finds {free / GIB:.2f} GiB but needs "
        f"{shapes[i].warmup_fixed / GIB:.2f} GiB to load and warm up ({shapes[i].context / GIB:.2f} context + "
        f"{shapes[i].weights / GIB:.2f} weights + {(shapes[i].warmup_fixed - shapes[i].context - shapes[i].weights) / GIB:.2f} "
        f"warmup); lower {models[j].key}'s cudaMemoryFraction, or set every fraction to 'auto'",
    )
