"""The reader accepts exactly what the stack exports: the dev stack's `contract`, built by
the workloads' own code from the real Pulumi.dev.yaml (no Pulumi runtime needed)."""

from __future__ import annotations

import json

from benchmark.stack.outputs import parse_outputs
from config.settings import load_settings
from tests.pulumi_mocks import dev_config
from workloads.export import contract_of


def test_the_dev_stacks_contract_reads_back() -> None:
    settings = load_settings(dev_config())
    gpu = {"instance_type": "g6e.2xlarge", "gpu_model": "NVIDIA L40S", "memory_gib": 44.39,
           "sharing": {"strategy": "time-slicing", "replicas": 10}}  # fmt: skip
    contract = contract_of(cluster_name="gpusharing-demo", region="us-west-2", gpu=gpu, workloads=settings.workloads).to_dict()
    outputs = json.loads(json.dumps({"contract": contract, "kubeconfig": None}))  # as printed by the CLI
    stack = parse_outputs(outputs, source="dev")
    active = stack.active_models()
    assert [m.model_id for m in active] == [
        "microsoft/Phi-3.5-mini-instruct",
        "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    ]  # the reference pair, in the stack's start order
    for m in active:
        raw = contract["models"][m.key]
        assert (m.deployment, m.service, m.port) == (raw["deployment"], raw["service"], raw["port"])
        assert m.planned_kv_tokens == raw["planned_kv_tokens"] > 0
    assert stack.namespace == settings.workloads.namespace
