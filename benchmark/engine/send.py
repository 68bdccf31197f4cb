"""The one request loop every protocol adapter shares: the HTTP exchange, the SSE decoding, the
timing and the classification of failures (``send``), the connector that stamps each
response chunk on arrival (``stamping_connector``), and the trace hooks that time each new
connection a request opens (``connect_trace``: ``RequestRecord.connect``).

Each event is stamped with the ``time.perf_counter()`` taken when aiohttp buffered the chunk
holding its last byte (in the connection's ``data_received``, see ``stamping_connector``), not
when our task got to read it.
One event loop can only stamp between tasks: when many streams finish at the same instant
(a batching server), the last ones are stamped after the loop has handled the first ones.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from time import perf_counter
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from benchmark.engine.protocols import Adapter, StreamFailure, clip, status_kind
from benchmark.engine.records import RequestRecord
from benchmark.engine.sse import SSEDecoder

__all__ = ["connect_trace", "send", "stamping_connector"]


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

    def resume_reading(self, resume_parser: bool = True) -> None:
        """Nothing to resume unless reading was paused. aiohttp calls this after every chunk its
        reader hands out, and then feeds the parser an empty ``data_received`` and asks the
        transport to resume: at 256 streams of a batching server, about a third of the client's
        work per event, all of it in the loop pass that reads a batch's events."""
        if self._reading_paused or getattr(self, "_buffer_paused", True) or getattr(self, "_tail", b""):
            super().resume_reading(resume_parser)


def stamping_connector(**kwargs: Any) -> aiohttp.TCPConnector:
    """A ``TCPConnector`` whose connections stamp response chunks on arrival (see ``send``)."""
    connector = aiohttp.TCPConnector(**kwargs)
    if hasattr(connector, "_factory"):
        factory: functools.partial[ResponseHandler] = functools.partial(_StampingResponseHandler, loop=asyncio.get_running_loop())
        connector._factory = factory  # noqa: SLF001
    return connector


def connect_trace() -> aiohttp.TraceConfig:
    """aiohttp trace hooks (a session's ``trace_configs``) that put in ``rec.connect`` the time
    a request spent opening a new connection, for requests sent by ``send`` (which passes its
    record as ``trace_request_ctx``). A connect the kernel had to retry (a full listen backlog
    drops the SYN; it is sent again after 1 s) shows here, not as schedule lag."""

    async def start(session: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
        ctx.connect_started = perf_counter()

    async def end(session: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
        rec = ctx.trace_request_ctx
        if isinstance(rec, RequestRecord) and hasattr(ctx, "connect_started"):
            rec.connect = perf_counter() - ctx.connect_started

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(start)
    trace.on_connection_create_end.append(end)
    return trace


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

    Never raises for a failed request: the failure is classified into ``rec.error_kind``. A
    cancelled one leaves what arrived until then in ``rec`` (``success`` False, no error kind)
    and re-raises the cancellation.
    """
    headers = {"Content-Type": "application/json", "X-Request-Id": rec.request_id}
    token_arrivals: list[tuple[float, int]] = []  # (arrival stamp, token events completed by that chunk)
    end = 0.0
    try:
        async with session.post(url, data=body, headers=headers, timeout=timeout, trace_request_ctx=rec) as resp:
            rec.http_status = resp.status
            if resp.status != 200:
                text = await resp.read()
                raise StreamFailure(status_kind(resp.status), f"HTTP {resp.status}: {clip(text)}")
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
    except asyncio.CancelledError:
        _timing(rec, token_arrivals, perf_counter(), origin)
        raise
    _timing(rec, token_arrivals, end if rec.error_kind is None and end else perf_counter(), origin)
    rec.success = rec.error_kind is None


def _timing(rec: RequestRecord, token_arrivals: list[tuple[float, int]], end: float, origin: float) -> None:
    """E2E, TTFT and the ITLs of ``rec`` from its arrivals, on the clock whose origin is ``origin``."""
    start = origin + rec.intended_send
    rec.e2e = end - start
    if token_arrivals:
        rec.ttft = token_arrivals[0][0] - start
        rec.itl = _gaps(token_arrivals)
