"""Repeats (``--repeats N``): each round's figures, the drift between rounds of the same scenario,
and an impact interval over rounds that covers drift, beside the within-run bootstrap (which
resamples the requests of one run and so says nothing about run-to-run drift).

Definitions (the report repeats them):

- A round's figures: the summary's E2E mean and output tokens/s of one (scenario, model) over
  the records of one round (``RequestRecord.round``).
- Drift of a (scenario, model) that ran in several rounds: its largest round E2E mean over its
  smallest, minus 1.
- Per-round impact (interleaved: the baseline's rounds ran in the same run, round by round with
  the other scenario's, as ``--scenarios all --repeats N`` runs them): ``other / baseline - 1``
  of the same round.
- The between-round interval works on the log of the ratio other / baseline:
  - interleaved: a Student t-interval over the rounds' log ratios (n - 1 degrees of freedom);
    the estimate is ``exp(their mean) - 1``, the geometric mean of the rounds' ratios, minus 1;
  - not interleaved (a baseline from other runs): Welch's t-interval on the difference of the
    two sides' mean log round figures (Welch-Satterthwaite degrees of freedom);
  - none with fewer than 2 rounds (on each side): a single pass.
- Rounds needed: the fewest n for which that interval's half-width on the log scale, with the
  spread seen between rounds, is at most half the impact's (``log(1 + change)``): for an impact
  known to within half its size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from benchmark.analysis.summary import summarize
from benchmark.engine.records import RequestRecord

__all__ = ["QUANTITIES", "BetweenRounds", "Drift", "DriftWarning", "RoundFigures", "RoundsImpact", "between_rounds",
           "drifts", "round_figures", "t_quantile"]

QUANTITIES = {"latency": "e2e_mean", "throughput": "output_tokens_per_s"}  # what the impact line reports
_MAX_ROUNDS = 1000  # rounds needed beyond this are "more than 1000"


@dataclass(frozen=True)
class RoundFigures:
    """One (scenario, model) in one round."""

    scenario: str
    model: str
    round: int
    count: int
    success_rate: float
    e2e_mean: float  # s
    output_tokens_per_s: float


@dataclass(frozen=True)
class Drift:
    """How much one (scenario, model)'s E2E mean moved between its rounds."""

    scenario: str
    model: str
    e2e_means: dict[int, float]  # round -> E2E mean (s)
    drift: float  # largest / smallest - 1


@dataclass(frozen=True)
class BetweenRounds:
    """One model's impact on one quantity (``latency``, ``throughput``) from the rounds."""

    model: str
    quantity: str
    interleaved: bool
    per_round: dict[int, float]  # round -> other / baseline - 1 (interleaved rounds only)
    rounds: int  # interleaved: the rounds both sides ran; else the fewer of the two sides' rounds
    estimate: float  # exp(mean log ratio) - 1
    ci_low: float  # NaN with fewer than 2 rounds
    ci_high: float
    needed: int | None  # rounds for a half-width of at most half the impact; None: more than _MAX_ROUNDS


@dataclass(frozen=True)
class DriftWarning:
    """A scenario of a model drifted between rounds by more than the model's impact."""

    model: str
    scenario: str
    drift: float
    impact: float  # the latency change (pooled over the rounds)
    rounds: int
    needed: int | None


@dataclass(frozen=True)
class RoundsImpact:
    """What the rounds say about one comparison."""

    confidence: float
    interleaved: bool
    between: list[BetweenRounds]
    warnings: list[DriftWarning]

    @property
    def single_pass(self) -> bool:
        """No interval over rounds: one side ran once."""
        return not any(math.isfinite(b.ci_low) for b in self.between)

    def of(self, model: str, quantity: str) -> BetweenRounds | None:
        return next((b for b in self.between if b.model == model and b.quantity == quantity), None)


def round_figures(records: Sequence[RequestRecord]) -> list[RoundFigures]:
    """Every (scenario, model, round)'s figures, in that order."""
    out: list[RoundFigures] = []
    for rnd in sorted({r.round for r in records}):
        for row in summarize([r for r in records if r.round == rnd]).to_dict("records"):
            out.append(RoundFigures(scenario=str(row["scenario"]), model=str(row["model"]), round=rnd,
                                    count=int(row["count"]), success_rate=float(row["success_rate"]),
                                    e2e_mean=float(row["e2e_mean"]), output_tokens_per_s=float(row["output_tokens_per_s"])))
    return sorted(out, key=lambda f: (f.scenario, f.model, f.round))


def drifts(figures: Sequence[RoundFigures]) -> list[Drift]:
    """The drift of every (scenario, model) that ran in two rounds or more."""
    groups: dict[tuple[str, str], dict[int, float]] = {}
    for f in figures:
        groups.setdefault((f.scenario, f.model), {})[f.round] = f.e2e_mean
    out = []
    for (scenario, model), means in groups.items():
        finite = [v for v in means.values() if math.isfinite(v) and v > 0]
        if len(means) >= 2:
            drift = max(finite) / min(finite) - 1 if len(finite) >= 2 else float("nan")
            out.append(Drift(scenario=scenario, model=model, e2e_means=means, drift=drift))
    return out


def between_rounds(baseline: Sequence[RoundFigures], other: Sequence[RoundFigures], drift: Sequence[Drift], *,
                   latency_change: dict[str, float], interleaved: bool, confidence: float = 0.95) -> RoundsImpact:
    """The impact of ``other`` against ``baseline`` over rounds, per model in both, and the drift
    warnings: a scenario of the model that drifted by more than ``latency_change[model]`` (the
    pooled impact). ``interleaved``: the two sides' rounds ran round by round in one run."""
    between: list[BetweenRounds] = []
    warnings: list[DriftWarning] = []
    for model in sorted({f.model for f in baseline} & {f.model for f in other}):
        for quantity, metric in QUANTITIES.items():
            a = {f.round: float(getattr(f, metric)) for f in baseline if f.model == model}
            b = {f.round: float(getattr(f, metric)) for f in other if f.model == model}
            between.append(_interval(model, quantity, a, b, interleaved, confidence))
        change = latency_change.get(model, float("nan"))
        latency = next(x for x in between if x.model == model and x.quantity == "latency")
        scenarios = {f.scenario for f in (*baseline, *other) if f.model == model}
        for d in drift:
            if d.model == model and d.scenario in scenarios and math.isfinite(change) and d.drift > abs(change):
                warnings.append(DriftWarning(model=model, scenario=d.scenario, drift=d.drift, impact=change,
                                             rounds=len(d.e2e_means), needed=latency.needed))
    return RoundsImpact(confidence=confidence, interleaved=interleaved, between=between, warnings=warnings)


def _interval(model: str, quantity: str, a: dict[int, float], b: dict[int, float], interleaved: bool,
              confidence: float) -> BetweenRounds:  # fmt: skip
    tail = (1 + confidence) / 2
    nan = float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        if interleaved:
            paired = sorted(r for r in a if r in b and a[r] > 0 and b[r] > 0)
            per_round = {r: b[r] / a[r] - 1 for r in paired}
            logs = np.log([b[r] / a[r] for r in paired])
            n, mean = len(logs), float(logs.mean()) if len(logs) else nan
            spread = float(logs.std(ddof=1)) if n >= 2 else nan
            half = t_quantile(tail, n - 1) * spread / math.sqrt(n) if n >= 2 else nan
            needed = _needed(mean, spread, tail, lambda k: k - 1)
        else:
            x = np.log([v for v in a.values() if v > 0])
            y = np.log([v for v in b.values() if v > 0])
            per_round, n = {}, min(len(x), len(y))
            mean = float(y.mean() - x.mean()) if len(x) and len(y) else nan
            vx, vy = (float(v.var(ddof=1)) if len(v) >= 2 else nan for v in (x, y))
            half = nan
            if len(x) >= 2 and len(y) >= 2:
                se2 = vx / len(x) + vy / len(y)
                df = se2**2 / ((vx / len(x)) ** 2 / (len(x) - 1) + (vy / len(y)) ** 2 / (len(y) - 1)) if se2 > 0 else 1e9
                half = t_quantile(tail, df) * math.sqrt(se2)
            seen = [v for v in (vx, vy) if math.isfinite(v)]  # a side that ran once: taken to vary as the other
            spread = math.sqrt(2 * sum(seen) / len(seen)) if seen else nan
            needed = _needed(mean, spread, tail, lambda k: 2 * k - 2)
    low, high = (math.exp(mean - half) - 1, math.exp(mean + half) - 1) if math.isfinite(half) else (nan, nan)
    return BetweenRounds(model=model, quantity=quantity, interleaved=interleaved, per_round=per_round, rounds=n,
                         estimate=math.exp(mean) - 1 if math.isfinite(mean) else nan, ci_low=low, ci_high=high,
                         needed=needed)


def _needed(log_change: float, spread: float, tail: float, df: Callable[[int], float]) -> int | None:
    """The fewest rounds (>= 2) whose interval half-width is at most half of ``|log_change|``."""
    if not (math.isfinite(log_change) and math.isfinite(spread)):
        return None
    goal = abs(log_change) / 2

    def enough(n: int) -> bool:  # the half-width shrinks as n grows: search it by halves
        return t_quantile(tail, df(n)) * spread / math.sqrt(n) <= goal

    if not enough(_MAX_ROUNDS):
        return None
    low, high = 1, _MAX_ROUNDS  # not enough(low) (one round has no interval), enough(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """Student's t quantile (``p`` in (0.5, 1), ``df`` > 0, not necessarily whole), by bisection
    on its distribution function, ``1 - I_x(df/2, 1/2) / 2`` with ``x = df / (df + t^2)``."""
    if not (0.5 < p < 1 and df > 0):
        raise ValueError(f"t_quantile: got p={p!r}, df={df!r}; allowed: 0.5 < p < 1, df > 0")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2
    for _ in range(64):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def _t_cdf(t: float, df: float) -> float:
    return 1 - 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Lentz's evaluation of the incomplete beta function's continued fraction."""
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h
