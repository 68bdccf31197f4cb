"""Helpers for the engine's tests: run a coroutine with a deadline, serve an aiohttp app on
127.0.0.1, render TGI / OpenAI stream events the way the servers write them. (The simulator in
its own process and the timing comparison with its truth log are in the package:
``benchmark.sim.process``, ``benchmark.sim.truth``.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 in this event loop; yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def tgi_token(i: int, text: str = " x", special: bool = False) -> dict[str, Any]:
    return {"index": i, "token": {"id": 100 + i, "text": text, "logprob": -0.5, "special": special},
            "generated_text": None, "details": None}


def tgi_final(i: int, generated_tokens: int, text: str = "all", finish_reason: str = "length") -> dict[str, Any]:
    return {"index": i, "token": {"id": 2, "text": "", "logprob": 0.0, "special": True}, "generated_text": text,
            "details": {"finish_reason": finish_reason, "generated_tokens": generated_tokens, "seed": None}}


def sse(obj: Any, space: bool = False) -> bytes:
    """One event as serde/axum write it (compact JSON)."""
    data = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return (b"data: " if space else b"data:") + data + b"\n\n"


def tgi_stream_body(n: int) -> bytes:
    """A complete /generate_stream body of ``n`` tokens."""
    return b"".join(sse(tgi_token(i)) for i in range(n - 1)) + sse(tgi_final(n - 1, n))


def chat_chunk(content: str | None, finish_reason: str | None = None, usage: dict[str, int] | None = None,
               choices: bool = True) -> dict[str, Any]:
    delta = {"role": "assistant", "content": content}
    return {"object": "chat.completion.chunk", "id": "", "created": 1, "model": "m", "system_fingerprint": "3.0",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}] if choices else [],
            "usage": usage}


async def stream_response(request: web.Request, parts: list[bytes], gap: float = 0.0) -> web.StreamResponse:
    """Write ``parts`` one by one (each its own socket write), ``gap`` seconds apart."""
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for part in parts:
        await resp.write(part)
        if gap:
            await asyncio.sleep(gap)
    await resp.write_eof()
    return resp


def benchmark_argv(*args: str) -> list[str]:
    """``python -m benchmark ARGS``, with Ctrl-C (SIGINT) handled as in a terminal even when this
    test process runs with SIGINT ignored: POSIX shells start background jobs so, a child
    inherits it, and Python then leaves SIGINT ignored (a CI harness or ``make test &``)."""
    launcher = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "sys.argv[0] = 'benchmark'; runpy.run_module('benchmark', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", launcher, *args]
