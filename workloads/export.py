"""The stack's ``contract`` output, built from the workload settings and their memory plan with
the one contract module the benchmark reads (``workloads.contract``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from workloads.contract import PORT, Contract, GpuNodes, ModelContract
from workloads.settings import WorkloadSettings

__all__ = ["contract_of", "contract_output"]


def contract_of(*, cluster_name: str, region: str, gpu: Mapping[str, Any], workloads: WorkloadSettings,
                gpu_nodes: GpuNodes | None = None, gpu_operator_namespace: str | None = None,
                benchmark_group: str | None = None) -> Contract:  # fmt: skip
    """The contract of these settings: the memory plan gives each model its GPU group, the CUDA memory fraction
    TGI is started with and its planned KV tokens (after a restart, and on the first start in
    order); ``gpu_nodes``, ``gpu_operator_namespace`` and ``benchmark_group`` tell ``doctor``
    what the cluster should look like."""
    models = {
        m.key: ModelContract(
            key=m.key, model_id=m.model_id, deployment=m.key, service=m.key, port=PORT, enabled=m.enabled,
            replicas=m.replicas, start_order=m.start_order, api="tgi", max_input_tokens=m.max_input_tokens,
            max_total_tokens=m.max_total_tokens, max_batch_total_tokens=m.max_batch_total_tokens,
            cuda_memory_fraction=planned.cuda_memory_fraction, planned_kv_tokens=planned.kv_tokens,
            max_batch_prefill_tokens=m.max_batch_prefill_tokens, max_concurrent_requests=m.max_concurrent_requests,
            image=m.image, planned_kv_tokens_first_start=planned.kv_tokens_first_start,
            gpu_group=workloads.placement.group(m.key),
        )
        for m in workloads.models.values()
        for planned in (workloads.placement.model(m.key),)
    }  # fmt: skip
    return Contract(cluster_name=cluster_name, region=region, namespace=workloads.namespace, gpu=gpu, models=models,
                    gpu_nodes=gpu_nodes, gpu_operator_namespace=gpu_operator_namespace,
                    benchmark_group=benchmark_group)  # fmt: skip


def contract_output(
    *, cluster_name: pulumi.Input[str], region: str, gpu: Mapping[str, Any], workloads: WorkloadSettings,
    gpu_nodes: GpuNodes | None = None, gpu_operator_namespace: str | None = None, benchmark_group: str | None = None,
) -> pulumi.Output[dict[str, Any]]:
    """The exported JSON, once the cluster name is known."""
    return pulumi.Output.from_input(cluster_name).apply(
        lambda name: contract_of(
            cluster_name=name, region=region, gpu=gpu, workloads=workloads, gpu_nodes=gpu_nodes,
            gpu_operator_namespace=gpu_operator_namespace, benchmark_group=benchmark_group,
        ).to_dict()
    )
