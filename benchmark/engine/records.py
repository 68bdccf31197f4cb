"""The one record every request produces, failures included.

Times are seconds on the run's clock: ``time.perf_counter()`` minus the run's origin
(``RunClock``), so a whole multi-model run shares one clock. ``ttft`` and ``e2e`` count
from the *intended* send time, so queueing in the client or at the server under
open-loop load shows in the figures instead of hiding before the first byte.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

__all__ = ["ErrorKind", "ERROR_KINDS", "FILLER_SUFFIX", "RequestRecord", "RunClock", "TokensFrom"]

FILLER_SUFFIX = "-filler"  # a keep-busy filler's scenario: its scenario's label, then this

ErrorKind = Literal[
    "http_4xx",  # a 4xx other than 429
    "http_5xx",
    "overloaded",  # HTTP 429, or TGI's overloaded error event
    "timeout",
    "connection",  # refused, reset, closed mid-stream
    "stream_error",  # an {"error", "error_type"} event after a 200
    "protocol",  # a response we cannot parse or that breaks the protocol
]
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)
# "usage": the server's own count (TGI's details.generated_tokens, OpenAI's usage.completion_tokens);
# "chunks": the server sent no count, so the token-bearing events were counted (a server may put
# several tokens in one chunk: then the figure is low)
TokensFrom = Literal["usage", "chunks"]


@dataclass(slots=True, kw_only=True)
class RequestRecord:
    """One request, as measured by the client. Always produced, also on failure."""

    request_id: str
    model: str  # the model key in the stack's catalog (or the --endpoint key)
    scenario: str  # "alone", "shared", or a label the caller chose
    round: int = 1  # which run of its scenario (1 to --repeats): the label stays the scenario's
    prompt_id: str
    api: str  # the protocol adapter's name, e.g. "tgi-stream"
    intended_send: float  # run clock, s: when the schedule meant to send it
    sent: float  # run clock, s: when it was actually sent
    ttft: float | None = None  # s, first token-bearing event minus intended_send
    itl: list[float] = field(default_factory=list)  # s, every gap between token events
    e2e: float | None = None  # s, completion (or failure) minus intended_send
    input_tokens: int | None = None  # as the server reports them
    output_tokens: int | None = None  # as the server reports them (see tokens_from)
    tokens_from: TokensFrom | None = None  # where output_tokens came from; None: not known (a failure)
    finish_reason: str | None = None
    http_status: int | None = None
    success: bool = False
    error_kind: ErrorKind | None = None
    error: str | None = None
    # s this request spent opening a new connection (DNS, TCP handshake, TLS) after its send was
    # stamped, inside its TTFT and E2E; None: it reused a pooled connection (or none was made)
    connect: float | None = None

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first: (e2e - ttft) / (tokens - 1)."""
        if not self.success or self.e2e is None or self.ttft is None:
            return None
        if self.output_tokens is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class RunClock:
    """One clock for a whole run: perf_counter seconds since the run's origin."""

    __slots__ = ("origin", "epoch_origin")

    def __init__(self) -> None:
        self.origin = time.perf_counter()
        self.epoch_origin = time.time()

    def now(self) -> float:
        return time.perf_counter() - self.origin
