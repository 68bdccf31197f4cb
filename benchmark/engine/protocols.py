"""Protocol adapters behind one small interface, and the one request loop they all share.

An ``Adapter`` knows a protocol's path, request body and how to read its events; ``send``
does the HTTP exchange, the SSE decoding and the timing for every adapter alike. Adapters:

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
token text); anything else is fully decoded. Each event is stamped with the
``time.perf_counter()`` taken when aiohttp buffered the chunk holding its last byte (in the
connection's ``data_received``, see ``stamping_connector``), not when our task got to read it.
One event loop can only stamp between tasks: when many streams finish at the same instant
(a batching server), the last ones are stamped after the loop has handled the first ones.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from time import perf_counter
from typing import Any, ClassVar

import aiohttp
import orjson
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from benchmark.engine.records import ErrorKind, RequestRecord
from benchmark.engine.sse import SSEDecoder

__all__ = ["ADAPTERS", "Adapter", "StreamFailure", "adapter_for", "send", "stamping_connector"]

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
        raise StreamFailure("protocol", f"malformed event {_clip(data)}: {e}") from e
    if not isinstance(obj, dict):
        raise StreamFailure("protocol", f"event is not a JSON object: {_clip(data)}")
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


def _clip(data: bytes, n: int = 300) -> str:
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
            raise StreamFailure("protocol", f"event has neither 'token' nor 'error': {_clip(data)}")
        if obj.get("generated_text") is None:
            return TOKEN
        details = obj.get("details")
        if not isinstance(details, dict) or _int_or_none(details.get("generated_tokens")) is None:
            raise StreamFailure("protocol", f"final event lacks details.generated_tokens: {_clip(data)}")
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
            raise StreamFailure("protocol", f"response lacks details.generated_tokens: {_clip(body)}")
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
            raise StreamFailure("protocol", f"chunk has neither 'choices' nor 'error': {_clip(data)}")
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


class _StampedBuffer(collections.deque[bytes]):
    """aiohttp's response buffer, noting ``perf_counter()`` and size of every chunk appended.

    ``StreamReader.feed_data`` appends each chunk from the protocol's ``data_received``, so
    the stamp is taken when the event loop handles the socket read, before our task is
    scheduled: under load the task may resume milliseconds later, and ``readany`` joins
    every chunk buffered meanwhile. (aiohttp 3.14: ``StreamReader._buffer`` is a deque that
    ``feed_data`` appends to and ``readany`` empties.)
    """

    __slots__ = ("stamps",)

    def __init__(self, chunks: collections.deque[bytes], arrived: float) -> None:
        super().__init__(chunks)
        self.stamps: collections.deque[tuple[float, int]] = collections.deque((arrived, len(c)) for c in chunks)

    def append(self, data: bytes) -> None:
        self.stamps.append((perf_counter(), len(data)))
        super().append(data)


class _StampingResponseHandler(ResponseHandler):
    """aiohttp's connection protocol, fitting each new response body with a ``_StampedBuffer``
    in the ``data_received`` call that creates it, so that body bytes arriving with the
    headers, before our task has even seen the response, carry their real arrival time."""

    def data_received(self, data: bytes) -> None:
        arrived = perf_counter()
        super().data_received(data)
        payload = self._payload
        if payload is not None:
            _install(payload, arrived)


def stamping_connector(**kwargs: Any) -> aiohttp.TCPConnector:
    """A ``TCPConnector`` whose connections stamp response chunks on arrival (see ``send``)."""
    connector = aiohttp.TCPConnector(**kwargs)
    if hasattr(connector, "_factory"):
        factory: functools.partial[ResponseHandler] = functools.partial(_StampingResponseHandler, loop=asyncio.get_running_loop())
        connector._factory = factory  # noqa: SLF001
    return connector


def _install(content: aiohttp.StreamReader, arrived: float) -> collections.deque[tuple[float, int]] | None:
    buffer = getattr(content, "_buffer", None)
    if isinstance(buffer, _StampedBuffer):
        return buffer.stamps
    if type(buffer) is not collections.deque or getattr(content, "_buffer_offset", 0):
        return None  # an aiohttp we do not know: stamp when the read returns
    stamped = _StampedBuffer(buffer, arrived)
    content._buffer = stamped  # type: ignore[attr-defined]  # noqa: SLF001
    return stamped.stamps


def _stamp_arrivals(content: aiohttp.StreamReader) -> collections.deque[tuple[float, int]] | None:
    """The arrival stamps of a response body; fitted now if its connection did not (a session
    without ``stamping_connector``), in which case bytes already buffered get the time of now."""
    return _install(content, perf_counter())


def _arrivals(chunk: bytes, stamps: collections.deque[tuple[float, int]] | None) -> list[tuple[float, bytes]]:
    """Split what ``readany`` returned back into the chunks as they arrived, with their stamps."""
    if not stamps:
        return [(perf_counter(), chunk)]
    t, size = stamps.popleft()
    if size == len(chunk):
        return [(t, chunk)]
    out: list[tuple[float, bytes]] = []
    pos = 0
    while True:
        out.append((t, chunk[pos:pos + size]))
        pos += size
        if pos >= len(chunk) or not stamps:
            break
        t, size = stamps.popleft()
    if pos < len(chunk):
        out.append((perf_counter(), chunk[pos:]))
    return out


def _gaps(arrivals: list[tuple[float, int]]) -> list[float]:
    """Every gap between consecutive token events; events of one chunk are 0 apart."""
    prev, n = arrivals[0]
    gaps = [0.0] * (n - 1)
    for t, n in arrivals[1:]:
        gaps.append(t - prev)
        if n > 1:
            gaps += [0.0] * (n - 1)
        prev = t
    return gaps


def status_kind(status: int) -> ErrorKind:
    if status == 429:
        return "overloaded"
    if 400 <= status < 500:
        return "http_4xx"
    if 500 <= status < 600:
        return "http_5xx"
    return "protocol"


async def send(
    session: aiohttp.ClientSession,
    url: str | URL,
    adapter: Adapter,
    body: bytes,
    rec: RequestRecord,
    origin: float,
    timeout: aiohttp.ClientTimeout,
) -> None:
    """Send one request and fill ``rec`` (timings on the clock whose origin is ``origin``).

    Never raises for a failed request: the failure is classified into ``rec.error_kind``.
    """
    headers = {"Content-Type": "application/json", "X-Request-Id": rec.request_id}
    token_arrivals: list[tuple[float, int]] = []  # (arrival stamp, token events completed by that chunk)
    end = 0.0
    try:
        async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
            rec.http_status = resp.status
            if resp.status != 200:
                text = await resp.read()
                raise StreamFailure(status_kind(resp.status), f"HTTP {resp.status}: {_clip(text)}")
            if not adapter.streaming:
                adapter.on_body(await resp.read(), rec)
                end = perf_counter()
            else:
                decoder = SSEDecoder()
                content = resp.content
                stamps = _stamp_arrivals(content)
                scan = adapter.scan
                last_event = 0.0  # arrival of the last event read
                while True:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    if end:
                        continue  # drain after the final event so the connection is reused
                    for t, piece in _arrivals(chunk, stamps):
                        events = decoder.feed(piece)
                        if not events:
                            continue
                        last_event = t
                        tokens, final = scan(events, rec)
                        if tokens:
                            token_arrivals.append((t, tokens))
                        if final:
                            end = t
                            break
                count = sum(n for _, n in token_arrivals)
                if not end:
                    if not (last_event and adapter.complete_at_close(rec)):
                        raise StreamFailure("connection", f"stream closed before its final event after {count} token events")
                    end = last_event  # a clean close after the finish_reason: its last event ends it
                adapter.settle(rec, count)
    except StreamFailure as f:
        rec.error_kind, rec.error = f.kind, str(f)
    except asyncio.TimeoutError as e:  # also aiohttp's ServerTimeoutError (connect/read)
        rec.error_kind, rec.error = "timeout", f"timed out after {timeout.total or timeout.sock_read}s: {e!r}"
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as e:
        rec.error_kind, rec.error = "connection", f"{type(e).__name__}: {e}"
    except aiohttp.ClientError as e:
        rec.error_kind, rec.error = "protocol", f"{type(e).__name__}: {e}"
    if rec.error_kind is not None or not end:
        end = perf_counter()
    start = origin + rec.intended_send
    rec.e2e = end - start
    if token_arrivals:
        rec.ttft = token_arrivals[0][0] - start
        rec.itl = _gaps(token_arrivals)
    rec.success = rec.error_kind is None
