"""The stack-outputs contract (``contract`` export): the only coupling with the benchmark.

Versioned; fields may be added, never renamed (shared/DESIGN.md). Built from plain data
(settings and the memory plan) plus the cluster name, which is a Pulumi Output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from workloads.component import PORT
from workloads.settings import WorkloadSettings

__all__ = ["CONTRACT_VERSION", "contract_data", "contract_output"]

CONTRACT_VERSION = 1


def contract_data(*, cluster_name: str, region: str, gpu: Mapping[str, Any], workloads: WorkloadSettings) -> dict[str, Any]:
    """The contract as plain JSON-serialisable data."""
    return {
        "version": CONTRACT_VERSION,
        "cluster": {"name": cluster_name, "region": region},
        "namespace": workloads.namespace,
        "gpu": dict(gpu),
        "models": {
            m.key: {
                "model_id": m.model_id,
                "deployment": m.key,
                "service": m.key,
                "port": PORT,
                "enabled": m.enabled,
                "replicas": m.replicas,
                "start_order": m.start_order,
                "api": "tgi",
                "max_input_tokens": m.max_input_tokens,
                "max_total_tokens": m.max_total_tokens,
                "max_batch_total_tokens": m.max_batch_total_tokens,
                "cuda_memory_fraction": m.cuda_memory_fraction,
                "planned_kv_tokens": workloads.plan.model(m.key).kv_tokens,
                # Added fields (v1 readers ignore them).
                "max_batch_prefill_tokens": m.max_batch_prefill_tokens,
                "max_concurrent_requests": m.max_concurrent_requests,
                "image": m.image,
            }
            for m in workloads.models.values()
        },
    }


def contract_output(
    *, cluster_name: pulumi.Input[str], region: str, gpu: Mapping[str, Any], workloads: WorkloadSettings
) -> pulumi.Output[dict[str, Any]]:
    """``contract_data`` once the cluster name is known."""
    return pulumi.Output.from_input(cluster_name).apply(
        lambda name: contract_data(cluster_name=name, region=region, gpu=gpu, workloads=workloads)
    )
