"""The stack-outputs contract (the ``contract`` export): the only coupling between the Pulumi
program and the benchmark, and the only module both import.

Pure data, no Pulumi: the program builds a ``Contract`` from its settings and memory plan and
exports ``to_dict()``; the benchmark reads the exported JSON back with ``Contract.from_dict``.
Versioned: fields may be added, never renamed or retyped; a reader ignores fields it does not
know and refuses a version it does not (a silent misreading would benchmark the wrong thing).

```
{"version": 1, "cluster": {"name", "region"}, "namespace",
 "gpu": {"instance_type", "gpu_model", "memory_gib", "sharing": {"strategy", "replicas"},
         "nodes": {"min", "max"}},
 "models": {"<key>": {"model_id", "deployment", "service", "port", "enabled", "replicas",
                      "start_order", "api", "max_input_tokens", "max_total_tokens",
                      "max_batch_total_tokens", "cuda_memory_fraction", "planned_kv_tokens",
                      "max_batch_prefill_tokens", "max_concurrent_requests", "image",
                      "planned_kv_tokens_first_start", "gpu_group"}},
 "gpu_nodes": {"labels", "taint": {"key", "value", "effect"} | null, "resource", "gpus_per_node"},
 "gpu_operator": {"namespace"}, "access": {"benchmark_group"}}
```
(the models' last five fields, ``gpu.nodes`` and the last three sections were added within
version 1: optional for a reader, which then cannot check what they describe.)

Several GPUs: the models of one ``gpu_group`` share one GPU, hence one node (each GPU node has
one GPU), and start in ``start_order`` among themselves; models of different groups run on
different nodes and do not share a GPU. ``gpu.nodes`` is the GPU node group's size range: with
``min`` 0 the Cluster Autoscaler may have no GPU node up until a model's pod asks for one. A
contract without ``gpu_group`` comes from a stack with one GPU: every model is in group 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CONTRACT_VERSION", "READABLE_VERSIONS", "Contract", "ContractError", "GpuNodes", "ModelContract", "PORT"]

CONTRACT_VERSION = 1
READABLE_VERSIONS: tuple[int, ...] = (1,)
PORT = 8080  # every model's Service and container port


class ContractError(ValueError):
    """The data is not a contract this reader can use; the message names the field."""


@dataclass(frozen=True, kw_only=True)
class ModelContract:
    """One model of the catalog, as deployed."""

    key: str
    model_id: str
    deployment: str  # Kubernetes Deployment name
    service: str  # Kubernetes Service name
    port: int
    enabled: bool
    replicas: int  # what the stack declares (0 when disabled)
    start_order: int
    api: str  # "tgi"
    max_input_tokens: int
    max_total_tokens: int
    max_batch_total_tokens: int
    cuda_memory_fraction: float  # the fraction TGI is started with: the memory plan's
    planned_kv_tokens: int  # the KV tokens the memory plan expects TGI to find at warmup
    max_batch_prefill_tokens: int | None = None
    max_concurrent_requests: int | None = None
    image: str | None = None
    planned_kv_tokens_first_start: int | None = None  # the plan's KV tokens when it starts first in order
    gpu_group: int | None = None  # the GPU it shares with the models of the same group; None: 1

    @property
    def gpu(self) -> int:
        """The GPU group, 1 for a contract written before several GPUs."""
        return self.gpu_group if self.gpu_group is not None else 1

    @property
    def active(self) -> bool:
        return self.enabled and self.replicas > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id, "deployment": self.deployment, "service": self.service, "port": self.port,
            "enabled": self.enabled, "replicas": self.replicas, "start_order": self.start_order, "api": self.api,
            "max_input_tokens": self.max_input_tokens, "max_total_tokens": self.max_total_tokens,
            "max_batch_total_tokens": self.max_batch_total_tokens, "cuda_memory_fraction": self.cuda_memory_fraction,
            "planned_kv_tokens": self.planned_kv_tokens, "max_batch_prefill_tokens": self.max_batch_prefill_tokens,
            "max_concurrent_requests": self.max_concurrent_requests, "image": self.image,
            "planned_kv_tokens_first_start": self.planned_kv_tokens_first_start,
            "gpu_group": self.gpu_group,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, key: str, raw: Any, where: str) -> ModelContract:
        return cls(
            key=key,
            model_id=_get(raw, "model_id", str, where),
            deployment=_get(raw, "deployment", str, where),
            service=_get(raw, "service", str, where),
            port=_get(raw, "port", int, where),
            enabled=_get(raw, "enabled", bool, where),
            replicas=_get(raw, "replicas", int, where),
            start_order=_get(raw, "start_order", int, where),
            api=_get(raw, "api", str, where),
            max_input_tokens=_get(raw, "max_input_tokens", int, where),
            max_total_tokens=_get(raw, "max_total_tokens", int, where),
            max_batch_total_tokens=_get(raw, "max_batch_total_tokens", int, where),
            cuda_memory_fraction=float(_get(raw, "cuda_memory_fraction", (int, float), where)),
            planned_kv_tokens=_get(raw, "planned_kv_tokens", int, where),
            max_batch_prefill_tokens=_get(raw, "max_batch_prefill_tokens", int, where, optional=True),
            max_concurrent_requests=_get(raw, "max_concurrent_requests", int, where, optional=True),
            image=_get(raw, "image", str, where, optional=True),
            planned_kv_tokens_first_start=_get(raw, "planned_kv_tokens_first_start", int, where, optional=True),
            gpu_group=_get(raw, "gpu_group", int, where, optional=True),
        )


@dataclass(frozen=True, kw_only=True)
class GpuNodes:
    """What every GPU node of the stack carries: ``doctor`` checks the nodes against it."""

    labels: Mapping[str, str]  # the GPU node group's labels (the models select on them)
    taint: Mapping[str, str] | None  # {"key", "value", "effect"} as Kubernetes spells it; None: no taint
    resource: str  # the extended resource one GPU share is advertised as
    gpus_per_node: int  # physical GPUs of the instance type

    def to_dict(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "taint": dict(self.taint) if self.taint else None,
                "resource": self.resource, "gpus_per_node": self.gpus_per_node}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> GpuNodes:
        labels = _get(raw, "labels", Mapping, where)
        taint = _get(raw, "taint", Mapping, where, optional=True)
        for key, value in [*labels.items(), *(taint or {}).items()]:
            if not isinstance(value, str):
                raise ContractError(f"{where}: {key} must be str, got {value!r}")
        if taint is not None:
            for key in ("key", "value", "effect"):
                _get(taint, key, str, f"{where}.taint")
        return cls(labels=dict(labels), taint=dict(taint) if taint is not None else None,
                   resource=_get(raw, "resource", str, where), gpus_per_node=_get(raw, "gpus_per_node", int, where))


@dataclass(frozen=True, kw_only=True)
class Contract:
    """The whole contract. ``gpu`` is kept as the mapping it is (reports print it)."""

    cluster_name: str
    region: str
    namespace: str
    gpu: Mapping[str, Any]
    models: Mapping[str, ModelContract]
    version: int = CONTRACT_VERSION
    gpu_nodes: GpuNodes | None = None
    gpu_operator_namespace: str | None = None  # where the GPU Operator's pods run
    benchmark_group: str | None = None  # the Kubernetes group benchmark users' access entries map to
    extra: Mapping[str, Any] = field(default_factory=dict)  # top-level fields this reader does not know

    def to_dict(self) -> dict[str, Any]:
        out = {
            **dict(self.extra),
            "version": self.version,
            "cluster": {"name": self.cluster_name, "region": self.region},
            "namespace": self.namespace,
            "gpu": dict(self.gpu),
            "models": {key: m.to_dict() for key, m in self.models.items()},
        }
        if self.gpu_nodes is not None:
            out["gpu_nodes"] = self.gpu_nodes.to_dict()
        if self.gpu_operator_namespace is not None:
            out["gpu_operator"] = {"namespace": self.gpu_operator_namespace}
        if self.benchmark_group is not None:
            out["access"] = {"benchmark_group": self.benchmark_group}
        return out

    def active_models(self) -> list[ModelContract]:
        """The enabled models with replicas, in the stack's start order."""
        return sorted((m for m in self.models.values() if m.active), key=lambda m: (m.start_order, m.key))

    def gpu_groups(self) -> dict[int, list[ModelContract]]:
        """The active models of each GPU group (the models sharing one GPU), in start order."""
        groups: dict[int, list[ModelContract]] = {}
        for m in self.active_models():
            groups.setdefault(m.gpu, []).append(m)
        return dict(sorted(groups.items()))

    @classmethod
    def from_dict(cls, data: Any) -> Contract:
        """Read the exported contract; ``ContractError`` names what is missing or malformed."""
        version = _get(data, "version", int, "contract")
        if version not in READABLE_VERSIONS:
            raise ContractError(f"contract version {version!r} is not supported by this reader (it reads version "
                                f"{', '.join(map(str, READABLE_VERSIONS))}); update the benchmark or the stack")
        cluster = _get(data, "cluster", Mapping, "contract")
        models = _get(data, "models", Mapping, "contract")
        known = {"version", "cluster", "namespace", "gpu", "models", "gpu_nodes", "gpu_operator", "access"}
        nodes = _get(data, "gpu_nodes", Mapping, "contract", optional=True)
        operator = _get(data, "gpu_operator", Mapping, "contract", optional=True)
        access = _get(data, "access", Mapping, "contract", optional=True)
        return cls(
            version=version,
            cluster_name=_get(cluster, "name", str, "contract.cluster"),
            region=_get(cluster, "region", str, "contract.cluster"),
            namespace=_get(data, "namespace", str, "contract"),
            gpu=_get(data, "gpu", Mapping, "contract"),
            models={key: ModelContract.from_dict(key, raw, f"contract.models.{key}") for key, raw in models.items()},
            gpu_nodes=GpuNodes.from_dict(nodes, "contract.gpu_nodes") if nodes is not None else None,
            gpu_operator_namespace=(
                _get(operator, "namespace", str, "contract.gpu_operator") if operator is not None else None
            ),
            benchmark_group=_get(access, "benchmark_group", str, "contract.access") if access is not None else None,
            extra={k: v for k, v in data.items() if k not in known},
        )


def _get(data: Any, key: str, kind: type | tuple[type, ...], where: str, *, optional: bool = False) -> Any:
    if not isinstance(data, Mapping):
        raise ContractError(f"{where} must be an object, got {type(data).__name__}")
    if data.get(key) is None and optional:
        return None
    if key not in data:
        raise ContractError(f"{where}.{key} is missing")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):  # bool is an int: never a number
        raise ContractError(f"{where}.{key} must be {'/'.join(k.__name__ for k in kinds)}, got {value!r}")
    return value
