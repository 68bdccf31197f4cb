"""The placement of the catalog on GPUs (workloads/placement.py): first-fit decreasing by memory
need, pinned models first, each GPU planned by the same arithmetic as one GPU always was."""

from __future__ import annotations

from dataclasses import replace

import pytest

from config.instances import GPU_NODE_TYPES, GpuSpec
from workloads.catalog import KNOWN_MODELS
from workloads.placement import Candidate, GpuNode, need_bytes, place
from workloads.planner import ModelRequest, PlanError, plan_memory

G6E = GPU_NODE_TYPES["g6e.2xlarge"]
L40S = G6E.gpu
assert isinstance(L40S, GpuSpec)
NODE = GpuNode(type=G6E, gpu=L40S, slots=10)
IDS = {
    "phi": "microsoft/Phi-3.5-mini-instruct",
    "r1": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    "qwen7": "Qwen/Qwen2.5-7B-Instruct",
    "qwen15": "Qwen/Qwen2.5-1.5B-Instruct",
}


def model(key: str, *, pinned: int | None = None, memory: str = "16Gi", cpu: str = "2", fraction: float | None = None) -> Candidate:
    request = ModelRequest(
        key=key, facts=KNOWN_MODELS[IDS[key]], quantize=None, dtype=None, max_input_tokens=256, max_total_tokens=512,
        max_batch_prefill_tokens=4096, max_batch_total_tokens=8192, cuda_memory_fraction=fraction,
    )  # fmt: skip
    gib, millis = int(memory.removesuffix("Gi")), int(cpu) * 1000
    return Candidate(request=request, pinned=pinned, cpu=cpu, cpu_millis=millis, memory=memory, memory_bytes=gib * 2**30)


def groups(models: list[Candidate], node: GpuNode = NODE) -> dict[int, list[str]]:
    p = place(node, models)
    return {g: p.keys(g) for g in p.plans}


def test_the_reference_pair_shares_one_gpu_with_the_plan_it_always_had() -> None:
    pair = [model("phi"), model("r1")]
    p = place(NODE, pair)
    assert {g: p.keys(g) for g in p.plans} == {1: ["phi", "r1"]}
    assert p.plans[1] == plan_memory(L40S, [m.request for m in pair])
    assert (p.group("r1"), p.model("r1")) == (1, p.plans[1].model("r1"))
    assert p.why == {}


def test_three_models_that_do_not_fit_one_gpu_go_largest_first_to_the_first_gpu_they_fit() -> None:
    # phi + r1 + qwen7 leave qwen7 no room for its weights on one L40S; the two largest fit one.
    trio = [model("phi"), model("r1"), model("qwen7")]
    with pytest.raises(PlanError):
        plan_memory(L40S, [m.request for m in trio])
    needs = {m.key: need_bytes(L40S, m.request) for m in trio}
    assert needs["r1"] > needs["qwen7"] > needs["phi"]
    p = place(NODE, trio)
    # r1 opens GPU 1, qwen7 fits beside it, phi fits beside neither: GPU 2. Start order within a GPU.
    assert {g: p.keys(g) for g in p.plans} == {1: ["r1", "qwen7"], 2: ["phi"]}
    for g in p.plans:  # each GPU planned as one GPU always was, 'auto' fractions chosen for it
        assert p.plans[g] == plan_memory(L40S, [m.request for m in trio if m.key in p.keys(g)])
    assert p.plans[2].model("phi").cuda_memory_fraction > place(NODE, trio[:2]).model("phi").cuda_memory_fraction
    assert set(p.why) == {"phi"} and "not beside GPU 1's r1, qwen7: the GPU's memory plan fails" in p.why["phi"]
    assert "phi:" not in p.describe() and "GPU 2: phi" in p.describe()


def test_the_node_the_sharing_replicas_and_the_gpu_each_split_a_group() -> None:
    small = [model("phi", memory="24Gi"), model("qwen15", memory="24Gi"), model("r1", memory="24Gi")]
    # 3 x 24Gi > the 58.23 GiB a g6e.2xlarge has allocatable: the smallest need goes to GPU 2.
    assert groups(small) == {1: ["phi", "r1"], 2: ["qwen15"]}
    assert "58.23 GiB one g6e.2xlarge node has allocatable" in place(NODE, small).why["qwen15"]
    cpu = [model("phi", cpu="4"), model("qwen15", cpu="2"), model("r1", cpu="4")]
    assert groups(cpu) == {1: ["qwen15", "r1"], 2: ["phi"]}  # phi + r1: 8 > 7.91 CPU allocatable
    two_slots = replace(NODE, slots=2)
    assert groups([model("phi"), model("qwen15"), model("r1")], two_slots) == {1: ["phi", "r1"], 2: ["qwen15"]}
    assert "one GPU takes 2 pods" in place(two_slots, [model("phi"), model("qwen15"), model("r1")]).why["qwen15"]


def test_pinned_models_stay_where_they_are_pinned_and_the_others_fill_around_them() -> None:
    # Alone, the pair would share GPU 1; pinned apart, they are apart.
    assert groups([model("phi", pinned=2), model("r1", pinned=1)]) == {1: ["r1"], 2: ["phi"]}
    # Unpinned models try the lowest-numbered GPU first, pinned ones included.
    assert groups([model("phi", pinned=3), model("r1"), model("qwen15")]) == {3: ["phi", "r1", "qwen15"]}
    assert groups([model("phi", pinned=2), model("r1"), model("qwen7")]) == {1: ["qwen7"], 2: ["phi", "r1"]}


def test_a_pinned_model_that_does_not_fit_its_gpu_names_its_gpu_group() -> None:
    with pytest.raises(PlanError) as caught:
        place(NODE, [model("phi", pinned=1), model("r1", pinned=1), model("qwen7", pinned=1)])
    e = caught.value
    assert (e.key, e.setting, e.value) == ("qwen7", "gpuGroup", 1)
    assert "on GPU 1 with phi, r1, the GPU's memory plan fails" in str(e) and "pin qwen7 to another GPU" in str(e)


def test_a_model_that_fits_no_gpu_even_alone_names_its_own_setting() -> None:
    with pytest.raises(PlanError) as caught:
        place(NODE, [model("phi"), model("r1", memory="64Gi")])
    assert (caught.value.key, caught.value.setting, caught.value.value) == ("r1", "memory", "64Gi")
    assert "58.23 GiB allocatable" in str(caught.value)
    big = replace(model("r1"), request=replace(model("r1").request, max_batch_total_tokens=200_000))
    with pytest.raises(PlanError) as caught:
        place(NODE, [model("phi"), big])
    assert (caught.value.key, caught.value.setting) == ("r1", "maxBatchTotalTokens")


def test_fractions_are_all_auto_or_all_numbers_across_gpus() -> None:
    with pytest.raises(PlanError) as caught:
        place(NODE, [model("phi", fraction=0.4, pinned=1), model("r1", pinned=2)])
    assert (caught.value.key, caught.value.setting) == ("r1", "cudaMemoryFraction")


def test_the_placement_is_deterministic_and_independent_of_ties_in_the_input() -> None:
    trio = [model("phi"), model("r1"), model("qwen7")]
    assert place(NODE, trio) == place(NODE, list(trio))
    # Equal needs go in start order: two copies of one model shape.
    twin = replace(model("r1"), request=replace(model("r1").request, key="r1b"))
    assert groups([model("r1"), twin, model("qwen7")]) == {1: ["r1", "r1b"], 2: ["qwen7"]}
