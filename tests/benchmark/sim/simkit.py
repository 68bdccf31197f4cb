"""Helpers for the simulator's tests: fast specs, a running model, and a client-side SSE parse."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import aiohttp

from benchmark.sim import ModelSpec, SimulatedGpu, SimulatedModel

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def fast_spec(key: str = "m", **changes: Any) -> ModelSpec:
    """A small, quick model: 2 ms decode steps, no warm-up."""
    base = dict(key=key, model_id=f"example/{key}", max_input_tokens=512, max_total_tokens=1024,
                max_batch_total_tokens=8192, prefill_base_s=0.002, prefill_s_per_token=0.0,
                decode_base_s=0.002, decode_s_per_context_token=0.0, warmup_s=0.0)
    base.update(changes)
    return ModelSpec(**base)


@contextlib.asynccontextmanager
async def serving(*specs: ModelSpec, gpu: SimulatedGpu | None = None) -> AsyncIterator[tuple[SimulatedGpu, list[SimulatedModel]]]:
    gpu = gpu or SimulatedGpu()
    models = [SimulatedModel(spec, gpu) for spec in specs]
    try:
        for m in models:
            await m.start()
            await m.wait_ready()
        yield gpu, models
    finally:
        for m in models:
            await m.stop()
        gpu.close()


async def busy_loop(gpu: SimulatedGpu, owner: str, step_s: float, n: int, start: float, ends: list[float],
                    host_s: float = 0.0) -> list[float]:
    """A process that always has work: ``n`` steps of ``step_s``, each asked for as the last one
    ends, reaching the GPU ``host_s`` later; appends each step's end (the GPU's timeline) to ``ends``."""
    end = start
    for _ in range(n):
        end = await gpu.run(owner, owner, step_s, ready_at=end, host_s=host_s)
        ends.append(end)
    return ends


def sse_data(raw: bytes) -> list[str]:
    """The ``data`` of every SSE event, as a client reads them (``data:`` with or without a space)."""
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data:"):
                out.append(line[5:].removeprefix(" "))
    return out


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any], rid: str | None = None) -> tuple[int, bytes]:
    headers = {"X-Request-Id": rid} if rid else {}
    async with session.post(url, json=body, headers=headers) as r:
        return r.status, await r.read()


async def stream_events(session: aiohttp.ClientSession, url: str, body: dict[str, Any], rid: str | None = None) -> tuple[int, list[Any]]:
    """Status and parsed events; ``[DONE]`` stays a string, a non-JSON event becomes ``ValueError``."""
    status, raw = await post(session, url, body, rid)
    events: list[Any] = []
    for data in sse_data(raw):
        if data == "[DONE]":
            events.append(data)
            continue
        try:
            events.append(json.loads(data))
        except ValueError as e:
            events.append(e)
    return status, events


def gen_body(n: int, prompt: str = "Tell me about GPUs", **params: Any) -> dict[str, Any]:
    return {"inputs": prompt, "parameters": {"max_new_tokens": n, "details": True, **params}}
