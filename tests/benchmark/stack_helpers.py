"""Shared by the stack-run tests: a contract builder and a minimal model backend (the background
event loop for servers that outlive one ``asyncio.run`` is ``benchmark.sim.background``)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web


def model_entry(key: str, *, start_order: int, enabled: bool = True, replicas: int = 1, **extra: Any) -> dict[str, Any]:
    """One model of the contract, shaped as workloads/contract.py exports it."""
    return {
        "model_id": f"org/{key}", "deployment": key, "service": key, "port": 8080,
        "enabled": enabled, "replicas": replicas if enabled else 0, "start_order": start_order, "api": "tgi",
        "max_input_tokens": 256, "max_total_tokens": 512, "max_batch_total_tokens": 8192,
        "cuda_memory_fraction": 0.4, "planned_kv_tokens": 20000, **extra,
    }  # fmt: skip


def outputs(models: dict[str, dict[str, Any]], *, kubeconfig: Any = None, version: int = 1) -> dict[str, Any]:
    """What `pulumi stack output --json --show-secrets` prints for a stack of this project."""
    return {
        "contract": {
            "version": version,
            "cluster": {"name": "gpusharing-demo", "region": "us-west-2"},
            "namespace": "llm-testing",
            "gpu": {"instance_type": "g6e.2xlarge", "gpu_model": "NVIDIA L40S", "memory_gib": 44.39,
                    "sharing": {"strategy": "time-slicing", "replicas": 10}},
            "models": models,
        },
        "kubeconfig": kubeconfig,
        "clusterName": "gpusharing-demo",
        "region": "us-west-2",
    }  # fmt: skip


class HealthBackend:
    """A stand-in pod backend: GET /health is 200 while scaled up (``warmup`` s after a scale up
    from 0), 503 at 0 replicas and while warming up."""

    def __init__(self, replicas: int = 1, *, warmup: float = 0.0) -> None:
        self.replicas = replicas
        self.warmup = warmup
        self.started = 0.0  # time.monotonic() of the last scale up from 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    def set_replicas(self, n: int) -> None:
        if n > 0 and self.replicas == 0:
            self.started = time.monotonic()
        self.replicas = n

    async def _health(self, request: web.Request) -> web.Response:
        warm = time.monotonic() - self.started >= self.warmup
        return web.Response(status=200 if self.replicas > 0 and warm else 503)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
