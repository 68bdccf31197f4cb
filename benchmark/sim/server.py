"""The HTTP face of a simulated model: TGI 3.x's routes and wire formats, on aiohttp.

Formats follow huggingface/text-generation-inference (``router/src/server.rs``,
``router/src/lib.rs``, ``router/src/chat.rs``, ``router/src/validation.rs``,
``router/src/infer/mod.rs``):
- ``POST /generate``: ``{"generated_text", "details"}``; ``details`` (when
  ``parameters.details`` or ``decoder_input_details``) has ``finish_reason``
  (``length``/``eos_token``), ``generated_tokens``, ``seed`` (null unless sampling),
  ``prefill`` (input tokens, only with ``decoder_input_details``) and ``tokens``.
  ``parameters.max_new_tokens`` defaults to 100; an explicit null means "up to
  max_total_tokens".
- ``POST /generate_stream``: SSE ``data:{json}`` events (axum's ``Event`` writes no space
  after the colon), one per token: ``index`` (from 1), ``token`` {id, text, logprob,
  special}, ``generated_text`` null until the last event, ``details`` on the last one
  ({finish_reason, generated_tokens, seed, input_length}, if requested). No ``[DONE]``.
- ``POST /v1/chat/completions``: non-streamed ``chat.completion`` with ``usage``; streamed
  ``chat.completion.chunk`` events (``choices[0].delta.content``; the last token's chunk
  carries ``finish_reason``, TGI's ``eos_token`` shown as ``stop``), then, with
  ``stream_options.include_usage``, a chunk with ``choices: []`` and ``usage``, then
  ``data:[DONE]``. ``max_tokens`` defaults to 100. Other OpenAI-compatible servers' habits
  (a pinned model name, no ``[DONE]``, no ``usage``, ``finish_reason`` in a chunk of its own)
  are the model's ``openai`` flavour (``benchmark.sim.openai_wire``).
- Errors are ``{"error", "error_type"}``: 422 ``validation`` (``Input validation error:
  ...``), 429 ``overloaded`` (``Model is overloaded``; on the streaming routes TGI sends it
  as an event after a 200, and so does this), 424 ``generation``, 500
  ``incomplete_generation``; ``/health`` answers 503 ``{"error": "unhealthy", "error_type":
  "healthcheck"}``.
A stream that gets no event for ``sse_keepalive_s`` (15 s, axum's ``KeepAlive`` default)
gets a ``:`` comment, while queued as during a ``stall`` fault.
``/info`` has TGI's Info fields plus ``"simulated": true`` and a ``simulation`` block;
``/metrics`` is ``benchmark.sim.metrics``. The truth log is filled here: every token
event's time is taken immediately before its bytes are written.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from benchmark.sim.model import ABORT, KEEPALIVE, Replica, SimRequest, SimToken, SimulatedModel
from benchmark.sim.truth import TruthRecord

__all__ = ["build_app", "ROUTER_NAME", "TGI_VERSION"]

ROUTER_NAME = "gpu-sharing tgi simulator"
TGI_VERSION = "3.3.6"  # the TGI release whose routes and formats this serves (the stack's default image)
_MIDSTREAM = ("stall", "disconnect", "malformed", "error_event")
_OVERLOADED = {"error": "Model is overloaded", "error_type": "overloaded"}
_GENERATION_ERROR = {"error": "Request failed during generation: simulated fault", "error_type": "generation"}
_INCOMPLETE = {"error": "Incomplete generation", "error_type": "incomplete_generation"}
_UNHEALTHY = {"error": "unhealthy", "error_type": "healthcheck"}


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _json(body: object, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _sse(obj: object) -> bytes:
    return b"data:" + (obj if isinstance(obj, bytes) else _dumps(obj).encode()) + b"\n\n"


class _Rejected(Exception):
    """A request refused before generation: status + body (JSON object or plain text)."""

    def __init__(self, status: int, body: dict[str, Any] | str, *, err: str | None = None) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.err = err  # tgi_request_failure label, if TGI counts it


@dataclass(slots=True, kw_only=True)
class _Params:
    api: str  # "generate", "chat"
    prompt: str
    stream: bool
    max_new_tokens: int | None
    details: bool = True
    decoder_input_details: bool = False
    return_full_text: bool = False
    seed: int | None = None
    do_sample: bool = False
    include_usage: bool = False
    model: Any = None  # the OpenAI "model" field


def _field(body: dict[str, Any], name: str, types: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise _Rejected(422, f"Failed to deserialize the JSON body into the target type: {name}: invalid type {value!r}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _parse_generate(body: dict[str, Any], stream: bool) -> _Params:
    if "inputs" not in body:
        raise _Rejected(422, "Failed to deserialize the JSON body into the target type: missing field `inputs`")
    inputs = _field(body, "inputs", str, "")
    if "parameters" not in body:  # TGI's default_parameters(): sampling on
        return _Params(api="generate", prompt=inputs, stream=stream, max_new_tokens=100, details=False, do_sample=True)
    p = _field(body, "parameters", dict, {})
    max_new = p["max_new_tokens"] if "max_new_tokens" in p else 100
    if max_new is not None and (isinstance(max_new, bool) or not isinstance(max_new, int)):
        raise _Rejected(422, f"Failed to deserialize the JSON body into the target type: max_new_tokens: invalid type {max_new!r}")
    return _Params(
        api="generate",
        prompt=inputs,
        stream=stream,
        max_new_tokens=max_new,
        details=_field(p, "details", bool, False),
        decoder_input_details=_field(p, "decoder_input_details", bool, False),
        return_full_text=_field(p, "return_full_text", bool, False),
        seed=_field(p, "seed", int, None),
        do_sample=_field(p, "do_sample", bool, False),
    )


def _parse_chat(body: dict[str, Any]) -> _Params:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Rejected(422, "Failed to deserialize the JSON body into the target type: messages: a non-empty list is required")
    parts = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _Rejected(422, f"Failed to deserialize the JSON body into the target type: messages: invalid message {message!r}")
        content = message.get("content", "")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
        parts.append(f"<|{message['role']}|>\n{content}<|end|>\n")
    parts.append("<|assistant|>\n")  # a chat-template stand-in
    options = _field(body, "stream_options", dict, {})
    temperature = _field(body, "temperature", (int, float), None)
    return _Params(
        api="chat",
        prompt="".join(parts),
        stream=_field(body, "stream", bool, False),
        max_new_tokens=_field(body, "max_tokens", int, 100),
        details=True,
        decoder_input_details=not _field(body, "stream", bool, False),
        seed=_field(body, "seed", int, None),
        do_sample=temperature != 0,
        include_usage=bool(options.get("include_usage", False)),
        model=body.get("model"),
    )


class _Routes:
    def __init__(self, model: SimulatedModel) -> None:
        self.model = model

    # --- plain routes ----------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        if self.model.ready:
            return web.Response(status=200)
        return _json(_UNHEALTHY, status=503)

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
        return await self._generate(request, lambda body: _parse_generate(body, stream=False))

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, lambda body: _parse_generate(body, stream=True))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, _parse_chat)

    async def _generate(self, request: web.Request, parse: Callable[[dict[str, Any]], _Params]) -> web.StreamResponse:
        model = self.model
        received = time.perf_counter()
        rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        rec = model.gpu.truth.open(request_id=rid, model=model.spec.key, endpoint=request.path, received=received)
        model.metrics.request_count += 1
        try:
            params, replica = await self._admit(request, parse, rec)
        except _Rejected as e:
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
            rec.error_type = _INCOMPLETE["error_type"]
            self._finish(rec, spec.faults.http_status)
            return _json(_INCOMPLETE, status=spec.faults.http_status)

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
                    return _json(_OVERLOADED, status=429)
                return await self._end_stream(request, resp, rec, params, _OVERLOADED)
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
        self, request: web.Request, parse: Callable[[dict[str, Any]], _Params], rec: TruthRecord
    ) -> tuple[_Params, Replica]:
        model, spec = self.model, self.model.spec
        try:
            body = await request.json()
        except ValueError as e:
            raise _Rejected(400, f"Failed to parse the request body as JSON: {e}") from None
        if not isinstance(body, dict):
            raise _Rejected(422, "Failed to deserialize the JSON body into the target type: expected an object")
        params = parse(body)
        if params.api == "chat" and (refused := spec.openai.refuse(spec.model_id, params.model)) is not None:
            raise _Rejected(*refused)
        replica = model.pick_replica()
        if replica is None:  # scaled to zero (an old keep-alive connection) or warming up
            raise _Rejected(503, _UNHEALTHY)
        rec.replica = replica.index
        n_in = model.count_tokens(params.prompt)
        rec.input_tokens = n_in
        if not params.prompt:
            raise _Rejected(422, _validation("`inputs` cannot be empty"), err="validation")
        max_new = params.max_new_tokens
        if max_new is None:
            max_new = max(0, spec.max_total_tokens - n_in)
        elif max_new <= 0:
            raise _Rejected(422, _validation("`max_new_tokens` must be strictly positive"), err="validation")
        if n_in + max_new > spec.max_total_tokens:
            raise _Rejected(422, _validation(
                f"`inputs` tokens + `max_new_tokens` must be <= {spec.max_total_tokens}. "
                f"Given: {n_in} `inputs` tokens and {max_new} `max_new_tokens`"), err="validation")
        if n_in > spec.max_input_tokens:
            raise _Rejected(422, _validation(
                f"`inputs` must have less than {spec.max_input_tokens} tokens. Given: {n_in}"), err="validation")
        rec.max_new_tokens = max_new
        model.metrics.observe("tgi_request_input_length", n_in)
        model.metrics.observe("tgi_request_max_new_tokens", max_new)
        return params, replica

    # --- streaming -------------------------------------------------------------------

    async def _stream(
        self, request: web.Request, resp: web.StreamResponse, rec: TruthRecord, params: _Params,
        sim: SimRequest, fault: str | None,
    ) -> web.StreamResponse:
        n = len(sim.tokens)
        fault_at = min(self.model.spec.faults.after_tokens, n - 1) if fault in _MIDSTREAM else -1
        encode = self._chat_chunk if params.api == "chat" else self._stream_event
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
                    await resp.write(_sse(b'{"index":' + str(i + 1).encode() + b',"token":{"id":'))
                elif fault == "error_event":
                    self.model.metrics.fail("generation")
                    rec.error_type = "generation"
                    return await self._end_stream(request, resp, rec, params, _GENERATION_ERROR)
            last = await _write(resp, encode(params, sim, i, rec))
            rec.emit_times.append(last)
        rec.generated_tokens = n
        rec.finish_reason = sim.finish_reason
        if params.api == "chat":
            for chunk in self._chat_tail(params, sim):
                last = await _write(resp, chunk)
        await resp.write_eof()
        self._succeed(rec, sim, 200, end=last)
        return resp

    def _stream_event(self, params: _Params, sim: SimRequest, i: int, rec: TruthRecord) -> bytes:
        token = sim.tokens[i]
        last = i == len(sim.tokens) - 1
        details = None
        if last and params.details:
            details = {"finish_reason": sim.finish_reason, "generated_tokens": len(sim.tokens),
                       "seed": _seed(params, sim), "input_length": sim.input_tokens}
        text = None
        if last:
            text = (params.prompt if params.return_full_text else "") + sim.text()
        return _sse({"index": i + 1, "token": _token(token), "generated_text": text, "details": details})

    def _chat_chunk(self, params: _Params, sim: SimRequest, i: int, rec: TruthRecord) -> bytes:
        """One token's chunk; the last one carries the finish_reason (and, for servers that
        always send it there, the usage) unless the flavour sends a finish chunk of its own."""
        token = sim.tokens[i]
        flavour = self.model.spec.openai
        finishing = i == len(sim.tokens) - 1 and not flavour.finish_chunk
        choice = {
            "index": 0,
            "delta": {"role": "assistant", "content": "" if token.special else token.text},
            "logprobs": None,
            "finish_reason": _openai_finish(sim.finish_reason) if finishing else None,
        }
        usage = _usage(sim) if finishing and flavour.usage == "last" else None
        return self._chat_sse(self._chat_envelope("chat.completion.chunk", [choice], usage))

    def _chat_tail(self, params: _Params, sim: SimRequest) -> list[bytes]:
        """What follows the token chunks: a finish chunk, a usage chunk, ``[DONE]``, as the flavour has it."""
        flavour = self.model.spec.openai
        out = []
        if flavour.finish_chunk:  # OpenAI: {"delta": {}, "finish_reason": "stop"}
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": _openai_finish(sim.finish_reason)}
            usage = _usage(sim) if flavour.usage == "last" else None
            out.append(self._chat_sse(self._chat_envelope("chat.completion.chunk", [choice], usage)))
        if flavour.usage == "asked" and params.include_usage:
            out.append(self._chat_sse(self._chat_envelope("chat.completion.chunk", [], _usage(sim))))
        if flavour.done:
            out.append(self._chat_sse(b"[DONE]"))
        return out

    def _chat_sse(self, obj: dict[str, Any] | bytes) -> bytes:
        flavour = self.model.spec.openai
        if flavour.exclude_none and isinstance(obj, dict):
            obj = _without_none(obj)
        event = _sse(obj)
        return b"data: " + event[5:] if flavour.space else event

    def _chat_envelope(self, obj: str, choices: list[Any], usage: dict[str, int] | None) -> dict[str, Any]:
        return {
            "object": obj,
            "id": "",
            "created": int(time.time()),
            "model": self.model.spec.model_id,
            "system_fingerprint": f"{TGI_VERSION}-native",
            "choices": choices,
            "usage": usage,
        }

    async def _end_stream(
        self, request: web.Request, resp: web.StreamResponse, rec: TruthRecord, params: _Params, error: dict[str, str]
    ) -> web.StreamResponse:
        """An ``{"error", "error_type"}`` event after a 200 ends the stream (chat: then [DONE])."""
        last = await _write(resp, _sse(error))
        if params.api == "chat" and self.model.spec.openai.done:
            last = await _write(resp, self._chat_sse(b"[DONE]"))
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
        self, request: web.Request, rec: TruthRecord, params: _Params, sim: SimRequest, fault: str | None
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
            return _json(_GENERATION_ERROR, status=424)
        body = _dumps(self._chat_body(params, sim) if params.api == "chat" else self._generate_body(params, sim))
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

    def _generate_body(self, params: _Params, sim: SimRequest) -> dict[str, Any]:
        text = (params.prompt if params.return_full_text else "") + sim.text()
        if not (params.details or params.decoder_input_details):
            return {"generated_text": text}
        prefill: list[dict[str, Any]] = []
        if params.decoder_input_details:
            rng = random.Random(sim.request_id)
            step = max(1, round(self.model.spec.chars_per_token))
            pieces = [params.prompt[i:i + step] for i in range(0, len(params.prompt), step)][: sim.input_tokens]
            prefill = [{"id": 1000 + i, "text": t, "logprob": None if i == 0 else round(-rng.random() * 5, 4)}
                       for i, t in enumerate(pieces)]
        return {
            "generated_text": text,
            "details": {
                "finish_reason": sim.finish_reason,
                "generated_tokens": len(sim.tokens),
                "seed": _seed(params, sim),
                "prefill": prefill,
                "tokens": [_token(t) for t in sim.tokens],
            },
        }

    def _chat_body(self, params: _Params, sim: SimRequest) -> dict[str, Any]:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": sim.text()},
            "logprobs": None,
            "finish_reason": _openai_finish(sim.finish_reason),
        }
        return self._chat_envelope("chat.completion", [choice], _usage(sim))

    def _timing_headers(self, params: _Params, sim: SimRequest, rec: TruthRecord) -> dict[str, str]:
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


def _without_none(value: Any) -> Any:
    """A JSON value with every null-valued object key left out (pydantic's ``exclude_none``)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _validation(message: str) -> dict[str, str]:
    return {"error": f"Input validation error: {message}", "error_type": "validation"}


def _token(token: SimToken) -> dict[str, Any]:
    return {"id": token.id, "text": token.text, "logprob": token.logprob, "special": token.special}


def _seed(params: _Params, sim: SimRequest) -> int | None:
    """TGI reports the sampling seed: the request's, or a random one; null when greedy."""
    if not params.do_sample:
        return None
    return params.seed if params.seed is not None else random.Random(sim.request_id).getrandbits(63)


def _openai_finish(reason: str) -> str:
    return "stop" if reason == "eos_token" else reason  # FinishReason::format(true)


def _usage(sim: SimRequest) -> dict[str, int]:
    n = len(sim.tokens)
    return {"prompt_tokens": sim.input_tokens, "completion_tokens": n, "total_tokens": sim.input_tokens + n}


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
