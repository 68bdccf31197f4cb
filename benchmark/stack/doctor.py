"""``doctor``: the guide's troubleshooting list, checked in its order against a deployed stack.

1. the stack's outputs (read as ``run`` reads them);
2. the Kubernetes API answers, and who we are (a SelfSubjectReview: the user, its groups and the
   IAM principal of the EKS access entry in use);
3. the GPU nodes: Ready, with the node group's labels and taint (the contract's ``gpu_nodes``);
4. the GPU Operator's pods Ready: the operator, and on every GPU node the device plugin, feature
   discovery, the DCGM exporter and the validator;
5. the device plugin runs the sharing config the stack declared: each GPU node advertises
   replicas x GPUs of the resource, and feature discovery's ``nvidia.com/gpu.replicas`` and
   ``nvidia.com/gpu.sharing-strategy`` labels say the same;
6. each enabled model, in start order: its Deployment ready, else why its pod is not
   (``benchmark.stack.diagnose``); a ready model's KV-token budget against the memory plan's, and
   its queue and batch now (its ``/metrics``, through ``--endpoint`` or a port-forward).

Every check gives one ``Check``: ok, FAIL (what was seen, and the fix) or skip (why it could not
run: an earlier failure, or no permission, naming the verb). Model checks use what the models
before them showed (a pod waiting on the start-order gate names the model it waits for).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiohttp

from benchmark.analysis.promscrape import parse_metrics, scrape
from benchmark.engine.probes import read_info
from benchmark.errors import BenchmarkError
from benchmark.stack.diagnose import Finding, kv_verdict, missing_labels, taint_problem
from benchmark.stack.outputs import StackOutputs
from benchmark.stack.pod_findings import PodExplainer
from benchmark.stack.portforward import open_port_forward
from workloads.contract import ModelContract

if TYPE_CHECKING:
    from benchmark.stack.kube import Kube

__all__ = ["OPERATOR_COMPONENTS", "Check", "diagnose_stack"]

T = TypeVar("T")
Status = Literal["ok", "FAIL", "skip"]

# The GPU Operator's pods by their `app` label (NVIDIA/gpu-operator v26.7.0: the Deployment of
# deployments/gpu-operator/templates/operator.yaml, and the DaemonSets of
# assets/state-device-plugin/0500_daemonset.yaml, assets/gpu-feature-discovery/0500_daemonset.yaml,
# assets/state-dcgm-exporter/0800_daemonset.yaml, assets/state-operator-validation/0500_daemonset.yaml,
# which run one pod per GPU node): (what it is, its app label, one per GPU node).
OPERATOR_COMPONENTS: tuple[tuple[str, str, bool], ...] = (
    ("operator", "gpu-operator", False),
    ("device plugin", "nvidia-device-plugin-daemonset", True),
    ("feature discovery", "gpu-feature-discovery", True),
    ("DCGM exporter", "nvidia-dcgm-exporter", True),
    ("validator", "nvidia-operator-validator", True),
)
# What GPU feature discovery labels a node with for its full GPUs (NVIDIA/k8s-device-plugin v0.20.0,
# the version the chart ships, internal/lm/resource.go: keys under nvidia.com/gpu whatever the
# resource is renamed to; "count" is physical GPUs; the strategy reads "none" while not shared).
GFD_COUNT, GFD_REPLICAS, GFD_STRATEGY = "nvidia.com/gpu.count", "nvidia.com/gpu.replicas", "nvidia.com/gpu.sharing-strategy"


@dataclass(frozen=True, kw_only=True)
class Check:
    """One line of doctor's answer."""

    name: str
    status: Status
    seen: str
    fix: str | None = None

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.seen}" + (f" -> fix: {self.fix}" if self.fix else "")

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "seen": self.seen, "fix": self.fix}


def _from(name: str, ok: bool, finding: Finding) -> Check:
    return Check(name=name, status="ok" if ok else "FAIL", seen=finding.seen, fix=None if ok else finding.fix)


class _Doctor:
    def __init__(self, stack: StackOutputs, endpoints: Mapping[str, str], kube: Kube | None,
                 http: aiohttp.ClientSession, report: Callable[[Check], None]) -> None:  # fmt: skip
        self.stack, self.contract, self.endpoints, self.kube, self.http = stack, stack.contract, endpoints, kube, http
        self.checks: list[Check] = []
        self.report = report
        self.api_ok = False
        self.gpu_nodes: list[dict[str, Any]] | None = None  # None: not read
        self.ready: dict[str, bool] = {}  # model key -> its Deployment was ready

    def add(self, check: Check) -> None:
        self.checks.append(check)
        self.report(check)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def skip_for(self, name: str, e: BenchmarkError, verb: str) -> Check:
        """A 403 is a skip naming the verb the identity lacks; any other failure is a FAIL."""
        if getattr(e, "status", None) == 403:
            return Check(name=name, status="skip", seen=f"no permission to {verb} (HTTP 403)",
                         fix="README \"Access\" lists what doctor reads; `pulumi up` grants it to benchmarkUsers")  # fmt: skip
        return Check(name=name, status="FAIL", seen=str(e), fix="see the Kubernetes API check")

    def cannot_check(self, name: str, needed: object, field: str) -> bool:
        """True, after a skip line, when the API did not answer or the contract lacks ``field``."""
        if not self.api_ok:
            self.add(Check(name=name, status="skip", seen="the Kubernetes API did not answer"))
            return True
        if needed is None:
            self.add(Check(name=name, status="skip", seen=f"the stack's contract has no {field} (exported before "
                                                          "doctor existed)", fix="`pulumi up` exports it"))  # fmt: skip
            return True
        return False

    # -- 2. the API and who we are --

    async def api(self) -> None:
        name = "kubernetes api"
        if self.kube is None:
            self.add(Check(name=name, status="FAIL", seen=f"{self.stack.source} has no kubeconfig output",
                           fix="save the outputs with `pulumi stack output --json --show-secrets > FILE`"))  # fmt: skip
            return
        try:
            user = await self.call(self.kube.who_am_i)
        except BenchmarkError as e:
            if getattr(e, "status", None) == 403:  # answered, but may not say who we are
                self.api_ok = True
                self.add(Check(name=name, status="ok", seen=f"{self.kube.host} answers; who we are is not allowed ({e})"))
                return
            self.add(Check(name=name, status="FAIL", seen=str(e),
                           fix="check the network path to the API endpoint (publicAccessCidrs) and your AWS "
                               "credentials (`aws sts get-caller-identity`)"))  # fmt: skip
            return
        self.api_ok = True
        extra = user.get("extra") or {}
        principal = (extra.get("canonicalArn") or [None])[0]  # aws-iam-authenticator: the access entry's ARN
        groups = [g for g in user.get("groups") or [] if g != "system:authenticated"]
        role = ""
        if self.contract.benchmark_group and self.contract.benchmark_group in groups:
            role = f"; a benchmarkUsers entry (group {self.contract.benchmark_group}: the Roles of README \"Access\")"
        seen = (f"{self.kube.host} answers; you are {user.get('username', '?')}"
                + (f" (access entry {principal})" if principal else "")
                + f", groups {', '.join(groups) or 'none besides system:authenticated'}{role}")  # fmt: skip
        self.add(Check(name=name, status="ok", seen=seen))

    # -- 3. GPU nodes --

    async def nodes(self) -> None:
        name, spec = "gpu nodes", self.contract.gpu_nodes
        if self.cannot_check(name, spec, "gpu_nodes") or self.kube is None or spec is None:
            return
        selector = ",".join(f"{k}={v}" for k, v in sorted(spec.labels.items()))
        try:
            nodes = await self.call(self.kube.nodes, selector)
        except BenchmarkError as e:
            self.add(self.skip_for(name, e, "list nodes (cluster-scoped)"))
            return
        self.gpu_nodes = nodes
        if not nodes:
            self.add(Check(name=name, status="FAIL", seen=f"no node carries the GPU node group's labels {selector}",
                           fix="the GPU node group has no node: check its health (`aws eks describe-nodegroup`), "
                               "its scaling (gpuNodes.minSize/desiredSize) and the account's G-instance vCPU quota"))  # fmt: skip
            return
        problems, fixes = [], []
        for node in nodes:
            nm = node["metadata"]["name"]
            ready = next((c for c in node["status"].get("conditions") or [] if c.get("type") == "Ready"), {})
            if ready.get("status") != "True":
                problems.append(f"{nm} not Ready ({ready.get('reason', 'no Ready condition')}: {ready.get('message', '')})")
                fixes.append("`kubectl describe node NODE` (kubelet, disk pressure, network); a node that stays "
                             "NotReady: terminate the instance, its node group replaces it")  # fmt: skip
            wrong = missing_labels(node["metadata"].get("labels") or {}, spec.labels)
            taint = taint_problem(node["spec"].get("taints") or [], spec.taint)
            problems += [f"{nm} label {w}" for w in wrong] + ([f"{nm} {taint}"] if taint else [])
            if wrong or taint:
                fixes.append("the labels and the taint are the node group's (gpuNodes.labels, gpuNodes.taint): "
                             "`pulumi up` restores them")  # fmt: skip
        names = ", ".join(n["metadata"]["name"] for n in nodes)
        if problems:
            self.add(Check(name=name, status="FAIL", seen="; ".join(problems), fix="; ".join(dict.fromkeys(fixes))))
            return
        taint = spec.taint
        self.add(Check(name=name, status="ok", seen=f"{len(nodes)} Ready ({names}), labels {selector}"
                       + (f", taint {taint['key']}={taint['value']}:{taint['effect']}" if taint else "")))  # fmt: skip

    # -- 4. the GPU Operator --

    async def operator(self) -> None:
        name, ns = "gpu operator", self.contract.gpu_operator_namespace
        if self.cannot_check(name, ns, "gpu_operator") or self.kube is None or ns is None:
            return
        try:
            pods = await self.call(self.kube.pods, ns)
        except BenchmarkError as e:
            self.add(self.skip_for(name, e, f"list pods in namespace {ns!r}"))
            return
        explain = PodExplainer(self.kube, self.contract, self.call)
        problems, running = [], []
        gpu_nodes = [n["metadata"]["name"] for n in self.gpu_nodes or []]
        for what, app, per_node in OPERATOR_COMPONENTS:
            mine = [p for p in pods if (p["metadata"].get("labels") or {}).get("app") == app]
            on = {p.get("spec", {}).get("nodeName") for p in mine}
            missing = [n for n in gpu_nodes if n not in on] if per_node else []
            if not mine or missing:
                problems.append(f"no {what} pod (app={app})" + (f" on {', '.join(missing)}" if missing else ""))
            for pod in mine:
                finding = await explain.operator_pod(pod, ns)
                if finding is not None:
                    problems.append(f"{what} {finding.seen}")
            running.append(f"{what} {len(mine)}")
        if problems:
            self.add(Check(name=name, status="FAIL", seen=f"in namespace {ns}: " + "; ".join(problems),
                           fix=f"`kubectl -n {ns} describe pod POD` and its logs; a DaemonSet pod missing on a GPU node: "
                               "the node lacks the nvidia.com/gpu.deploy.* labels the operator sets where node feature "
                               "discovery found a GPU"))  # fmt: skip
            return
        self.add(Check(name=name, status="ok", seen=f"pods Ready in namespace {ns}: " + ", ".join(running)))

    # -- 5. the device plugin's sharing config --

    async def sharing(self) -> None:
        name, spec = "gpu sharing", self.contract.gpu_nodes
        sharing = self.contract.gpu.get("sharing") or {}
        if not self.gpu_nodes or spec is None:
            self.add(Check(name=name, status="skip", seen="no GPU node to read (see the gpu nodes check)"))
            return
        strategy, replicas = str(sharing.get("strategy", "none")), int(sharing.get("replicas", 1))
        problems, seen = [], []
        for node in self.gpu_nodes:
            nm, labels = node["metadata"]["name"], node["metadata"].get("labels") or {}
            gpus = int(labels.get(GFD_COUNT) or spec.gpus_per_node)
            want = replicas * gpus
            have = (node["status"].get("capacity") or {}).get(spec.resource)
            if have is None:
                problems.append(f"{nm} advertises no {spec.resource}: the device plugin has not registered")
            elif int(have) != want:
                problems.append(f"{nm} advertises {spec.resource}: {have}, not {want} ({replicas} replicas x {gpus} GPU)")
            expected = {GFD_REPLICAS: str(replicas), GFD_STRATEGY: strategy if replicas > 1 else "none"}
            problems += [f"{nm} label {w}" for w in missing_labels(labels, expected)]
            seen.append(f"{nm} {spec.resource}: {have}")
        if problems:
            self.add(Check(name=name, status="FAIL", seen="; ".join(problems),
                           fix="the device plugin is not running the sharing config the stack declared "
                               f"({strategy}, {replicas} replicas): check the ClusterPolicy's devicePlugin.config "
                               "(`kubectl get clusterpolicy -o yaml`) and the device plugin's config-manager logs; "
                               "`pulumi up` re-applies the config"))  # fmt: skip
            return
        self.add(Check(name=name, status="ok", seen=f"{strategy}, {replicas} replicas: " + ", ".join(seen)))

    # -- 6. the models --

    async def model(self, m: ModelContract) -> None:
        name = f"model {m.key}"
        if not m.active:
            self.add(Check(name=name, status="skip", seen="disabled in the stack"))
            return
        if self.kube is not None and self.api_ok:
            if not await self.deployment(m):
                self.add(Check(name=f"{name} kv cache", status="skip", seen="the model is not ready"))
                return
        elif m.key not in self.endpoints:
            self.add(Check(name=name, status="skip", seen="the Kubernetes API did not answer and no --endpoint reaches it"))
            return
        await self.served(m)

    async def deployment(self, m: ModelContract) -> bool:
        """The Deployment's readiness line; True when it is ready."""
        assert self.kube is not None
        name, ns = f"model {m.key}", self.stack.namespace
        try:
            dep = await self.call(self.kube.deployment, m.deployment)
        except BenchmarkError as e:
            missing = getattr(e, "status", None) == 404
            self.add(Check(name=name, status="FAIL", seen=str(e), fix="`pulumi up` declares it")
                     if missing else self.skip_for(name, e, f"get deployments in namespace {ns!r}"))  # fmt: skip
            return False
        want, ready = int(dep["spec"].get("replicas") or 0), int(dep.get("status", {}).get("readyReplicas") or 0)
        self.ready[m.key] = want > 0 and ready >= want
        if want == 0:
            self.add(Check(name=name, status="FAIL", seen=f"deployment {m.deployment} is scaled to 0; the stack declares {m.replicas}",
                           fix=f"`kubectl -n {ns} scale deployment/{m.deployment} --replicas={m.replicas}` (or `pulumi "
                               "up`); `python -m benchmark --scenarios all` restores what it scales unless killed"))  # fmt: skip
            return False
        if self.ready[m.key]:
            self.add(Check(name=name, status="ok", seen=f"deployment {m.deployment} ready ({ready}/{want})"))
            return True
        finding = await PodExplainer(self.kube, self.contract, self.call).model(m, dep, self.ready)
        self.add(Check(name=name, status="FAIL", seen=f"deployment {m.deployment} not ready ({ready}/{want}): {finding.seen}",
                       fix=finding.fix))  # fmt: skip
        return False

    async def served(self, m: ModelContract) -> None:
        """What the ready model's server says: its KV-token budget, and its queue and batch now."""
        name = f"model {m.key}"
        async with contextlib.AsyncExitStack() as tunnels:
            try:
                if m.key in self.endpoints:
                    url = self.endpoints[m.key]
                else:
                    assert self.kube is not None
                    url = await open_port_forward(self.kube, m, tunnels)
                metrics = parse_metrics(await scrape(self.http, url))
            except BenchmarkError as e:
                self.add(Check(name=f"{name} kv cache", status="FAIL", seen=f"cannot read its /metrics: {e}",
                               fix="the pod is Ready but its server does not answer: `kubectl logs`"))  # fmt: skip
                return
            found, source = metrics.value("tgi_batch_max_total_tokens"), "tgi_batch_max_total_tokens on /metrics"
            info = await read_info(self.http, url)
        if found is None and isinstance(info.get("max_batch_total_tokens"), int):  # TGI before 2.4 lists it in /info
            found, source = float(info["max_batch_total_tokens"]), "/info max_batch_total_tokens"
        simulated = " [SIMULATED server]" if info.get("simulated") is True else ""
        if found is None:
            self.add(Check(name=f"{name} kv cache", status="FAIL", seen="neither /metrics nor /info gives its KV-token "
                           "budget (tgi_batch_max_total_tokens)", fix="is it a TGI server?"))  # fmt: skip
        else:
            ok, finding = kv_verdict(int(found), m.planned_kv_tokens, m.planned_kv_tokens_first_start, source=source)
            self.add(_from(f"{name} kv cache", ok, Finding(seen=finding.seen + simulated, fix=finding.fix)))
        queue, batch = metrics.value("tgi_queue_size"), metrics.value("tgi_batch_current_size")
        tokens = metrics.value("tgi_batch_current_max_tokens")

        def n(v: float | None) -> str:
            return "?" if v is None else f"{v:g}"

        self.add(Check(name=f"{name} load", status="ok",
                       seen=f"queue {n(queue)}, batch {n(batch)} requests, {n(tokens)} KV tokens in use{simulated}"))


async def diagnose_stack(stack: StackOutputs, endpoints: Mapping[str, str], *,
                         report: Callable[[Check], None] = lambda check: None) -> list[Check]:  # fmt: skip
    """Every check, in the guide's order; ``report`` hears each as it is decided."""
    checks = [Check(name="stack outputs", status="ok",
                    seen=f"{stack.source}: cluster {stack.cluster_name}, namespace {stack.namespace}, "
                         f"{len(stack.active_models())} of {len(stack.models)} models enabled")]  # fmt: skip
    report(checks[0])
    kube: Kube | None = None
    if stack.kubeconfig is not None:
        from benchmark.stack.kube import Kube  # the kubernetes client only where a cluster is reached

        try:
            kube = Kube(stack.kubeconfig, stack.namespace)
        except BenchmarkError as e:
            check = Check(name="kubernetes api", status="FAIL", seen=str(e), fix="check the outputs file")
            report(check)
            return [*checks, check]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            doctor = _Doctor(stack, endpoints, kube, http, report)
            await doctor.api()
            await doctor.nodes()
            await doctor.operator()
            await doctor.sharing()
            for m in sorted(stack.models.values(), key=lambda m: (m.start_order, m.key)):
                await doctor.model(m)
            return [*checks, *doctor.checks]
    finally:
        if kube is not None:
            kube.close()
