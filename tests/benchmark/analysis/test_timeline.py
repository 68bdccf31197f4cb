"""Per-second token timelines: a time-sliced stall shows as a dip beside the other model's peak."""

from __future__ import annotations

import pytest

from benchmark.analysis.timeline import throughput_timeline
from benchmark.engine.records import RequestRecord


def streamed(model: str, scenario: str, *, start: float, first: float, gaps: list[float],
             tokens: int | None = None, success: bool = True) -> RequestRecord:
    return RequestRecord(
        request_id=f"{model}-{start}", model=model, scenario=scenario, prompt_id="p", api="tgi-stream",
        intended_send=start, sent=start, ttft=first, itl=gaps, e2e=first + sum(gaps),
        output_tokens=(len(gaps) + 1 if tokens is None else tokens), success=success,
    )


def series(frame, scenario: str, model: str) -> list[float]:
    rows = frame[(frame["scenario"] == scenario) & (frame["model"] == model)].sort_values("t")
    return rows["tokens_per_s"].tolist()


def test_models_that_ran_together_share_the_axis_and_stalls_show_as_zeros() -> None:
    # the GPU alternates: phi streams 10 tokens in second 0, stalls in second 1 while llama
    # streams 4 tokens, then phi streams 10 more in second 2
    phi = streamed("phi", "shared", start=100.0, first=0.05, gaps=[0.09] * 9 + [1.2] + [0.09] * 9)
    llama = streamed("llama", "shared", start=100.0, first=1.1, gaps=[0.2] * 3)
    frame = throughput_timeline([phi, llama], runs=[("shared", ["phi", "llama"])])
    assert series(frame, "shared", "phi") == [10.0, 0.0, 10.0]
    assert series(frame, "shared", "llama") == [0.0, 4.0, 0.0]


def test_each_model_alone_starts_at_its_own_zero_and_tokens_add_up_to_the_servers_count() -> None:
    # two alone runs on one clock, far apart; a non-streamed answer arrives in one event
    # that carries all 30 tokens the server reported
    a = streamed("phi", "alone", start=0.0, first=0.5, gaps=[0.5] * 3)
    b = streamed("llama", "alone", start=500.0, first=2.5, gaps=[], tokens=30)
    frame = throughput_timeline([a, b], bin_s=0.5)
    assert series(frame, "alone", "phi") == [0.0, 2.0, 2.0, 2.0, 2.0]
    assert series(frame, "alone", "llama") == [0.0] * 5 + [60.0]
    assert sum(series(frame, "alone", "phi")) * 0.5 == pytest.approx(4.0)
    assert sum(series(frame, "alone", "llama")) * 0.5 == pytest.approx(30.0)


def test_failed_requests_deliver_nothing_and_bad_bins_are_refused() -> None:
    ok = streamed("phi", "alone", start=0.0, first=0.2, gaps=[0.3])
    failed = streamed("phi", "alone", start=0.0, first=0.1, gaps=[0.1] * 5, success=False)
    assert series(throughput_timeline([ok, failed]), "alone", "phi") == [2.0]
    with pytest.raises(ValueError, match="bin_s"):
        throughput_timeline([ok], bin_s=0)
    assert throughput_timeline([]).empty
