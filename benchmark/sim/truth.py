"""The simulator's truth log: what the server really did with every request.

One ``TruthRecord`` per request, keyed by the ``X-Request-Id`` header the client sent (an
id is generated when it is absent). Times are ``time.perf_counter()`` seconds. On Linux
that is CLOCK_MONOTONIC, one clock for every process on the machine, so the times of a
server in another process compare directly with a client's ``perf_counter()`` readings.

``emit_times`` holds, for a streamed response, the time each token event's bytes were
handed to the socket (taken immediately before the write); ``end`` is taken the same way
for the response's last event (the last token event on ``/generate_stream``, ``[DONE]`` on
chat) or its whole body (``/generate``), or is when the request failed. Records are in memory at once
(``TruthLog.get``); with a path they are also appended to a JSONL file as each request
finishes, flushed line by line, for servers in another process (``read_truth``);
``timing_errors`` compares a client's records with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmark.engine.records import RequestRecord

__all__ = ["TruthMismatch", "TruthRecord", "TruthLog", "read_truth", "timing_errors"]


@dataclass(slots=True, kw_only=True)
class TruthRecord:
    """One request as the simulated server handled it."""

    request_id: str
    model: str  # the model's key, e.g. "phi35-mini"
    endpoint: str  # the route, e.g. "/generate_stream"
    received: float  # perf_counter when the handler started
    replica: int | None = None  # which replica's engine served it
    headers_sent: float | None = None  # streaming: when the 200 and its headers were written
    emit_times: list[float] = field(default_factory=list)  # every token event, when written
    end: float | None = None  # when the last event / the body was written (or the request failed)
    input_tokens: int | None = None
    max_new_tokens: int | None = None
    generated_tokens: int | None = None  # as reported to the client in details/usage
    finish_reason: str | None = None  # TGI's: length | eos_token (None when it failed)
    status: int | None = None  # HTTP status sent
    error_type: str | None = None  # TGI's error_type when it failed (validation, overloaded, ...)
    fault: str | None = None  # the injected fault kind, if any
    done: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


class TruthLog:
    """Every request's ``TruthRecord``, in memory and optionally as JSONL."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.records: list[TruthRecord] = []
        self._by_id: dict[str, TruthRecord] = {}
        self.path = Path(path) if path is not None else None
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")

    def open(self, *, request_id: str, model: str, endpoint: str, received: float) -> TruthRecord:
        record = TruthRecord(request_id=request_id, model=model, endpoint=endpoint, received=received)
        self.records.append(record)
        self._by_id[request_id] = record  # a reused id: the latest request wins
        return record

    def finish(self, record: TruthRecord, *, end: float, status: int | None = None) -> None:
        if record.done:
            return
        record.end = end
        if status is not None:
            record.status = status
        record.done = True
        if self._file is not None:
            self._file.write(record.to_json() + "\n")
            self._file.flush()

    def get(self, request_id: str) -> TruthRecord | None:
        return self._by_id.get(request_id)

    def __len__(self) -> int:
        return len(self.records)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_truth(path: str | Path, ids: Iterable[str] = (), *, wait: float = 5.0) -> dict[str, TruthRecord]:
    """A truth log written by another process, by request id (a reused id: the last wins),
    waiting up to ``wait`` s for all of ``ids`` (a request the client gave up on is logged
    when the server finishes with it)."""
    names = {f.name for f in fields(TruthRecord)}
    deadline = time.monotonic() + wait
    while True:
        out: dict[str, TruthRecord] = {}
        with Path(path).open(encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a line still being written
                if not line.strip():
                    continue
                data: dict[str, Any] = json.loads(line)
                record = TruthRecord(**{k: v for k, v in data.items() if k in names})
                out[record.request_id] = record
        if set(ids) <= set(out) or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


class TruthMismatch(AssertionError):
    """The client's records do not match the server's truth in structure (a request missing,
    failed, or with another token count or number of token events than the server sent)."""


def timing_errors(records: Iterable[RequestRecord], truth: Mapping[str, TruthRecord],
                  origin: float) -> dict[str, list[float]]:
    """|client - server truth| in seconds of every TTFT, ITL and E2E, by metric; ``origin`` is
    the client run clock's (``RunClock.origin``; both sides read ``perf_counter``). Raises
    ``TruthMismatch`` unless every record is joined to the truth by its id, succeeded with the
    server's token count, and has one ITL per gap between the server's token events."""
    out: dict[str, list[float]] = {"ttft": [], "itl": [], "e2e": []}
    for r in records:
        t = truth.get(r.request_id)
        if t is None or not r.success or r.ttft is None or r.e2e is None or t.end is None:
            raise TruthMismatch(f"{r.request_id}: no successful record joined to the truth "
                                f"(client: {r.error_kind} {r.error}; server: {t})")
        if r.output_tokens != t.generated_tokens or len(r.itl) != len(t.emit_times) - 1:
            raise TruthMismatch(f"{r.request_id}: client {r.output_tokens} tokens / {len(r.itl)} ITLs, "
                                f"server {t.generated_tokens} tokens / {len(t.emit_times)} token events")
        emits = t.emit_times
        start = origin + r.intended_send
        out["ttft"].append(abs(start + r.ttft - emits[0]))
        out["itl"] += [abs(c - (b - a)) for c, a, b in zip(r.itl, emits, emits[1:])]
        out["e2e"].append(abs(start + r.e2e - t.end))
    return out
