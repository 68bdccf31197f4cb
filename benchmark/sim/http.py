"""The HTTP face of a simulated model: TGI 3.x's routes on aiohttp (the formats are
``benchmark.sim.wire``'s): ``/health``, ``/info`` (TGI's fields plus ``"simulated": true`` and a
``simulation`` block), ``/metrics`` (``benchmark.sim.metrics``), ``/v1/models``, ``/generate``,
``/generate_stream``, ``/v1/chat/completions``, with the faults the model's ``FaultPlan`` draws.
The truth log is filled here: every token event's time is taken immediately before its bytes
are written. A stream that gets no event for ``sse_keepalive_s`` (15 s, axum's ``KeepAlive``
default) gets a ``:`` comment, while queued as during a ``stall`` fault.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from benchmark.sim.batching import ABORT, KEEPALIVE, Replica, SimRequest
from benchmark.sim.truth import TruthRecord
from benchmark.sim.wire import (
    GENERATION_ERROR,
    INCOMPLETE,
    MIDSTREAM,
    OVERLOADED,
    ROUTER_NAME,
    TGI_VERSION,
    UNHEALTHY,
    Params,
    Rejected,
    chat_body,
    chat_chunk,
    chat_sse,
    chat_tail,
    dumps,
    generate_body,
    parse_chat,
    parse_generate,
    sse,
    stream_event,
    validation,
)

if TYPE_CHECKING:
    from benchmark.sim.model import SimulatedModel

__all__ = ["build_app"]


def _json(body: object, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


class _Routes:
    def __init__(self, model: SimulatedModel) -> None:
        self.model = model

    # --- plain routes ----------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        if self.model.ready:
            return web.Response(status=200)
        return _json(UNHEALTHY, status=503)

    async def info(self, request: web.Request) -> web.Response:
        spec = self.model.spec
        return _json(
            {
                "model_id": spec.model_id,
                "model_sha": None,
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": spec.max_concurrent_requests,
                "max_best_of": 2,
                "max_stop_sequences": 4,
                "max_input_tokens": spec.max_input_tokens,
                "max_total_tokens": spec.max_total_tokens,
                "validation_workers": 2,
                "max_client_batch_size": 4,
                "router": ROUTER_NAME,
                "version": TGI_VERSION,
                "sha": None,
                "docker_label": None,
                "simulated": True,
                "simulation": {
                    "key": spec.key,
                    "gpu": self.model.gpu.name,
                    "time_scale": self.model.gpu.time_scale,  # x0.1: every duration 10x shorter than the spec's
                    "drift_per_s": self.model.gpu.drift_per_s,  # and slower by this share per second since start
                    "timeslice_s": self.model.gpu.timeslice_s,
                    "context_switch_s": self.model.gpu.context_switch_s,
                    "replicas": self.model.replica_count,
                    "max_batch_total_tokens": spec.max_batch_total_tokens,
                },
            }
        )

    async def metrics(self, request: web.Request) -> web.Response:
        if not self.model.spec.openai.metrics:  # a server without /metrics (transformers serve)
            return web.Response(status=404, text="Not Found")
        return web.Response(
            text=self.model.metrics.render(self.model.gauges()), content_type="text/plain", charset="utf-8"
        )

    async def models(self, request: web.Request) -> web.Response:
        model_id = self.model.spec.model_id
        return _json(
            {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": model_id}]}
        )

    # --- generation ------------------------------------------------------------------

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, lambda body: parse_generate(body, stream=False))

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, lambda body: parse_generate(body, stream=True))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, parse_chat)

    async def _generate(self, request: web.Request, parse: Callable[[dict[str, Any]], Params]) -> web.StreamResponse:
        model = self.model
        received = time.perf_counter()
        rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        rec = model.gpu.truth.open(request_id=rid, model=model.spec.key, endpoint=request.path, received=received)
        model.metrics.request_count += 1
        try:
            params, replica = await self._admit(request, parse, rec)
        except Rejected as e:
            if e.err is not None:
                model.metrics.fail(e.err)
            rec.error_type = e.body.get("error_type") if isinstance(e.body, dict) else "deserialize"
            self._finish(rec, e.status)
            if isinstance(e.body, dict):
                return _json(e.body, status=e.status, headers=_close_if(not model.replicas))
            return web.Response(text=e.body, status=e.status)

        spec = model.spec
        fault = model.faults.next()
        rec.fault = fault
        if fault == "http_5xx":
            model.metrics.fail("incomplete")
            rec.error_type = INCOMPLETE["error_type"]
            self._finish(rec, spec.faults.http_status)
            return _json(INCOMPLETE, status=spec.faults.http_status)

        resp: web.StreamResponse | None = None
        sim: SimRequest | None = None
        try:
            if params.stream:
                resp = web.StreamResponse(
                    headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                             "x-compute-type": "gpu+optimized", "X-Accel-Buffering": "no"}
                )
                await resp.prepare(request)
                rec.headers_sent = time.perf_counter()
            if fault == "overloaded" or not replica.try_acquire():
                model.metrics.fail("overloaded")
                rec.error_type = "overloaded"
                if resp is None:
                    self._finish(rec, 429)
                    return _json(OVERLOADED, status=429)
                return await self._end_stream(request, resp, rec, params, OVERLOADED)
            seed = f"seed:{params.seed}" if params.seed is not None else rid
            assert rec.input_tokens is not None and rec.max_new_tokens is not None
            sim = SimRequest(rid, rec.input_tokens, rec.max_new_tokens, seed, spec)
            replica.submit(sim)
            if resp is not None:
                return await self._stream(request, resp, rec, params, sim, fault)
            return await self._respond(request, rec, params, sim, fault)
        except ConnectionError:  # the client went away
            rec.error_type = "client_disconnected"
            return resp if resp is not None else web.Response(status=499)
        finally:
            if sim is not None:
                replica.release(sim)
            if not rec.done:  # left early: the client went away, or the server is shutting down
                rec.error_type = rec.error_type or "cancelled"
                rec.generated_tokens = len(rec.emit_times) if resp is not None else None
                self._finish(rec, 200 if resp is not None else None)

    async def _admit(
        self, request: web.Request, parse: Callable[[dict[str, Any]], Params], rec: TruthRecord
    ) -> tuple[Params, Replica]:
        model, spec = self.model, self.model.spec
        try:
            body = await request.json()
        except ValueError as e:
            raise Rejected(400, f"Failed to parse the request body as JSON: {e}") from None
        if not isinstance(body, dict):
            raise Rejected(422, "Failed to deserialize the JSON body into the target type: expected an object")
        params = parse(body)
        if params.api == "chat" and (refused := spec.openai.refuse(spec.model_id, params.model)) is not None:
            raise Rejected(*refused)
        replica = model.pick_replica()
        if replica is None:  # scaled to zero (an old keep-alive connection) or warming up
            raise Rejected(503, UNHEALTHY)
        rec.replica = replica.index
        n_in = model.count_tokens(params.prompt)
        rec.input_tokens = n_in
        if not params.prompt:
            raise Rejected(422, validation("`inputs` cannot be empty"), err="validation")
        max_new = params.max_new_tokens
        if max_new is None:
            max_new = max(0, spec.max_total_tokens - n_in)
        elif max_new <= 0:
            raise Rejected(422, validation("`max_new_tokens` must be strictly positive"), err="validation")
        if n_in + max_new > spec.max_total_tokens:
            raise Rejected(422, validation(
                f"`inputs` tokens + `max_new_tokens` must be <= {spec.max_total_tokens}. "
                f"Given: {n_in} `inputs` tokens and {max_new} `max_new_tokens`"), err="validation")
        if n_in > spec.max_input_tokens:
            raise Rejected(422, validation(
                f"`inputs` must have less than {spec.max_input_tokens} tokens. Given: {n_in}"), err="validation")
        rec.max_new_tokens = max_new
        model.metrics.observe("tgi_request_input_length", n_in)
        model.metrics.observe("tgi_request_max_new_tokens", max_new)
        return params, replica

    # --- streaming -------------------------------------------------------------------

    async def _stream(
        self, request: web.Request, resp: web.StreamResponse, rec: TruthRecord, params: Params,
        sim: SimRequest, fault: str | None,
    ) -> web.StreamResponse:
        n = len(sim.tokens)
        fault_at = min(self.model.spec.faults.after_tokens, n - 1) if fault in MIDSTREAM else -1
        encode = chat_chunk if params.api == "chat" else stream_event
        last = time.perf_counter()
        for i in range(n):
            if await _next_token(sim, resp) == ABORT:
                return self._drop(request, resp, rec, "aborted")
            if i == fault_at:
                if fault == "stall":
                    await _stall(resp, self.model.spec.faults.stall_s, self.model.spec.sse_keepalive_s)
                elif fault == "disconnect":
                    return self._drop(request, resp, rec, None)
                elif fault == "malformed":
                    await resp.write(sse(b'{"index":' + str(i + 1).encode() + b',"token":{"id":'))
                elif fault == "error_event":
                    self.model.metrics.fail("generation")
                    rec.error_type = "generation"
                    return await self._end_stream(request, resp, rec, params, GENERATION_ERROR)
            last = await _write(resp, encode(self.model.spec, params, sim, i))
            rec.emit_times.append(last)
        rec.generated_tokens = n
        rec.finish_reason = sim.finish_reason
        if params.api == "chat":
            for chunk in chat_tail(self.model.spec, params, sim):
                last = await _write(resp, chunk)
        await resp.write_eof()
        self._succeed(rec, sim, 200, end=last)
        return resp

    async def _end_stream(
        self, request: web.Request, resp: web.StreamResponse, rec: TruthRecord, params: Params, error: dict[str, str]
    ) -> web.StreamResponse:
        """An ``{"error", "error_type"}`` event after a 200 ends the stream (chat: then [DONE])."""
        last = await _write(resp, sse(error))
        if params.api == "chat" and self.model.spec.openai.done:
            last = await _write(resp, chat_sse(self.model.spec, b"[DONE]"))
        await resp.write_eof()
        rec.generated_tokens = len(rec.emit_times)
        self._finish(rec, 200, end=last)
        return resp

    def _drop(self, request: web.Request, resp: web.StreamResponse | None, rec: TruthRecord, why: str | None) -> web.StreamResponse:
        """Close the connection mid-response, as a crashed or killed server would."""
        if request.transport is not None:
            request.transport.close()
        if why is not None:
            rec.error_type = why
        rec.generated_tokens = len(rec.emit_times) if resp is not None else None
        self._finish(rec, 200 if resp is not None else None)
        return resp if resp is not None else web.Response(status=499)

    # --- non-streamed ----------------------------------------------------------------

    async def _respond(
        self, request: web.Request, rec: TruthRecord, params: Params, sim: SimRequest, fault: str | None
    ) -> web.StreamResponse:
        for _ in range(len(sim.tokens)):
            if await _next_token(sim, None) == ABORT:
                return self._drop(request, None, rec, "aborted")
        if fault == "stall":
            await asyncio.sleep(self.model.spec.faults.stall_s)
        elif fault == "disconnect":
            return self._drop(request, None, rec, None)
        elif fault == "error_event":
            self.model.metrics.fail("generation")
            rec.error_type = "generation"
            self._finish(rec, 424)
            return _json(GENERATION_ERROR, status=424)
        body = dumps(chat_body(self.model.spec, params, sim) if params.api == "chat" else generate_body(self.model.spec, params, sim))
        if fault == "malformed":
            body = body[: len(body) // 2]
        headers = self._timing_headers(params, sim, rec)
        resp = web.Response(text=body, content_type="application/json", headers=headers)
        end = time.perf_counter()
        await resp.prepare(request)
        await resp.write_eof()
        rec.generated_tokens = len(sim.tokens)
        rec.finish_reason = sim.finish_reason
        self._succeed(rec, sim, 200, end=end)
        return resp

    def _timing_headers(self, params: Params, sim: SimRequest, rec: TruthRecord) -> dict[str, str]:
        now = time.perf_counter()
        started = sim.started_at or now
        inference = (sim.done_at or now) - started
        return {
            "x-compute-type": "gpu+optimized",
            "x-compute-time": repr(now - rec.received),
            "x-compute-characters": str(len(params.prompt)),
            "x-total-time": str(int((now - rec.received) * 1000)),
            "x-validation-time": str(int((sim.queued_at - rec.received) * 1000)),
            "x-queue-time": str(int((started - sim.queued_at) * 1000)),
            "x-inference-time": str(int(inference * 1000)),
            "x-time-per-token": str(int(inference / len(sim.tokens) * 1000)),
            "x-prompt-tokens": str(sim.input_tokens),
            "x-generated-tokens": str(len(sim.tokens)),
        }

    # --- bookkeeping -----------------------------------------------------------------

    def _finish(self, rec: TruthRecord, status: int | None, *, end: float | None = None) -> None:
        """Log ``rec`` as done; ``end`` is when its last bytes were handed over (default: now)."""
        self.model.gpu.truth.finish(rec, end=time.perf_counter() if end is None else end, status=status)

    def _succeed(self, rec: TruthRecord, sim: SimRequest, status: int, *, end: float) -> None:
        self._finish(rec, status, end=end)
        m = self.model.metrics
        m.request_success += 1
        started = sim.started_at if sim.started_at is not None else sim.queued_at
        done = sim.done_at if sim.done_at is not None else time.perf_counter()
        assert rec.end is not None
        m.observe("tgi_request_duration", rec.end - rec.received)
        m.observe("tgi_request_validation_duration", sim.queued_at - rec.received)
        m.observe("tgi_request_queue_duration", started - sim.queued_at)
        m.observe("tgi_request_inference_duration", done - started)
        m.observe("tgi_request_mean_time_per_token_duration", (done - started) / len(sim.tokens))
        m.observe("tgi_request_generated_tokens", len(sim.tokens))


def _close_if(close: bool) -> dict[str, str]:
    return {"Connection": "close"} if close else {}


async def _write(resp: web.StreamResponse, data: bytes) -> float:
    """Write ``data``; returns the perf_counter taken immediately before it went to the socket."""
    t = time.perf_counter()
    await resp.write(data)
    return t


async def _next_token(sim: SimRequest, resp: web.StreamResponse | None) -> int:
    """The next token index (or ABORT); keep-alives become ``:`` comments on a stream."""
    while (item := await sim.queue.get()) == KEEPALIVE:
        if resp is not None:
            await resp.write(b":\n\n")
    return item


async def _stall(resp: web.StreamResponse, seconds: float, keepalive_s: float) -> None:
    """Write nothing but SSE keep-alive comments (as axum's KeepAlive) for ``seconds``."""
    end = time.perf_counter() + seconds
    while (left := end - time.perf_counter()) > 0:
        await asyncio.sleep(min(left, keepalive_s))
        if end - time.perf_counter() > 0:
            await resp.write(b":\n\n")


def build_app(model: SimulatedModel) -> web.Application:
    routes = _Routes(model)
    app = web.Application(client_max_size=16 * 2**20)
    app.router.add_get("/health", routes.health)
    app.router.add_get("/info", routes.info)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/v1/models", routes.models)
    app.router.add_post("/generate", routes.generate)
    app.router.add_post("/generate_stream", routes.generate_stream)
    app.router.add_post("/v1/chat/completions", routes.chat)
    return app
