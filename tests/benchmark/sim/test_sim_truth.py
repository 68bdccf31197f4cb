"""The truth log is complete, causal, and readable from another process; serve-sim serves it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

import aiohttp
import pytest
from enginekit import benchmark_argv
from simkit import fast_spec, gen_body, post, run, serving, sse_data, stream_events

from benchmark.cli import main
from benchmark.commands.serve_sim import load_config
from benchmark.errors import BenchmarkError
from benchmark.sim import SimulatedGpu, read_truth

ROOT = Path(__file__).resolve().parents[3]


def test_every_request_is_logged_under_its_request_id(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"

    async def go() -> None:
        gpu = SimulatedGpu(truth_log=str(path))
        async with serving(fast_spec(eos_probability=0.05), gpu=gpu) as (_, [m]), aiohttp.ClientSession() as s:
            streams = await asyncio.gather(*(
                stream_events(s, m.base_url + "/generate_stream", gen_body(30), rid=f"s{i}") for i in range(20)))
            await asyncio.gather(*(post(s, m.base_url + "/generate", gen_body(5), rid=f"g{i}") for i in range(3)))
            await post(s, m.base_url + "/generate", gen_body(5))  # no X-Request-Id: one is made up

        assert len(gpu.truth) == 24
        for i, (_, events) in enumerate(streams):
            rec = gpu.truth.get(f"s{i}")
            details = events[-1]["details"]
            assert rec is not None and rec.model == "m" and rec.endpoint == "/generate_stream" and rec.fault is None
            assert rec.generated_tokens == details["generated_tokens"] == len(rec.emit_times) == len(events)
            assert rec.input_tokens == details["input_length"] and rec.finish_reason == details["finish_reason"]
            assert rec.headers_sent is not None and rec.end is not None
            assert rec.received <= rec.headers_sent <= rec.emit_times[0]
            assert rec.emit_times == sorted(rec.emit_times) and rec.emit_times[-1] <= rec.end
        generated = [r for r in gpu.truth.records if not r.request_id.startswith(("s", "g"))]
        assert len(generated) == 1 and len(generated[0].request_id) == 32
        on_disk = read_truth(path)
        assert {k: asdict(v) for k, v in on_disk.items()} == {r.request_id: asdict(r) for r in gpu.truth.records}

    run(go())


def test_each_token_event_reaches_the_client_after_its_logged_emit_time() -> None:
    async def go() -> None:
        async with serving(fast_spec()) as (gpu, [m]), aiohttp.ClientSession() as s:
            arrivals: list[float] = []
            async with s.post(m.base_url + "/generate_stream", json=gen_body(20), headers={"X-Request-Id": "c"}) as r:
                async for chunk in r.content.iter_any():
                    now = time.perf_counter()
                    arrivals += [now] * len(sse_data(chunk))
        rec = gpu.truth.get("c")
        assert rec is not None and len(arrivals) == len(rec.emit_times) == 20
        assert all(emit <= seen for emit, seen in zip(rec.emit_times, arrivals))

    run(go())


def test_serve_sim_in_another_process_logs_truth_on_the_shared_clock(tmp_path: Path) -> None:
    config = tmp_path / "sim.json"
    truth = tmp_path / "truth.jsonl"
    config.write_text(json.dumps({"gpu": {"time_scale": 0.5}, "models": [
        {"key": "tiny", "model_id": "example/tiny", "decode_base_s": 0.002, "prefill_base_s": 0.002, "warmup_s": 0}]}))

    async def go() -> None:
        proc = await asyncio.create_subprocess_exec(
            *benchmark_argv("serve-sim", "--config", str(config), "--truth-log", str(truth)),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout is not None and proc.stderr is not None
        lines = []
        while not lines or not lines[-1].startswith("Ctrl-C"):
            lines.append((await proc.stdout.readline()).decode().strip())
        assert lines[0].startswith("SIMULATION")
        url = next(line.split()[1] for line in lines if line.startswith("tiny:"))
        async with aiohttp.ClientSession() as s:
            before = time.perf_counter()
            _, events = await stream_events(s, url + "/generate_stream", gen_body(5), rid="x1")
            after = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        assert await proc.wait() == 130
        rec = read_truth(truth)["x1"]
        assert len(events) == 5 == len(rec.emit_times)
        # perf_counter is CLOCK_MONOTONIC on Linux: the server's times fall inside the client's window
        assert before <= rec.received <= rec.emit_times[0] <= rec.emit_times[-1] <= after

    run(go(), timeout=120)  # a process start and one request: far above what a loaded machine needs


def test_bad_serve_sim_config_names_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BenchmarkError, match=r"--config.models\[0\].decode_bas: unknown key; allowed: .*decode_base_s"):
        load_config({"models": [{"preset": "phi35-mini", "decode_bas": 1}]})
    with pytest.raises(BenchmarkError, match=r"phi35-mini.max_batch_total_tokens: got 10; allowed: at least"):
        load_config({"models": [{"preset": "phi35-mini", "max_batch_total_tokens": 10}]})
    with pytest.raises(BenchmarkError, match=r"--config.models\[1\].port: got 'x'"):
        load_config({"models": [{"preset": "phi35-mini"}, {"preset": "phi35-mini", "port": "x"}]})
    assert main(["serve-sim", "--model", "llama-70b"]) == 2
    err = capsys.readouterr().err
    assert "'llama-70b'" in err and "phi35-mini (microsoft/Phi-3.5-mini-instruct)" in err
