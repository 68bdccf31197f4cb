"""SLO parsing, which requests meet an SLO, goodput, and the capacity read off a load sweep."""

from __future__ import annotations

import pytest

from benchmark.analysis.slo import Slo, SweepPoint, capacity, goodput, meets, parse_slos
from benchmark.engine.records import RequestRecord
from benchmark.errors import BenchmarkError


def record(i: int, *, ttft: float = 0.1, e2e: float = 1.0, tokens: int = 11, ok: bool = True,
           sent: float = 0.0) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", model="m", scenario="alone", prompt_id="p", api="tgi-stream",
                         intended_send=sent, sent=sent, ttft=ttft, e2e=e2e, output_tokens=tokens, success=ok,
                         error_kind=None if ok else "http_5xx")


def test_common_and_per_model_slos() -> None:
    slos = parse_slos(["ttft=0.5,tpot=0.05", "phi:e2e=2"], ["phi", "r1"])
    assert slos["r1"].bounds == {"ttft": 0.5, "tpot": 0.05}
    assert slos["phi"].bounds == {"e2e": 2.0}  # its own replaces the common one
    assert parse_slos([], ["phi"]) == {}


@pytest.mark.parametrize(("flag", "message"), [
    ("ttft=fast", "expected [KEY:]METRIC=SECONDS"),
    ("itl=0.1", "METRIC one of ttft, tpot, e2e"),
    ("ttft=0", "SECONDS > 0"),
    ("zz:ttft=1", "model 'zz' is not measured here; models: phi"),
])
def test_bad_slo_flags_name_the_value(flag: str, message: str) -> None:
    with pytest.raises(BenchmarkError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        parse_slos([flag], ["phi"])
    assert repr(flag) in str(err.value)


def test_a_request_meets_an_slo_only_within_every_bound_and_only_if_it_succeeded() -> None:
    slo = Slo({"ttft": 0.2, "tpot": 0.1})
    assert meets(record(1, ttft=0.1, e2e=1.0, tokens=11), slo)  # tpot (1.0 - 0.1) / 10 = 0.09
    assert not meets(record(2, ttft=0.3), slo)
    assert not meets(record(3, ttft=0.1, e2e=1.2, tokens=11), slo)  # tpot 0.11
    assert not meets(record(4, ok=False), slo)


def test_goodput_counts_requests_within_the_slo_over_the_wall_span() -> None:
    slo = Slo({"e2e": 1.5})
    records = [record(i, e2e=1.0 if i % 2 else 2.0, sent=float(i)) for i in range(10)]  # the last ends at 8 + 2.0 = 9 + 1.0
    rate, share, n = goodput(records, slo)
    assert (share, n) == (0.5, 10)
    assert rate == pytest.approx(5 / 10.0)


def test_capacity_interpolates_where_the_share_crosses_the_target() -> None:
    points = [SweepPoint(1.0, 1.0, 1.0, 0.5), SweepPoint(2.0, 0.95, 1.9, 0.6), SweepPoint(3.0, 0.45, 1.3, 2.0)]
    got = capacity(points, target=0.9)
    assert got.value == pytest.approx(2.0 + (0.95 - 0.9) / (0.95 - 0.45)) and not got.lower_bound
    assert capacity(points[:2]).lower_bound and capacity(points[:2]).value == 2.0
    assert capacity([SweepPoint(1.0, 0.2, 0.2, 9.0)]).value is None
