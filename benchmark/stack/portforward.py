"""Reaching the models: the benchmark's own port-forwards and the access path's measured overhead
(``--endpoint`` overrides are parsed in ``benchmark.commands.flags``).

``PortForward`` listens on 127.0.0.1 (a free port) and carries every accepted connection
to a pod's port over its own Kubernetes port-forward websocket, opened with the
``kubernetes`` client (``kubernetes.stream.portforward``), the way ``kubectl port-forward``
opens one stream per connection. It is opened and closed by the benchmark: no ``kubectl``
in another terminal. A port-forward adds latency of its own (API server, websocket
framing, a proxy thread), so ``health_rtt`` measures the median ``GET /health`` round trip
through whichever path is used, for the report to state next to the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from benchmark.errors import BenchmarkError
from workloads.contract import ModelContract

if TYPE_CHECKING:  # the kubernetes client only where a cluster is reached
    from benchmark.stack.kube import Kube

__all__ = ["PortForward", "open_port_forward"]


async def open_port_forward(kube: Kube, model: ModelContract, tunnels: contextlib.AsyncExitStack) -> str:
    """A local URL that reaches a ready pod of ``model``'s Deployment, closed with ``tunnels``."""
    state = await kube.state(model.deployment)
    if not state.ready_pods:
        raise BenchmarkError(
            f"model {model.key!r}: deployment {model.deployment!r} has no ready pod to port-forward to "
            f"({state.describe()}); is it scaled to 0? use --scenarios all, or scale it up"
        )
    pod = state.ready_pods[0]
    # one port-forward now, so a refusal (RBAC, a pod gone) is reported as such, not as a timeout
    (await asyncio.to_thread(kube.portforward_socket, pod, model.port)).close()
    return await tunnels.enter_async_context(PortForward(kube, pod, model.port))


class PortForward:
    """``async with PortForward(kube, pod, port) as url:`` a local URL that reaches ``pod:port``."""

    def __init__(self, kube: Kube, pod: str, port: int) -> None:
        self.kube, self.pod, self.port = kube, pod, port
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self.url

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                sock = await asyncio.to_thread(self.kube.portforward_socket, self.pod, self.port)
            except BenchmarkError:
                return  # the HTTP client sees the connection close and records the failure
            pod_r, pod_w = await asyncio.open_connection(sock=sock)
            try:
                await asyncio.gather(_pump(client_r, pod_w), _pump(pod_r, client_w))
            finally:
                pod_w.close()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            client_w.close()
            self._tasks.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        if writer.can_write_eof():
            try:
                writer.write_eof()
            except OSError:
                pass
