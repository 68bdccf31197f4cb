"""The model catalog as users write it in Pulumi.<stack>.yaml, read through the real
``config.settings.load_settings`` path: defaults, toggles, and bad entries that must
fail naming the key, the value and what is allowed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from config.settings import load_settings
from config.validation import ConfigError
from workloads.catalog import KNOWN_MODELS

PHI = "microsoft/Phi-3.5-mini-instruct"
R1 = "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"


def load(models: dict[str, Any] | None = None, **extra: Any):
    raw: dict[str, Any] = {f"gpu-sharing:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()}
    if models is not None:
        raw["gpu-sharing:models"] = json.dumps(models)
    return load_settings(raw).workloads


def error_of(models: dict[str, Any], **extra: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(models, **extra)
    return info.value


def test_defaults_are_the_reference_pair_in_llm_testing_with_the_guides_launcher_values():
    w = load()
    assert w.namespace == "llm-testing"
    assert [m.model_id for m in w.models.values()] == [PHI, R1]
    assert [m.start_order for m in w.models.values()] == [1, 2]
    for m in w.models.values():
        assert (m.max_input_tokens, m.max_total_tokens, m.max_batch_prefill_tokens) == (256, 512, 4096)
        assert (m.max_batch_total_tokens, m.max_concurrent_requests, m.max_waiting_tokens) == (8192, 16, 5)
        assert m.enabled and m.replicas == 1 and m.cuda_memory_fraction is None  # 'auto'
        assert m.image.startswith("ghcr.io/huggingface/text-generation-inference:3.3.")
        # The dev defaults are a memory plan in which every model gets its maxBatchTotalTokens.
        assert w.placement.model(m.key).kv_tokens >= m.max_batch_total_tokens
    assert w.placement.warnings == ()


def test_disabling_a_model_changes_only_its_replicas():
    both = load({"phi": {"modelId": PHI, "startOrder": 1}, "r1": {"modelId": R1, "startOrder": 2}})
    off = load({"phi": {"modelId": PHI, "startOrder": 1, "enabled": "false"}, "r1": {"modelId": R1, "startOrder": 2}})
    assert off.models["phi"].replicas == 0 and both.models["phi"].replicas == 1
    # Same fractions, order and limits for everyone: the memory plan covers the whole catalog.
    assert off.models["r1"] == both.models["r1"]
    assert off.placement.model("phi").cuda_memory_fraction == both.placement.model("phi").cuda_memory_fraction
    assert off.placement == both.placement


def test_models_without_start_order_follow_the_ordered_ones_by_key():
    # 16Gi each: three models at the default 24Gi do not fit one g6e.2xlarge's memory.
    small = {"memory": "16Gi"}
    w = load({"zeta": {"modelId": "Qwen/Qwen2.5-1.5B-Instruct", **small}, "alpha": {"modelId": PHI, **small}, "r1": {"modelId": R1, "startOrder": 5, **small}})
    assert list(w.models) == ["r1", "alpha", "zeta"]
    assert [m.start_order for m in w.models.values()] == [1, 2, 3]


def test_a_custom_model_states_its_architecture():
    arch = {
        "parameters": 1_000_000_000, "layers": 16, "kvHeads": 8, "headDim": 64, "hiddenSize": 2048,
        "intermediateSize": 8192, "vocabSize": 32000, "tiedEmbeddings": True, "dtype": "float16",
    }
    w = load({"tiny": {"modelId": "acme/tiny-1b", "architecture": arch}})
    assert w.models["tiny"].facts.kv_bytes_per_token(2) == 16 * 2 * 8 * 64 * 2


def test_hf_token_is_kept_out_of_repr_and_cidrs_are_read():
    w = load(hfToken="hf_not_a_real_token", modelAccessCidrs=["10.1.0.0/16"])
    assert w.hf_token == "hf_not_a_real_token"
    assert "hf_not_a_real_token" not in repr(w)
    assert w.model_access_cidrs == ("10.1.0.0/16",)


def _r1(**fields: Any) -> dict[str, Any]:
    return {"modelId": R1, **fields}


@pytest.mark.parametrize(
    ("models", "extra", "key", "allowed"),
    [
        pytest.param({"m": {"modelId": "acme/secret-model"}}, {}, "gpu-sharing:models.m.architecture", "not a known model", id="unknown-model-without-facts"),
        pytest.param({"m": _r1(cudaMemoryFraction=1.5)}, {}, "gpu-sharing:models.m.cudaMemoryFraction", "'auto' or a number greater than 0", id="fraction-above-1"),
        pytest.param({"m": _r1(cudaMemoryFraction=0)}, {}, "gpu-sharing:models.m.cudaMemoryFraction", "'auto' or a number greater than 0", id="fraction-zero"),
        pytest.param({"m": _r1(maxInputTokens=512, maxTotalTokens=512)}, {}, "gpu-sharing:models.m.maxTotalTokens", "more than maxInputTokens (512)", id="total-not-above-input"),
        pytest.param({"a": {"modelId": PHI, "startOrder": 1}, "b": _r1(startOrder=1)}, {}, "gpu-sharing:models.b.startOrder", "taken by 'a'", id="duplicate-start-order"),
        pytest.param({"a": _r1(), "b": _r1()}, {}, "gpu-sharing:models.b.modelId", "key 'a' serves it", id="duplicate-model"),
        pytest.param(
            {"a": {"modelId": PHI}, "b": {"modelId": "Qwen/Qwen2.5-1.5B-Instruct"}, "c": {"modelId": "meta-llama/Llama-3.2-3B-Instruct"}},
            {"gpuSharing": {"replicas": 2}},
            "gpu-sharing:models",
            "at most 2",
            id="more-gpu-pods-than-sharing-replicas",
        ),
        pytest.param({"m": _r1(quantize="int3")}, {}, "gpu-sharing:models.m.quantize", "'eetq'", id="unknown-quantize"),
        pytest.param({"m": _r1(quantize="eetq", dtype="float16")}, {}, "gpu-sharing:models.m.dtype", "TGI refuses --dtype with --quantize", id="dtype-with-quantize"),
        pytest.param({"m": _r1(maxInputLength=256)}, {}, "gpu-sharing:models.m.maxInputLength", "known keys", id="unknown-setting"),
        pytest.param({"Phi_3": {"modelId": PHI}}, {}, "gpu-sharing:models.Phi_3", "lowercase", id="key-not-a-dns-label"),
        pytest.param({"a": {"modelId": PHI, "cudaMemoryFraction": 0.4}, "b": _r1()}, {}, "gpu-sharing:models.b.cudaMemoryFraction", "all 'auto' or all numbers", id="mixed-auto-and-numbers"),
        pytest.param({"m": _r1(maxBatchPrefillTokens=128)}, {}, "gpu-sharing:models.m.maxBatchPrefillTokens", "at least maxInputTokens (256)", id="prefill-below-input"),
        pytest.param({"m": _r1(maxBatchTotalTokens=2048)}, {}, "gpu-sharing:models.m.maxBatchTotalTokens", "maxBatchPrefillTokens (4096)", id="batch-total-below-prefill"),
    ],
)
def test_bad_catalog_entries_name_the_key_the_value_and_what_is_allowed(models, extra, key, allowed):
    err = error_of(models, **extra)
    assert err.key == key, str(err)
    assert allowed in err.allowed, str(err)
    assert str(err).startswith(f"stack config {key}: got ")


def test_a_model_whose_weights_cannot_fit_is_refused_at_preview_with_numbers():
    arch = {
        "parameters": 30_000_000_000, "layers": 48, "kvHeads": 8, "headDim": 128, "hiddenSize": 5120,
        "intermediateSize": 25600, "vocabSize": 151936, "dtype": "bfloat16",
    }
    err = error_of({"big": {"modelId": "acme/big-30b", "architecture": arch, "cudaMemoryFraction": 0.9}})
    assert err.key == "gpu-sharing:models.big.modelId"
    assert "55.88 GiB weights" in err.allowed and "44.39 GiB free" in err.allowed


def test_a_kv_cache_below_max_total_tokens_is_refused():
    # One warmup request (prefill == input) leaves 511 KV tokens with a fraction too small
    # for any more: TGI's router would stop with NotEnoughMemory(512).
    err = error_of({"m": _r1(maxBatchPrefillTokens=256, maxBatchTotalTokens=512, cudaMemoryFraction=0.3)})
    assert err.key == "gpu-sharing:models.m.cudaMemoryFraction"
    assert "would get 511" in err.allowed and "NotEnoughMemory" in err.allowed


def test_a_catalog_too_big_for_auto_names_the_largest_kv_demand():
    err = error_of({"a": _r1(maxBatchTotalTokens=200_000), "b": {"modelId": PHI}})
    assert err.key == "gpu-sharing:models.a.maxBatchTotalTokens"
    assert "disabled models included" in err.allowed


def test_every_known_model_plans_alone_on_the_l40s():
    for model_id in KNOWN_MODELS:
        w = load({"m": {"modelId": model_id}}, hfToken="hf_not_a_real_token")  # some are gated
        assert w.placement.model("m").kv_tokens >= 8192, model_id
