"""Every fault kind is produced as configured, seen the way a client sees it, and logged."""

from __future__ import annotations

import json

import aiohttp
import pytest
from simkit import fast_spec, gen_body, post, run, serving, stream_events

from benchmark.sim import FAULT_KINDS, FaultSpec
from benchmark.sim.faults import FaultPlan

ORDER = ("http_5xx", "overloaded", "stall", "disconnect", "malformed", "error_event")


def _faulty(http_status: int = 500) -> FaultSpec:
    """Request n gets the n-th kind of ORDER."""
    return FaultSpec(schedule={i + 1: kind for i, kind in enumerate(ORDER)}, after_tokens=2, stall_s=0.3,
                     http_status=http_status)


def test_every_fault_kind_on_the_stream() -> None:
    assert set(ORDER) == set(FAULT_KINDS)

    async def go() -> None:
        spec = fast_spec(faults=_faulty(), sse_keepalive_s=0.1)  # see keep-alive comments during the stall
        async with serving(spec) as (gpu, [m]), aiohttp.ClientSession() as s:
            url = m.base_url + "/generate_stream"
            status, raw = await post(s, url, gen_body(6), rid="f1")
            assert status == 500 and json.loads(raw)["error_type"] == "incomplete_generation"

            status, events = await stream_events(s, url, gen_body(6), rid="f2")
            assert status == 200 and events == [{"error": "Model is overloaded", "error_type": "overloaded"}]

            status, raw = await post(s, url, gen_body(6), rid="f3")
            assert status == 200 and b"\n:\n\n" in raw  # keep-alive comments while stalled
            stall = gpu.truth.get("f3")
            assert stall and stall.emit_times[2] - stall.emit_times[1] >= 0.3 and len(stall.emit_times) == 6

            async with s.post(url, json=gen_body(6), headers={"X-Request-Id": "f4"}) as r:
                received = b""
                with pytest.raises(aiohttp.ClientPayloadError):
                    async for chunk in r.content.iter_any():
                        received += chunk
            assert received.count(b"data:") == 2  # after_tokens events, then the connection closed

            status, events = await stream_events(s, url, gen_body(6), rid="f5")
            bad = [e for e in events if isinstance(e, ValueError)]
            assert len(bad) == 1 and len(events) == 7 and events[2] is bad[0]

            status, events = await stream_events(s, url, gen_body(6), rid="f6")
            assert status == 200 and len(events) == 3
            assert events[-1] == {"error": "Request failed during generation: simulated fault", "error_type": "generation"}

            status, events = await stream_events(s, url, gen_body(6), rid="f7")  # past the schedule: clean
            assert len(events) == 6 and events[-1]["details"]["generated_tokens"] == 6

        faults = {r.request_id: r.fault for r in gpu.truth.records}
        assert faults == {"f1": "http_5xx", "f2": "overloaded", "f3": "stall", "f4": "disconnect",
                          "f5": "malformed", "f6": "error_event", "f7": None}
        assert all(r.done for r in gpu.truth.records)

    run(go())


def test_faults_on_non_streamed_routes() -> None:
    async def go() -> None:
        async with serving(fast_spec(faults=_faulty(http_status=503))) as (_, [m]), aiohttp.ClientSession() as s:
            url = m.base_url + "/generate"
            assert (await post(s, url, gen_body(4)))[0] == 503
            status, raw = await post(s, url, gen_body(4))
            assert status == 429 and json.loads(raw)["error_type"] == "overloaded"
            status, raw = await post(s, url, gen_body(4))
            assert status == 200 and json.loads(raw)["details"]["generated_tokens"] == 4  # stalled, then whole
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await post(s, url, gen_body(4))
            status, raw = await post(s, url, gen_body(4))
            with pytest.raises(ValueError):
                json.loads(raw)
            status, raw = await post(s, url, gen_body(4))
            assert status == 424 and json.loads(raw)["error_type"] == "generation"

    run(go())


def test_fault_rates_are_seeded_and_close_to_the_rate() -> None:
    spec = FaultSpec(rates={"http_5xx": 0.2, "stall": 0.1}, seed=3)
    plan_a, plan_b = FaultPlan(spec), FaultPlan(spec)
    a = [plan_a.next() for _ in range(2000)]
    assert a == [plan_b.next() for _ in range(2000)]
    assert 300 < a.count("http_5xx") < 500 and 120 < a.count("stall") < 280
    assert a != [FaultPlan(FaultSpec(rates=spec.rates, seed=4)).next() for _ in range(2000)]


def test_bad_fault_specs_name_the_key_and_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"faults.rates: got fault kind 'explode'; allowed: http_5xx"):
        FaultSpec(rates={"explode": 0.1})
    with pytest.raises(ValueError, match=r"faults.rates: got rates summing to 1.5"):
        FaultSpec(rates={"stall": 0.9, "malformed": 0.6})
    with pytest.raises(ValueError, match=r"faults.schedule.2: got fault kind 'nope'"):
        FaultSpec.from_mapping({"schedule": {"2": "nope"}})
    with pytest.raises(ValueError, match=r"faults.http_status: got 404; allowed: an HTTP status from 500 to 599"):
        FaultSpec(http_status=404)


def test_error_event_on_the_chat_stream_then_done() -> None:
    async def go() -> None:
        faults = FaultSpec(schedule={1: "error_event"}, after_tokens=1)
        async with serving(fast_spec(faults=faults)) as (_, [m]), aiohttp.ClientSession() as s:
            chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}
            status, events = await stream_events(s, m.base_url + "/v1/chat/completions", chat)
            assert status == 200 and events[-1] == "[DONE]" and events[-2]["error_type"] == "generation"
            assert len(events) == 3  # one token chunk, the error event, [DONE]

    run(go())
