"""What the benchmark asks a model's server before it measures it: is it ready (``GET /health``,
with a deadline), what does one round trip through the access path cost (the median of
``GET /health``), what is it (``GET /info``: TGI's fields, and the simulator's ``"simulated"``),
and which model names does it serve (OpenAI's ``GET /v1/models``)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from benchmark.engine.progress import LongWait
from benchmark.errors import BenchmarkError

__all__ = ["health_rtt", "read_info", "served_models", "wait_healthy"]


async def health_rtt(session: aiohttp.ClientSession, url: str, *, samples: int = 20) -> float:
    """Median ``GET /health`` round trip in seconds through ``url`` (after one warm-up request)."""
    times = []
    for i in range(samples + 1):
        t0 = time.perf_counter()
        async with session.get(url + "/health") as r:
            await r.read()
        if i:  # the first one pays for the connection (and a new port-forward stream)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def wait_healthy(session: aiohttp.ClientSession, model: str, url: str, *, timeout: float, poll: float = 0.5,
                       log: Callable[[str], None] | None = None, every: float = 15.0) -> None:
    """Wait until ``GET url/health`` answers 200, or fail naming the model and the wait. A wait
    longer than ``every`` seconds is reported to ``log`` every ``every`` seconds: what it waits
    for, for how long so far, the limit, and the last answer."""
    wait = LongWait(f"{model} to answer GET {url}/health", timeout=timeout, log=log, every=every)
    last = "no answer yet"
    while True:
        try:
            async with session.get(url + "/health", timeout=aiohttp.ClientTimeout(total=max(1.0, poll * 4))) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if wait.expired():
            raise BenchmarkError(
                f"timed out after {timeout:g} s waiting for model {model!r} to answer GET {url}/health "
                f"with 200 (last: {last}); raise --ready-timeout or check the model's logs"
            )
        wait.note(f"last: {last}")
        await asyncio.sleep(poll)


async def served_models(session: aiohttp.ClientSession, base_url: str, *, timeout: float = 5.0) -> list[str] | None:
    """The model ids ``GET base_url/v1/models`` lists (OpenAI's ``{"data": [{"id": ...}]}``), or
    None where the server has no such route or does not answer it."""
    try:
        async with session.get(base_url.rstrip("/") + "/v1/models", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            if r.status != 200:
                return None
            body = await r.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]


async def read_info(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """``GET url/info`` as an object ({} where the server has none or does not answer)."""
    try:
        async with session.get(url + "/info") as r:
            data = await r.json(content_type=None) if r.status == 200 else {}
            return data if isinstance(data, dict) else {}
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return {}
