"""What the benchmark asks a server before measuring it: a wait for ``/health`` that says, while
it lasts, what it waits for, for how long so far, its limit and the last answer."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from enginekit import run

from benchmark.engine.probes import wait_healthy
from benchmark.errors import BenchmarkError


def test_a_long_wait_for_health_says_what_it_waits_for_and_how_long() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens: every try is refused
    heard: list[str] = []

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(BenchmarkError, match=rf"timed out after 0.6 s waiting for model 'm' to answer GET {url}/health"):
                await wait_healthy(session, "m", url, timeout=0.6, poll=0.05, log=heard.append, every=0.2)

    run(main())
    assert heard, "no note while waiting"
    for note in heard:
        assert note.startswith(f"  waiting for m to answer GET {url}/health: ")
        assert " s of at most 0.6 s (--ready-timeout); last: ClientConnectorError" in note, note
