"""What ``doctor`` concludes from what the cluster and the models report: pure functions over the
Kubernetes API's JSON (nodes, pods, container logs) and TGI's figures, each reading text whose
source is cited beside it.

- The scheduler's message on a pod it cannot place (condition ``PodScheduled`` ``False``,
  ``reason: Unschedulable``) is its ``FitError``: "0/3 nodes are available: 1 Insufficient
  nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: ..."
  (kubernetes ``pkg/scheduler/framework/types.go``: the count and reason of each node, sorted,
  joined with ", ", then "."; the reasons are the filter plugins': ``noderesources/fit.go``
  "Insufficient %v" and "Too many pods", ``tainttoleration`` "node(s) had untolerated taint
  {%s: %s}" (key: value), ``nodeaffinity`` "node(s) didn't match Pod's node affinity/selector",
  ``nodeunschedulable`` "node(s) were unschedulable").
- A container's state is ``waiting`` (``reason``: ``CrashLoopBackOff``, ``ErrImagePull``,
  ``ImagePullBackOff``, ``CreateContainerConfigError``, ``ContainerCreating``, ``PodInitializing``),
  ``running`` or ``terminated``; ``lastState.terminated`` keeps the last run's exit code and reason
  (``OOMKilled`` when the kernel killed it at its memory limit) (core/v1 ContainerStatus).
- TGI's failures at start, as its logs print them: PyTorch's "CUDA out of memory" /
  ``torch.OutOfMemoryError``, which TGI's warmup re-raises as "Not enough memory to handle N
  prefill tokens" (``server/text_generation_server/models/flash_causal_lm.py``) and its router as
  "Not enough memory to handle `max_total_tokens=N`" (``backends/v3/src/lib.rs``); the loader's
  "libpython3.11.so.1.0: cannot open shared object file" when the stock image runs as another
  user than root (huggingface/text-generation-inference#3082); huggingface_hub's "401 Client
  Error", "403 Client Error", ``GatedRepoError`` "Cannot access gated repo ... Access to model
  ... is restricted" for a gated model without a token (or one without access), and
  ``RepositoryNotFoundError`` / "404 Client Error" for a model id the Hub does not know; the
  kernel's "No space left on device" (errno 28).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "LOG_CAUSES",
    "Finding",
    "LogCause",
    "PodState",
    "classify_log",
    "explain_unschedulable",
    "gate_wait",
    "kv_verdict",
    "last_line",
    "missing_labels",
    "pod_state",
    "quote",
    "scheduler_reasons",
    "taint_problem",
]

KV_TOLERANCE = 0.10  # the memory plan's KV tokens hold if TGI found within 10 % of them


@dataclass(frozen=True, kw_only=True)
class Finding:
    """What a check saw and, when something is wrong, what to do about it."""

    seen: str
    fix: str | None = None


# -- the scheduler --


def scheduler_reasons(message: str) -> list[tuple[int, str]]:
    """``[(nodes, reason), ...]`` of a scheduler FitError ("0/3 nodes are available: 1 Insufficient
    nvidia.com/gpu, 2 node(s) ..."); [] for a message of another shape."""
    match = re.match(r"0/\d+ nodes are available:(.*?)\.(?:\s|$)", message, re.S)
    if match is None:
        return []
    return [(int(m[1]), m[2].strip()) for m in re.finditer(r"(\d+) (.+?)(?=, \d+ |$)", match[1].strip())]


def explain_unschedulable(message: str, *, resource: str, labels: Mapping[str, str],
                          taint_key: str | None, model: str) -> Finding:  # fmt: skip
    """Why the scheduler placed no pod of ``model``, reason by reason; the nodes that only fail the
    GPU node selector are the CPU nodes, named only when no node passes it."""
    reasons = scheduler_reasons(message)
    selector = "didn't match Pod's node affinity/selector"
    gpu_side = [(n, r) for n, r in reasons if selector not in r] or reasons
    wanted = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    seen, fixes = [], []
    for count, reason in gpu_side:
        taint = re.match(r"node\(s\) had untolerated taint \{(.+?): ?(.*)\}", reason)
        if reason == f"Insufficient {resource}":
            seen.append(f"every {resource} share is taken ({count} node(s))")
            fixes.append(f"more pods ask for {resource} than the GPU nodes advertise: disable a model or raise "
                         "gpuSharing.replicas; a node that advertises 1 per GPU runs without the sharing config "
                         "(see the gpu sharing check)")  # fmt: skip
        elif reason in ("Insufficient memory", "Insufficient cpu"):
            what = reason.split()[-1]
            seen.append(f"not enough allocatable {what} on {count} node(s) for the pod's request")
            fixes.append(f"lower models.{model}.{what} or choose a larger gpuNodes.instanceType (the enabled models' "
                         "requests must fit one GPU node's allocatable)")  # fmt: skip
        elif taint is not None:
            key, value = taint[1], taint[2]
            seen.append(f"{count} node(s) tainted {{{key}: {value}}}, which the pod does not tolerate")
            if key.startswith("node.kubernetes.io/"):
                fixes.append(f"the node is {key.split('/')[-1]}: see the gpu nodes check")
            elif key == taint_key:
                fixes.append(f"the pod lacks the toleration for {key}: `pulumi up` declares it (gpuNodes.taint)")
            else:
                fixes.append(f"someone else tainted the node: `kubectl taint nodes NODE {key}-` if it should not be")
        elif selector in reason:
            seen.append(f"no node carries the GPU node group's labels {wanted} ({count} node(s) do not)")
            fixes.append("the GPU node group has no node: check the gpu nodes check, its scaling (gpuNodes.minSize) "
                         "and the instance quota; `pulumi up` restores the labels")  # fmt: skip
        elif reason == "node(s) were unschedulable":
            seen.append(f"{count} node(s) cordoned")
            fixes.append("`kubectl uncordon NODE`")
        else:
            seen.append(f"{count} {reason}")
    if not reasons:
        return Finding(seen=f"the scheduler cannot place it: {message}", fix="read the message above")
    return Finding(seen="the scheduler cannot place it: " + "; ".join(seen),
                   fix="; ".join(dict.fromkeys(fixes)) or f"the scheduler said: {message}")  # fmt: skip


# -- pods and containers --

StateKind = Literal["unschedulable", "init", "crash-loop", "waiting", "starting", "ready", "terminated", "finished", "pending"]


@dataclass(frozen=True, kw_only=True)
class PodState:
    """Where one pod is stuck (``kind``), and the container and words that say so."""

    kind: StateKind
    container: str | None = None
    reason: str = ""
    message: str = ""
    restarts: int = 0
    exit_code: int | None = None
    started_at: str | None = None


def _container_state(status: Mapping[str, Any], *, init: bool) -> PodState | None:
    name = str(status.get("name"))
    state = status.get("state") or {}
    restarts = int(status.get("restartCount") or 0)
    last = (status.get("lastState") or {}).get("terminated") or {}
    if "waiting" in state:
        waiting = state["waiting"] or {}
        reason = str(waiting.get("reason") or "")
        if reason == "CrashLoopBackOff":
            return PodState(kind="crash-loop", container=name, reason=str(last.get("reason") or ""),
                            message=str(waiting.get("message") or ""), restarts=restarts,
                            exit_code=last.get("exitCode"))  # fmt: skip
        if reason == "PodInitializing":
            return None  # its init containers say why
        return PodState(kind="waiting", container=name, reason=reason, message=str(waiting.get("message") or ""),
                        restarts=restarts)  # fmt: skip
    if "terminated" in state:
        done = state["terminated"] or {}
        if init and done.get("exitCode") == 0:
            return None
        return PodState(kind="terminated", container=name, reason=str(done.get("reason") or ""),
                        exit_code=done.get("exitCode"), restarts=restarts)  # fmt: skip
    if "running" in state:
        if init:
            return PodState(kind="init", container=name, started_at=(state["running"] or {}).get("startedAt"))
        if not status.get("ready"):
            return PodState(kind="starting", container=name, restarts=restarts,
                            started_at=(state["running"] or {}).get("startedAt"))  # fmt: skip
    return None


def pod_state(pod: Mapping[str, Any]) -> PodState:
    """Where ``pod`` is stuck: unschedulable, held by an init container, a container crash-looping
    or waiting (image, config), running but not ready (starting), or ready."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        return PodState(kind="finished", reason=str(status.get("reason") or phase), message=str(status.get("message") or ""))
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return PodState(kind="unschedulable", reason=str(c.get("reason") or ""), message=str(c.get("message") or ""))
    for init in status.get("initContainerStatuses") or []:
        if (found := _container_state(init, init=True)) is not None:
            return found
    for c in status.get("containerStatuses") or []:
        if (found := _container_state(c, init=False)) is not None:
            return found
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return PodState(kind="ready" if ready and phase == "Running" else "pending", reason=str(phase or ""))


def gate_wait(log: str) -> str | None:
    """The model the start-order init container waits for, from its last "waiting for <key>,
    which starts before this model, to be healthy" line (workloads/pod.py ``WAIT_SCRIPT``)."""
    waits = re.findall(r"^waiting for (\S+), which starts before this model", log, re.M)
    return waits[-1] if waits else None


# -- logs --


@dataclass(frozen=True, kw_only=True)
class LogCause:
    """A failure TGI's log names: the text that shows it, what it means and what to do."""

    name: str
    pattern: re.Pattern[str]
    what: str
    fix: str


LOG_CAUSES: tuple[LogCause, ...] = (
    LogCause(
        name="cuda-oom",
        pattern=re.compile(r"CUDA out of memory|OutOfMemoryError|Not enough memory to handle"),
        what="CUDA out of memory at warmup",
        fix="TGI found less free GPU memory than the memory plan gives it: another process holds GPU memory (a "
            "model started out of the start order: restart the models in start order, README \"Start order\"), or the "
            "plan's estimates are too small (workloads/warmup.py Assumptions); lower the earlier models' "
            "cudaMemoryFraction or this model's maxBatchPrefillTokens",
    ),
    LogCause(
        name="non-root",
        pattern=re.compile(r"libpython[\d.]*\.so[\d.]*: cannot open shared object file"),
        what="the image's Python is not readable by the container's user",
        fix="the stock TGI image runs only as root (its Python lives under /root, huggingface/text-generation-inference"
            "#3082): use a derived image built for models.<key>.runAsUser, or exempt the pod from the policy that "
            "forces a non-root user",
    ),
    LogCause(
        name="hub-auth",
        pattern=re.compile(r"\b40[13] Client Error|GatedRepoError|Cannot access gated repo|is restricted|"
                           r"Invalid (user )?token|Invalid credentials"),
        what="the Hugging Face Hub refused the download (401/403: a gated model)",
        fix="set a token whose account accepted the model's licence on huggingface.co: `pulumi config set --secret "
            "hfToken hf_...` and `pulumi up`",
    ),
    LogCause(
        name="hub-not-found",
        pattern=re.compile(r"RepositoryNotFoundError|\b404 Client Error|Repository Not Found"),
        what="the Hub has no such model (404)",
        fix="check models.<key>.modelId (and revision) against huggingface.co",
    ),
    LogCause(
        name="disk-full",
        pattern=re.compile(r"No space left on device|Errno 28\b"),
        what="the GPU node's disk is full",
        fix="raise gpuNodes.diskSizeGib, or remove caches of models no longer used under /var/lib/gpu-sharing/hf-cache "
            "on the GPU node",
    ),
)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # TGI's launcher colours its log lines


def classify_log(text: str) -> tuple[LogCause, str] | None:
    """The first known cause in a log and the (last) line that shows it."""
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    for cause in LOG_CAUSES:
        matching = [line for line in lines if cause.pattern.search(line)]
        if matching:
            return cause, matching[-1]
    return None


def last_line(text: str) -> str:
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def quote(line: str, limit: int = 200) -> str:
    return repr(line if len(line) <= limit else line[: limit - 3] + "...")


# -- the memory plan against what TGI found --


def kv_verdict(found: int, planned: int, first_start: int | None, *, source: str) -> tuple[bool, Finding]:
    """TGI's KV-token budget (``found``, read from ``source``) against the memory plan's: within
    10 % of the restart figure (``planned``) or of the first-start one is as planned."""
    low, high = planned * (1 - KV_TOLERANCE), max(planned, first_start or planned) * (1 + KV_TOLERANCE)
    plan = f"planned {planned}" + (f" ({first_start} on a first start in order)" if first_start not in (None, planned) else "")
    seen = f"{found} KV tokens ({source}), {plan}"
    if low <= found <= high:
        return True, Finding(seen=f"{seen}: within {KV_TOLERANCE:.0%}")
    off = found / planned - 1 if found < low else found / max(planned, first_start or planned) - 1
    if found < low:
        return False, Finding(
            seen=f"{seen}: {-off:.0%} fewer: the memory plan is optimistic",
            fix="TGI found less free GPU memory than the plan assumed: its estimates (CUDA context, graphs, activation "
                "peaks; workloads/warmup.py Assumptions) are too small for this card, or another process held memory "
                "when the model started (started out of order: restart the models in start order)",
        )  # fmt: skip
    return False, Finding(
        seen=f"{seen}: {off:.0%} more: the memory plan is pessimistic",
        fix="TGI found more free GPU memory than the plan assumed: its estimates (workloads/warmup.py Assumptions) "
            "are too large for this card, so memory the plan could give the models stays unused; or a model before "
            "it in the start order is not running",
    )  # fmt: skip


def missing_labels(labels: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """``k=v (got ...)`` for each wanted label the node lacks or carries with another value."""
    return [f"{k}={v} (got {labels[k]!r})" if k in labels else f"{k}={v} (absent)"
            for k, v in sorted(wanted.items()) if labels.get(k) != v]  # fmt: skip


def taint_problem(taints: Sequence[Mapping[str, str]], wanted: Mapping[str, str] | None) -> str | None:
    if wanted is None:
        return None
    spec = f"{wanted['key']}={wanted['value']}:{wanted['effect']}"
    same = [t for t in taints if t.get("key") == wanted["key"]]
    if not same:
        return f"taint {spec} absent"
    if not any(t.get("value", "") == wanted["value"] and t.get("effect") == wanted["effect"] for t in same):
        return f"taint {spec} is " + ", ".join(f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in same)
    return None
