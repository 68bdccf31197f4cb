"""The models we know: the architecture facts the memory planner needs (and which of them are
gated on the Hub), and TGI's dtype and quantization choices. A stack's catalog
(``gpu-sharing:models``) names models from here, or states a model's facts itself.

Values are copied from each model's ``config.json`` on the Hugging Face Hub
(``num_hidden_layers``, ``num_key_value_heads``, ``head_dim`` or hidden/heads,
``hidden_size``, ``intermediate_size``, ``vocab_size``, ``tie_word_embeddings``,
``torch_dtype``) and the parameter count from its safetensors index. A model not in
this table states the same facts in its stack config entry (``architecture:``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "ModelFacts",
    "KNOWN_MODELS",
    "GATED_MODELS",
    "QUANTIZE_CHOICES",
    "DTYPE_CHOICES",
    "DTYPE_BYTES",
    "QUANTIZED_BYTES_PER_PARAM",
]

# TGI launcher `--dtype` values (launcher/src/main.rs, enum Dtype).
DTYPE_CHOICES: Final = ("float16", "bfloat16")
DTYPE_BYTES: Final = {"float16": 2, "bfloat16": 2}

# TGI launcher `--quantize` values (launcher/src/main.rs, enum Quantization, kebab-case),
# with the bytes per quantized parameter the planner assumes (embeddings and lm_head stay
# at the model's dtype). 8-bit methods store 1 byte; 4-bit ones 0.5 (group scales not
# counted); exl2 is variable-bit and is planned as 4-bit.
QUANTIZED_BYTES_PER_PARAM: Final[dict[str, float]] = {
    "awq": 0.5,
    "eetq": 1.0,
    "exl2": 0.5,
    "gptq": 0.5,
    "marlin": 0.5,
    "bitsandbytes": 1.0,
    "bitsandbytes-nf4": 0.5,
    "bitsandbytes-fp4": 0.5,
    "fp8": 1.0,
}
QUANTIZE_CHOICES: Final = tuple(QUANTIZED_BYTES_PER_PARAM)


@dataclass(frozen=True, kw_only=True)
class ModelFacts:
    """What the planner needs to know about a model's shape."""

    parameters: int  # total, embeddings included
    layers: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool
    dtype: str  # the checkpoint's torch_dtype, which TGI serves in unless --dtype says otherwise

    @property
    def embedding_parameters(self) -> int:
        """Input embeddings plus the lm_head, which quantization leaves at full width."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """Keys and values of one token over all layers (flash_causal_lm.py warmup:
        ``num_layers * BLOCK_SIZE * num_kv_heads * head_size * 2 * dtype_size`` per block)."""
        return self.layers * 2 * self.kv_heads * self.head_dim * dtype_bytes


_LLAMA_31_8B = ModelFacts(
    parameters=8_030_261_248,
    layers=32,
    kv_heads=8,
    head_dim=128,
    hidden_size=4096,
    intermediate_size=14336,
    vocab_size=128256,
    tied_embeddings=False,
    dtype="bfloat16",
)

KNOWN_MODELS: Final[dict[str, ModelFacts]] = {
    # The reference pair.
    "microsoft/Phi-3.5-mini-instruct": ModelFacts(
        parameters=3_821_079_552,
        layers=32,
        kv_heads=32,
        head_dim=96,
        hidden_size=3072,
        intermediate_size=8192,
        vocab_size=32064,
        tied_embeddings=False,
        dtype="bfloat16",
    ),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": _LLAMA_31_8B,  # a Llama-3.1-8B fine-tune
    # Other popular open models.
    "meta-llama/Llama-3.1-8B-Instruct": _LLAMA_31_8B,
    "meta-llama/Llama-3.2-3B-Instruct": ModelFacts(
        parameters=3_212_749_824,
        layers=28,
        kv_heads=8,
        head_dim=128,
        hidden_size=3072,
        intermediate_size=8192,
        vocab_size=128256,
        tied_embeddings=True,
        dtype="bfloat16",
    ),
    "mistralai/Mistral-7B-Instruct-v0.3": ModelFacts(
        parameters=7_248_023_552,
        layers=32,
        kv_heads=8,
        head_dim=128,
        hidden_size=4096,
        intermediate_size=14336,
        vocab_size=32768,
        tied_embeddings=False,
        dtype="bfloat16",
    ),
    "Qwen/Qwen2.5-7B-Instruct": ModelFacts(
        parameters=7_615_616_512,
        layers=28,
        kv_heads=4,
        head_dim=128,
        hidden_size=3584,
        intermediate_size=18944,
        vocab_size=152064,
        tied_embeddings=False,
        dtype="bfloat16",
    ),
    "Qwen/Qwen2.5-1.5B-Instruct": ModelFacts(
        parameters=1_543_714_304,
        layers=28,
        kv_heads=2,
        head_dim=128,
        hidden_size=1536,
        intermediate_size=8960,
        vocab_size=151936,
        tied_embeddings=True,
        dtype="bfloat16",
    ),
}

# Known models whose Hub repository is gated: downloading needs a token of an account that
# accepted the model's conditions. meta-llama's Llama 3.x repositories ask for the license's
# acceptance; mistralai gated its 7B repositories in 2024 (GatedRepoError reports for v0.1/v0.2,
# e.g. huggingface/alignment-handbook#166); v0.3 is assumed gated alike (not verified offline).
GATED_MODELS: Final = frozenset(
    {"meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.2-3B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"}
)
