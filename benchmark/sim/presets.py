"""SIMULATED speed presets for the reference pair on one L40S: estimates, not measurements.

Derivation (all in ``_l40s_preset``; inputs are the models' published configs):
- A decode step is memory-bound: it reads every weight once, plus the KV cache of every
  sequence in the batch. Time = bytes / (864 GB/s, the L40S's bandwidth from
  ``infra.gpus``, x 0.75, a typical achieved fraction for decode kernels). So
  ``decode_base_s = params x 2 bytes (bf16) / bw`` and
  ``decode_s_per_context_token = layers x 2 (K and V) x kv_heads x head_dim x 2 bytes / bw``.
- A prefill is compute-bound: 2 FLOPs per parameter per input token at 362 TFLOPS (the
  L40S's dense BF16 tensor rate, NVIDIA L40S datasheet) x 0.40 achieved, plus one read of
  the weights.
- The KV budget (``max_batch_total_tokens``) is what ``kv_budget_gib`` of KV cache holds;
  the real value is what TGI finds free at warmup (see DESIGN.md), so treat it as a knob.

Phi-3.5-mini-instruct: 3.82 B parameters, 32 layers, 32 KV heads of 96 (no GQA), so
~11.8 ms per decode step and 384 KiB of KV per token. DeepSeek-R1-Distill-Llama-8B
(Llama-3.1-8B): 8.03 B parameters, 32 layers, 8 KV heads of 128, so ~24.8 ms per step and
128 KiB of KV per token.
"""

from __future__ import annotations

from infra.gpus import gpu_for_instance_type
from benchmark.sim.spec import ModelSpec

__all__ = ["PRESETS", "REFERENCE_PAIR", "preset"]

_L40S = gpu_for_instance_type("g6e.2xlarge")
assert _L40S is not None  # a fixed table entry, not input
_DECODE_BW = _L40S.bandwidth_gb_s * 1e9 * 0.75  # bytes/s achieved by decode kernels
_PREFILL_FLOPS = 362e12 * 0.40  # FLOP/s achieved by prefill GEMMs
_BF16 = 2  # bytes per weight / KV element


def _l40s_preset(
    key: str, model_id: str, *, params_b: float, layers: int, kv_heads: int, head_dim: int, kv_budget_gib: float
) -> ModelSpec:
    weight_bytes = params_b * 1e9 * _BF16
    kv_bytes_per_token = layers * 2 * kv_heads * head_dim * _BF16
    return ModelSpec(
        key=key,
        model_id=model_id,
        max_input_tokens=3072,
        max_total_tokens=4096,
        max_batch_total_tokens=int(kv_budget_gib * 2**30 // kv_bytes_per_token),
        prefill_base_s=round(weight_bytes / _DECODE_BW, 6),
        prefill_s_per_token=round(2 * params_b * 1e9 / _PREFILL_FLOPS, 9),
        decode_base_s=round(weight_bytes / _DECODE_BW, 6),
        decode_s_per_context_token=round(kv_bytes_per_token / _DECODE_BW, 12),
        eos_probability=0.0,
        warmup_s=2.0,
    )


PRESETS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        _l40s_preset("phi-3.5-mini", "microsoft/Phi-3.5-mini-instruct",
                     params_b=3.82, layers=32, kv_heads=32, head_dim=96, kv_budget_gib=10.0),
        _l40s_preset("deepseek-r1-distill-llama-8b", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
                     params_b=8.03, layers=32, kv_heads=8, head_dim=128, kv_budget_gib=10.0),
    )
}
REFERENCE_PAIR: tuple[str, ...] = tuple(PRESETS)


def preset(name: str) -> ModelSpec:
    """A preset by key or by HuggingFace model id."""
    for spec in PRESETS.values():
        if name in (spec.key, spec.model_id):
            return spec
    allowed = ", ".join(f"{s.key} ({s.model_id})" for s in PRESETS.values())
    raise ValueError(f"preset: got {name!r}; allowed: {allowed}")
