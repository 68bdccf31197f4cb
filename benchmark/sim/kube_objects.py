"""What the fake Kubernetes API (``benchmark.sim.kube_api``) serves besides Deployments: nodes,
the GPU Operator's pods, a model pod's status as the kubelet and the scheduler report it, its
logs and events, and a way to stage each failure a model pod meets on a real cluster.

Shapes are the API's JSON (core/v1 Node, Pod, Event; authentication.k8s.io/v1
SelfSubjectReview), with the fields real clusters fill:
- a pod the scheduler cannot place: ``phase: Pending``, condition ``PodScheduled`` ``False``
  with ``reason: Unschedulable`` and the scheduler's message, e.g. "0/3 nodes are available:
  1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector.
  preemption: ..." (kubernetes ``pkg/scheduler/framework/types.go`` ``FitError.Error``; the
  reasons are the plugins' own: ``noderesources/fit.go`` "Insufficient %v",
  ``tainttoleration`` "node(s) had untolerated taint {%s: %s}"), and a ``FailedScheduling`` event;
- a pod held by an init container: ``Pending``, ``Initialized`` ``False``
  (``ContainersNotInitialized``), the init container ``running``, the main one ``waiting``
  with ``PodInitializing``; the stack's start-order gate logs, as ``workloads/pod.py``'s
  ``WAIT_SCRIPT`` does, "<key> is healthy" for each earlier model up, then "waiting for <key>,
  which starts before this model, to be healthy";
- a crash loop: ``Running``, the container ``waiting`` with ``CrashLoopBackOff``, its
  ``lastState.terminated`` (exit code, reason ``Error`` or ``OOMKilled``), ``restartCount``; the
  log of the run that died is the ``previous=true`` log; a ``BackOff`` event;
- an image that cannot be pulled (``ErrImagePull``/``ImagePullBackOff``) and a container that
  cannot be configured (``CreateContainerConfigError``, e.g. a Secret missing): ``Pending``, the
  container ``waiting`` with that reason and the kubelet's message.

The GPU node carries what the GPU Operator's feature discovery labels a time-sliced node with
(NVIDIA/k8s-device-plugin ``internal/lm/resource.go``: ``nvidia.com/gpu.count`` (physical
GPUs), ``.replicas``, ``.sharing-strategy``, ``.product`` with ``-SHARED`` appended while
shared and not renamed) and the capacity the device plugin advertises (replicas x GPUs of the
resource). The operator's pods carry the labels of its DaemonSets and Deployment
(NVIDIA/gpu-operator v26.7.0 ``assets/state-device-plugin/0500_daemonset.yaml`` and the
others named in ``OPERATOR_APPS``, ``deployments/gpu-operator/templates/operator.yaml``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = [
    "GATE",
    "OPERATOR_APPS",
    "FakeDeployment",
    "FakeNode",
    "FakePod",
    "Trouble",
    "cpu_node",
    "crash_loop",
    "event",
    "gate_log",
    "gpu_node",
    "gpu_operator_pods",
    "not_configurable",
    "pod_object",
    "trouble_events",
    "ts",
    "unpullable",
    "unschedulable",
]

GATE = "wait-for-earlier-models"  # the stack's start-order init container (workloads/pod.py)
# The GPU Operator's pods by their `app` label (v26.7.0): the operator's Deployment, and the
# DaemonSets of assets/state-device-plugin, gpu-feature-discovery, state-dcgm-exporter,
# state-operator-validation (one pod per GPU node).
OPERATOR_APPS = ("gpu-operator", "nvidia-device-plugin-daemonset", "gpu-feature-discovery",
                 "nvidia-dcgm-exporter", "nvidia-operator-validator")  # fmt: skip


def ts(t: float | None = None) -> str:
    """An API timestamp (RFC 3339, seconds) of ``t`` (default now)."""
    return datetime.fromtimestamp(t if t is not None else time.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class Trouble:
    """A staged failure of a Deployment's pods; build one with the functions below."""

    kind: Literal["unschedulable", "crash-loop", "waiting"]
    reason: str = ""  # the container's waiting reason ("waiting"), or lastState.terminated.reason ("crash-loop")
    message: str = ""  # the scheduler's or the kubelet's message
    log: str = ""  # crash-loop: the log of the run that died
    exit_code: int = 1
    restarts: int = 5


def unschedulable(message: str) -> Trouble:
    """The scheduler cannot place the pod: ``message`` is its FitError text."""
    return Trouble(kind="unschedulable", message=message)


def crash_loop(log: str, *, exit_code: int = 1, reason: str = "Error", restarts: int = 5) -> Trouble:
    """The container dies at start, again and again; ``log`` is what its last run printed."""
    return Trouble(kind="crash-loop", log=log, exit_code=exit_code, reason=reason, restarts=restarts)


def unpullable(message: str, *, reason: str = "ImagePullBackOff") -> Trouble:
    return Trouble(kind="waiting", reason=reason, message=message, restarts=0)


def not_configurable(message: str) -> Trouble:
    """``CreateContainerConfigError``: e.g. 'secret "hf-token" not found'."""
    return Trouble(kind="waiting", reason="CreateContainerConfigError", message=message, restarts=0)


@dataclass
class ModelPod:
    """One pod of a ``FakeDeployment``: bookkeeping; ``pod_object`` renders it."""

    name: str
    deleted_at: float | None = None  # time.monotonic() when scaled away
    initialized: bool = False  # its init containers are done (the start-order gate passed)
    started: float = field(default_factory=time.time)


@dataclass(kw_only=True)
class FakeDeployment:
    """One Deployment of the fake cluster."""

    name: str
    replicas: int
    backend: str | None = None  # base URL of what the pods serve (health probe, port-forward)
    on_scale: Callable[[int], Any] | None = None  # called (and awaited if async) on every scale
    container_port: int = 8080
    # The stack's start-order gate: a new pod initialises only once every Deployment named
    # here has a ready pod (workloads/pod.py, init container wait-for-earlier-models).
    after: list[str] = field(default_factory=list)
    gate_reaches: bool = True  # False: the gate cannot reach those models' Services (a NetworkPolicy in the way)
    failed_pods: int = 0  # finished pods the selector still lists (e.g. evicted), phase Failed
    labels: dict[str, str] = field(default_factory=dict)  # selector labels; default app=<name>
    annotations: dict[str, str] = field(default_factory=dict)  # the Deployment's metadata.annotations
    trouble: Trouble | None = None  # a staged failure of its pods
    log: str = ""  # what its running container has printed
    pods: list[ModelPod] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = self.labels or {"app.kubernetes.io/name": self.name}
        self.pods = [self.new_pod() for _ in range(self.replicas)]
        for pod in self.pods:  # found running: initialised long ago
            pod.initialized = True

    def new_pod(self) -> ModelPod:
        return ModelPod(f"{self.name}-{secrets.token_hex(5)}-{secrets.token_hex(3)[:5]}")


def gate_log(after: Sequence[str], ready: Mapping[str, bool]) -> str:
    """What the start-order init container prints (workloads/pod.py ``WAIT_SCRIPT``): each earlier
    model that is up, then the one it waits for, once every 10 s."""
    lines = []
    for key in after:
        if ready[key]:
            lines.append(f"{key} is healthy")
        else:
            lines += [f"curl: (7) Failed to connect to {key} port 8080 after 2 ms: Could not connect to server",
                      f"waiting for {key}, which starts before this model, to be healthy"] * 3  # stderr and stdout
            break
    return "".join(line + "\n" for line in lines)


def trouble_events(trouble: Trouble | None, pod: str, namespace: str) -> list[dict[str, Any]]:
    """The events a staged trouble leaves about ``pod`` (the scheduler's, the kubelet's)."""
    if trouble is None:
        return []
    if trouble.kind == "unschedulable":
        return [event(pod, namespace, "FailedScheduling", trouble.message, count=12)]
    if trouble.kind == "crash-loop":
        return [event(pod, namespace, "BackOff", f"Back-off restarting failed container tgi in pod {pod}_{namespace}")]
    return [event(pod, namespace, "Failed", f"Error: {trouble.message}")]


@dataclass(kw_only=True)
class FakeNode:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    capacity: dict[str, str] = field(default_factory=dict)
    ready: bool = True

    def to_object(self) -> dict[str, Any]:
        capacity = {"cpu": "8", "memory": "65023212Ki", "pods": "58", **self.capacity}
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
        if not self.ready:
            ready = {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                     "message": "Kubelet stopped posting node status."}  # fmt: skip
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": dict(self.labels)},
            "spec": {"taints": list(self.taints)} if self.taints else {},
            "status": {"capacity": capacity, "allocatable": dict(capacity),
                       "conditions": [{**ready, "lastHeartbeatTime": ts(), "lastTransitionTime": ts()}]},
        }  # fmt: skip


def gpu_node(name: str, *, labels: Mapping[str, str], taint: Mapping[str, str] | None, resource: str = "nvidia.com/gpu",
             replicas: int = 10, strategy: str = "time-slicing", gpus: int = 1, product: str = "NVIDIA-L40S") -> FakeNode:  # fmt: skip
    """A GPU node as feature discovery labels it and the device plugin advertises it."""
    shared = replicas > 1 and strategy != "none"
    gfd = {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.count": str(gpus),
        "nvidia.com/gpu.replicas": str(replicas),
        "nvidia.com/gpu.sharing-strategy": strategy if shared else "none",
        "nvidia.com/gpu.product": product + ("-SHARED" if shared and resource == "nvidia.com/gpu" else ""),
    }
    return FakeNode(name=name, labels={**gfd, **labels}, taints=[dict(taint)] if taint else [],
                    capacity={resource: str(replicas * gpus)})  # fmt: skip


def cpu_node(name: str) -> FakeNode:
    return FakeNode(name=name, labels={"kubernetes.io/os": "linux"})


@dataclass(kw_only=True)
class FakePod:
    """A pod that is not a model's (the GPU Operator's): its labels, node and state."""

    name: str
    labels: dict[str, str]
    node: str | None = None
    ready: bool = True
    trouble: Trouble | None = None


def gpu_operator_pods(gpu_nodes: Sequence[FakeNode]) -> list[FakePod]:
    """The operator's pod, and one pod of each of its DaemonSets per GPU node."""
    pods = [FakePod(name="gpu-operator-6d9c8b7f5-x2k4q", labels={"app": "gpu-operator"})]
    for i, node in enumerate(gpu_nodes):
        pods += [FakePod(name=f"{app}-{i:05d}", labels={"app": app}, node=node.name) for app in OPERATOR_APPS[1:]]
    return pods


def event(pod: str, namespace: str, reason: str, message: str, *, kind: str = "Warning", count: int = 1) -> dict[str, Any]:
    """A core/v1 Event about ``pod``."""
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{pod}.{abs(hash((reason, message))):x}", "namespace": namespace},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
        "reason": reason, "message": message, "type": kind, "count": count,
        "firstTimestamp": ts(time.time() - 300), "lastTimestamp": ts(),
    }  # fmt: skip


def pod_object(name: str, namespace: str, labels: Mapping[str, str], *, container: str = "tgi", port: int | None = None,
               node: str | None = "ip-10-0-3-17.us-west-2.compute.internal", ready: bool = True,
               gate: str | None = None, trouble: Trouble | None = None, deleting: bool = False,
               started: float | None = None) -> dict[str, Any]:  # fmt: skip
    """A pod as the API reports it: ``gate`` names the init container still running (the pod
    waits on it), ``trouble`` a staged failure, else it runs (Ready or not, as ``ready`` says)."""
    started_at = ts(started)
    spec: dict[str, Any] = {"containers": [{"name": container, "image": "simulated",
                                            **({"ports": [{"containerPort": port}]} if port else {})}]}  # fmt: skip
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels), "creationTimestamp": started_at}
    if deleting:
        meta["deletionTimestamp"] = ts()

    def condition(kind: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
        out = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": started_at}
        return out | ({"reason": reason} if reason else {}) | ({"message": message} if message else {})

    def main(state: dict[str, Any], *, is_ready: bool = False, restarts: int = 0, last: dict[str, Any] | None = None) -> dict[str, Any]:
        image_id = "" if "waiting" in state else "simulated@sha256:" + "0" * 64  # "" until pulled, as the kubelet says
        out = {"name": container, "image": "simulated", "imageID": image_id, "ready": is_ready, "restartCount": restarts,
               "state": state}  # fmt: skip
        return out | ({"lastState": last} if last else {})

    if trouble is not None and trouble.kind == "unschedulable":
        status: dict[str, Any] = {"phase": "Pending", "qosClass": "Guaranteed", "conditions": [
            condition("PodScheduled", False, "Unschedulable", trouble.message)]}  # fmt: skip
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}
    spec["nodeName"] = node
    not_ready = condition("Ready", False, "ContainersNotReady", f"containers with unready status: [{container}]")
    conditions = [condition("PodScheduled", True), condition("Initialized", gate is None)]
    if gate is not None:
        spec["initContainers"] = [{"name": gate, "image": "simulated"}]
        conditions[1] = condition("Initialized", False, "ContainersNotInitialized", f"containers with incomplete status: [{gate}]")
        status = {"phase": "Pending", "conditions": [*conditions, not_ready], "initContainerStatuses": [
            {"name": gate, "image": "simulated", "imageID": "simulated@sha256:" + "0" * 64, "ready": False, "restartCount": 0,
             "state": {"running": {"startedAt": started_at}}}],
            "containerStatuses": [main({"waiting": {"reason": "PodInitializing"}})]}  # fmt: skip
    elif trouble is not None and trouble.kind == "crash-loop":
        last = {"terminated": {"exitCode": trouble.exit_code, "reason": trouble.reason, "startedAt": started_at,
                               "finishedAt": ts()}}  # fmt: skip
        waiting = {"reason": "CrashLoopBackOff",
                   "message": f"back-off 5m0s restarting failed container={container} pod={name}_{namespace}"}  # fmt: skip
        status = {"phase": "Running", "conditions": [*conditions, not_ready],
                  "containerStatuses": [main({"waiting": waiting}, restarts=trouble.restarts, last=last)]}  # fmt: skip
    elif trouble is not None:
        status = {"phase": "Pending", "conditions": [*conditions, not_ready], "containerStatuses": [
            main({"waiting": {"reason": trouble.reason, "message": trouble.message}})]}  # fmt: skip
    else:
        status = {"phase": "Running", "startTime": started_at,
                  "conditions": [*conditions, condition("Ready", True) if ready else not_ready],
                  "containerStatuses": [main({"running": {"startedAt": started_at}}, is_ready=ready)]}  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def patch_annotations(annotations: dict[str, str], body: Any) -> str | None:
    """Apply a Deployment PATCH to its ``annotations`` (a value sets, null removes): a JSON patch
    of ``/metadata/annotations/<key>`` ops, or a merge / strategic-merge patch of
    ``metadata.annotations`` only. Anything else changes nothing and returns why it is refused."""
    prefix = "/metadata/annotations/"
    changes: dict[str, Any] = {}
    if isinstance(body, list):  # JSON patch: add / replace / remove of single annotations
        for op in body:
            path = str(op.get("path", "")) if isinstance(op, dict) else ""
            if not path.startswith(prefix) or op.get("op") not in ("add", "replace", "remove"):
                return f"the fake API patches only {prefix}<key>, got {op!r}"
            key = path[len(prefix):].replace("~1", "/").replace("~0", "~")
            changes[key] = None if op["op"] == "remove" else op.get("value")
    elif isinstance(body, dict) and set(body) == {"metadata"} and set(body["metadata"] or {}) == {"annotations"}:
        changes = dict(body["metadata"]["annotations"] or {})
    else:
        return f"the fake API patches only metadata.annotations, got {body!r}"
    if not all(v is None or isinstance(v, str) for v in changes.values()):
        return f"metadata.annotations: values must be strings, got {changes!r}"
    for key, value in changes.items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    return None
