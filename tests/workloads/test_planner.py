"""The memory planner on the reference pair and an L40S, with TGI's arithmetic spelled out.

The guide gives each model ``--cuda-memory-fraction 0.4``. TGI sizes a process's KV cache
at warmup as ``free_now - (1 - 0.4 * 0.90) * total`` (plus its warmup batch's blocks), so
0.4 + 0.4 is not "40% each": every process must leave 64% of the card free, and the 8B
model, whose 15 GiB of weights already exceed 0.36 x 45 GiB, ends with only its warmup
batch's KV in either start order.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from config.instances import gpu_for_instance_type
from workloads.catalog import KNOWN_MODELS
from workloads.planner import GIB, Assumptions, ModelRequest, PlanError, plan_memory

L40S = gpu_for_instance_type("g6e.2xlarge")
assert L40S is not None
A = Assumptions()
PHI = KNOWN_MODELS["microsoft/Phi-3.5-mini-instruct"]
R1 = KNOWN_MODELS["deepseek-ai/DeepSeek-R1-Distill-Llama-8B"]


def request(key: str, fraction: float | None, **over: int) -> ModelRequest:
    limits = dict(max_input_tokens=256, max_total_tokens=512, max_batch_prefill_tokens=4096, max_batch_total_tokens=8192)
    limits.update(over)
    facts = PHI if key == "phi" else R1
    return ModelRequest(key=key, facts=facts, quantize=None, dtype=None, cuda_memory_fraction=fraction, **limits)


# --- the reference pair's numbers, by hand --------------------------------------------
TOTAL = 46068 * 2**20  # nvidia-smi's total for the L40S
USABLE = 44.39 * GIB  # free on an idle card, as the guide measured
CTX = A.cuda_context_gib * GIB
GRAPHS = A.cuda_graphs_gib * GIB
LEAVE_04 = (1 - 0.4 * 0.90) * TOTAL  # what a process with fraction 0.4 leaves free: 28.79 GiB

# Phi-3.5-mini: head_dim 96 is not one flashinfer takes, so TGI uses flashdecoding, 256-token blocks.
PHI_WEIGHTS = 3_821_079_552 * 2  # bf16
PHI_KV_PER_TOKEN = 32 * 2 * 32 * 96 * 2  # layers x (K,V) x kv_heads x head_dim x bf16 = 384 KiB
# Warmup batch: ceil(4096 / 256) = 16 requests of 256 prompt + 256 new tokens, 511 tokens
# mapped to blocks each: 2 blocks of 256 -> 16 x 512 = 8192 tokens.
PHI_WARMUP_TOKENS = 16 * 2 * 256
PHI_ACT = 4096 * 2 * (A.logits_copies * 32064 + A.intermediate_copies * 8192 + A.hidden_copies * 3072)

# DeepSeek-R1-Distill-Llama-8B: head_dim 128 -> flashinfer, 1-token blocks.
R1_WEIGHTS = 8_030_261_248 * 2
R1_KV_PER_TOKEN = 32 * 2 * 8 * 128 * 2  # 128 KiB
R1_WARMUP_TOKENS = 16 * 511  # 8176: just under the guide's --max-batch-total-tokens 8192
R1_ACT = 4096 * 2 * (A.logits_copies * 128256 + A.intermediate_copies * 14336 + A.hidden_copies * 4096)


def test_guide_fractions_phi_first_the_8b_model_keeps_only_its_warmup_kv():
    plan = plan_memory(L40S, [request("phi", 0.4), request("r1", 0.4)])
    phi, r1 = plan.models

    # Phi starts on an idle card: 44.39 - 0.50 ctx - 7.12 weights - 3.00 warmup KV - 0.86
    # activations = 32.91 GiB free at TGI's measurement; it must leave 28.79 GiB.
    measured = USABLE - CTX - PHI_WEIGHTS - PHI_WARMUP_TOKENS * PHI_KV_PER_TOKEN - PHI_ACT
    extra_blocks = math.floor((measured - LEAVE_04) / (256 * PHI_KV_PER_TOKEN))  # 43 blocks of 96 MiB
    assert phi.kv_tokens == extra_blocks * 256 + PHI_WARMUP_TOKENS == 19200

    # The 8B model finds what Phi left (its activations held once it served traffic):
    # 44.39 - (0.50 + 7.12 + 7.03 KV + 0.25 graphs + 0.86) = 28.63 GiB, less than the
    # 28.79 GiB its own 0.4 makes it leave, before even loading 14.96 GiB of weights.
    free = USABLE - (CTX + PHI_WEIGHTS + phi.kv_tokens * PHI_KV_PER_TOKEN + GRAPHS + PHI_ACT)
    assert r1.free_at_start_bytes == pytest.approx(free)
    assert free - CTX - R1_WEIGHTS - R1_WARMUP_TOKENS * R1_KV_PER_TOKEN - R1_ACT < LEAVE_04
    assert r1.kv_tokens == R1_WARMUP_TOKENS == 8176

    # What the user sees at `pulumi preview`.
    (warning,) = plan.warnings
    assert warning.startswith("r1: TGI will size its KV cache to 8176 tokens, fewer than its maxBatchTotalTokens 8192")
    assert "28.63 GiB free" in warning and "14.96 weights" in warning and "leave 28.79 GiB free" in warning


def test_guide_fractions_8b_first_still_leaves_it_only_the_warmup_kv():
    plan = plan_memory(L40S, [request("r1", 0.4), request("phi", 0.4)])
    r1, phi = plan.models
    # Alone on the card: 44.39 - 0.50 - 14.96 - 1.00 - 2.54 = 25.39 GiB < 28.79 GiB to leave.
    measured = USABLE - CTX - R1_WEIGHTS - R1_WARMUP_TOKENS * R1_KV_PER_TOKEN - R1_ACT
    assert measured < LEAVE_04
    assert r1.kv_tokens == 8176
    # Phi then finds 44.39 - (0.50 + 14.96 + 1.00 + 0.25 + 2.54) = 25.15 GiB, also below
    # 28.79: it too keeps only its warmup batch, which happens to be exactly 8192 tokens.
    assert phi.kv_tokens == PHI_WARMUP_TOKENS == 8192
    assert [w.split(":")[0] for w in plan.warnings] == ["r1"]


@pytest.mark.parametrize("order", [("phi", "r1"), ("r1", "phi")])
def test_auto_gives_each_model_at_least_its_max_batch_total_tokens(order):
    plan = plan_memory(L40S, [request(k, None) for k in order])
    assert plan.warnings == ()
    for m in plan.models:
        assert 0 < m.cuda_memory_fraction <= 1
        assert m.kv_tokens >= m.max_batch_total_tokens
    # Fractions are cumulative: each process leaves less free than the one before it.
    assert plan.models[0].leave_free_bytes > plan.models[1].leave_free_bytes
    # The last one leaves at least 10% of the card (fraction <= 1 under TGI's 0.9).
    assert plan.models[-1].leave_free_bytes >= 0.1 * TOTAL - 1
    # And the card is not over-committed once both serve traffic.
    used = sum(m.context_bytes + m.weights_bytes + m.kv_bytes + m.activation_bytes + GRAPHS for m in plan.models)
    assert used <= USABLE


def test_auto_fractions_hold_for_any_subset_started_in_order():
    full = plan_memory(L40S, [request("phi", None), request("r1", None)])
    # Phi disabled: the 8B model keeps its fraction and gets at least its planned KV.
    alone = plan_memory(L40S, [request("r1", full.model("r1").cuda_memory_fraction)])
    assert alone.model("r1").kv_tokens >= full.model("r1").kv_tokens


def test_first_start_gives_later_models_the_idle_activations_but_reports_the_lower_figure():
    plan = plan_memory(L40S, [request("phi", None), request("r1", None)])
    r1 = plan.model("r1")
    assert r1.kv_tokens_first_start > r1.kv_tokens


def test_a_fraction_that_starves_the_activation_peaks_is_refused():
    # Phi's 24k-token prefill peak (5.2 GiB) is released after its warmup; a small model
    # started after it with fraction 1.0 takes that memory and leaves only 10% of the card
    # (+ its own activations) free: both peaks come back with traffic and do not fit.
    small = KNOWN_MODELS["Qwen/Qwen2.5-1.5B-Instruct"]
    phi = ModelRequest(
        key="phi", facts=PHI, quantize=None, dtype=None, cuda_memory_fraction=0.6,
        max_input_tokens=4096, max_total_tokens=4608, max_batch_prefill_tokens=24576, max_batch_total_tokens=24576,
    )
    last = ModelRequest(
        key="small", facts=small, quantize=None, dtype=None, cuda_memory_fraction=1.0,
        max_input_tokens=256, max_total_tokens=512, max_batch_prefill_tokens=4096, max_batch_total_tokens=8192,
    )
    with pytest.raises(PlanError) as info:
        plan_memory(L40S, [phi, last])
    assert info.value.key == "small" and info.value.setting == "cudaMemoryFraction"
    assert "6.87 GiB stay free, but the models' prefill activations need 7.80 GiB" in str(info.value)


def test_a_warmup_that_does_not_fit_names_max_batch_prefill_tokens():
    with pytest.raises(PlanError) as info:
        plan_memory(L40S, [request("r1", 1.0, max_batch_prefill_tokens=65536, max_batch_total_tokens=65536)])
    assert info.value.setting == "maxBatchPrefillTokens" and "Not enough memory to handle" in str(info.value)


def test_8_bit_quantization_keeps_embeddings_at_16_bit_and_frees_kv_room():
    plain = plan_memory(L40S, [request("r1", None)]).model("r1")
    eetq = plan_memory(L40S, [replace(request("r1", None), quantize="eetq")]).model("r1")
    embeddings = 128256 * 4096 * 2  # input embeddings + lm_head (not tied)
    assert eetq.weights_bytes == embeddings * 2 + (8_030_261_248 - embeddings) * 1
    assert eetq.kv_tokens > plain.kv_tokens


def test_auto_names_the_model_whose_weights_do_not_fit_not_its_batch_tokens():
    # A 30B model in bf16 (55.9 GiB) on a 44.4 GiB card: its weights are the problem, whatever
    # maxBatchTotalTokens says (the planner used to blame that setting).
    big = replace(R1, parameters=30_000_000_000)
    with pytest.raises(PlanError) as info:
        plan_memory(L40S, [replace(request("r1", None), key="big", facts=big)])
    assert (info.value.key, info.value.setting) == ("big", "modelId")
    assert "55.88 GiB weights" in str(info.value) and "44.39 GiB free" in str(info.value)


def test_a_fraction_that_starves_the_next_model_is_blamed_not_the_next_models_prefill():
    # Phi at 0.7 grows its KV cache until (1 - 0.9 x 0.7) x 44.99 = 16.65 GiB are free; the 8B
    # model after it needs 0.50 + 14.96 + 3.53 = 18.99 GiB to load and warm up. Its own
    # maxBatchPrefillTokens is not what to change: Phi's fraction is.
    with pytest.raises(PlanError) as info:
        plan_memory(L40S, [request("phi", 0.7), request("r1", 0.7)])
    assert (info.value.key, info.value.setting, info.value.value) == ("phi", "cudaMemoryFraction", 0.7)
    assert "16.65 GiB of the card are free" in str(info.value) and "needs 18.99 GiB" in str(info.value)
    # With room for the 8B model (0.3 leaves 32.8 GiB), the same pair plans.
    assert plan_memory(L40S, [request("phi", 0.3), request("r1", 0.7)]).model("r1").kv_tokens >= 8176


def test_a_later_model_too_big_for_the_card_alone_is_still_named_itself():
    # No fraction of the first model helps a model that does not fit an idle card.
    big = replace(R1, parameters=30_000_000_000)
    with pytest.raises(PlanError) as info:
        plan_memory(L40S, [request("phi", 0.3), replace(request("r1", 0.9), key="big", facts=big)])
    assert (info.value.key, info.value.setting) == ("big", "modelId")
