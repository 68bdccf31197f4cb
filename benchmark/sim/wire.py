"""The wire formats of TGI 3.x and of the OpenAI-compatible flavours, pure: parse a request
body into ``Params`` (or refuse it as TGI does: ``Rejected``), and encode events, chunks and
bodies. No I/O: ``benchmark.sim.http`` serves them.

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
  are the model's ``openai`` flavour (``benchmark.sim.openai_flavours``).
- Errors are ``{"error", "error_type"}``: 422 ``validation`` (``Input validation error:
  ...``), 429 ``overloaded`` (``Model is overloaded``; on the streaming routes TGI sends it
  as an event after a 200, and so does this), 424 ``generation``, 500
  ``incomplete_generation``; ``/health`` answers 503 ``{"error": "unhealthy", "error_type":
  "healthcheck"}``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from benchmark.sim.batching import SimRequest, SimToken
from benchmark.sim.spec import ModelSpec

__all__ = ["GENERATION_ERROR", "INCOMPLETE", "MIDSTREAM", "OVERLOADED", "ROUTER_NAME", "TGI_VERSION", "UNHEALTHY",
           "Params", "Rejected", "chat_body", "chat_chunk", "chat_envelope", "chat_sse", "chat_tail", "dumps",
           "generate_body", "parse_chat", "parse_generate", "seed_of", "sse", "stream_event", "usage_of", "validation"]


ROUTER_NAME = "gpu-sharing tgi simulator"
TGI_VERSION = "3.3.6"  # the TGI release whose routes and formats this serves (the stack's default image)
MIDSTREAM = ("stall", "disconnect", "malformed", "error_event")
OVERLOADED = {"error": "Model is overloaded", "error_type": "overloaded"}
GENERATION_ERROR = {"error": "Request failed during generation: simulated fault", "error_type": "generation"}
INCOMPLETE = {"error": "Incomplete generation", "error_type": "incomplete_generation"}
UNHEALTHY = {"error": "unhealthy", "error_type": "healthcheck"}


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse(obj: object) -> bytes:
    return b"data:" + (obj if isinstance(obj, bytes) else dumps(obj).encode()) + b"\n\n"


class Rejected(Exception):
    """A request refused before generation: status + body (JSON object or plain text)."""

    def __init__(self, status: int, body: dict[str, Any] | str, *, err: str | None = None) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.err = err  # tgi_request_failure label, if TGI counts it


@dataclass(slots=True, kw_only=True)
class Params:
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
        raise Rejected(422, f"Failed to deserialize the JSON body into the target type: {name}: invalid type {value!r}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def parse_generate(body: dict[str, Any], stream: bool) -> Params:
    if "inputs" not in body:
        raise Rejected(422, "Failed to deserialize the JSON body into the target type: missing field `inputs`")
    inputs = _field(body, "inputs", str, "")
    if "parameters" not in body:  # TGI's default_parameters(): sampling on
        return Params(api="generate", prompt=inputs, stream=stream, max_new_tokens=100, details=False, do_sample=True)
    p = _field(body, "parameters", dict, {})
    max_new = p["max_new_tokens"] if "max_new_tokens" in p else 100
    if max_new is not None and (isinstance(max_new, bool) or not isinstance(max_new, int)):
        raise Rejected(422, f"Failed to deserialize the JSON body into the target type: max_new_tokens: invalid type {max_new!r}")
    return Params(
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


def parse_chat(body: dict[str, Any]) -> Params:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Rejected(422, "Failed to deserialize the JSON body into the target type: messages: a non-empty list is required")
    parts = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise Rejected(422, f"Failed to deserialize the JSON body into the target type: messages: invalid message {message!r}")
        content = message.get("content", "")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
        parts.append(f"<|{message['role']}|>\n{content}<|end|>\n")
    parts.append("<|assistant|>\n")  # a chat-template stand-in
    options = _field(body, "stream_options", dict, {})
    temperature = _field(body, "temperature", (int, float), None)
    return Params(
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


def stream_event(spec: ModelSpec, params: Params, sim: SimRequest, i: int) -> bytes:
    token = sim.tokens[i]
    last = i == len(sim.tokens) - 1
    details = None
    if last and params.details:
        details = {"finish_reason": sim.finish_reason, "generated_tokens": len(sim.tokens),
                   "seed": seed_of(params, sim), "input_length": sim.input_tokens}
    text = None
    if last:
        text = (params.prompt if params.return_full_text else "") + sim.text()
    return sse({"index": i + 1, "token": token_json(token), "generated_text": text, "details": details})


def chat_chunk(spec: ModelSpec, params: Params, sim: SimRequest, i: int) -> bytes:
    """One token's chunk; the last one carries the finish_reason (and, for servers that
    always send it there, the usage) unless the flavour sends a finish chunk of its own."""
    token = sim.tokens[i]
    flavour = spec.openai
    finishing = i == len(sim.tokens) - 1 and not flavour.finish_chunk
    choice = {
        "index": 0,
        "delta": {"role": "assistant", "content": "" if token.special else token.text},
        "logprobs": None,
        "finish_reason": openai_finish(sim.finish_reason) if finishing else None,
    }
    usage = usage_of(sim) if finishing and flavour.usage == "last" else None
    return chat_sse(spec, chat_envelope(spec, "chat.completion.chunk", [choice], usage))


def chat_tail(spec: ModelSpec, params: Params, sim: SimRequest) -> list[bytes]:
    """What follows the token chunks: a finish chunk, a usage chunk, ``[DONE]``, as the flavour has it."""
    flavour = spec.openai
    out = []
    if flavour.finish_chunk:  # OpenAI: {"delta": {}, "finish_reason": "stop"}
        choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": openai_finish(sim.finish_reason)}
        usage = usage_of(sim) if flavour.usage == "last" else None
        out.append(chat_sse(spec, chat_envelope(spec, "chat.completion.chunk", [choice], usage)))
    if flavour.usage == "asked" and params.include_usage:
        out.append(chat_sse(spec, chat_envelope(spec, "chat.completion.chunk", [], usage_of(sim))))
    if flavour.done:
        out.append(chat_sse(spec, b"[DONE]"))
    return out


def chat_sse(spec: ModelSpec, obj: dict[str, Any] | bytes) -> bytes:
    flavour = spec.openai
    if flavour.exclude_none and isinstance(obj, dict):
        obj = without_none(obj)
    event = sse(obj)
    return b"data: " + event[5:] if flavour.space else event


def chat_envelope(spec: ModelSpec, obj: str, choices: list[Any], usage: dict[str, int] | None) -> dict[str, Any]:
    return {
        "object": obj,
        "id": "",
        "created": int(time.time()),
        "model": spec.model_id,
        "system_fingerprint": f"{TGI_VERSION}-native",
        "choices": choices,
        "usage": usage,
    }


def generate_body(spec: ModelSpec, params: Params, sim: SimRequest) -> dict[str, Any]:
    text = (params.prompt if params.return_full_text else "") + sim.text()
    if not (params.details or params.decoder_input_details):
        return {"generated_text": text}
    prefill: list[dict[str, Any]] = []
    if params.decoder_input_details:
        rng = random.Random(sim.request_id)
        step = max(1, round(spec.chars_per_token))
        pieces = [params.prompt[i:i + step] for i in range(0, len(params.prompt), step)][: sim.input_tokens]
        prefill = [{"id": 1000 + i, "text": t, "logprob": None if i == 0 else round(-rng.random() * 5, 4)}
                   for i, t in enumerate(pieces)]
    return {
        "generated_text": text,
        "details": {
            "finish_reason": sim.finish_reason,
            "generated_tokens": len(sim.tokens),
            "seed": seed_of(params, sim),
            "prefill": prefill,
            "tokens": [token_json(t) for t in sim.tokens],
        },
    }


def chat_body(spec: ModelSpec, params: Params, sim: SimRequest) -> dict[str, Any]:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": sim.text()},
        "logprobs": None,
        "finish_reason": openai_finish(sim.finish_reason),
    }
    return chat_envelope(spec, "chat.completion", [choice], usage_of(sim))


def without_none(value: Any) -> Any:
    """A JSON value with every null-valued object key left out (pydantic's ``exclude_none``)."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value


def validation(message: str) -> dict[str, str]:
    return {"error": f"Input validation error: {message}", "error_type": "validation"}


def token_json(token: SimToken) -> dict[str, Any]:
    return {"id": token.id, "text": token.text, "logprob": token.logprob, "special": token.special}


def seed_of(params: Params, sim: SimRequest) -> int | None:
    """TGI reports the sampling seed: the request's, or a random one; null when greedy."""
    if not params.do_sample:
        return None
    return params.seed if params.seed is not None else random.Random(sim.request_id).getrandbits(63)


def openai_finish(reason: str) -> str:
    return "stop" if reason == "eos_token" else reason  # FinishReason::format(true)


def usage_of(sim: SimRequest) -> dict[str, int]:
    n = len(sim.tokens)
    return {"prompt_tokens": sim.input_tokens, "completion_tokens": n, "total_tokens": sim.input_tokens + n}
