"""Protocol adapters behind one small interface (``benchmark.engine.send`` is the one request
loop they all share).

An ``Adapter`` knows a protocol's path, request body and how to read its events. Adapters:

- ``tgi-stream``: TGI ``POST /generate_stream`` (SSE). One event per generated token; no
  ``[DONE]``; the last event carries ``generated_text`` and, as we ask for ``details``, the
  ``details`` with ``finish_reason`` and ``generated_tokens`` (router/src/lib.rs
  ``StreamResponse``/``StreamDetails`` in huggingface/text-generation-inference). TGI refuses
  ``decoder_input_details`` on streams (``ValidationError::PrefillDetailsStream``), so input
  tokens come only from ``details.input_length`` where a server version reports it.
- ``tgi-generate``: TGI ``POST /generate`` with ``details`` and ``decoder_input_details``: output
  tokens from ``details.generated_tokens``, input tokens from ``len(details.prefill)``.
- ``openai-chat``: ``POST /v1/chat/completions`` with ``"model"`` (the served model's name:
  servers pinned to one model refuse any other, vLLM with 404, ``transformers serve`` with
  400), ``stream: true`` and ``stream_options: {"include_usage": true}``. A chunk whose
  ``choices[].delta.content`` is non-empty is a token event; a ``usage`` object gives
  ``prompt_tokens``/``completion_tokens``. The stream is complete at ``data: [DONE]`` (OpenAI,
  TGI, vLLM) or, for servers that send none (``transformers serve`` 5.x ends after its last
  chunk), when the connection closes cleanly after a choice carried a ``finish_reason``; a
  close before any ``finish_reason`` is a failure. The ``finish_reason`` may come with the
  last token or in a chunk of its own with an empty delta (OpenAI's own API). A server that
  sends no ``usage`` (``transformers serve`` ignores ``stream_options``; some send it only
  when asked) gets its content chunks counted instead, and the record says so
  (``tokens_from="chunks"``).

Errors: a non-200 status is ``overloaded`` (429), ``http_4xx`` or ``http_5xx``. After a 200,
TGI reports a failure as an event ``{"error": "...", "error_type": "..."}`` with
``error_type`` one of ``generation``, ``overloaded``, ``validation``,
``incomplete_generation``, ... (``InferError::error_type`` in router/src/infer/mod.rs): it
counts as ``overloaded`` when the type is ``overloaded``, else ``stream_error``. A stream
that ends before it is complete is ``connection``; an event we cannot parse is ``protocol``.

Hot path: most token events are classified by byte patterns that can only occur as JSON keys
(inside a JSON string a quote is always escaped, so ``"generated_text":null`` cannot appear in
token text); anything else is fully decoded.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from benchmark.engine.records import ErrorKind, RequestRecord

__all__ = ["ADAPTERS", "END", "TOKEN", "Adapter", "StreamFailure", "adapter_for", "clip", "status_kind"]

TOKEN = 1  # the event carries one generated token
END = 2  # the event completes the response


class StreamFailure(Exception):
    """A request failed in a way the record classifies under ``kind``."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


class Adapter:
    """One protocol: where to post, what to send, how to read what comes back."""

    name: ClassVar[str]
    path: ClassVar[str]
    streaming: ClassVar[bool]

    def body(self, prompt: str, max_new_tokens: int, model_name: str) -> bytes:
        raise NotImplementedError

    def scan(self, events: list[bytes], rec: RequestRecord) -> tuple[int, bool]:
        """Streaming: read the events one chunk completed, in order, into ``rec``; return
        (token events among them, whether the response's final event was among them).

        Plain token events are recognised by ``plain_token`` from byte patterns; anything else
        is decoded by ``on_event``. Events after the final one are not read.
        """
        tokens = 0
        plain_token = self.plain_token
        for data in events:
            if plain_token(data):
                tokens += 1
                continue
            flags = self.on_event(data, rec)
            tokens += flags & TOKEN
            if flags & END:
                return tokens, True
        return tokens, False

    @staticmethod
    def plain_token(data: bytes) -> bool:
        """Cheap test for the common event: a token and nothing else to read. False = decode it."""
        return False

    def on_event(self, data: bytes, rec: RequestRecord) -> int:
        """Streaming: read one event's data into ``rec`` (full decode); return TOKEN/END flags."""
        raise NotImplementedError

    def on_body(self, body: bytes, rec: RequestRecord) -> None:
        """Non-streaming: read the whole response body into ``rec``."""
        raise NotImplementedError

    def complete_at_close(self, rec: RequestRecord) -> bool:
        """Streaming: the connection closed cleanly before a final event; is the response
        complete all the same? (Protocols whose last event is the only end marker: never.)"""
        return False

    def settle(self, rec: RequestRecord, token_events: int) -> None:
        """A complete response: fill what the server did not report (``token_events``: the
        token-bearing events read)."""


def _decode(data: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise StreamFailure("protocol", f"malformed event {clip(data)}: {e}") from e
    if not isinstance(obj, dict):
        raise StreamFailure("protocol", f"event is not a JSON object: {clip(data)}")
    return obj


def _raise_error_event(obj: dict[str, Any]) -> None:
    """TGI's ``{"error", "error_type"}`` event; also OpenAI-style ``{"error": {"message", ...}}``."""
    err = obj["error"]
    if isinstance(err, dict):
        error_type = str(err.get("type", ""))
        message = str(err.get("message", err))
        overloaded = err.get("code") == 429 or error_type == "overloaded"
    else:
        error_type = str(obj.get("error_type", ""))
        message = str(err)
        overloaded = error_type == "overloaded"
    raise StreamFailure("overloaded" if overloaded else "stream_error", f"{error_type or 'error'}: {message}")


def clip(data: bytes, n: int = 300) -> str:
    """The start of a body or event, as the server wrote it, on one line (for error texts)."""
    text = data[:n].decode("utf-8", "replace").replace("\r", "\\r").replace("\n", "\\n")
    return text + ("..." if len(data) > n else "")


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class TgiStream(Adapter):
    name = "tgi-stream"
    path = "/generate_stream"
    streaming = True

    def body(self, prompt: str, max_new_tokens: int, model_name: str) -> bytes:
        return orjson.dumps({"inputs": prompt, "parameters": {"max_new_tokens": max_new_tokens, "details": True}})

    @staticmethod
    def plain_token(data: bytes) -> bool:
        # an intermediate token event, as serde writes it (no spaces)
        return b'"generated_text":null' in data and b'"token":{' in data and data[:1] == b"{" and data[-1:] == b"}"

    def on_event(self, data: bytes, rec: RequestRecord) -> int:
        obj = _decode(data)
        if "error" in obj:
            _raise_error_event(obj)
        if not isinstance(obj.get("token"), dict):
            raise StreamFailure("protocol", f"event has neither 'token' nor 'error': {clip(data)}")
        if obj.get("generated_text") is None:
            return TOKEN
        details = obj.get("details")
        if not isinstance(details, dict) or _int_or_none(details.get("generated_tokens")) is None:
            raise StreamFailure("protocol", f"final event lacks details.generated_tokens: {clip(data)}")
        rec.output_tokens, rec.tokens_from = details["generated_tokens"], "usage"
        rec.finish_reason = str(details.get("finish_reason"))
        rec.input_tokens = _int_or_none(details.get("input_length"))
        return TOKEN | END


class TgiGenerate(Adapter):
    name = "tgi-generate"
    path = "/generate"
    streaming = False

    def body(self, prompt: str, max_new_tokens: int, model_name: str) -> bytes:
        params = {"max_new_tokens": max_new_tokens, "details": True, "decoder_input_details": True}
        return orjson.dumps({"inputs": prompt, "parameters": params})

    def on_body(self, body: bytes, rec: RequestRecord) -> None:
        obj = _decode(body)
        if "error" in obj:
            _raise_error_event(obj)
        details = obj.get("details")
        if not isinstance(details, dict) or _int_or_none(details.get("generated_tokens")) is None:
            raise StreamFailure("protocol", f"response lacks details.generated_tokens: {clip(body)}")
        rec.output_tokens, rec.tokens_from = details["generated_tokens"], "usage"
        rec.finish_reason = str(details.get("finish_reason"))
        prefill = details.get("prefill")
        rec.input_tokens = len(prefill) if isinstance(prefill, list) and prefill else None


class OpenAIChat(Adapter):
    name = "openai-chat"
    path = "/v1/chat/completions"
    streaming = True

    def body(self, prompt: str, max_new_tokens: int, model_name: str) -> bytes:
        return orjson.dumps({
            "model": model_name,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_new_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        })

    @staticmethod
    def plain_token(data: bytes) -> bool:
        # a content chunk, not the last one, no usage yet
        return (b'"finish_reason":null' in data and b'"usage":null' in data and b'"content":"' in data
                and b'"content":""' not in data and data[:1] == b"{" and data[-1:] == b"}")

    def on_event(self, data: bytes, rec: RequestRecord) -> int:
        if data == b"[DONE]":
            return END
        obj = _decode(data)
        if "error" in obj:
            _raise_error_event(obj)
        flags = 0
        choices = obj.get("choices")
        if not isinstance(choices, list):
            raise StreamFailure("protocol", f"chunk has neither 'choices' nor 'error': {clip(data)}")
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and delta.get("content"):
                flags = TOKEN
            if isinstance(choice, dict) and choice.get("finish_reason"):
                rec.finish_reason = str(choice["finish_reason"])
        usage = obj.get("usage")
        if isinstance(usage, dict) and (completion := _int_or_none(usage.get("completion_tokens"))) is not None:
            rec.output_tokens, rec.tokens_from = completion, "usage"
            rec.input_tokens = _int_or_none(usage.get("prompt_tokens"))
        return flags

    def complete_at_close(self, rec: RequestRecord) -> bool:
        return rec.finish_reason is not None  # no [DONE] (transformers serve): a finish_reason ends it

    def settle(self, rec: RequestRecord, token_events: int) -> None:
        if rec.output_tokens is None:  # no usage: count the content chunks
            rec.output_tokens, rec.tokens_from = token_events, "chunks"


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (TgiStream(), TgiGenerate(), OpenAIChat())}


def adapter_for(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown api {name!r}; allowed: {', '.join(sorted(ADAPTERS))}") from None


def status_kind(status: int) -> ErrorKind:
    if status == 429:
        return "overloaded"
    if 400 <= status < 500:
        return "http_4xx"
    if 500 <= status < 600:
        return "http_5xx"
    return "protocol"
