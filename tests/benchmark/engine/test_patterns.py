"""Load patterns: the standard suite, seeded schedules computed up front, limits, and bad values."""

from __future__ import annotations

import statistics

import pytest

from benchmark.engine.patterns import STANDARD_PROMPTS, LoadPattern, closed_loop, open_loop, standard_suite


def test_standard_suite_is_five_distinct_prompts_times_iterations_sequentially() -> None:
    suite = standard_suite()
    assert len({p.id for p in STANDARD_PROMPTS}) == len({p.text for p in STANDARD_PROMPTS}) == 5
    assert (suite.kind, suite.concurrency, suite.max_new_tokens) == ("closed", 1, 100)
    assert suite.max_requests == 50
    ids = [suite.prompt(i).id for i in range(50)]
    assert all(ids.count(p.id) == 10 for p in STANDARD_PROMPTS)
    assert standard_suite(iterations=2, max_new_tokens=20).max_requests == 10


def test_poisson_schedule_is_seeded_and_has_the_requested_mean_rate() -> None:
    a = open_loop(50.0, max_requests=20000, seed=7).schedule()
    assert a == open_loop(50.0, max_requests=20000, seed=7).schedule()  # reproducible
    assert a != open_loop(50.0, max_requests=20000, seed=8).schedule()
    gaps = [y - x for x, y in zip(a, a[1:])]
    assert len(a) == 20000 and all(g >= 0 for g in gaps)
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.03)
    assert statistics.stdev(gaps) == pytest.approx(1 / 50, rel=0.05)  # exponential: std == mean


def test_constant_schedule_and_duration_limit() -> None:
    s = open_loop(4.0, arrival="constant", duration=2.0).schedule()
    assert s == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    both = open_loop(4.0, arrival="constant", duration=2.0, max_requests=3).schedule()
    assert len(both) == 3
    assert all(t < 10.0 for t in open_loop(100.0, duration=10.0).schedule())


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(kind="closed", concurrency=0, max_requests=1), "concurrency 0"),
    (dict(kind="open", rate=-1.0, max_requests=1), "rate -1.0"),
    (dict(kind="open", rate=1.0, arrival="burst", max_requests=1), "arrival 'burst'"),
    (dict(kind="closed", concurrency=2), "needs a limit"),
    (dict(kind="closed", max_requests=0), "max_requests 0"),
    (dict(kind="closed", duration=0.0), "duration 0.0"),
    (dict(kind="closed", max_requests=1, max_new_tokens=0), "max_new_tokens 0"),
    (dict(kind="steady", max_requests=1), "kind 'steady'"),
])
def test_bad_patterns_name_the_value_and_what_is_allowed(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadPattern(**kwargs)  # type: ignore[arg-type]


def test_closed_loop_has_no_schedule_and_describes_itself() -> None:
    load = closed_loop(8, duration=30.0)
    with pytest.raises(ValueError, match="open-loop"):
        load.schedule()
    assert "concurrency 8" in load.describe() and "30 s" in load.describe()
