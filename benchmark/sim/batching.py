"""A simulated TGI model: replicas with continuous batching on a shared ``SimulatedGpu``.

Each replica is one TGI process: a router queue and a batching loop. The loop, like
TGI's (``backends/v3/src/backend.rs``, ``queue.rs``), admits waiting requests in arrival
order while the KV-token budget allows (each request reserves its input tokens +
``max_new_tokens`` of ``max_batch_total_tokens``, and a prefill takes at most
``max_batch_prefill_tokens``), runs their prefill as one GPU step (which yields each one's
first token; the running batch waits meanwhile), and otherwise runs one decode step for
the whole running batch (one token each). While a batch runs, new requests join it only
when ``waiting_served_ratio`` x its size of them are waiting or after
``max_waiting_tokens`` decode steps, as TGI does. At most
``max_concurrent_requests`` requests are in a replica at once; the server answers the
next one as TGI does when overloaded.

Output: a deterministic tokenizer stand-in (``chars_per_token``), deterministic token
texts, and with ``eos_probability`` > 0 a seeded early EOS (the last token is then a
special ``</s>`` token and ``finish_reason`` is ``eos_token``); the seed is the request's
``seed`` when it sends one, otherwise its request id.
"""


from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchmark.sim.spec import ModelSpec

if TYPE_CHECKING:
    from benchmark.sim.model import SimulatedModel

__all__ = ["ABORT", "KEEPALIVE", "Replica", "SimRequest", "SimToken", "plan_tokens"]

ABORT = -1  # put on a request's queue when its replica goes away mid-request
KEEPALIVE = -2  # put on a request's queue when nothing was written to it for sse_keepalive_s
EOS_TOKEN_ID = 2
_VOCAB = (
    " the", " GPU", " time", " slic", "ing", " mod", "el", " sha", "red", " lat",
    "ency", " tok", "ens", " per", " sec", "ond", " batch", " mem", "ory", " of",
    " and", " to", " in", " a", " is", " that", " with", " for", " on", " as",
)


@dataclass(frozen=True, slots=True)
class SimToken:
    id: int
    text: str
    logprob: float
    special: bool


class SimRequest:
    """One generation request inside a replica."""

    __slots__ = ("request_id", "input_tokens", "max_new_tokens", "tokens", "finish_reason", "queue",
                 "generated", "cancelled", "queued_at", "started_at", "done_at", "last_event")

    def __init__(self, request_id: str, input_tokens: int, max_new_tokens: int, seed: str, spec: ModelSpec) -> None:
        self.request_id = request_id
        self.input_tokens = input_tokens
        self.max_new_tokens = max_new_tokens
        self.tokens, self.finish_reason = plan_tokens(spec, seed, max_new_tokens)
        self.queue: asyncio.Queue[int] = asyncio.Queue()  # token indices, ABORT or KEEPALIVE
        self.generated = 0
        self.cancelled = False
        self.queued_at = time.perf_counter()
        self.last_event = self.queued_at  # when a token (or a keep-alive) was last queued
        self.started_at: float | None = None
        self.done_at: float | None = None

    @property
    def reserve(self) -> int:
        return self.input_tokens + self.max_new_tokens

    def text(self) -> str:
        return "".join(t.text for t in self.tokens if not t.special)


def plan_tokens(spec: ModelSpec, seed: str, max_new_tokens: int) -> tuple[list[SimToken], str]:
    """The tokens a request will generate and its finish reason, fixed by ``seed``."""
    rng = random.Random(f"{spec.seed}/{seed}")
    tokens: list[SimToken] = []
    for i in range(max_new_tokens):
        if i > 0 and spec.eos_probability > 0 and rng.random() < spec.eos_probability:
            tokens.append(SimToken(EOS_TOKEN_ID, "</s>", round(-rng.random() * 0.1, 4), True))
            return tokens, "eos_token"
        j = rng.randrange(len(_VOCAB))
        tokens.append(SimToken(100 + j, _VOCAB[j], round(-rng.random() * 2.0, 4), False))
    return tokens, "length"


class Replica:
    """One TGI process of a model: its queue, running batch and batching loop."""

    def __init__(self, model: SimulatedModel, index: int) -> None:
        self.model = model
        self.index = index
        self.owner = f"{model.spec.key}#{index}"
        self.ready = False
        self.in_flight = 0
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self._wake = asyncio.Event()
        self._tasks = (asyncio.create_task(self._run(), name=f"sim-replica-{self.owner}"),
                       asyncio.create_task(self._warm_up(), name=f"sim-warmup-{self.owner}"),
                       asyncio.create_task(self._keep_alive(), name=f"sim-keepalive-{self.owner}"))

    def try_acquire(self) -> bool:
        if self.in_flight >= self.model.spec.max_concurrent_requests:
            return False
        self.in_flight += 1
        return True

    def release(self, request: SimRequest | None) -> None:
        self.in_flight -= 1
        if request is not None and request.done_at is None:
            request.cancelled = True  # the handler left early: free its batch slot
            self._wake.set()

    def submit(self, request: SimRequest) -> None:
        self.waiting.append(request)
        self._wake.set()

    @property
    def batch_tokens(self) -> int:
        return sum(r.reserve for r in self.running)

    async def stop(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for request in itertools.chain(self.waiting, self.running):
            request.queue.put_nowait(ABORT)
        self.waiting.clear()
        self.running.clear()

    async def _warm_up(self) -> None:
        await asyncio.sleep(self.model.spec.warmup_s * self.model.gpu.time_scale)
        self.ready = True

    async def _keep_alive(self) -> None:
        """Like axum's ``KeepAlive``: a request that got nothing for ``sse_keepalive_s`` (while
        queued, or in a long prefill) gets a keep-alive comment (streams) or nothing (JSON)."""
        interval = self.model.spec.sse_keepalive_s
        while True:
            await asyncio.sleep(interval / 4)
            now = time.perf_counter()
            for request in itertools.chain(self.waiting, self.running):
                if now - request.last_event >= interval:
                    request.last_event = now
                    request.queue.put_nowait(KEEPALIVE)

    async def _run(self) -> None:
        spec, gpu, metrics = self.model.spec, self.model.gpu, self.model.metrics
        last_end = 0.0  # when this replica's previous step ended on the GPU's timeline
        since_prefill = 0  # decode steps since the last prefill (TGI's waiting_tokens)
        while True:
            if not self.waiting and not self.running:
                self._wake.clear()
                await self._wake.wait()
            self.running = [r for r in self.running if not r.cancelled]
            new = self._admit(since_prefill)
            if new:
                since_prefill = 0
                now = time.perf_counter()
                for r in new:
                    r.started_at = now
                metrics.observe("tgi_batch_next_size", len(new))
                seconds = spec.prefill_base_s + spec.prefill_s_per_token * sum(r.input_tokens for r in new)
                ready = max(last_end, max(r.queued_at for r in new))
                last_end = await gpu.run(self.owner, spec.key, seconds, ready_at=ready, host_s=spec.host_s_per_step,
                                         prefill=True)
                self.running.extend(new)
                stepped = new
            elif self.running:
                context = sum(r.input_tokens + r.generated for r in self.running)
                seconds = spec.decode_base_s + spec.decode_s_per_context_token * context
                last_end = await gpu.run(self.owner, spec.key, seconds, ready_at=last_end, host_s=spec.host_s_per_step)
                since_prefill += 1
                stepped = list(self.running)
            else:
                continue
            now = time.perf_counter()
            for r in stepped:
                if r.cancelled:
                    continue
                r.queue.put_nowait(r.generated)
                r.last_event = now
                r.generated += 1
                if r.generated == len(r.tokens):
                    r.done_at = now
            self.running = [r for r in self.running if r.done_at is None and not r.cancelled]

    def _admit(self, since_prefill: int) -> list[SimRequest]:
        """The waiting requests to prefill now, in arrival order (possibly none).

        As TGI's batching loop: while a batch runs, new requests join only when at least
        ``waiting_served_ratio`` x the batch size of them fit, or after
        ``max_waiting_tokens`` decode steps without a prefill.
        """
        spec = self.model.spec
        budget = spec.max_batch_total_tokens - self.batch_tokens
        prefill = 0
        new: list[SimRequest] = []
        for request in self.waiting:
            if request.cancelled:
                continue
            if request.reserve > budget or (new and prefill + request.input_tokens > spec.max_batch_prefill_tokens):
                break
            budget -= request.reserve
            prefill += request.input_tokens
            new.append(request)
        if self.running and since_prefill < spec.max_waiting_tokens:
            if len(new) < math.floor(len(self.running) * spec.waiting_served_ratio):
                return []
        admitted = set(map(id, new))
        self.waiting = deque(r for r in self.waiting if id(r) not in admitted and not r.cancelled)
        return new
