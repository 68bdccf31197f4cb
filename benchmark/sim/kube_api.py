"""A fake Kubernetes API server on 127.0.0.1: just the calls the benchmark makes, so tests and
the demo run the real ``kubernetes`` client code path (kubeconfig, auth header, URLs,
(de)serialisation, port-forward websocket) against simulated models.

Served (``apps/v1`` and ``v1``; answers shaped like the API server's):
  GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}            Deployment
  PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}            metadata.annotations only (null removes)
  GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}/status     Deployment
  GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale      autoscaling/v1 Scale
  PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale      merge / strategic-merge / JSON patch
  PUT   /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale      Scale
  GET   /api/v1/namespaces/{ns}/pods?labelSelector=k=v,...          PodList (also the GPU Operator's namespace)
  GET   /api/v1/namespaces/{ns}/pods/{pod}/portforward?ports=P      websocket, v4.channel.k8s.io
  GET   /api/v1/namespaces/{ns}/pods/{pod}/log?container=C&previous=B&tailLines=N   text
  GET   /api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name=P          EventList
  GET   /api/v1/nodes?labelSelector=k=v,...                         NodeList
  POST  /apis/authentication.k8s.io/v1/selfsubjectreviews           SelfSubjectReview (``user``)

Pods are bookkeeping: scaling up adds pods, scaling down marks the surplus terminating for
``terminate_s`` before they vanish (as a real pod holds its GPU memory until it is gone).
A pod is Ready when its backend answers ``GET /health`` with 200, the way the Deployment's
readiness probe decides; ``readyReplicas``/``availableReplicas`` follow. A new pod of a
Deployment with ``after`` set waits (as the stack's start-order init container does) until
those have a ready pod; ``failed_pods`` lists finished (evicted) pods beside the live ones.
A Deployment's ``trouble`` stages what keeps its pods from running, and ``nodes``,
``operator_pods`` and ``user`` what the rest of the cluster shows (``benchmark.sim.kube_objects``
renders them as real clusters report them); ``errors`` makes a call answer an HTTP error.
Each Deployment's ``on_scale(n)`` hook (e.g. a simulated model's ``set_replicas``) is
called on every scale.
The port-forward streams a pod's port to the Deployment's backend (``kube_portforward``).

Only bearer-token auth is checked (``kubeconfig()`` hands out a matching config).
``errors`` maps an operation name (``read``, ``patch``, ``read_scale``, ``scale``, ``list_pods``,
``list_pods:<operator namespace>``, ``portforward``, ``read_log``, ``list_events``,
``list_nodes``, ``selfsubjectreview``) to an HTTP status the server answers it with.
``calls`` logs ``(method, path)`` of every request.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from benchmark.sim.kube_objects import (
    GATE, FakeDeployment, FakeNode, FakePod, gate_log, patch_annotations, pod_object, trouble_events,
)
from benchmark.sim.kube_portforward import serve_portforward

__all__ = ["FakeDeployment", "FakeKubeApi"]

# Who the default fake client is: an EKS benchmark user, as SelfSubjectReview shows one
# (aws-iam-authenticator: uid "aws-iam-authenticator:<account>:<principal id>", the IAM ARN
# the access entry names in extra.canonicalArn, the STS session in extra.arn).
EKS_BENCHMARK_USER = {
    "username": "arn:aws:sts::111122223333:assumed-role/benchmark-runner/1700000000000000000",
    "uid": "aws-iam-authenticator:111122223333:AROAEXAMPLEID",
    "groups": ["gpu-sharing-benchmark", "system:authenticated"],
    "extra": {"arn": ["arn:aws:sts::111122223333:assumed-role/benchmark-runner/1700000000000000000"],
              "canonicalArn": ["arn:aws:iam::111122223333:role/benchmark-runner"],
              "sessionName": ["1700000000000000000"], "principalId": ["AROAEXAMPLEID"]},
}  # fmt: skip


class FakeKubeApi:
    """``async with FakeKubeApi(namespace, deployments) as api:`` serves on ``api.url``."""

    def __init__(
        self,
        namespace: str,
        deployments: list[FakeDeployment],
        *,
        terminate_s: float = 0.2,
        token: str | None = None,
        nodes: list[FakeNode] | None = None,
        operator_namespace: str = "gpu-operator",
        operator_pods: list[FakePod] | None = None,
        user: dict[str, Any] | None = None,
    ) -> None:
        self.namespace = namespace
        self.deployments = {d.name: d for d in deployments}
        self.nodes = list(nodes or [])
        self.operator_namespace = operator_namespace
        self.operator_pods = list(operator_pods or [])
        self.user = dict(user or EKS_BENCHMARK_USER)
        self.terminate_s = terminate_s
        self.token = token or secrets.token_hex(16)
        self.errors: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle --

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware])
        deps = "/apis/apps/v1/namespaces/{ns}/deployments/{name}"
        app.router.add_get(deps, self._get_deployment)
        app.router.add_patch(deps, self._patch_deployment)
        app.router.add_get(deps + "/status", self._get_deployment)
        app.router.add_get(deps + "/scale", self._get_scale)
        app.router.add_patch(deps + "/scale", self._set_scale)
        app.router.add_put(deps + "/scale", self._set_scale)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._list_pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/portforward", self._portforward)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/log", self._log)
        app.router.add_get("/api/v1/namespaces/{ns}/events", self._events)
        app.router.add_get("/api/v1/nodes", self._list_nodes)
        app.router.add_post("/apis/authentication.k8s.io/v1/selfsubjectreviews", self._who_am_i)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> FakeKubeApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig (as pulumi-eks exports it: an object) that reaches this server."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": self.namespace}}],
            "current-context": "fake",
        }

    def replicas(self) -> dict[str, int]:
        """Every Deployment's ``spec.replicas`` now."""
        return {name: d.replicas for name, d in self.deployments.items()}

    # -- helpers --

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._status(401, "Unauthorized", "Unauthorized")
        if request.match_info.get("ns", self.namespace) not in (self.namespace, self.operator_namespace):
            return self._status(404, "NotFound", f'namespaces "{request.match_info["ns"]}" not found')
        return await handler(request)

    @staticmethod
    def _status(code: int, reason: str, message: str) -> web.Response:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}  # fmt: skip
        return web.json_response(body, status=code)

    def _refused(self, op: str) -> web.Response | None:
        """The error staged for ``op`` (``errors[op] = 403``...), if any."""
        if op not in self.errors:
            return None
        code = self.errors[op]
        return self._status(code, "Forbidden" if code == 403 else "InternalError", f"injected error for {op}")

    def _lookup(self, request: web.Request, op: str) -> FakeDeployment | web.Response:
        if (refused := self._refused(op)) is not None:
            return refused
        name = request.match_info["name"]
        dep = self.deployments.get(name)
        if dep is None:
            return self._status(404, "NotFound", f'deployments.apps "{name}" not found')
        return dep

    def _reap(self, dep: FakeDeployment) -> None:
        now = time.monotonic()
        dep.pods = [p for p in dep.pods if p.deleted_at is None or now - p.deleted_at < self.terminate_s]

    async def _backend_ready(self, dep: FakeDeployment) -> bool:
        if dep.backend is None or self._session is None:
            return False
        try:
            async with self._session.get(dep.backend.rstrip("/") + "/health") as r:
                return r.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def _ready_pods(self, dep: FakeDeployment) -> int:
        return sum(_ready(p) for p in await self._pod_objects(dep))

    async def _pod_objects(self, dep: FakeDeployment) -> list[dict[str, Any]]:
        self._reap(dep)
        healthy = await self._backend_ready(dep)
        waiting = [p for p in dep.pods if not p.initialized and p.deleted_at is None]
        if waiting and dep.gate_reaches and all([await self._ready_pods(self.deployments[n]) > 0 for n in dep.after]):
            for pod in waiting:
                pod.initialized = True
        out = [{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{dep.name}-evicted-{i}", "namespace": self.namespace, "labels": dict(dep.labels)},
            "spec": {"containers": [{"name": "tgi", "image": "simulated"}]},
            "status": {"phase": "Failed", "reason": "Evicted"},
        } for i in range(dep.failed_pods)]  # fmt: skip
        for pod in dep.pods:
            deleting = pod.deleted_at is not None
            out.append(pod_object(
                pod.name, self.namespace, dep.labels, port=dep.container_port, ready=healthy and not deleting,
                gate=GATE if not pod.initialized and dep.after else None, started=pod.started, deleting=deleting,
                trouble=dep.trouble if not deleting else None))  # fmt: skip
        return out

    def _operator_pod_objects(self) -> list[dict[str, Any]]:
        return [pod_object(p.name, self.operator_namespace, p.labels, container=p.labels.get("app", p.name),
                           node=p.node, ready=p.ready, trouble=p.trouble) for p in self.operator_pods]  # fmt: skip

    async def _deployment_object(self, dep: FakeDeployment) -> dict[str, Any]:
        pods = [p for p in await self._pod_objects(dep) if p["status"]["phase"] != "Failed"]
        live = [p for p in pods if "deletionTimestamp" not in p["metadata"]]
        ready = sum(_ready(p) for p in live)
        available = ready >= dep.replicas
        status: dict[str, Any] = {"observedGeneration": 1, "replicas": len(live), "updatedReplicas": len(live),
                                  "conditions": [{"type": "Available", "status": "True" if available else "False",
                                                  "reason": "MinimumReplicasAvailable" if available
                                                  else "MinimumReplicasUnavailable"}]}  # fmt: skip
        if ready:
            status |= {"readyReplicas": ready, "availableReplicas": ready}
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": dep.name, "namespace": self.namespace, "generation": 1, "labels": dict(dep.labels),
                         **({"annotations": dict(dep.annotations)} if dep.annotations else {})},
            "spec": {
                "replicas": dep.replicas,
                "selector": {"matchLabels": dict(dep.labels)},
                "strategy": {"type": "Recreate"},
                "template": {"metadata": {"labels": dict(dep.labels)},
                             "spec": {"containers": [{"name": "tgi", "image": "simulated"}]}},
            },
            "status": status,
        }  # fmt: skip

    def _scale_object(self, dep: FakeDeployment) -> dict[str, Any]:
        live = sum(p.deleted_at is None for p in dep.pods)
        return {
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": dep.name, "namespace": self.namespace},
            "spec": {"replicas": dep.replicas},
            "status": {"replicas": live, "selector": ",".join(f"{k}={v}" for k, v in dep.labels.items())},
        }  # fmt: skip

    async def scale(self, dep: FakeDeployment, replicas: int) -> None:
        """What the controller does on a scale: pods come and go, the hook is told."""
        self._reap(dep)
        dep.replicas = replicas
        live = [p for p in dep.pods if p.deleted_at is None]
        for pod in live[replicas:]:
            pod.deleted_at = time.monotonic()
        dep.pods.extend(dep.new_pod() for _ in range(replicas - len(live)))
        if dep.on_scale is not None:
            result = dep.on_scale(replicas)
            if inspect.isawaitable(result):
                await result

    # -- handlers --

    async def _get_deployment(self, request: web.Request) -> web.Response:
        dep = self._lookup(request, "read")
        if isinstance(dep, web.Response):
            return dep
        return web.json_response(await self._deployment_object(dep))

    async def _patch_deployment(self, request: web.Request) -> web.Response:
        dep = self._lookup(request, "patch")
        if isinstance(dep, web.Response):
            return dep
        if (refused := patch_annotations(dep.annotations, await request.json())) is not None:
            return self._status(422, "Invalid", refused)
        return web.json_response(await self._deployment_object(dep))

    async def _get_scale(self, request: web.Request) -> web.Response:
        dep = self._lookup(request, "read_scale")
        if isinstance(dep, web.Response):
            return dep
        return web.json_response(self._scale_object(dep))

    async def _set_scale(self, request: web.Request) -> web.Response:
        dep = self._lookup(request, "scale")
        if isinstance(dep, web.Response):
            return dep
        body = await request.json()
        replicas: Any = None
        if isinstance(body, list):  # JSON patch
            for op in body:
                if op.get("path") == "/spec/replicas" and op.get("op") in ("replace", "add"):
                    replicas = op.get("value")
        elif isinstance(body, dict):  # merge / strategic merge patch, or PUT of a Scale
            replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            return self._status(422, "Invalid", f"spec.replicas: Invalid value: {replicas!r}")
        await self.scale(dep, replicas)
        return web.json_response(self._scale_object(dep))

    async def _list_pods(self, request: web.Request) -> web.Response:
        operator = request.match_info["ns"] == self.operator_namespace != self.namespace
        if (refused := self._refused(f"list_pods:{self.operator_namespace}" if operator else "list_pods")) is not None:
            return refused
        wanted = _selector(request)
        if operator:
            items = self._operator_pod_objects()
        else:
            items = [p for dep in self.deployments.values() for p in await self._pod_objects(dep)]
        items = [p for p in items if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
        return web.json_response({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

    async def _list_nodes(self, request: web.Request) -> web.Response:
        if (refused := self._refused("list_nodes")) is not None:
            return refused
        wanted = _selector(request)
        items = [n.to_object() for n in self.nodes if all(n.labels.get(k) == v for k, v in wanted.items())]
        return web.json_response({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items})

    async def _who_am_i(self, request: web.Request) -> web.Response:
        if (refused := self._refused("selfsubjectreview")) is not None:
            return refused
        return web.json_response({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                                  "metadata": {"creationTimestamp": None}, "status": {"userInfo": self.user}})  # fmt: skip

    def _owner(self, pod_name: str) -> FakeDeployment | None:
        return next((d for d in self.deployments.values() if any(p.name == pod_name for p in d.pods)), None)

    async def _log(self, request: web.Request) -> web.Response:
        if (refused := self._refused("read_log")) is not None:
            return refused
        name, container = request.match_info["pod"], request.query.get("container", "tgi")
        dep = self._owner(name)
        if dep is None:
            return self._status(404, "NotFound", f'pods "{name}" not found')
        pod = next(p for p in dep.pods if p.name == name)
        trouble, previous = dep.trouble, request.query.get("previous") == "true"
        if container == GATE and dep.after and not pod.initialized:
            text = await self._gate_log(dep)
        elif container != "tgi":
            return self._status(400, "BadRequest", f"container {container} is not valid for pod {name}")
        elif trouble is not None and trouble.kind == "crash-loop":  # the last run, and the one before: the same
            text = trouble.log
        elif previous:
            return self._status(400, "BadRequest", f'previous terminated container "tgi" in pod "{name}" not found')
        elif trouble is not None or (dep.after and not pod.initialized):
            why = trouble.reason if trouble is not None and trouble.kind == "waiting" else "PodInitializing"
            return self._status(400, "BadRequest", f'container "tgi" in pod "{name}" is waiting to start: {why}')
        else:
            text = dep.log
        tail = int(request.query.get("tailLines", "0") or 0)
        lines = text.splitlines(keepends=True)
        return web.Response(text="".join(lines[-tail:] if tail else lines), content_type="text/plain")

    async def _gate_log(self, dep: FakeDeployment) -> str:
        return gate_log(dep.after, {key: dep.gate_reaches and await self._ready_pods(self.deployments[key]) > 0
                                    for key in dep.after})  # fmt: skip

    async def _events(self, request: web.Request) -> web.Response:
        if (refused := self._refused("list_events")) is not None:
            return refused
        wanted = dict(kv.split("=", 1) for kv in request.query.get("fieldSelector", "").split(",") if "=" in kv)
        name = wanted.get("involvedObject.name")
        items = [e for dep in self.deployments.values() for pod in dep.pods if name in (None, pod.name)
                 for e in trouble_events(dep.trouble, pod.name, self.namespace)]  # fmt: skip
        return web.json_response({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items})

    async def _portforward(self, request: web.Request) -> web.StreamResponse:
        if "portforward" in self.errors:
            return self._status(self.errors["portforward"], "Forbidden", "injected error for portforward")
        pod_name = request.match_info["pod"]
        dep = next((d for d in self.deployments.values() if any(p.name == pod_name and p.deleted_at is None for p in d.pods)), None)
        if dep is None or dep.backend is None:
            return self._status(404, "NotFound", f'pods "{pod_name}" not found')
        port = int(request.query.get("ports", str(dep.container_port)).split(",")[0])
        return await serve_portforward(request, dep.backend, port)


def _ready(pod: dict[str, Any]) -> bool:
    """Running, with its Ready condition True (as the Deployment controller counts it)."""
    conditions = pod["status"].get("conditions") or []
    return pod["status"]["phase"] == "Running" and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _selector(request: web.Request) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in request.query.get("labelSelector", "").split(",") if "=" in kv)
