"""The Kubernetes calls the benchmark makes: read, scale and watch the models' Deployments,
find a pod to port-forward to; and what ``doctor`` reads (who we are, the nodes, pods of a
namespace, a container's log, a pod's events) as the API's own JSON.

It uses the maintained ``kubernetes`` client with the stack's kubeconfig loaded in memory
(never written out by this module). The client is synchronous: every call runs in a
thread (``asyncio.to_thread``), so the event loop that drives the load never blocks on it.
Every API failure becomes a one-line ``BenchmarkError`` naming the call, the object and
the namespace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import portforward

from benchmark.engine.progress import LongWait
from benchmark.errors import BenchmarkError

__all__ = ["DeploymentState", "Kube", "KubeApiError", "REQUEST_TIMEOUT"]

REQUEST_TIMEOUT = 30.0  # s per API call: the client's default is to wait forever

T = TypeVar("T")


class KubeApiError(BenchmarkError):
    """The API server answered a call with an HTTP error; ``status`` is its code (403: not allowed)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, kw_only=True)
class DeploymentState:
    """A Deployment as the API reports it, plus the pods its selector matches."""

    name: str
    replicas: int  # spec.replicas: what is asked for
    ready: int  # status.readyReplicas
    available: int  # status.availableReplicas
    pods: int  # live pods of its selector, terminating ones included (they still hold GPU memory);
    # finished ones (phase Succeeded/Failed, e.g. evicted) hold nothing and are not counted
    ready_pods: tuple[str, ...]  # names of running, ready, not terminating pods

    def settled(self, replicas: int) -> bool:
        """True when it runs exactly ``replicas`` pods, all ready and available."""
        if replicas == 0:
            return self.pods == 0
        return (
            self.replicas == replicas
            and self.ready >= replicas
            and self.available >= replicas
            and self.pods == replicas
            and len(self.ready_pods) == replicas
        )

    def describe(self) -> str:
        return (
            f"spec {self.replicas}, ready {self.ready}, available {self.available}, "
            f"pods {self.pods} ({len(self.ready_pods)} ready)"
        )


class _Captured(logging.Handler):
    """Collects log messages (one line each) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


def _pod_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status is None:
        return False
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])
    )


class Kube:
    """Deployment get/scale/status in one namespace, with the stack's kubeconfig."""

    def __init__(self, kubeconfig: Mapping[str, Any], namespace: str, *, context: str | None = None) -> None:
        self.namespace = namespace
        cfg = client.Configuration()
        # The loader runs the kubeconfig's credential command (pulumi-eks: `aws eks get-token`)
        # and reports its failure only with logging.error on the root logger: keep that for
        # our own one-line message instead of letting logging print it.
        captured = _Captured()
        logging.getLogger().addHandler(captured)
        try:
            config.load_kube_config_from_dict(
                dict(kubeconfig), context=context, client_configuration=cfg, persist_config=False
            )
        except (ConfigException, KeyError, TypeError, ValueError) as e:
            raise BenchmarkError(f"the stack's kubeconfig cannot be loaded: {e}") from None
        finally:
            logging.getLogger().removeHandler(captured)
        self.credential_error = "; ".join(captured.messages)
        cfg.retries = 1  # urllib3's default of 3 retries triples the wait on an unreachable API
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # no "Retrying" lines
        self.host = cfg.host
        self.config = cfg
        self.api_client = client.ApiClient(cfg)
        self.apps = client.AppsV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.authn = client.AuthenticationV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()

    # -- plumbing: every call goes through here --

    def _call(self, what: str, fn: Callable[[], T], *, namespace: str | None = "") -> T:
        """``fn()``, its failure a one-line error naming ``what`` and where: ``namespace`` ("": the
        models'; None: a cluster-scoped call)."""
        where = f" in namespace {namespace or self.namespace!r}" if namespace is not None else ""
        try:
            return fn()
        except ApiException as e:
            status, detail, body = e.status, e.reason or "", e.body or ""
            handshake = re.match(r"Handshake status (\d+) ([^-]*)-\+-\+- .* -\+-\+- (.*)$", detail, re.S)
            if status == 0 and handshake:  # a websocket (port-forward) refused: status and body in reason
                status, detail, body = int(handshake[1]), handshake[2].strip(), handshake[3]
            try:
                detail = json.loads(body)["message"]
            except (ValueError, KeyError, TypeError):
                pass
            hint = {
                401: " (credentials rejected: the stack's kubeconfig runs `aws eks get-token` with your AWS credentials"
                + (f", which failed: {self.credential_error}" if self.credential_error else "") + ")",
                403: " (your identity lacks this permission; the README lists the ones the benchmark needs)",
            }.get(status or 0, "")
            raise KubeApiError(f"Kubernetes API: {what}{where} failed: HTTP {status}: {detail}{hint}", status or 0) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            cause = getattr(e, "reason", None) or e  # MaxRetryError wraps the connection error
            raise BenchmarkError(f"Kubernetes API at {self.host}: {what} failed: {cause}") from None

    async def _run(self, what: str, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(self._call, what, fn)

    # -- synchronous API (also used by the restore path and the port-forward threads) --

    def replicas_sync(self, deployment: str) -> int:
        scale = self._call(
            f"reading the scale of deployment {deployment!r}",
            lambda: self.apps.read_namespaced_deployment_scale(deployment, self.namespace, _request_timeout=REQUEST_TIMEOUT),
        )
        return int((scale.spec.replicas if scale.spec else 0) or 0)

    def scale_sync(self, deployment: str, replicas: int) -> None:
        self._call(
            f"scaling deployment {deployment!r} to {replicas}",
            lambda: self.apps.patch_namespaced_deployment_scale(
                deployment, self.namespace, {"spec": {"replicas": replicas}}, _request_timeout=REQUEST_TIMEOUT
            ),
        )

    def annotation_sync(self, deployment: str, key: str) -> str | None:
        """The Deployment's annotation ``key`` (None when it has none)."""
        dep = self._call(
            f"reading deployment {deployment!r}",
            lambda: self.apps.read_namespaced_deployment(deployment, self.namespace, _request_timeout=REQUEST_TIMEOUT),
        )
        return ((dep.metadata.annotations if dep.metadata else None) or {}).get(key)

    def annotate_sync(self, deployment: str, key: str, value: str | None) -> None:
        """Set the Deployment's annotation ``key`` to ``value``, or remove it (``None``): a merge
        patch of ``metadata.annotations`` only."""
        self._call(
            f"{'removing' if value is None else 'writing'} annotation {key!r} of deployment {deployment!r}",
            lambda: self.apps.patch_namespaced_deployment(
                deployment, self.namespace, {"metadata": {"annotations": {key: value}}}, _request_timeout=REQUEST_TIMEOUT
            ),
        )

    def state_sync(self, deployment: str) -> DeploymentState:
        dep = self._call(
            f"reading deployment {deployment!r}",
            lambda: self.apps.read_namespaced_deployment_status(deployment, self.namespace, _request_timeout=REQUEST_TIMEOUT),
        )
        selector_obj = dep.spec.selector if dep.spec else None
        labels = (selector_obj.match_labels if selector_obj else None) or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods = self._call(
            f"listing the pods of deployment {deployment!r} ({selector})",
            lambda: self.core.list_namespaced_pod(self.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT),
        ).items
        status = dep.status
        return DeploymentState(
            name=deployment,
            replicas=int(dep.spec.replicas or 0),
            ready=int(status.ready_replicas or 0) if status else 0,
            available=int(status.available_replicas or 0) if status else 0,
            pods=sum(1 for p in pods if not (p.status and p.status.phase in ("Succeeded", "Failed"))),
            ready_pods=tuple(p.metadata.name for p in pods if p.metadata and p.metadata.name and _pod_ready(p)),
        )

    def portforward_socket(self, pod: str, port: int) -> socket.socket:
        """A new port-forward websocket to ``pod:port``; returns our end of its socket pair.

        ``kubernetes.stream.portforward`` swaps the ApiClient's ``call_api`` while it runs,
        which is not thread-safe: each call gets its own ApiClient.
        """
        api_client = client.ApiClient(self.config)
        try:
            pf = self._call(
                f"port-forwarding to pod {pod!r} port {port}",
                lambda: portforward(
                    client.CoreV1Api(api_client).connect_get_namespaced_pod_portforward,
                    pod, self.namespace, ports=str(port),
                ),
            )  # fmt: skip
        finally:
            api_client.close()
        wrapped = pf.socket(port)  # the client's wrapper of one end of a socketpair
        sock = socket.fromfd(wrapped.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
        wrapped.close()
        sock.setblocking(False)
        return sock

    # -- what doctor reads: the API's JSON as it came (the fields the API reference names) --

    def _json(self, what: str, fn: Callable[..., Any], *args: Any, namespace: str | None = "", **kwargs: Any) -> Any:
        response = self._call(what, lambda: fn(*args, **kwargs, _preload_content=False,
                                               _request_timeout=REQUEST_TIMEOUT), namespace=namespace)  # fmt: skip
        return json.loads(response.data)

    def who_am_i(self) -> dict[str, Any]:
        """``status.userInfo`` of a SelfSubjectReview (``authentication.k8s.io/v1``): the username,
        uid, groups and extra the API server authenticated this client as."""
        review = client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
        body = self._json("creating a SelfSubjectReview (who am I)", self.authn.create_self_subject_review, review,
                          namespace=None)  # fmt: skip
        return dict((body.get("status") or {}).get("userInfo") or {})

    def nodes(self, label_selector: str) -> list[dict[str, Any]]:
        """The nodes carrying these labels (``k=v,...``)."""
        what = f"listing the nodes ({label_selector})"
        return list(self._json(what, self.core.list_node, label_selector=label_selector, namespace=None)["items"])

    def pods(self, namespace: str = "", label_selector: str | None = None) -> list[dict[str, Any]]:
        """The pods of ``namespace`` (the models' by default), those of ``label_selector`` if given."""
        what = "listing the pods" + (f" ({label_selector})" if label_selector else "")
        return list(self._json(what, self.core.list_namespaced_pod, namespace or self.namespace,
                               label_selector=label_selector, namespace=namespace)["items"])  # fmt: skip

    def deployment(self, name: str) -> dict[str, Any]:
        return dict(self._json(f"reading deployment {name!r}", self.apps.read_namespaced_deployment_status, name,
                               self.namespace))  # fmt: skip

    def pod_log(self, pod: str, container: str, *, previous: bool = False, tail_lines: int = 200) -> str:
        """The last ``tail_lines`` lines of a container's log (``previous``: of its last terminated run)."""
        what = f"reading the log of container {container!r} of pod {pod!r}" + (" (previous run)" if previous else "")
        response = self._call(what, lambda: self.core.read_namespaced_pod_log(
            pod, self.namespace, container=container, previous=previous, tail_lines=tail_lines,
            _preload_content=False, _request_timeout=REQUEST_TIMEOUT))  # fmt: skip
        data: bytes = getattr(response, "data")  # the raw response: its declared type is the decoded text
        return data.decode("utf-8", "replace")

    def events(self, pod: str) -> list[dict[str, Any]]:
        """The events about ``pod`` (core/v1 Events: ``reason``, ``type``, ``message``...)."""
        return list(self._json(f"listing the events of pod {pod!r}", self.core.list_namespaced_event, self.namespace,
                               field_selector=f"involvedObject.name={pod}")["items"])  # fmt: skip

    # -- async API --

    async def replicas(self, deployment: str) -> int:
        """The Deployment's ``spec.replicas`` as the cluster has it now."""
        return await asyncio.to_thread(self.replicas_sync, deployment)

    async def scale(self, deployment: str, replicas: int) -> None:
        await asyncio.to_thread(self.scale_sync, deployment, replicas)

    async def state(self, deployment: str) -> DeploymentState:
        return await asyncio.to_thread(self.state_sync, deployment)

    async def annotation(self, deployment: str, key: str) -> str | None:
        return await asyncio.to_thread(self.annotation_sync, deployment, key)

    async def annotate(self, deployment: str, key: str, value: str | None) -> None:
        await asyncio.to_thread(self.annotate_sync, deployment, key, value)

    async def wait_settled(
        self,
        deployment: str,
        replicas: int,
        *,
        timeout: float,
        poll: float = 1.0,
        log: Callable[[str], None] | None = None,
        why: str = "",
        every: float = 15.0,
    ) -> DeploymentState:
        """Wait until the Deployment runs exactly ``replicas`` ready pods (0: no pod left);
        ``log`` hears every ``every`` seconds of waiting what is waited for (and ``why``), for
        how long so far, the limit and how the Deployment stands."""
        goal = "no pod left (terminating pods included)" if replicas == 0 else f"{replicas} ready, available pod(s)"
        wait = LongWait(f"deployment {deployment} to have {goal}{f' ({why})' if why else ''}", timeout=timeout,
                        log=log, every=every)  # fmt: skip
        while True:
            state = await self.state(deployment)
            if state.settled(replicas):
                return state
            if wait.expired():
                raise BenchmarkError(
                    f"timed out after {timeout:g} s waiting for deployment {deployment!r} to have {goal}; "
                    f"now: {state.describe()} (raise --ready-timeout, or check `kubectl -n {self.namespace} "
                    f"describe deployment {deployment}`)"
                )
            wait.note(f"now: {state.describe()}")
            await asyncio.sleep(min(poll, wait.left()))
