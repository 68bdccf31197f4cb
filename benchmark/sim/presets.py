"""SIMULATED speed presets for the stack's reference pair on one L40S: estimates, not measurements.

The keys and model ids are the stack's default catalog (``workloads.settings.REFERENCE_MODELS``)
and the architectures its facts table (``workloads.models.KNOWN_MODELS``, from each
model's ``config.json``), served in bf16 as the default catalog does. Derivation (all in
``_l40s_preset``):
- A decode step is memory-bound: it reads every weight once, plus the KV cache of every
  sequence in the batch. Time = bytes / (864 GB/s, the L40S's bandwidth from
  ``infra.gpus``, x 0.75, a typical achieved fraction for decode kernels). So
  ``decode_base_s = parameters x 2 bytes / bw`` and
  ``decode_s_per_context_token = KV bytes per token (layers x 2 x kv_heads x head_dim x 2) / bw``.
- A prefill is compute-bound: 2 FLOPs per parameter per input token at 362 TFLOPS (the
  L40S's dense BF16 tensor rate, NVIDIA L40S datasheet) x 0.40 achieved, plus one read of
  the weights.
- The KV budget (``max_batch_total_tokens``) is what ``KV_BUDGET_GIB`` of KV cache holds;
  the real value is what TGI finds free at warmup (see DESIGN.md), so treat it as a knob.

Phi-3.5-mini-instruct (3.82 B parameters, 32 KV heads of 96 in 32 layers): ~11.8 ms per
decode step, 384 KiB of KV per token. DeepSeek-R1-Distill-Llama-8B (Llama-3.1-8B: 8.03 B,
8 KV heads of 128): ~24.8 ms per step, 128 KiB per token.
"""

from __future__ import annotations

from infra.gpus import gpu_for_instance_type
from workloads.models import DTYPE_BYTES, KNOWN_MODELS
from workloads.settings import REFERENCE_MODELS

from benchmark.sim.spec import ModelSpec

__all__ = ["PRESETS", "REFERENCE_PAIR", "preset"]

_L40S = gpu_for_instance_type("g6e.2xlarge")
assert _L40S is not None  # a fixed table entry, not input
_DECODE_BW = _L40S.bandwidth_gb_s * 1e9 * 0.75  # bytes/s achieved by decode kernels
_PREFILL_FLOPS = 362e12 * 0.40  # FLOP/s achieved by prefill GEMMs
_BF16 = DTYPE_BYTES["bfloat16"]
KV_BUDGET_GIB = 10.0  # KV cache per model: about what two models sharing the card each keep


def _l40s_preset(key: str, model_id: str) -> ModelSpec:
    facts = KNOWN_MODELS[model_id]
    weight_bytes = facts.parameters * _BF16
    kv_bytes_per_token = facts.kv_bytes_per_token(_BF16)
    return ModelSpec(
        key=key,
        model_id=model_id,
        max_input_tokens=3072,
        max_total_tokens=4096,
        max_batch_total_tokens=int(KV_BUDGET_GIB * 2**30 // kv_bytes_per_token),
        prefill_base_s=round(weight_bytes / _DECODE_BW, 6),
        prefill_s_per_token=round(2 * facts.parameters / _PREFILL_FLOPS, 9),
        decode_base_s=round(weight_bytes / _DECODE_BW, 6),
        decode_s_per_context_token=round(kv_bytes_per_token / _DECODE_BW, 12),
        eos_probability=0.0,
        warmup_s=2.0,
    )


PRESETS: dict[str, ModelSpec] = {
    key: _l40s_preset(key, str(entry["modelId"])) for key, entry in REFERENCE_MODELS.items()
}
REFERENCE_PAIR: tuple[str, ...] = tuple(PRESETS)


def preset(name: str) -> ModelSpec:
    """A preset by key or by HuggingFace model id."""
    for spec in PRESETS.values():
        if name in (spec.key, spec.model_id):
            return spec
    allowed = ", ".join(f"{s.key} ({s.model_id})" for s in PRESETS.values())
    raise ValueError(f"preset: got {name!r}; allowed: {allowed}")
