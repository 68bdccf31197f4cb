"""SIMULATED speed presets for the stack's reference pair on one L40S: estimates, not measurements.

The keys and model ids are the stack's default catalog, and the architectures those of each
model's ``config.json`` on the Hub, served in bf16 as the default catalog does (the simulator
keeps its own copy of these few figures, so that the benchmark shares nothing with the Pulumi
program but the contract; a test checks them against the stack's catalog). Derivation (all in
``_l40s_preset``):
- A decode step is memory-bound: it reads every weight once, plus the KV cache of every
  sequence in the batch, at the L40S's 864 GB/s (NVIDIA L40S product brief), plus a fixed
  kernel overhead. ``decode_base_s = parameters x 2 bytes / bandwidth + KERNEL_OVERHEAD_S``
  and ``decode_s_per_context_token = KV bytes per token (layers x 2 x kv_heads x head_dim
  x 2) / bandwidth``.
- ``KERNEL_OVERHEAD_S`` (~2.8 ms) comes from the decode steps measured ON AN H200 (issue 13:
  batch-1 decode loops of these two architectures with CUDA graphs, 4.41 ms and 6.09 ms):
  each step minus its weight read at the H200's 4.8 TB/s (NVIDIA H200 datasheet), averaged
  (2.82 and 2.74 ms). ASSUMPTION: the overhead (launches and the tails of a 32-layer graph of
  small kernels) is latency, not bandwidth, so it carries over to the L40S unchanged; the
  bandwidth is the datasheet's, and the overhead absorbs what the kernels fall short of it.
- A prefill is compute-bound: 2 FLOPs per parameter per input token at 362 TFLOPS (the
  L40S's dense BF16 tensor rate, NVIDIA L40S datasheet) x 0.40 achieved, plus one decode
  step's weight read and overhead.
- ``HOST_S_PER_STEP`` (4 ms): the host time between two steps, during which the other model
  may use the GPU (``SimulatedGpu``). TGI's step is a Python model server that reads the
  step's tokens back, samples and de-tokenizes them into Python objects, answers the Rust
  router over gRPC, and prepares the next step's inputs once the router has scheduled it.
  vLLM's serving loop of the same design measured about 4 ms of GPU idle per decode step
  (vllm-project/vllm#6854, "Multi-Step Scheduling": "each highlighted redbox is about 4ms of
  GPU bubble", Llama-3-8B on an H100). ASSUMPTION: TGI's is the same, for both models (it
  does not depend on the weights).
- The KV budget (``max_batch_total_tokens``) is what ``KV_BUDGET_GIB`` of KV cache holds;
  the real value is what TGI finds free at warmup (the README: "What `--cuda-memory-fraction`
  really does"), so treat it as a knob.

Phi-3.5-mini-instruct (3.82 B parameters, 32 KV heads of 96 in 32 layers): ~11.6 ms of GPU
per decode step, 384 KiB of KV per token. DeepSeek-R1-Distill-Llama-8B (Llama-3.1-8B:
8.03 B, 8 KV heads of 128): ~21.4 ms per step, 128 KiB per token. Each adds 4 ms of host
time per step.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.sim.spec import ModelSpec

__all__ = ["HOST_S_PER_STEP", "KERNEL_OVERHEAD_S", "L40S_BANDWIDTH_GB_S", "PRESETS", "REFERENCE_PAIR",
           "Architecture", "preset"]

L40S_BANDWIDTH_GB_S = 864.0  # NVIDIA L40S product brief
H200_BANDWIDTH_GB_S = 4800.0  # NVIDIA H200 datasheet
_PREFILL_FLOPS = 362e12 * 0.40  # FLOP/s achieved by prefill GEMMs
_BF16 = 2  # bytes per parameter and per KV element
KV_BUDGET_GIB = 10.0  # KV cache per model: about what two models sharing the card each keep
HOST_S_PER_STEP = 0.004  # vllm-project/vllm#6854: ~4 ms of GPU idle per decode step (module docstring)


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


# batch-1 decode steps of these architectures measured ON AN H200 (issue 13's table, CUDA graphs)
H200_DECODE_STEP_S: dict[str, float] = {"phi35-mini": 0.00441, "deepseek-r1-8b": 0.00609}
# what a step takes beyond its weight read: the measured steps minus their reads at 4.8 TB/s (~2.8 ms)
KERNEL_OVERHEAD_S = round(sum(
    step - REFERENCE_ARCHITECTURES[key].parameters * _BF16 / (H200_BANDWIDTH_GB_S * 1e9)
    for key, step in H200_DECODE_STEP_S.items()) / len(H200_DECODE_STEP_S), 6)


def _l40s_preset(key: str, facts: Architecture) -> ModelSpec:
    model_id = facts.model_id
    bandwidth = L40S_BANDWIDTH_GB_S * 1e9  # bytes/s
    weight_read_s = facts.parameters * _BF16 / bandwidth
    kv_bytes_per_token = facts.kv_bytes_per_token(_BF16)
    return ModelSpec(
        key=key,
        model_id=model_id,
        max_input_tokens=3072,
        max_total_tokens=4096,
        max_batch_total_tokens=int(KV_BUDGET_GIB * 2**30 // kv_bytes_per_token),
        prefill_base_s=round(weight_read_s + KERNEL_OVERHEAD_S, 6),
        prefill_s_per_token=round(2 * facts.parameters / _PREFILL_FLOPS, 9),
        decode_base_s=round(weight_read_s + KERNEL_OVERHEAD_S, 6),
        decode_s_per_context_token=round(kv_bytes_per_token / bandwidth, 12),
        host_s_per_step=HOST_S_PER_STEP,
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
