"""Continuous batching within the KV-token budget, and max_concurrent_requests (TGI's 429)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from simkit import fast_spec, gen_body, post, run, serving, stream_events


def test_batch_stays_within_the_kv_budget_and_fills_it() -> None:
    # each request reserves 10 input + 40 new = 50 tokens of a 200-token budget: 4 fit at once
    spec = fast_spec(max_input_tokens=50, max_total_tokens=100, max_batch_total_tokens=200)

    async def go() -> None:
        async with serving(spec) as (gpu, [m]), aiohttp.ClientSession() as s:
            replica = m.replicas[0]
            sizes: list[tuple[int, int]] = []

            async def watch() -> None:
                while True:
                    sizes.append((len(replica.running), replica.batch_tokens))
                    await asyncio.sleep(0.001)

            watcher = asyncio.create_task(watch())
            prompt = "x" * 40  # 10 tokens
            results = await asyncio.gather(*(
                post(s, m.base_url + "/generate", gen_body(40, prompt=prompt), rid=f"r{i}") for i in range(10)))
            watcher.cancel()
        assert all(status == 200 for status, _ in results)
        assert max(n for n, _ in sizes) == 4
        assert max(tokens for _, tokens in sizes) <= 200
        # the ones that did not fit waited in the queue: they started after the first ones finished
        records = [gpu.truth.get(f"r{i}") for i in range(10)]
        ends = sorted(r.end for r in records if r and r.end)
        starts = sorted(r.received for r in records if r)
        assert len(ends) == 10 and ends[0] > starts[-1]

    run(go())


def test_a_new_request_joins_the_running_batch() -> None:
    async def go() -> None:
        async with serving(fast_spec()) as (gpu, [m]), aiohttp.ClientSession() as s:
            long = asyncio.create_task(stream_events(s, m.base_url + "/generate_stream", gen_body(60), rid="long"))
            while not (rec := gpu.truth.get("long")) or len(rec.emit_times) < 5:
                await asyncio.sleep(0.002)
            await stream_events(s, m.base_url + "/generate_stream", gen_body(5), rid="short")
            await long
        short, long_rec = gpu.truth.get("short"), gpu.truth.get("long")
        assert short and long_rec and short.end and long_rec.end
        assert short.end < long_rec.end  # continuous batching: no waiting for the long one to finish

    run(go())


def test_past_max_concurrent_requests_the_server_is_overloaded_as_tgi() -> None:
    spec = fast_spec(max_concurrent_requests=2, decode_base_s=0.005)

    async def go() -> None:
        async with serving(spec) as (gpu, [m]), aiohttp.ClientSession() as s:
            results = await asyncio.gather(*(
                post(s, m.base_url + "/generate", gen_body(20), rid=f"g{i}") for i in range(5)))
            statuses = sorted(status for status, _ in results)
            assert statuses == [200, 200, 429, 429, 429]
            assert all(json.loads(raw) == {"error": "Model is overloaded", "error_type": "overloaded"}
                       for status, raw in results if status == 429)
            # streaming: TGI sends the overload as an event after a 200
            streams = await asyncio.gather(*(
                stream_events(s, m.base_url + "/generate_stream", gen_body(20)) for _ in range(3)))
            overloaded = [events for status, events in streams if events[-1].get("error_type") == "overloaded"]
            assert len(overloaded) == 1 and all(status == 200 for status, _ in streams)
        assert sum(1 for r in gpu.truth.records if r.error_type == "overloaded") == 4

    run(go())


def test_late_arrivals_join_a_running_batch_as_tgi_decides() -> None:
    """With 4 running, one newcomer is fewer than 1.2 x 4 waiting: it joins only after
    max_waiting_tokens decode steps. With waiting_served_ratio 0 it joins at once."""

    async def tokens_before_newcomer(**changes: object) -> int:
        async with serving(fast_spec(max_waiting_tokens=10, decode_base_s=0.01, **changes)) as (gpu, [m]), aiohttp.ClientSession() as s:
            url = m.base_url + "/generate_stream"
            old = [asyncio.create_task(stream_events(s, url, gen_body(40), rid=f"old{i}")) for i in range(4)]
            while not (rec := gpu.truth.get("old0")) or len(rec.emit_times) < 3:
                await asyncio.sleep(0.001)
            await stream_events(s, url, gen_body(3), rid="new")
            await asyncio.gather(*old)
            first_new = gpu.truth.get("new").emit_times[0]  # type: ignore[union-attr]
            return sum(t < first_new for t in gpu.truth.get("old0").emit_times)  # type: ignore[union-attr]

    assert run(tokens_before_newcomer()) == 11  # the prefill's token + 10 decode steps
    assert run(tokens_before_newcomer(waiting_served_ratio=0.0)) <= 5


def test_a_client_that_goes_away_frees_its_batch_slot() -> None:
    async def go() -> None:
        async with serving(fast_spec(decode_base_s=0.005)) as (gpu, [m]), aiohttp.ClientSession() as s:
            async with s.post(m.base_url + "/generate_stream", json=gen_body(500), headers={"X-Request-Id": "gone"}) as r:
                await r.content.readuntil(b"\n\n")
                r.close()
            replica = m.replicas[0]
            while not (rec := gpu.truth.get("gone")) or not rec.done:
                await asyncio.sleep(0.005)
            assert rec.error_type == "client_disconnected" and 0 < len(rec.emit_times) < 500
            await asyncio.sleep(0.02)
            assert replica.in_flight == 0 and not replica.running

    run(go())


def test_a_stream_waiting_in_the_queue_gets_keep_alive_comments() -> None:
    # a budget of one request at a time: the second waits for the first, as axum keeps it alive
    spec = fast_spec(max_input_tokens=10, max_total_tokens=100, max_batch_total_tokens=100,
                     decode_base_s=0.005, sse_keepalive_s=0.05)

    async def go() -> None:
        async with serving(spec) as (_, [m]), aiohttp.ClientSession() as s:
            url = m.base_url + "/generate_stream"
            first = asyncio.create_task(post(s, url, gen_body(95, prompt="a")))  # reserves 96 of 100
            await asyncio.sleep(0.02)
            status, raw = await post(s, url, gen_body(5, prompt="b"))
            await first
        head = raw[: raw.index(b"data:")]
        assert status == 200 and head.count(b":\n\n") >= 3  # ~0.45 s queued, a comment every 0.05 s
        assert raw.count(b"data:") == 5

    run(go())
