"""Fault injection for a simulated model: which requests fail, and how.

A ``FaultSpec`` is immutable config; a ``FaultPlan`` draws from it, one decision per
generation request, in arrival order. A request gets the kind its ordinal has in
``schedule`` (1-based, counted per model), otherwise one drawn with ``rates`` from a
generator seeded with ``seed``: the same spec and the same arrival order give the same
faults. The truth log records the fault each request got.

Kinds (what a client sees; ``after_tokens`` token events are sent before mid-stream ones):
- ``http_5xx``: the request is answered ``http_status`` (500 by default) with TGI's
  ``{"error", "error_type"}`` body, before any generation.
- ``overloaded``: treated as if ``max_concurrent_requests`` were exceeded, exactly as TGI
  answers that: HTTP 429 on ``/generate`` and non-streamed chat, an
  ``{"error": "Model is overloaded", "error_type": "overloaded"}`` event after a 200 on
  the streaming routes.
- ``stall``: nothing is written for ``stall_s`` seconds (wall clock, not scaled; SSE
  keep-alive comments only), then the buffered tokens follow.
- ``disconnect``: the server closes the connection mid-stream (mid-response when not
  streaming).
- ``malformed``: one event whose ``data`` is not valid JSON is sent, then the stream goes on
  (``/generate``: a 200 with a truncated JSON body).
- ``error_event``: TGI's generation error ``{"error": ..., "error_type": "generation"}``
  as an event after a 200, ending the stream (``/generate``: HTTP 424, as TGI answers a
  generation error).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = ["FaultKind", "FAULT_KINDS", "FaultSpec", "FaultPlan"]

FaultKind = Literal["http_5xx", "overloaded", "stall", "disconnect", "malformed", "error_event"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


@dataclass(frozen=True, kw_only=True)
class FaultSpec:
    """Which requests of one model fail, and how (see the module docstring)."""

    rates: Mapping[str, float] = field(default_factory=dict)  # kind -> probability per request
    schedule: Mapping[int, str] = field(default_factory=dict)  # request ordinal (1-based) -> kind
    seed: int = 0
    after_tokens: int = 2  # token events sent before a mid-stream fault
    stall_s: float = 1.0
    http_status: int = 500

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            _check_kind("faults.rates", kind)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"faults.rates.{kind}: got {rate!r}; allowed: a probability from 0 to 1")
        total = sum(self.rates.values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"faults.rates: got rates summing to {total:g}; allowed: a sum of at most 1")
        for ordinal, kind in self.schedule.items():
            if isinstance(ordinal, bool) or not isinstance(ordinal, int) or ordinal < 1:
                raise ValueError(f"faults.schedule: got request ordinal {ordinal!r}; allowed: an integer >= 1")
            _check_kind(f"faults.schedule.{ordinal}", kind)
        if isinstance(self.after_tokens, bool) or not isinstance(self.after_tokens, int) or self.after_tokens < 0:
            raise ValueError(f"faults.after_tokens: got {self.after_tokens!r}; allowed: an integer >= 0")
        if not isinstance(self.stall_s, (int, float)) or not 0.0 <= self.stall_s <= 3600.0:
            raise ValueError(f"faults.stall_s: got {self.stall_s!r}; allowed: seconds from 0 to 3600")
        if isinstance(self.http_status, bool) or not isinstance(self.http_status, int) or not 500 <= self.http_status <= 599:
            raise ValueError(f"faults.http_status: got {self.http_status!r}; allowed: an HTTP status from 500 to 599")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "faults") -> FaultSpec:
        """Build from JSON-like data; schedule keys may be strings ("3": "stall")."""
        known = {"rates", "schedule", "seed", "after_tokens", "stall_s", "http_status"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join(sorted(known))}")
        kwargs = dict(data)
        if "schedule" in kwargs:
            schedule: dict[int, str] = {}
            for key, kind in dict(kwargs["schedule"]).items():
                try:
                    schedule[int(key)] = kind
                except ValueError:
                    raise ValueError(f"{where}.schedule: got key {key!r}; allowed: a request ordinal such as \"3\"") from None
            kwargs["schedule"] = schedule
        return cls(**kwargs)

    @property
    def enabled(self) -> bool:
        return bool(self.schedule) or any(rate > 0 for rate in self.rates.values())


def _check_kind(where: str, kind: object) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"{where}: got fault kind {kind!r}; allowed: {', '.join(FAULT_KINDS)}")


class FaultPlan:
    """Draws the fault of each request, in arrival order, from a ``FaultSpec``."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self._count = 0

    def next(self) -> str | None:
        self._count += 1
        draw = self._rng.random()  # drawn every time, so the schedule does not shift the rates
        scheduled = self.spec.schedule.get(self._count)
        if scheduled is not None:
            return scheduled
        for kind, rate in self.spec.rates.items():
            if draw < rate:
                return kind
            draw -= rate
        return None
