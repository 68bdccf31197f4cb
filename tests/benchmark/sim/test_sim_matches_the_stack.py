"""The simulator keeps its own copy of the few facts it needs about what the stack deploys (so
the benchmark imports nothing of the Pulumi program but the contract); these tests keep the
copies equal to the stack's own."""

from __future__ import annotations

from benchmark.sim.presets import L40S_BANDWIDTH_GB_S, REFERENCE_ARCHITECTURES
from benchmark.sim.wire import TGI_VERSION
from config.instances import gpu_for_instance_type
from workloads.catalog import KNOWN_MODELS
from workloads.settings import DEFAULT_IMAGE, REFERENCE_MODELS


def test_the_reference_pair_and_its_architectures_are_the_stacks() -> None:
    assert {k: a.model_id for k, a in REFERENCE_ARCHITECTURES.items()} == {
        k: v["modelId"] for k, v in REFERENCE_MODELS.items()}
    for arch in REFERENCE_ARCHITECTURES.values():
        facts = KNOWN_MODELS[arch.model_id]
        assert (arch.parameters, arch.layers, arch.kv_heads, arch.head_dim) == (
            facts.parameters, facts.layers, facts.kv_heads, facts.head_dim)


def test_the_card_and_the_tgi_version_are_the_stacks_defaults() -> None:
    l40s = gpu_for_instance_type("g6e.2xlarge")
    assert l40s is not None and l40s.bandwidth_gb_s == L40S_BANDWIDTH_GB_S
    assert DEFAULT_IMAGE.endswith(":" + TGI_VERSION)
