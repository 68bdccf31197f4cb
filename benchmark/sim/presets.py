"""SIMULATED speed presets for the stack's reference pair on one L40S: estimates, not measurements.

The keys and model ids are the stack's default catalog, and the architectures those of each
model's ``config.json`` on the Hub, served in bf16 as the default catalog does (the simulator
keeps its own copy of these few figures, so that the benchmark shares nothing with the Pulumi
program but the contract; a test checks them against the stack's catalog). Derivation (all in
``_l40s_preset``):
- A decode step is memory-bound: it reads every weight once, plus the KV cache of every
  sequence in the batch. Time = bytes / (864 GB/s, the L40S's bandwidth from NVIDIA's
  L40S product brief, x 0.75, a typical achieved fraction for decode kernels). So
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

from dataclasses import dataclass

from benchmark.sim.spec import ModelSpec

__all__ = ["L40S_BANDWIDTH_GB_S", "PRESETS", "REFERENCE_PAIR", "Architecture", "preset"]

L40S_BANDWIDTH_GB_S = 864.0  # NVIDIA L40S product brief
_DECODE_BW = L40S_BANDWIDTH_GB_S * 1e9 * 0.75  # bytes/s achieved by decode kernels
_PREFILL_FLOPS = 362e12 * 0.40  # FLOP/s achieved by prefill GEMMs
_BF16 = 2  # bytes per parameter and per KV element
KV_BUDGET_GIB = 10.0  # KV cache per model: about what two models sharing the card each keep


@dataclass(frozen=True)
class Architecture:
    """The figures of a model's ``config.json`` the speed model uses."""

    model_id: str
    parameters: int  # from the safetensors index
    layers: int  # num_hidden_layers
    kv_heads: int  # num_key_value_heads
    head_dim: int  # head_dim, or hidden_size / num_attention_heads

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * dtype_bytes


# the stack's reference pair, under the keys of its default catalog
REFERENCE_ARCHITECTURES: dict[str, Architecture] = {
    "phi35-mini": Architecture("microsoft/Phi-3.5-mini-instruct", 3_821_079_552, 32, 32, 96),
    "deepseek-r1-8b": Architecture("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 8_030_261_248, 32, 8, 128),
}


def _l40s_preset(key: str, facts: Architecture) -> ModelSpec:
    model_id = facts.model_id
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


PRESETS: dict[str, ModelSpec] = {key: _l40s_preset(key, facts) for key, facts in REFERENCE_ARCHITECTURES.items()}
REFERENCE_PAIR: tuple[str, ...] = tuple(PRESETS)


def preset(name: str) -> ModelSpec:
    """A preset by key or by HuggingFace model id."""
    for spec in PRESETS.values():
        if name in (spec.key, spec.model_id):
            return spec
    allowed = ", ".join(f"{s.key} ({s.model_id})" for s in PRESETS.values())
    raise ValueError(f"preset: got {name!r}; allowed: {allowed}")
