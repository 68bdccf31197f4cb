"""One simulated TGI Deployment (``SimulatedModel``): its HTTP server on 127.0.0.1
(``benchmark.sim.http``) and its replicas, each a continuous-batching engine
(``benchmark.sim.batching``) on the shared ``SimulatedGpu``."""
from __future__ import annotations

import asyncio
import itertools
import math
import time
from typing import TYPE_CHECKING

from aiohttp import web

from benchmark.sim.batching import Replica
from benchmark.sim.faults import FaultPlan
from benchmark.sim.gpu import SimulatedGpu
from benchmark.sim.http import build_app
from benchmark.sim.metrics import ModelMetrics
from benchmark.sim.spec import ModelSpec

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["SimulatedModel"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
LISTEN_BACKLOG = 1024

class SimulatedModel:
    """One simulated TGI Deployment: its HTTP server on 127.0.0.1 and its replicas.

    ``async with SimulatedModel(spec, gpu) as model:`` starts it (``model.base_url``);
    ``await model.set_replicas(n)`` scales it: 0 stops listening (the port refuses) and
    drops in-flight requests; more replicas warm up for ``spec.warmup_s`` (scaled) before
    /health answers 200 and requests are served.
    """

    def __init__(self, spec: ModelSpec, gpu: SimulatedGpu, *, replicas: int = 1) -> None:
        _check_replicas(replicas)
        self.spec = spec
        self.gpu = gpu
        self.metrics = ModelMetrics(max_input_tokens=spec.max_input_tokens, max_total_tokens=spec.max_total_tokens)
        self.faults = FaultPlan(spec.faults)
        self.replicas: list[Replica] = []
        self._target_replicas = replicas
        self._next_index = itertools.count()
        self._rr = itertools.count()
        self._scaling = asyncio.Lock()  # one scale at a time: a scale may stop and start the listener
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.host = "127.0.0.1"
        self.port: int | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 picks a free port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError(f"simulated model {self.spec.key!r} is already started at {self.base_url}")
        if host not in _LOOPBACK:
            raise ValueError(f"host: got {host!r}; allowed: a loopback address ({', '.join(_LOOPBACK)})")

        self.host = host
        self._runner = web.AppRunner(build_app(self), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await self._listen(port)
        target, self._target_replicas = self._target_replicas, 0
        await self.set_replicas(target)
        return self.base_url

    async def stop(self) -> None:
        await self._scale_to(0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> SimulatedModel:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"simulated model {self.spec.key!r} has not been started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- scaling ---------------------------------------------------------------------

    @property
    def replica_count(self) -> int:
        return len(self.replicas)

    @property
    def ready(self) -> bool:
        return any(r.ready for r in self.replicas)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once a replica has warmed up (/health answers 200)."""
        deadline = time.perf_counter() + timeout
        while not self.ready:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"simulated model {self.spec.key!r} not ready after {timeout:g} s")
            await asyncio.sleep(0.002)

    async def set_replicas(self, n: int) -> None:
        """Scale to ``n`` replicas (the fake Kubernetes API's scale hook)."""
        _check_replicas(n)
        if self._runner is None:  # not started: remembered for start()
            self._target_replicas = n
            return
        async with self._scaling:
            if n > 0 and self._site is None:
                assert self.port is not None
                await self._listen(self.port)
            await self._scale_to(n)
            if n == 0 and self._site is not None:
                await self._site.stop()
                self._site = None

    async def _scale_to(self, n: int) -> None:
        while len(self.replicas) > n:
            await self.replicas.pop().stop()
        while len(self.replicas) < n:
            self.replicas.append(Replica(self, next(self._next_index)))

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        # TGI's router listens with tokio's TcpListener::bind, whose backlog is 1024 (mio's
        # default); aiohttp's is 128, which drops SYNs of a burst of connects (retried after 1 s)
        self._site = web.TCPSite(self._runner, self.host, port, reuse_address=True, backlog=LISTEN_BACKLOG)
        await self._site.start()
        if self.port is None:
            self.port = int(self._runner.addresses[-1][1])

    def pick_replica(self) -> Replica | None:
        """The next ready replica, round-robin (as a Service spreads connections)."""
        ready = [r for r in self.replicas if r.ready]
        return ready[next(self._rr) % len(ready)] if ready else None

    # --- model stand-ins -------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """The tokenizer stand-in: ``chars_per_token`` characters per token, at least 1."""
        return max(1, math.ceil(len(text) / self.spec.chars_per_token))

    def gauges(self) -> dict[str, float]:
        return {
            "tgi_batch_current_size": sum(len(r.running) for r in self.replicas),
            "tgi_batch_current_max_tokens": sum(r.batch_tokens for r in self.replicas),
            "tgi_batch_max_total_tokens": self.spec.max_batch_total_tokens,
            "tgi_queue_size": sum(len(r.waiting) for r in self.replicas),
        }


def _check_replicas(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 64:
        raise ValueError(f"replicas: got {n!r}; allowed: an integer from 0 to 64")
