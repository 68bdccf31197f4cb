"""Helpers for the engine's tests (and ``scripts/client_ceiling.py``): run a coroutine with a
deadline, serve an aiohttp app on 127.0.0.1, render TGI / OpenAI stream events the way the
servers write them, run the simulator in its own process and compare timings with its truth
log, and measure how much CPU other processes took meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from pathlib import Path
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


@contextlib.contextmanager
def sim_process(config: dict[str, Any], workdir: Path, *, timeout: float = 20.0) -> Iterator[tuple[dict[str, str], Path]]:
    """``python -m benchmark serve-sim`` in its own process (so server and client do not share a
    CPU-bound event loop); yields ({model key: base URL}, truth log path)."""
    cfg = workdir / "sim.json"
    cfg.write_text(json.dumps(config), encoding="utf-8")
    truth = workdir / "truth.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "serve-sim", "--config", str(cfg),
                             "--truth-log", str(truth)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # A server that never prints must not block the read below forever: kill it at the deadline
    # (its stdout then ends). After start-up its output is drained, so a full pipe cannot stall it.
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        urls: dict[str, str] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.match(r"\s+(\S+): (http://127\.0\.0\.1:\d+) ", line)
            if m:
                urls[m.group(1)] = m.group(2)
            if line.startswith("Ctrl-C"):
                break
        watchdog.cancel()
        if len(urls) != len(config["models"]):
            raise RuntimeError(f"serve-sim did not start within {timeout} s: {urls!r}, exit {proc.poll()!r}")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield urls, truth
    finally:
        watchdog.cancel()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def read_truth(path: Path, ids: Iterable[str] = (), *, wait: float = 5.0) -> dict[str, dict[str, Any]]:
    """The simulator's truth records by request id, waiting up to ``wait`` s for all of ``ids``
    (a request the client gave up on is logged when the server finishes with it)."""
    deadline = time.monotonic() + wait
    while True:
        out: dict[str, dict[str, Any]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            out[rec["request_id"]] = rec
        if set(ids) <= set(out) or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def timing_errors(records: Iterable[Any], truth: dict[str, dict[str, Any]], origin: float) -> dict[str, list[float]]:
    """|client - server truth| in seconds of every TTFT, ITL and E2E, by metric; ``origin`` is the
    run clock's (``RunClock.origin``). Asserts on the way that every request succeeded with the
    server's token count and one ITL per gap between the server's token events."""
    out: dict[str, list[float]] = {"ttft": [], "itl": [], "e2e": []}
    for r in records:
        t = truth[r.request_id]
        assert r.success, (r.request_id, r.error_kind, r.error)
        assert r.output_tokens == t["generated_tokens"], r.request_id
        emits = t["emit_times"]
        assert len(r.itl) == len(emits) - 1, r.request_id  # one stamp per token event
        assert r.ttft is not None and r.e2e is not None
        start = origin + r.intended_send
        out["ttft"].append(abs(start + r.ttft - emits[0]))
        out["itl"] += [abs(c - (b - a)) for c, a, b in zip(r.itl, emits, emits[1:])]
        out["e2e"].append(abs(start + r.e2e - t["end"]))
    return out


def sim_model(key: str, **extra: Any) -> dict[str, Any]:
    """A serve-sim model entry: fixed 10 ms decode steps (``decode_base_s`` to change), 4 ms
    prefill, no warmup, room for 512 concurrent requests of up to 256 new tokens."""
    return {"key": key, "model_id": f"example/{key}", "warmup_s": 0.0, "prefill_base_s": 0.004,
            "prefill_s_per_token": 0.0, "decode_base_s": 0.01, "decode_s_per_context_token": 0.0,
            "max_concurrent_requests": 512, "max_batch_total_tokens": 512 * 512,
            "max_batch_prefill_tokens": 512 * 256, **extra}


class OthersLoad:
    """Share of all CPUs that processes other than this one and its descendants (the simulator,
    nginx) used while the block ran, from /proc (0.0 where there is none)."""

    share = 0.0

    @staticmethod
    def _sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        times = os.times()
        # this process, its children that ended (and were waited for), then the live descendants
        ours = round(sum(times[:4]) * os.sysconf("SC_CLK_TCK"))
        todo = ["self"]
        while todo:
            for children in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
                for pid in children.read_text().split():
                    with contextlib.suppress(OSError):  # a process that just ended
                        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                        ours += int(stat[11]) + int(stat[12])  # utime, stime
                        todo.append(pid)
        # busy: all but idle, iowait, irq and softirq (the loopback traffic is mostly ours)
        return sum(fields), sum(fields) - sum(fields[3:7]) - ours

    def __enter__(self) -> OthersLoad:
        try:
            self._start: tuple[int, int] | None = self._sample()
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._start is not None:
            total, others = self._sample()
            self.share = max(0.0, others - self._start[1]) / max(1, total - self._start[0])
