"""What to send and when: prompts, the guide's standard suite, closed- and open-loop patterns.

- ``STANDARD_PROMPTS``: five fixed prompts, one per task type (summarisation, question
  answering, code, reasoning, creative writing).
- ``standard_suite()``: the guide's suite, each prompt ``iterations`` (10) times, sequentially
  (closed loop, concurrency 1), ``max_new_tokens`` 100: 50 requests per model.
- ``closed_loop(n)``: ``n`` requests always in flight; each finished request is replaced at once.
- ``open_loop(rate)``: arrivals at ``rate`` requests/s, Poisson (seeded exponential gaps) or
  constant, whatever the server does; the schedule is computed before the clock starts
  (``LoadPattern.schedule``), so the client's own delays show as schedule lag.

Every pattern is bounded by ``max_requests``, ``duration`` (s, no new request after it), or
both; requests cycle through the prompts in order, so prompt ``i % len(prompts)`` goes with
request ``i``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Prompt", "STANDARD_PROMPTS", "LoadPattern", "standard_suite", "closed_loop", "open_loop"]


@dataclass(frozen=True, slots=True)
class Prompt:
    id: str
    text: str


STANDARD_PROMPTS: tuple[Prompt, ...] = (
    Prompt("summarize", "Summarize in three sentences why the transistor changed computing, "
                        "covering cost, size and reliability."),
    Prompt("qa", "What is the difference between a process and a thread in an operating system?"),
    Prompt("code", "Write a Python function that returns the n-th Fibonacci number iteratively, "
                   "with a docstring."),
    Prompt("reasoning", "A train leaves at 9:40 and arrives at 13:15 after two stops of 10 minutes "
                        "each. How long was it moving? Explain step by step."),
    Prompt("creative", "Write a short poem about a lighthouse keeper who sees the sea for the "
                       "last time."),
)

Kind = Literal["closed", "open"]
Arrival = Literal["poisson", "constant"]


@dataclass(frozen=True, kw_only=True)
class LoadPattern:
    """How one model is driven. Build it with ``standard_suite``/``closed_loop``/``open_loop``."""

    kind: Kind
    concurrency: int = 1  # closed loop: requests in flight
    rate: float = 0.0  # open loop: requests per second
    arrival: Arrival = "poisson"
    max_requests: int | None = None
    duration: float | None = None  # s; no request is started after it
    max_new_tokens: int = 100
    seed: int = 0
    prompts: tuple[Prompt, ...] = field(default=STANDARD_PROMPTS, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("closed", "open"):
            raise ValueError(f"load kind {self.kind!r} is not one of 'closed', 'open'")
        if self.kind == "closed" and self.concurrency < 1:
            raise ValueError(f"concurrency {self.concurrency!r} must be >= 1")
        if self.kind == "open" and not self.rate > 0:
            raise ValueError(f"rate {self.rate!r} must be > 0 requests/s")
        if self.arrival not in ("poisson", "constant"):
            raise ValueError(f"arrival {self.arrival!r} is not one of 'poisson', 'constant'")
        if self.max_requests is None and self.duration is None:
            raise ValueError("a load needs a limit: max_requests, duration, or both")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError(f"max_requests {self.max_requests!r} must be >= 1")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"duration {self.duration!r} must be > 0 s")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens {self.max_new_tokens!r} must be >= 1")
        if not self.prompts:
            raise ValueError("a load needs at least one prompt")

    def prompt(self, index: int) -> Prompt:
        return self.prompts[index % len(self.prompts)]

    def schedule(self) -> list[float]:
        """Open loop: intended send offsets (s from the start), computed up front, seeded."""
        if self.kind != "open":
            raise ValueError("only an open-loop pattern has a schedule")
        rng = random.Random(self.seed)
        limit = self.max_requests if self.max_requests is not None else float("inf")
        horizon = self.duration if self.duration is not None else float("inf")
        offsets: list[float] = []
        t = 0.0
        while len(offsets) < limit:
            if offsets or self.arrival == "poisson":
                t += rng.expovariate(self.rate) if self.arrival == "poisson" else 1.0 / self.rate
            if t >= horizon:
                break
            offsets.append(t)
        return offsets

    def describe(self) -> str:
        what = (f"closed loop, concurrency {self.concurrency}" if self.kind == "closed"
                else f"open loop, {self.arrival} {self.rate:g} req/s")
        limits = [f"{self.max_requests} requests"] if self.max_requests is not None else []
        limits += [f"{self.duration:g} s"] if self.duration is not None else []
        return f"{what}, {' or '.join(limits)}, max_new_tokens {self.max_new_tokens}"


def standard_suite(*, iterations: int = 10, max_new_tokens: int = 100) -> LoadPattern:
    """The guide's suite: the five standard prompts x ``iterations``, one at a time."""
    return LoadPattern(kind="closed", concurrency=1, max_requests=len(STANDARD_PROMPTS) * iterations,
                       max_new_tokens=max_new_tokens)


def closed_loop(concurrency: int, *, max_requests: int | None = None, duration: float | None = None,
                max_new_tokens: int = 100) -> LoadPattern:
    return LoadPattern(kind="closed", concurrency=concurrency, max_requests=max_requests,
                       duration=duration, max_new_tokens=max_new_tokens)


def open_loop(rate: float, *, arrival: Arrival = "poisson", max_requests: int | None = None,
              duration: float | None = None, max_new_tokens: int = 100, seed: int = 0) -> LoadPattern:
    return LoadPattern(kind="open", rate=rate, arrival=arrival, max_requests=max_requests,
                       duration=duration, max_new_tokens=max_new_tokens, seed=seed)
