"""The simulator in a process of its own (``python -m benchmark serve-sim``), for tests and
``make bench-client``: so the server and a client under test do not share a CPU-bound event
loop, and the server's truth log (``benchmark.sim.truth``) is on the same clock."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["sim_model", "sim_process"]


@contextlib.contextmanager
def sim_process(config: dict[str, Any], workdir: Path, *, timeout: float = 20.0) -> Iterator[tuple[dict[str, str], Path]]:
    """``python -m benchmark serve-sim`` in its own process (so server and client do not share a
    CPU-bound event loop); yields ({model key: base URL}, truth log path)."""
    cfg = workdir / "sim.json"
    cfg.write_text(json.dumps(config), encoding="utf-8")
    truth = workdir / "truth.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "serve-sim", "--config", str(cfg),
                             "--truth-log", str(truth)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # A server that never prints must not block the read below forever: kill it at the deadline
    # (its stdout then ends). After start-up its output is drained, so a full pipe cannot stall it.
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        urls: dict[str, str] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.match(r"\s+(\S+): (http://127\.0\.0\.1:\d+) ", line)
            if m:
                urls[m.group(1)] = m.group(2)
            if line.startswith("Ctrl-C"):
                break
        watchdog.cancel()
        if len(urls) != len(config["models"]):
            raise RuntimeError(f"serve-sim did not start within {timeout} s: {urls!r}, exit {proc.poll()!r}")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield urls, truth
    finally:
        watchdog.cancel()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def sim_model(key: str, **extra: Any) -> dict[str, Any]:
    """A serve-sim model entry: fixed 10 ms decode steps (``decode_base_s`` to change), 4 ms
    prefill, no warmup, room for 512 concurrent requests of up to 256 new tokens."""
    return {"key": key, "model_id": f"example/{key}", "warmup_s": 0.0, "prefill_base_s": 0.004,
            "prefill_s_per_token": 0.0, "decode_base_s": 0.01, "decode_s_per_context_token": 0.0,
            "max_concurrent_requests": 512, "max_batch_total_tokens": 512 * 512,
            "max_batch_prefill_tokens": 512 * 256, **extra}
