"""How a simulated model speaks the OpenAI-compatible chat API: the flavours found in the field.

OpenAI-compatible servers differ in ways that break a client written against one of them.
Each difference is a flag of ``OpenAIFlavour``; ``FLAVOURS`` names the combinations of the
servers we have met:

- ``tgi`` (the default; TGI 3.x ``router/src/server.rs`` ``chat_completions``, ``chat.rs``):
  any ``model`` name is accepted; ``finish_reason`` rides on the last token's chunk; ``usage``
  only with ``stream_options.include_usage``, in a chunk of its own with ``choices: []``; then
  ``data:[DONE]``; compact ``data:`` lines.
- ``vllm`` (vLLM's OpenAI server, ``--served-model-name``): a name it does not serve gets 404
  ``{"object": "error", "message": "The model `X` does not exist.", "type": "NotFoundError",
  "param": null, "code": 404}``; ``usage`` only when asked; ``data: [DONE]`` with a space.
- ``transformers-serve`` (``transformers serve`` 5.17 with one model, as measured on a real
  server): a request naming another model gets HTTP 400 ``{"detail": "Server is pinned to
  ..."}`` (the rest of that text is ours); chunks dumped without ``null`` fields; the last chunk
  carries ``finish_reason`` and ``usage`` (``stream_options`` is ignored) and **no
  ``[DONE]``** follows; no ``/metrics``.
- ``openai`` (OpenAI's own API): ``finish_reason`` in a chunk of its own with an empty
  ``delta``, ``usage`` when asked, ``[DONE]``.

The flags, each usable alone (``{"openai": {"done": false}}`` in a serve-sim config):
``pinned`` (refuse other model names, with ``refusal`` 400 as transformers serve or 404 as
vLLM), ``done`` (send ``[DONE]``), ``usage`` (``asked``: with include_usage, in its own chunk;
``last``: always, on the last chunk; ``never``), ``finish_chunk`` (``finish_reason`` in its own
empty-delta chunk), ``exclude_none`` (no ``null`` fields), ``space`` (``data: `` with a space),
``metrics`` (serve ``/metrics``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = ["FLAVOURS", "OpenAIFlavour", "UsageMode"]

UsageMode = Literal["asked", "last", "never"]


@dataclass(frozen=True, kw_only=True)
class OpenAIFlavour:
    """One OpenAI-compatible server's habits (see the module docstring)."""

    pinned: bool = False
    refusal: Literal[400, 404] = 400
    done: bool = True
    usage: UsageMode = "asked"
    finish_chunk: bool = False
    exclude_none: bool = False
    space: bool = False
    metrics: bool = True

    def __post_init__(self) -> None:
        for name in ("pinned", "done", "finish_chunk", "exclude_none", "space", "metrics"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"openai.{name}: got {getattr(self, name)!r}; allowed: true or false")
        if self.refusal not in (400, 404):
            raise ValueError(f"openai.refusal: got {self.refusal!r}; allowed: 400 (transformers serve) or 404 (vLLM)")
        if self.usage not in get_args(UsageMode):
            raise ValueError(f"openai.usage: got {self.usage!r}; allowed: {', '.join(get_args(UsageMode))}")

    def refuse(self, served: str, asked: Any) -> tuple[int, dict[str, Any]] | None:
        """(status, body) when this server refuses the request's ``model``, else None."""
        if not self.pinned or asked == served:
            return None
        if self.refusal == 404:
            return 404, {"object": "error", "message": f"The model `{asked}` does not exist.",
                         "type": "NotFoundError", "param": None, "code": 404}
        return 400, {"detail": f"Server is pinned to {served}, and the request asked for {asked}"}

    @classmethod
    def from_value(cls, value: Any, where: str = "openai") -> OpenAIFlavour:
        """A flavour name, or an object of flags (optionally on top of ``"flavour": NAME``)."""
        if isinstance(value, str):
            if value not in FLAVOURS:
                raise ValueError(f"{where}: got {value!r}; allowed: {', '.join(FLAVOURS)} or an object of flags")
            return FLAVOURS[value]
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: got {value!r}; allowed: {', '.join(FLAVOURS)} or an object of flags")
        flags = dict(value)
        base = cls.from_value(flags.pop("flavour", "tgi"), f"{where}.flavour")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(flags) - known)
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key; allowed: flavour, {', '.join(sorted(known))}")
        try:
            return dataclasses.replace(base, **flags)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e


FLAVOURS: dict[str, OpenAIFlavour] = {
    "tgi": OpenAIFlavour(),
    "vllm": OpenAIFlavour(pinned=True, refusal=404, space=True),
    "transformers-serve": OpenAIFlavour(pinned=True, refusal=400, done=False, usage="last", exclude_none=True,
                                        space=True, metrics=False),
    "openai": OpenAIFlavour(finish_chunk=True, space=True),
}
