"""Each adapter against real aiohttp servers on 127.0.0.1 that speak the protocol's edge cases:
what the record says, which error kind a failure gets, and what the client sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from enginekit import chat_chunk, run, serving, sse, stream_response, tgi_final, tgi_stream_body, tgi_token

from benchmark.engine.protocols import adapter_for
from benchmark.engine.records import RequestRecord, RunClock
from benchmark.engine.send import send

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def exchange(api: str, handler: Handler, *, timeout: float = 5.0, prompt: str = "hello",
             max_new_tokens: int = 7, url: str | None = None) -> tuple[RequestRecord, list[dict[str, Any]]]:
    """One request through ``send``; returns the record and what the server received."""
    seen: list[dict[str, Any]] = []
    adapter = adapter_for(api)

    async def recording(request: web.Request) -> web.StreamResponse:
        seen.append({"path": request.path, "request_id": request.headers.get("X-Request-Id"), "body": await request.json()})
        return await handler(request)

    async def go() -> RequestRecord:
        app = web.Application()
        app.router.add_post(adapter.path, recording)
        async with serving(app) as base, aiohttp.ClientSession() as session:
            clock = RunClock()
            now = clock.now()
            rec = RequestRecord(request_id="rid-1", model="m", scenario="s", prompt_id="p", api=api,
                                intended_send=now, sent=now)
            body = adapter.body(prompt, max_new_tokens, "served/model")
            await send(session, (url or base) + adapter.path, adapter, body, rec, clock.origin,
                       aiohttp.ClientTimeout(total=timeout))
            return rec

    return run(go()), seen


def parts_handler(parts: list[bytes], gap: float = 0.0) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_response(request, parts, gap)
    return handler


def test_tgi_stream_success_with_one_event_per_write_and_keepalives() -> None:
    parts = [b":\n\n"] + [sse(tgi_token(i), space=i % 2 == 1) for i in range(4)] + [b": ping\n\n", sse(tgi_final(4, 5))]
    rec, seen = exchange("tgi-stream", parts_handler(parts, gap=0.01))
    assert rec.success and rec.error_kind is None, rec.error
    assert rec.output_tokens == 5 and rec.finish_reason == "length" and rec.http_status == 200
    assert len(rec.itl) == 4  # five token events, four gaps
    assert all(gap > 0.005 for gap in rec.itl), rec.itl  # each event stamped on its own arrival
    assert rec.ttft is not None and rec.e2e is not None and 0 < rec.ttft < rec.e2e
    assert rec.e2e == pytest.approx(rec.ttft + sum(rec.itl), abs=1e-9)  # e2e ends at the final event
    sent = seen[0]
    assert sent["request_id"] == "rid-1"
    assert sent["body"] == {"inputs": "hello", "parameters": {"max_new_tokens": 7, "details": True}}


def test_tgi_stream_events_in_one_chunk_share_its_arrival_time() -> None:
    rec, _ = exchange("tgi-stream", parts_handler([tgi_stream_body(10)]))
    assert rec.success and rec.output_tokens == 10
    assert rec.itl == [0.0] * 9


def test_server_token_count_wins_over_event_count() -> None:
    # a server may send fewer events than tokens (or special tokens): the record keeps the server's count
    parts = [sse(tgi_token(0)), sse(tgi_final(1, 9))]
    rec, _ = exchange("tgi-stream", parts_handler(parts))
    assert rec.success and rec.output_tokens == 9 and len(rec.itl) == 1


@pytest.mark.parametrize(
    ("error_type", "kind"), [("overloaded", "overloaded"), ("generation", "stream_error"),
                             ("incomplete_generation", "stream_error")])
def test_tgi_error_event_after_200_is_a_failure(error_type: str, kind: str) -> None:
    parts = [sse(tgi_token(0)), sse(tgi_token(1)), sse({"error": "boom", "error_type": error_type})]
    rec, _ = exchange("tgi-stream", parts_handler(parts))
    assert not rec.success and rec.http_status == 200
    assert rec.error_kind == kind and rec.error is not None and "boom" in rec.error
    assert rec.ttft is not None and len(rec.itl) == 1 and rec.e2e is not None


@pytest.mark.parametrize(("status", "kind"), [(429, "overloaded"), (422, "http_4xx"), (424, "http_4xx"),
                                              (500, "http_5xx"), (503, "http_5xx")])
@pytest.mark.parametrize("api", ["tgi-stream", "tgi-generate", "openai-chat"])
def test_http_status_kinds(api: str, status: int, kind: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response({"error": "nope", "error_type": "x"}, status=status)

    rec, _ = exchange(api, handler)
    assert (rec.success, rec.error_kind, rec.http_status) == (False, kind, status)
    assert rec.error is not None and str(status) in rec.error and "nope" in rec.error
    assert rec.ttft is None and rec.e2e is not None and rec.e2e >= 0


def test_torn_connection_mid_stream_is_connection() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(sse(tgi_token(0)) + sse(tgi_token(1)))
        assert request.transport is not None
        request.transport.close()  # no final chunk of the chunked encoding: a torn stream
        return resp

    rec, _ = exchange("tgi-stream", handler)
    assert (rec.success, rec.error_kind) == (False, "connection"), rec.error
    assert rec.ttft is not None and len(rec.itl) == 1


def test_stream_that_ends_cleanly_without_final_event_is_connection() -> None:
    rec, _ = exchange("tgi-stream", parts_handler([sse(tgi_token(0)), b'data:{"index":1,"tok']))
    assert (rec.success, rec.error_kind) == (False, "connection")
    assert rec.error is not None and "before its final event" in rec.error


@pytest.mark.parametrize("bad", [b'{"index":1,"token":{"id":', b"not json", b"[1,2]", b'{"index":1}'])
def test_malformed_event_is_protocol(bad: bytes) -> None:
    rec, _ = exchange("tgi-stream", parts_handler([sse(tgi_token(0)), sse(bad), sse(tgi_final(1, 2))]))
    assert (rec.success, rec.error_kind) == (False, "protocol"), rec.error


def test_final_event_without_details_is_protocol() -> None:
    final = tgi_final(1, 2) | {"details": None}
    rec, _ = exchange("tgi-stream", parts_handler([sse(tgi_token(0)), sse(final)]))
    assert (rec.success, rec.error_kind) == (False, "protocol")
    assert rec.error is not None and "generated_tokens" in rec.error


def test_timeout_while_stalled() -> None:
    rec, _ = exchange("tgi-stream", parts_handler([sse(tgi_token(0)), b":\n\n", sse(tgi_final(1, 2))], gap=0.6),
                      timeout=0.3)
    assert (rec.success, rec.error_kind) == (False, "timeout"), rec.error
    assert rec.e2e is not None and 0.3 <= rec.e2e < 5.0  # it ends at the timeout, long before the server would


def test_connection_refused_is_connection() -> None:
    async def never(request: web.Request) -> web.StreamResponse:
        raise AssertionError("not reached")

    rec, _ = exchange("tgi-stream", never, url="http://127.0.0.1:9")  # discard port: nothing listens
    assert (rec.success, rec.error_kind, rec.http_status) == (False, "connection", None), rec.error


def test_tgi_generate_reads_details() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        prefill = [{"id": i, "text": "p", "logprob": None} for i in range(6)]
        return web.json_response({"generated_text": "abc", "details": {
            "finish_reason": "eos_token", "generated_tokens": 3, "seed": None, "prefill": prefill, "tokens": []}})

    rec, seen = exchange("tgi-generate", handler)
    assert rec.success, rec.error
    assert (rec.output_tokens, rec.input_tokens, rec.finish_reason) == (3, 6, "eos_token")
    assert rec.ttft is None and rec.itl == [] and rec.e2e is not None and rec.e2e > 0
    assert seen[0]["path"] == "/generate"
    assert seen[0]["body"]["parameters"] == {"max_new_tokens": 7, "details": True, "decoder_input_details": True}


def test_tgi_generate_truncated_body_is_protocol() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=b'{"generated_text":"ab', content_type="application/json")

    rec, _ = exchange("tgi-generate", handler)
    assert (rec.success, rec.error_kind) == (False, "protocol")


def chat_parts(usage_in_own_chunk: bool) -> list[bytes]:
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    parts = [sse(chat_chunk(""), space=True)]  # vLLM's role-only first chunk: not a token
    parts += [sse(chat_chunk(t), space=True) for t in ("a", "b")]
    if usage_in_own_chunk:
        parts += [sse(chat_chunk("c", "stop"), space=True), sse(chat_chunk(None, usage=usage, choices=False), space=True)]
    else:
        parts += [sse(chat_chunk("c", "stop", usage=usage), space=True)]
    return parts + [b"data: [DONE]\n\n"]


@pytest.mark.parametrize("usage_in_own_chunk", [True, False])
def test_openai_chat_stream_with_usage_and_done(usage_in_own_chunk: bool) -> None:
    rec, seen = exchange("openai-chat", parts_handler(chat_parts(usage_in_own_chunk), gap=0.005))
    assert rec.success, rec.error
    assert (rec.output_tokens, rec.input_tokens, rec.finish_reason) == (3, 11, "stop")
    assert len(rec.itl) == 2  # three content chunks
    body = seen[0]["body"]
    assert seen[0]["path"] == "/v1/chat/completions"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 7 and body["model"] == "served/model"
    assert body["messages"] == [{"role": "user", "content": "hello"}]


def test_openai_chat_without_usage_counts_the_content_chunks_and_says_so() -> None:
    # a server that never sends usage (transformers serve ignores stream_options)
    parts = [sse(chat_chunk("")), sse(chat_chunk("a")), sse(chat_chunk("b")), sse(chat_chunk("c", "length")),
             b"data: [DONE]\n\n"]
    rec, _ = exchange("openai-chat", parts_handler(parts))
    assert rec.success, rec.error
    assert (rec.output_tokens, rec.tokens_from, rec.finish_reason) == (3, "chunks", "length")


def test_openai_chat_usage_is_the_servers_count_and_says_so() -> None:
    rec, _ = exchange("openai-chat", parts_handler(chat_parts(usage_in_own_chunk=True)))
    assert (rec.output_tokens, rec.tokens_from) == (3, "usage")


@pytest.mark.parametrize("finish_in_own_chunk", [False, True])
def test_openai_chat_without_done_is_complete_after_a_finish_reason(finish_in_own_chunk: bool) -> None:
    # transformers serve 5.x: the last chunk carries finish_reason and usage, then the stream
    # ends with no [DONE]; OpenAI's own API puts finish_reason in a chunk with an empty delta
    usage = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    parts = [sse(chat_chunk("a")), sse(chat_chunk("b"))]
    if finish_in_own_chunk:
        parts += [sse(chat_chunk("c")), sse(chat_chunk(None, "stop", usage=usage))]
    else:
        parts += [sse(chat_chunk("c", "stop", usage=usage))]

    async def slow_close(request: web.Request) -> web.StreamResponse:
        resp = await stream_response_open(request)
        for part in parts:
            await resp.write(part)
            await asyncio.sleep(0.05)
        await asyncio.sleep(3.0)  # the server lingers before it closes the stream
        await resp.write_eof()
        return resp

    rec, _ = exchange("openai-chat", slow_close)
    assert rec.success, rec.error
    assert (rec.output_tokens, rec.tokens_from, rec.finish_reason) == (3, "usage", "stop")
    assert len(rec.itl) == 2
    # E2E ends at the last event, not at the close 3 s later
    assert rec.e2e is not None and rec.ttft is not None
    assert 0.05 * (len(parts) - 1) - 0.01 <= rec.e2e - rec.ttft < 2.0


async def stream_response_open(request: web.Request) -> web.StreamResponse:
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    return resp


def test_openai_chat_closed_before_any_finish_reason_is_connection() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    rec, _ = exchange("openai-chat", parts_handler([sse(chat_chunk("a")), sse(chat_chunk("b", usage=usage))]))
    assert (rec.success, rec.error_kind) == (False, "connection")
    assert rec.error is not None and "after 2 token events" in rec.error


@pytest.mark.parametrize(("event", "kind"), [
    ({"error": "Model is overloaded", "error_type": "overloaded"}, "overloaded"),
    ({"error": {"message": "bad thing", "type": "server_error", "code": 500}}, "stream_error"),
])
def test_openai_chat_error_event(event: dict[str, Any], kind: str) -> None:
    rec, _ = exchange("openai-chat", parts_handler([sse(chat_chunk("a")), sse(event)]))
    assert (rec.success, rec.error_kind) == (False, kind)


def test_unknown_api_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"'tgi'; allowed: openai-chat, tgi-generate, tgi-stream"):
        adapter_for("tgi")


def test_record_round_trips_through_json() -> None:
    rec, _ = exchange("tgi-stream", parts_handler([tgi_stream_body(4)]))
    assert RequestRecord.from_dict(json.loads(rec.to_json())) == rec


def test_chunks_read_together_keep_their_own_arrival_times() -> None:
    # under load the reading task resumes late and readany() returns several chunks joined;
    # each must keep the time aiohttp buffered it, not the time the task read it
    from aiohttp.base_protocol import BaseProtocol

    from benchmark.engine.send import _arrivals, _stamp_arrivals  # the stamping internals under test

    async def go() -> list[tuple[float, bytes]]:
        loop = asyncio.get_running_loop()
        reader = aiohttp.StreamReader(BaseProtocol(loop), 2**16, loop=loop)
        stamps = _stamp_arrivals(reader)
        assert stamps is not None, "aiohttp's StreamReader changed: arrival stamping is off"
        for part in (b"data:1\n\n", b"data:2\n\n", b"data:3\n\n"):
            reader.feed_data(part)
            time.sleep(0.01)  # the loop is busy elsewhere; the task has not read yet
        joined = await reader.readany()
        assert joined == b"data:1\n\ndata:2\n\ndata:3\n\n"
        return _arrivals(joined, stamps)

    pieces = run(go())
    assert [p for _, p in pieces] == [b"data:1\n\n", b"data:2\n\n", b"data:3\n\n"]
    times = [t for t, _ in pieces]
    assert times[1] - times[0] >= 0.009 and times[2] - times[1] >= 0.009


@pytest.mark.parametrize("api", ["tgi-stream", "openai-chat"])
def test_byte_pattern_shortcut_agrees_with_full_decoding(api: str) -> None:
    # token texts that contain the very patterns the shortcut looks for: JSON escapes their
    # quotes, so the shortcut must still classify exactly as decoding the event would
    texts = ['"generated_text":null', '"usage":null', '"finish_reason":null', '"content":""', "}", "{", "data:",
             '"token":{', '\\"', "\n", " plain", ""]
    adapter = adapter_for(api)
    for text in texts:
        if api == "tgi-stream":
            events = [tgi_token(0, text), tgi_final(1, 2, text=text)]
        else:
            events = [chat_chunk(text), chat_chunk(text, "stop", usage={"prompt_tokens": 1, "completion_tokens": 2,
                                                                          "total_tokens": 3})]
        for event in events:
            data = json.dumps(event, separators=(",", ":")).encode()
            fresh = RequestRecord(request_id="r", model="m", scenario="s", prompt_id="p", api=api,
                                  intended_send=0.0, sent=0.0)
            if adapter.plain_token(data):
                assert adapter.on_event(data, fresh) == 1, (text, event)  # a token, nothing else to read
                assert (fresh.output_tokens, fresh.finish_reason) == (None, None)
    plain = tgi_token(0, " plain") if api == "tgi-stream" else chat_chunk(" plain")
    assert adapter.plain_token(json.dumps(plain, separators=(",", ":")).encode())  # the shortcut is taken
