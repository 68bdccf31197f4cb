"""A fake Kubernetes API server on 127.0.0.1: just the calls the benchmark makes, so tests and
the demo run the real ``kubernetes`` client code path (kubeconfig, auth header, URLs,
(de)serialisation, port-forward websocket) against simulated models.

Served (``apps/v1`` and ``v1``; answers shaped like the API server's):
  GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}            Deployment
  PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}            merge / strategic-merge / JSON patch of
                                                                    metadata.annotations only (null removes)
  GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}/status     Deployment
  GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale      autoscaling/v1 Scale
  PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale      merge / strategic-merge / JSON patch
  PUT   /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale      Scale
  GET   /api/v1/namespaces/{ns}/pods?labelSelector=k=v,...          PodList
  GET   /api/v1/namespaces/{ns}/pods/{pod}/portforward?ports=P      websocket, v4.channel.k8s.io

Pods are bookkeeping: scaling up adds pods, scaling down marks the surplus terminating for
``terminate_s`` before they vanish (as a real pod holds its GPU memory until it is gone).
A pod is Ready when its backend answers ``GET /health`` with 200, the way the Deployment's
readiness probe decides; ``readyReplicas``/``availableReplicas`` follow. A new pod of a
Deployment with ``after`` set waits (as the stack's start-order init container does) until
those have a ready pod; ``failed_pods`` lists finished (evicted) pods beside the live ones.
Each Deployment's ``on_scale(n)`` hook (e.g. a simulated model's ``set_replicas``) is
called on every scale.
The port-forward streams a pod's port to the Deployment's backend over the websocket
channel protocol the client speaks (data channel 0, error channel 1, each opened by a frame
carrying the port number, little-endian: kubernetes ``stream/ws_client.py`` ``PortForward``).

Only bearer-token auth is checked (``kubeconfig()`` hands out a matching config).
``errors`` maps an operation name (``read``, ``patch``, ``read_scale``, ``scale``, ``list_pods``,
``portforward``) to an HTTP status the server answers it with, to test API failures.
``calls`` logs ``(method, path)`` of every request.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

__all__ = ["FakeDeployment", "FakeKubeApi"]

PORTFORWARD_PROTOCOL = "v4.channel.k8s.io"


@dataclass
class _Pod:
    name: str
    deleted_at: float | None = None  # time.monotonic() when scaled away
    initialized: bool = False  # its init containers are done (the start-order gate passed)


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
    failed_pods: int = 0  # finished pods the selector still lists (e.g. evicted), phase Failed
    labels: dict[str, str] = field(default_factory=dict)  # selector labels; default app=<name>
    annotations: dict[str, str] = field(default_factory=dict)  # the Deployment's metadata.annotations
    pods: list[_Pod] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = self.labels or {"app.kubernetes.io/name": self.name}
        self.pods = [self._new_pod() for _ in range(self.replicas)]
        for pod in self.pods:  # found running: initialised long ago
            pod.initialized = True

    def _new_pod(self) -> _Pod:
        return _Pod(f"{self.name}-{secrets.token_hex(5)}-{secrets.token_hex(3)[:5]}")


def _ts(t: float | None = None) -> str:
    return datetime.fromtimestamp(t if t is not None else time.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubeApi:
    """``async with FakeKubeApi(namespace, deployments) as api:`` serves on ``api.url``."""

    def __init__(
        self,
        namespace: str,
        deployments: list[FakeDeployment],
        *,
        terminate_s: float = 0.2,
        token: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.deployments = {d.name: d for d in deployments}
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
        if request.match_info.get("ns", self.namespace) != self.namespace:
            return self._status(404, "NotFound", f'namespaces "{request.match_info["ns"]}" not found')
        return await handler(request)

    @staticmethod
    def _status(code: int, reason: str, message: str) -> web.Response:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}  # fmt: skip
        return web.json_response(body, status=code)

    def _lookup(self, request: web.Request, op: str) -> FakeDeployment | web.Response:
        if op in self.errors:
            code = self.errors[op]
            return self._status(code, "Forbidden" if code == 403 else "InternalError", f"injected error for {op}")
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
        objects = [p for p in await self._pod_objects(dep) if p["status"]["phase"] == "Running"]
        return sum(p["status"]["conditions"][0]["status"] == "True" for p in objects)

    async def _pod_objects(self, dep: FakeDeployment) -> list[dict[str, Any]]:
        self._reap(dep)
        healthy = await self._backend_ready(dep)
        waiting = [p for p in dep.pods if not p.initialized and p.deleted_at is None]
        if waiting and all([await self._ready_pods(self.deployments[name]) > 0 for name in dep.after]):
            for pod in waiting:
                pod.initialized = True
        out = [{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{dep.name}-evicted-{i}", "namespace": self.namespace, "labels": dict(dep.labels)},
            "spec": {"containers": [{"name": "tgi", "image": "simulated"}]},
            "status": {"phase": "Failed", "reason": "Evicted"},
        } for i in range(dep.failed_pods)]  # fmt: skip
        for pod in dep.pods:
            ready = healthy and pod.deleted_at is None and pod.initialized
            meta: dict[str, Any] = {"name": pod.name, "namespace": self.namespace, "labels": dict(dep.labels)}
            if pod.deleted_at is not None:
                meta["deletionTimestamp"] = _ts()
            out.append({
                "apiVersion": "v1", "kind": "Pod", "metadata": meta,
                "spec": {"containers": [{"name": "tgi", "image": "simulated",
                                         "ports": [{"containerPort": dep.container_port}]}]},
                "status": {"phase": "Running",
                           "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
            })  # fmt: skip
        return out

    async def _deployment_object(self, dep: FakeDeployment) -> dict[str, Any]:
        pods = [p for p in await self._pod_objects(dep) if p["status"]["phase"] == "Running"]
        live = [p for p in pods if "deletionTimestamp" not in p["metadata"]]
        ready = sum(p["status"]["conditions"][0]["status"] == "True" for p in live)
        status: dict[str, Any] = {"observedGeneration": 1, "replicas": len(live), "updatedReplicas": len(live)}
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
        dep.pods.extend(dep._new_pod() for _ in range(replicas - len(live)))
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
        body = await request.json()
        prefix = "/metadata/annotations/"
        changes: dict[str, Any] = {}
        if isinstance(body, list):  # JSON patch: add / replace / remove of single annotations
            for op in body:
                path = str(op.get("path", ""))
                if not path.startswith(prefix) or op.get("op") not in ("add", "replace", "remove"):
                    return self._status(422, "Invalid", f"the fake API patches only {prefix}<key>, got {op!r}")
                key = path[len(prefix):].replace("~1", "/").replace("~0", "~")
                changes[key] = None if op["op"] == "remove" else op.get("value")
        elif isinstance(body, dict) and set(body) == {"metadata"} and set(body["metadata"] or {}) == {"annotations"}:
            changes = dict(body["metadata"]["annotations"] or {})
        else:
            return self._status(422, "Invalid", f"the fake API patches only metadata.annotations, got {body!r}")
        if not all(v is None or isinstance(v, str) for v in changes.values()):
            return self._status(422, "Invalid", f"metadata.annotations: values must be strings, got {changes!r}")
        for key, value in changes.items():
            if value is None:
                dep.annotations.pop(key, None)
            else:
                dep.annotations[key] = value
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
        if "list_pods" in self.errors:
            return self._status(self.errors["list_pods"], "Forbidden", "injected error for list_pods")
        wanted = dict(kv.split("=", 1) for kv in request.query.get("labelSelector", "").split(",") if "=" in kv)
        items = []
        for dep in self.deployments.values():
            if all(dep.labels.get(k) == v for k, v in wanted.items()):
                items += await self._pod_objects(dep)
        return web.json_response({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

    async def _portforward(self, request: web.Request) -> web.StreamResponse:
        if "portforward" in self.errors:
            return self._status(self.errors["portforward"], "Forbidden", "injected error for portforward")
        pod_name = request.match_info["pod"]
        dep = next((d for d in self.deployments.values() if any(p.name == pod_name and p.deleted_at is None for p in d.pods)), None)
        if dep is None or dep.backend is None:
            return self._status(404, "NotFound", f'pods "{pod_name}" not found')
        port = int(request.query.get("ports", str(dep.container_port)).split(",")[0])
        ws = web.WebSocketResponse(protocols=(PORTFORWARD_PROTOCOL,))
        await ws.prepare(request)
        header = port.to_bytes(2, "little")
        await ws.send_bytes(b"\x00" + header)  # data channel opened
        await ws.send_bytes(b"\x01" + header)  # error channel opened
        target = urlsplit(dep.backend)
        try:
            reader, writer = await asyncio.open_connection(target.hostname, target.port)
        except OSError as e:
            await ws.send_bytes(b"\x01" + f"connection refused to port {port}: {e}".encode())
            await ws.close()
            return ws

        async def upstream() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x00":
                    writer.write(msg.data[1:])
                    await writer.drain()
            writer.close()

        async def downstream() -> None:
            while chunk := await reader.read(65536):
                await ws.send_bytes(b"\x00" + chunk)
            await ws.close()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            if not ws.closed:
                await ws.close()
        return ws
