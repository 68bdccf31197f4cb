"""Per-second token timelines: a time-sliced stall shows as a dip beside the other model's peak."""

from __future__ import annotations

import pytest

from benchmark.analysis.timeline import throughput_timeline
from benchmark.engine.records import RequestRecord


def streamed(model: str, scenario: str, *, start: float, first: float, gaps: list[float], tokens: int | None = None,
             success: bool = True, round: int = 1, error: str | None = None) -> RequestRecord:  # fmt: skip
    return RequestRecord(
        request_id=f"{model}-{start}", model=model, scenario=scenario, round=round, prompt_id="p", api="tgi-stream",
        intended_send=start, sent=start, ttft=first, itl=gaps, e2e=first + sum(gaps),
        output_tokens=(len(gaps) + 1 if tokens is None else tokens) if success else None, success=success,
        error_kind="timeout" if not success and error is None else None, error=error,
    )


def series(frame, scenario: str, model: str, *, round: int = 1, source: str = "recorded") -> list[float]:
    rows = frame[(frame["scenario"] == scenario) & (frame["model"] == model) & (frame["round"] == round)
                 & (frame["source"] == source)].sort_values("t")
    return rows["tokens_per_s"].tolist()


def test_models_that_ran_together_share_the_axis_and_stalls_show_as_zeros() -> None:
    # the GPU alternates: phi streams 10 tokens in second 0, stalls in second 1 while llama
    # streams 4 tokens, then phi streams 10 more in the last 0.87 s
    phi = streamed("phi", "shared", start=100.0, first=0.05, gaps=[0.09] * 9 + [1.2] + [0.09] * 9)
    llama = streamed("llama", "shared", start=100.0, first=1.1, gaps=[0.2] * 3)
    frame = throughput_timeline([phi, llama], runs=[("shared", 1, ["phi", "llama"])])
    assert series(frame, "shared", "phi") == pytest.approx([10.0, 0.0, 10 / 0.87])  # the last bin over its 0.87 s
    assert series(frame, "shared", "llama") == [0.0, 4.0, 0.0]
    assert frame["width"].tolist() == pytest.approx([1.0, 1.0, 0.87] * 2)


def test_each_model_alone_starts_at_its_own_zero_and_tokens_add_up_to_the_servers_count() -> None:
    # two alone runs on one clock, far apart; a non-streamed answer arrives in one event
    # that carries all 30 tokens the server reported
    a = streamed("phi", "alone", start=0.0, first=0.5, gaps=[0.5] * 3)
    b = streamed("llama", "alone", start=500.0, first=2.5, gaps=[], tokens=30)
    frame = throughput_timeline([a, b], bin_s=0.5)
    assert series(frame, "alone", "phi") == [0.0, 2.0, 2.0, 4.0]  # the span ends at the last event, in the last bin
    assert series(frame, "alone", "llama") == [0.0] * 4 + [60.0]
    for model, tokens in (("phi", 4.0), ("llama", 30.0)):
        rows = frame[frame["model"] == model]
        assert (rows["tokens_per_s"] * rows["width"]).sum() == pytest.approx(tokens)


def test_a_last_bin_under_half_a_bin_is_left_out_instead_of_drawn_as_a_collapse() -> None:
    # 10 tokens/s for 3 s, then one last token 0.15 s into the fourth second: a whole bin would
    # read 1 token/s, a collapse that did not happen; under half a bin, it is left out
    steady = streamed("phi", "alone", start=0.0, first=0.05, gaps=[0.1] * 29 + [0.2])
    assert series(throughput_timeline([steady]), "alone", "phi") == pytest.approx([10.0, 10.0, 10.0])
    # 0.65 s into it: rated over the 0.65 s it covers, not the whole second
    longer = streamed("phi", "alone", start=0.0, first=0.05, gaps=[0.1] * 36)
    assert series(throughput_timeline([longer]), "alone", "phi") == pytest.approx([10.0, 10.0, 10.0, 7 / 0.65])


def test_rounds_are_runs_of_their_own_and_fillers_show_what_the_gpu_did_after_a_model_was_done() -> None:
    recorded = [streamed("phi", "shared", start=10.0, first=0.05, gaps=[0.1] * 9, round=2),  # done after 1 s
                streamed("llama", "shared", start=10.0, first=0.05, gaps=[0.1] * 29, round=2)]  # 3 s
    fillers = [streamed("phi", "shared-filler", start=11.0, first=0.05, gaps=[0.1] * 9, round=2),
               # stopped in flight when llama was done: its events so far still count
               streamed("phi", "shared-filler", start=12.0, first=0.05, gaps=[0.1] * 9, round=2, success=False,
                        error="stopped in flight: every recorded request was done")]
    earlier = streamed("phi", "shared", start=0.0, first=0.05, gaps=[0.1] * 9, round=1)
    frame = throughput_timeline([*recorded, earlier], runs=[("shared", 2, ["phi", "llama"]), ("shared", 1, ["phi"])],
                                fillers=fillers)
    assert series(frame, "shared", "phi", round=2) == [10.0, 0.0, 0.0]
    assert series(frame, "shared", "phi", round=2, source="filler") == pytest.approx([0.0, 10.0, 10 / 0.95])
    assert series(frame, "shared", "llama", round=2) == pytest.approx([10.0, 10.0, 10 / 0.95])
    assert series(frame, "shared", "phi", round=1) == pytest.approx([10 / 0.95])  # round 1 on its own axis
    assert set(frame["source"]) == {"recorded", "filler"}


def test_failed_requests_deliver_nothing_and_bad_bins_are_refused() -> None:
    ok = streamed("phi", "alone", start=0.0, first=0.2, gaps=[0.3])
    failed = streamed("phi", "alone", start=0.0, first=0.1, gaps=[0.1] * 5, success=False)
    assert series(throughput_timeline([ok, failed]), "alone", "phi") == [4.0]  # 2 tokens in the 0.5 s span
    with pytest.raises(ValueError, match="bin_s"):
        throughput_timeline([ok], bin_s=0)
    assert throughput_timeline([]).empty
