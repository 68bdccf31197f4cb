"""``ModelSpec``: everything that defines one simulated TGI model (limits, speed, faults)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark.sim.faults import FaultSpec
from benchmark.sim.openai_flavours import OpenAIFlavour

__all__ = ["ModelSpec"]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One simulated model: TGI's launcher limits plus the speed model of its steps.

    Limits default as TGI's launcher does (``launcher/src/main.rs``): 128 concurrent
    requests, ``waiting_served_ratio`` 1.2 (0 lets waiting requests join at every step),
    ``max_waiting_tokens`` 20.

    Step times (seconds, before the GPU's ``time_scale``):
    - prefill of newly admitted requests: ``prefill_base_s + prefill_s_per_token * their input tokens``;
    - decode step of the running batch: ``decode_base_s + decode_s_per_context_token * the
      tokens in all its sequences' contexts`` (weights read once per step, KV read per token).

    ``host_s_per_step`` is the host time before each step's work reaches the GPU (TGI reads
    the last step's tokens back, samples, answers the router over gRPC, and the router
    schedules the next batch): the GPU serves other models meanwhile (``SimulatedGpu.run``).
    """

    key: str  # the catalog key, e.g. "phi35-mini"
    model_id: str  # the HuggingFace id /info reports
    max_input_tokens: int = 3072
    max_total_tokens: int = 4096
    max_batch_total_tokens: int = 32768  # KV-token budget of the running batch
    max_batch_prefill_tokens: int = 4096
    max_concurrent_requests: int = 128
    waiting_served_ratio: float = 1.2  # waiting/running ratio that triggers a prefill
    max_waiting_tokens: int = 20  # decode steps after which waiting requests join anyway
    prefill_base_s: float = 0.010
    prefill_s_per_token: float = 0.00005
    decode_base_s: float = 0.010
    decode_s_per_context_token: float = 0.0
    host_s_per_step: float = 0.0  # host time before each step reaches the GPU (0: none)
    eos_probability: float = 0.0  # chance that any token after the first is EOS (seeded)
    chars_per_token: float = 4.0  # the tokenizer stand-in
    warmup_s: float = 0.5  # time from a replica starting to /health answering 200
    sse_keepalive_s: float = 15.0  # axum's KeepAlive default: a ":" comment after this long without an event
    seed: int = 0
    faults: FaultSpec = field(default_factory=FaultSpec)
    openai: OpenAIFlavour = field(default_factory=OpenAIFlavour)  # how /v1/chat/completions behaves

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"key: got {self.key!r}; allowed: a non-empty string")
        if not isinstance(self.model_id, str) or not self.model_id:
            raise ValueError(f"{self.key}.model_id: got {self.model_id!r}; allowed: a non-empty string")
        for name in ("max_input_tokens", "max_total_tokens", "max_batch_total_tokens",
                     "max_batch_prefill_tokens", "max_concurrent_requests", "max_waiting_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{self.key}.{name}: got {value!r}; allowed: an integer >= 1")
        if self.max_input_tokens >= self.max_total_tokens:
            raise ValueError(
                f"{self.key}.max_input_tokens: got {self.max_input_tokens!r}; allowed: less than "
                f"max_total_tokens ({self.max_total_tokens}), as TGI's launcher requires"
            )
        if self.max_batch_total_tokens < self.max_total_tokens:
            raise ValueError(
                f"{self.key}.max_batch_total_tokens: got {self.max_batch_total_tokens!r}; allowed: at least "
                f"max_total_tokens ({self.max_total_tokens}), or one request could never run"
            )
        for name in ("prefill_base_s", "prefill_s_per_token", "decode_base_s",
                     "decode_s_per_context_token", "host_s_per_step", "warmup_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 600.0:
                raise ValueError(f"{self.key}.{name}: got {value!r}; allowed: seconds from 0 to 600")
        if isinstance(self.waiting_served_ratio, bool) or not isinstance(self.waiting_served_ratio, (int, float)) \
                or not 0.0 <= self.waiting_served_ratio <= 100.0:
            raise ValueError(f"{self.key}.waiting_served_ratio: got {self.waiting_served_ratio!r}; allowed: from 0 to 100")
        if isinstance(self.sse_keepalive_s, bool) or not isinstance(self.sse_keepalive_s, (int, float)) \
                or not 0.01 <= self.sse_keepalive_s <= 600.0:
            raise ValueError(f"{self.key}.sse_keepalive_s: got {self.sse_keepalive_s!r}; allowed: seconds from 0.01 to 600")
        if not isinstance(self.eos_probability, (int, float)) or not 0.0 <= self.eos_probability < 1.0:
            raise ValueError(f"{self.key}.eos_probability: got {self.eos_probability!r}; allowed: from 0 to below 1")
        if not isinstance(self.chars_per_token, (int, float)) or not self.chars_per_token > 0:
            raise ValueError(f"{self.key}.chars_per_token: got {self.chars_per_token!r}; allowed: a number > 0")

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base: ModelSpec | None = None, where: str = "model") -> ModelSpec:
        """Build from JSON-like data, on top of ``base`` (a preset) when given.

        Unknown keys are refused with the list of known ones; ``faults`` is a mapping
        read by ``FaultSpec.from_mapping``; ``openai`` a flavour name or flags
        (``OpenAIFlavour.from_value``).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join(sorted(known))}")
        values = dict(data)
        if "faults" in values:
            if not isinstance(values["faults"], Mapping):
                raise ValueError(f"{where}.faults: got {values['faults']!r}; allowed: an object")
            values["faults"] = FaultSpec.from_mapping(values["faults"], where=f"{where}.faults")
        if "openai" in values:
            values["openai"] = OpenAIFlavour.from_value(values["openai"], where=f"{where}.openai")
        try:
            return base.replace(**values) if base is not None else cls(**values)
        except TypeError as e:  # a required field missing
            raise ValueError(f"{where}: {e}; required: key, model_id (or a preset)") from e
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
