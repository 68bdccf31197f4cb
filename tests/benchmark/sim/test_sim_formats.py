"""Each route answers in TGI 3.x's format, parsed the way a client parses it."""

from __future__ import annotations

import json

import aiohttp
from simkit import fast_spec, gen_body, post, run, serving, stream_events

from benchmark.sim import preset
from benchmark.sim.wire import ROUTER_NAME


def test_generate_returns_text_and_details_as_tgi() -> None:
    async def go() -> None:
        async with serving(fast_spec()) as (_, [m]), aiohttp.ClientSession() as s:
            status, raw = await post(s, m.base_url + "/generate", gen_body(7))
            assert status == 200
            body = json.loads(raw)
            d = body["details"]
            assert d["finish_reason"] == "length" and d["generated_tokens"] == 7 and len(d["tokens"]) == 7
            assert set(d["tokens"][0]) == {"id", "text", "logprob", "special"}
            assert body["generated_text"] == "".join(t["text"] for t in d["tokens"])
            assert d["seed"] is None and d["prefill"] == []  # greedy; no decoder_input_details

            _, raw = await post(s, m.base_url + "/generate",
                                gen_body(3, do_sample=True, seed=42, decoder_input_details=True))
            d = json.loads(raw)["details"]
            assert d["seed"] == 42
            assert d["prefill"] and d["prefill"][0]["logprob"] is None and set(d["prefill"][0]) == {"id", "text", "logprob"}

            _, raw = await post(s, m.base_url + "/generate", {"inputs": "no parameters at all"})
            assert set(json.loads(raw)) == {"generated_text"}  # details only when asked

    run(go())


def test_generate_stream_events_as_tgi() -> None:
    async def go() -> None:
        async with serving(fast_spec()) as (_, [m]), aiohttp.ClientSession() as s:
            async with s.post(m.base_url + "/generate_stream", json=gen_body(5)) as r:
                assert r.headers["Content-Type"].startswith("text/event-stream")
                raw = await r.read()
            assert b"data:{" in raw and b"[DONE]" not in raw  # axum writes no space; TGI sends no [DONE]
            status, events = await stream_events(s, m.base_url + "/generate_stream", gen_body(5))
            assert status == 200 and len(events) == 5
            assert [e["index"] for e in events] == [1, 2, 3, 4, 5]
            assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
            last = events[-1]
            assert last["generated_text"] == "".join(e["token"]["text"] for e in events)
            assert last["details"]["generated_tokens"] == 5 and last["details"]["finish_reason"] == "length"
            assert set(last["details"]) == {"finish_reason", "generated_tokens", "seed", "input_length"}
            assert last["details"]["input_length"] == m.count_tokens("Tell me about GPUs")

    run(go())


def test_chat_completions_stream_and_usage() -> None:
    async def go() -> None:
        chat = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "stream": True}
        async with serving(fast_spec()) as (_, [m]), aiohttp.ClientSession() as s:
            url = m.base_url + "/v1/chat/completions"
            _, events = await stream_events(s, url, {**chat, "stream_options": {"include_usage": True}})
            assert events[-1] == "[DONE]"
            tokens, usage = events[:4], events[4]
            assert all(e["object"] == "chat.completion.chunk" for e in events[:-1])
            assert [e["choices"][0]["finish_reason"] for e in tokens] == [None, None, None, "length"]
            assert all(isinstance(e["choices"][0]["delta"]["content"], str) for e in tokens)
            assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4
            u = usage["usage"]
            assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]

            _, plain = await stream_events(s, url, chat)
            assert len(plain) == 5 and plain[-1] == "[DONE]"  # no usage chunk unless asked

            status, raw = await post(s, url, {**chat, "stream": False})
            body = json.loads(raw)
            assert status == 200 and body["object"] == "chat.completion"
            assert body["usage"] == u  # same prompt, same counts
            assert body["choices"][0]["finish_reason"] == "length"
            assert isinstance(body["choices"][0]["message"]["content"], str)

    run(go())


def test_seeded_early_eos_is_counted_by_the_server() -> None:
    async def go() -> None:
        async with serving(fast_spec(eos_probability=0.3)) as (_, [m]), aiohttp.ClientSession() as s:
            _, events = await stream_events(s, m.base_url + "/generate_stream", gen_body(200))
            last = events[-1]
            assert last["details"]["finish_reason"] == "eos_token"
            assert last["details"]["generated_tokens"] == len(events) < 200
            assert last["token"]["special"] and last["token"]["text"] not in last["generated_text"]
            # the same seed gives the same output; TGI's eos_token is "stop" for OpenAI clients
            chat = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 200, "seed": 7, "stream": True}
            _, a = await stream_events(s, m.base_url + "/v1/chat/completions", chat)
            _, b = await stream_events(s, m.base_url + "/v1/chat/completions", chat)
            assert [e["choices"][0]["delta"] for e in a[:-1]] == [e["choices"][0]["delta"] for e in b[:-1]]
            assert a[-2]["choices"][0]["finish_reason"] == "stop"
            assert a[-2]["choices"][0]["delta"]["content"] == ""  # the special EOS token has no content

    run(go())


def test_validation_errors_are_422_with_tgi_messages() -> None:
    async def go() -> None:
        spec = fast_spec(max_input_tokens=50, max_total_tokens=100)
        async with serving(spec) as (gpu, [m]), aiohttp.ClientSession() as s:
            status, raw = await post(s, m.base_url + "/generate", gen_body(90, prompt="x" * 80), rid="too-long")
            body = json.loads(raw)
            assert status == 422 and body["error_type"] == "validation"
            assert body["error"] == ("Input validation error: `inputs` tokens + `max_new_tokens` must be <= 100. "
                                     "Given: 20 `inputs` tokens and 90 `max_new_tokens`")
            status, raw = await post(s, m.base_url + "/generate", gen_body(0))
            assert status == 422 and "strictly positive" in json.loads(raw)["error"]
            status, _ = await post(s, m.base_url + "/generate", {"parameters": {}})
            assert status == 422  # missing `inputs`
            record = gpu.truth.get("too-long")
            assert record is not None and record.status == 422 and record.error_type == "validation"

    run(go())


def test_info_health_and_metrics() -> None:
    async def go() -> None:
        spec = preset("phi35-mini").replace(warmup_s=0.0, decode_base_s=0.001, prefill_base_s=0.001)
        async with serving(spec) as (_, [m]), aiohttp.ClientSession() as s:
            async with s.get(m.base_url + "/info") as r:
                info = await r.json()
            assert info["simulated"] is True and info["router"] == ROUTER_NAME
            assert info["model_id"] == "microsoft/Phi-3.5-mini-instruct"
            assert info["max_total_tokens"] == spec.max_total_tokens
            assert {"max_input_tokens", "max_concurrent_requests", "version"} <= set(info)
            async with s.get(m.base_url + "/health") as r:
                assert r.status == 200
            for n in (3, 4):
                await post(s, m.base_url + "/generate", gen_body(n))
            await stream_events(s, m.base_url + "/generate_stream", gen_body(5))
            async with s.get(m.base_url + "/metrics") as r:
                text = await r.text()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        types = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE")}
        assert samples["tgi_request_count"] == 3 and samples["tgi_request_success"] == 3
        assert samples["tgi_request_generated_tokens_count"] == 3
        assert samples["tgi_request_generated_tokens_sum"] == 3 + 4 + 5
        assert samples["tgi_batch_max_total_tokens"] == spec.max_batch_total_tokens
        assert types["tgi_request_queue_duration"] == types["tgi_request_inference_duration"] == "histogram"
        assert types["tgi_batch_current_size"] == types["tgi_queue_size"] == "gauge"
        assert types["tgi_request_count"] == "counter"

    run(go())
