"""Why a pod is not ready, in words and with the fix: ``doctor``'s reading of a model's (or the GPU
Operator's) pod, from its status, its container's log and its events (the classifications are
``benchmark.stack.diagnose``'s)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from benchmark.errors import BenchmarkError
from benchmark.stack.diagnose import (
    Finding,
    PodState,
    classify_log,
    explain_unschedulable,
    gate_wait,
    last_line,
    pod_state,
    quote,
)
from workloads.contract import PORT, Contract, ModelContract

if TYPE_CHECKING:
    from benchmark.stack.kube import Kube

__all__ = ["GATE", "PodExplainer"]

GATE = "wait-for-earlier-models"  # the start-order init container of every model pod but the first (workloads/pod.py)
LOG_LINES = 200
Call = Callable[..., Awaitable[Any]]


def _live(pod: Mapping[str, Any]) -> bool:
    return "deletionTimestamp" not in pod["metadata"] and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _waiting(state: PodState, key: str) -> Finding:
    """A container that cannot start: an image, a config, a volume."""
    said = f"{state.container} waiting: {state.reason}" + (f": {state.message}" if state.message else "")
    if state.reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"):
        return Finding(seen=said, fix=f"the image cannot be pulled: check models.{key}.image (does the tag exist?) and "
                                      "that the GPU node reaches the registry (the private subnets' NAT gateway)")  # fmt: skip
    if state.reason in ("CreateContainerConfigError", "CreateContainerError"):
        fix = "the container cannot be configured as declared: `pulumi up` re-applies the stack's objects"
        if "hf-token" in state.message:
            fix = "the Secret hf-token is missing: `pulumi config set --secret hfToken hf_...` and `pulumi up`"
        return Finding(seen=said, fix=fix)
    return Finding(seen=said, fix="`kubectl describe pod` shows the kubelet's events")


class PodExplainer:
    """Reads what it needs through ``kube`` (with ``call``, which runs a blocking call off the loop)."""

    def __init__(self, kube: Kube, contract: Contract, call: Call) -> None:
        self.kube, self.contract, self.call = kube, contract, call

    async def _log(self, pod: str, container: str) -> tuple[str, str]:
        """(the container's last lines, a note when they could not be read)."""
        try:
            return await self.call(self.kube.pod_log, pod, container, tail_lines=LOG_LINES), ""
        except BenchmarkError as e:
            if getattr(e, "status", None) == 403:
                return "", " (its log is not readable: no permission to get pods/log)"
            try:  # a container between runs may only have its previous run's log
                return await self.call(self.kube.pod_log, pod, container, previous=True, tail_lines=LOG_LINES), ""
            except BenchmarkError:
                return "", f" (its log cannot be read: {e})"

    async def _warning(self, pod: str) -> str:
        """The latest Warning event about ``pod`` ("" when none, or not readable)."""
        try:
            events = await self.call(self.kube.events, pod)
        except BenchmarkError:
            return ""
        warnings = sorted((e for e in events if e.get("type") == "Warning"), key=lambda e: str(e.get("lastTimestamp")))
        return f"{warnings[-1].get('reason')}: {warnings[-1].get('message')}" if warnings else ""

    async def model(self, m: ModelContract, deployment: Mapping[str, Any], ready: Mapping[str, bool]) -> Finding:
        """Why ``m``'s Deployment has no ready pod; ``ready`` tells which models before it are ready."""
        match = (deployment["spec"].get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        try:
            pods = await self.call(self.kube.pods, "", selector)
        except BenchmarkError as e:
            return Finding(seen=f"its pods cannot be listed: {e}", fix="see README \"Access\" for the verbs doctor uses")
        live = [p for p in pods if _live(p)]
        if not live:
            conditions = (deployment.get("status") or {}).get("conditions") or []
            failure = next((c for c in conditions if c.get("type") == "ReplicaFailure" and c.get("status") == "True"), None)
            if failure is not None:
                return Finding(seen=f"no pod: {failure.get('reason')}: {failure.get('message')}",
                               fix="the API refused the pod (Pod Security admission, a quota): read the message")  # fmt: skip
            if pods:
                return await self.explain(pods[-1], m, ready)
            return Finding(seen="no pod yet", fix=f"`kubectl describe deployment {m.deployment}`")
        live.sort(key=lambda p: pod_state(p).kind == "ready")  # a pod that is not ready first
        return await self.explain(live[0], m, ready)

    async def explain(self, pod: Mapping[str, Any], m: ModelContract, ready: Mapping[str, bool]) -> Finding:
        name, state = pod["metadata"]["name"], pod_state(pod)
        found = await self._explain(name, state, m, ready)
        return Finding(seen=f"pod {name} {found.seen}", fix=found.fix)

    async def _explain(self, pod: str, state: PodState, m: ModelContract, ready: Mapping[str, bool]) -> Finding:
        nodes = self.contract.gpu_nodes
        if state.kind == "unschedulable":
            return explain_unschedulable(
                state.message, resource=nodes.resource if nodes else "nvidia.com/gpu", labels=nodes.labels if nodes else {},
                taint_key=nodes.taint["key"] if nodes and nodes.taint else None, model=m.key,
            )  # fmt: skip
        if state.kind == "init" and state.container == GATE:
            log, _ = await self._log(pod, GATE)
            earlier = [o.key for o in sorted(self.contract.models.values(), key=lambda o: o.start_order)
                       if o.active and o.start_order < m.start_order and not ready.get(o.key, False)]  # fmt: skip
            awaited = gate_wait(log) or (earlier[0] if earlier else None)
            if awaited is None:
                return Finding(seen=f"waits on the start-order gate (init container {GATE})",
                               fix="an earlier model does not answer /health: see the checks above")  # fmt: skip
            seen = f"waits on the start-order gate (init container {GATE}) for model {awaited}"
            if ready.get(awaited):  # up, yet the gate does not reach it
                return Finding(seen=f"{seen}, which is ready", fix=f"the gate asks http://{awaited}:{PORT}/health through "
                               f"the Service {awaited}: check the Service's endpoints and the NetworkPolicy")  # fmt: skip
            return Finding(seen=seen, fix=f"model {awaited} starts before it and must answer /health first: see its check")
        if state.kind == "init":
            return Finding(seen=f"init container {state.container} still running (since {state.started_at})",
                           fix=f"`kubectl logs {pod} -c {state.container}`")  # fmt: skip
        if state.kind == "crash-loop":
            return await self._crash_loop(pod, state, m.key)
        if state.kind == "waiting" and state.reason == "ContainerCreating":
            warning = await self._warning(pod)
            return Finding(seen="container being created" + (f"; last warning {warning}" if warning else ""),
                           fix="a volume or the sandbox cannot be set up: `kubectl describe pod` shows the kubelet's events")  # fmt: skip
        if state.kind == "waiting":
            return _waiting(state, m.key)
        if state.kind == "starting":
            log, note = await self._log(pod, str(state.container))
            cause = classify_log(log)
            if cause is not None:
                return Finding(seen=f"running, not ready: {cause[0].what}: {quote(cause[1])}",
                               fix=cause[0].fix.replace("<key>", m.key))  # fmt: skip
            line = last_line(log)
            return Finding(seen=f"running since {state.started_at}, not ready yet (download, load, warmup)"
                                + (f"; last log line {quote(line)}" if line else note),
                           fix="wait: its startup probe allows models.<key>.startupMinutes; run doctor again".replace(
                               "<key>", m.key))  # fmt: skip
        warning = await self._warning(pod)
        said = f"{state.kind}" + (f": {state.reason}" if state.reason else "") + (f": {state.message}" if state.message else "")
        return Finding(seen=said + (f"; last warning {warning}" if warning else ""), fix="`kubectl describe pod` and its logs")

    async def _crash_loop(self, pod: str, state: PodState, key: str) -> Finding:
        ended = f"last run {state.reason or 'ended'}" + (f", exit code {state.exit_code}" if state.exit_code is not None else "")
        said = f"{state.container} in CrashLoopBackOff ({state.restarts} restarts; {ended})"
        if state.reason == "OOMKilled":
            return Finding(seen=f"{said}: killed at its memory limit",
                           fix=f"raise models.{key}.memory (host memory while loading the weights), within the GPU "
                               "node's allocatable")  # fmt: skip
        log, note = await self._log(pod, str(state.container))
        cause = classify_log(log)
        if cause is not None:
            return Finding(seen=f"{said}: {cause[0].what}: {quote(cause[1])}", fix=cause[0].fix.replace("<key>", key))
        line = last_line(log)
        return Finding(seen=said + (f"; last log line {quote(line)}" if line else note),
                       fix=f"read `kubectl logs {pod} -c {state.container} --previous`")  # fmt: skip

    async def operator_pod(self, pod: Mapping[str, Any], namespace: str) -> Finding | None:
        """None when the pod is ready; else its state (no logs: doctor may not read them there)."""
        state = pod_state(pod)
        if state.kind == "ready":
            return None
        name = pod["metadata"]["name"]
        container = f"container {state.container}: " if state.container else ""
        said = {"crash-loop": f"in CrashLoopBackOff ({container}{state.restarts} restarts, last run {state.reason or 'ended'})",
                "init": f"initialising ({container}running since {state.started_at})",
                "starting": f"running, not ready ({container}since {state.started_at})"}.get(
            state.kind, f"{state.kind} ({container}{state.reason or 'no reason given'})")  # fmt: skip
        if state.kind != "crash-loop" and state.message:
            said += f": {state.message}"
        return Finding(seen=f"pod {name} {said}", fix=f"`kubectl -n {namespace} logs {name}`")
