"""The summary's definitions: failures stay in the denominators, latency stats cover successes."""

from __future__ import annotations

import math

import pytest

from benchmark.analysis.summary import records_frame, summarize, summary_columns
from benchmark.engine.records import ERROR_KINDS, RequestRecord


def rec(i: int, *, model: str = "a", scenario: str = "alone", start: float, e2e: float, ttft: float | None = None,
        itl: list[float] | None = None, tokens: int | None = None, kind: str | None = None) -> RequestRecord:
    return RequestRecord(request_id=f"{model}{i}", model=model, scenario=scenario, prompt_id="qa", api="tgi-stream",
                         intended_send=start, sent=start, ttft=ttft, itl=itl or [], e2e=e2e, output_tokens=tokens,
                         input_tokens=20 if kind is None else None, success=kind is None,
                         error_kind=kind, error=kind)  # type: ignore[arg-type]


RECORDS = [
    rec(0, start=0.0, e2e=1.0, ttft=0.2, itl=[0.1, 0.3], tokens=3),
    rec(1, start=1.0, e2e=2.0, ttft=0.4, itl=[0.2] * 8, tokens=9),
    rec(2, start=2.0, e2e=3.0, ttft=0.6, itl=[], tokens=1),
    rec(3, start=3.0, e2e=7.0, kind="timeout"),  # the failure ends the span: 0 .. 10
    rec(4, start=4.0, e2e=0.5, kind="overloaded"),
    rec(0, model="b", start=0.0, e2e=1.0, ttft=0.5, itl=[0.25, 0.25], tokens=3),
]


def row(model: str) -> dict[str, object]:
    table = summarize(RECORDS)
    assert list(table.columns) == summary_columns()
    return table[table["model"] == model].iloc[0].to_dict()


def test_counts_rates_and_throughput_keep_failures_in_the_denominator() -> None:
    a = row("a")
    assert (a["count"], a["successes"], a["failures"]) == (5, 3, 2)
    assert a["success_rate"] == pytest.approx(3 / 5)
    assert a["duration_s"] == pytest.approx(10.0)  # first intended send .. the timeout's end
    assert a["requests_per_min"] == pytest.approx(60 * 3 / 10)
    assert a["attempts_per_min"] == pytest.approx(60 * 5 / 10)
    assert a["output_tokens_total"] == 3 + 9 + 1
    assert a["output_tokens_per_s"] == pytest.approx(13 / 10)
    assert a["input_tokens_mean"] == 20
    assert a["errors_timeout"] == 1 and a["errors_overloaded"] == 1
    assert sum(int(a[f"errors_{k}"]) for k in ERROR_KINDS) == a["failures"]  # type: ignore[arg-type]


def test_latency_stats_cover_successes_and_say_how_many() -> None:
    a = row("a")
    assert a["e2e_count"] == 3 and a["e2e_mean"] == pytest.approx(2.0) and a["e2e_max"] == 3.0
    assert a["e2e_std"] == pytest.approx(1.0)  # sample std of 1, 2, 3
    assert a["e2e_p50"] == pytest.approx(2.0) and a["e2e_p90"] == pytest.approx(2.8)  # linear interpolation
    assert a["ttft_min"] == pytest.approx(0.2) and a["ttft_max"] == pytest.approx(0.6)
    assert a["itl_count"] == 10  # pooled gaps of every success
    assert a["itl_mean"] == pytest.approx((0.1 + 0.3 + 0.2 * 8) / 10)
    # tpot = (e2e - ttft) / (tokens - 1): request 0 -> 0.4, request 1 -> 0.2; one token: none
    assert a["tpot_count"] == 2 and a["tpot_mean"] == pytest.approx(0.3)


def test_one_row_per_model_and_scenario_sorted() -> None:
    extra = [rec(9, model="a", scenario="shared", start=5.0, e2e=1.0, ttft=0.1, tokens=2, itl=[0.9])]
    table = summarize(RECORDS + extra)
    assert list(zip(table["model"], table["scenario"])) == [("a", "alone"), ("a", "shared"), ("b", "alone")]
    b = table.iloc[2]
    assert b["count"] == 1 and math.isnan(b["e2e_std"])  # one value: no sample std


def test_all_failed_group_has_zero_throughput_and_no_latency() -> None:
    table = summarize([rec(0, start=0.0, e2e=2.0, kind="connection"), rec(1, start=1.0, e2e=1.0, kind="http_5xx")])
    r = table.iloc[0]
    assert (r["count"], r["successes"], r["success_rate"], r["requests_per_min"]) == (2, 0, 0.0, 0.0)
    assert r["e2e_count"] == 0 and math.isnan(r["e2e_mean"])


def test_frame_and_records_give_the_same_summary() -> None:
    frame = records_frame(RECORDS)
    assert len(frame) == len(RECORDS)
    assert frame["tpot"].tolist()[:2] == pytest.approx([0.4, 0.2])
    assert summarize(frame).equals(summarize(RECORDS))
