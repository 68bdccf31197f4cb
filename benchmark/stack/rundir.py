"""A results directory, and its ``run.json``: everything ``report`` needs besides the records.

A results directory ``results/<UTC timestamp>-<label>/`` holds:

- ``requests.jsonl``: the records this run measured (``benchmark.results.ResultsWriter``).
- ``warmup.jsonl``: the requests never in the figures: warmups (scenario ``<label>-warmup``)
  and, in a shared scenario, the fillers that kept a model that had finished busy until all had
  (``<label>-filler``; ``LoadedRun.fillers``: a timeline shows them).
- ``baseline.jsonl`` (shared runs only): copies of the alone records this run is compared
  with, taken from earlier directories by ``import_baselines``; so the directory alone
  rebuilds its report, even if the earlier directories are deleted.
- ``metrics/<scenario>[-r<round>]-<model>-<before|after>.prom``: raw ``/metrics`` scrapes
  (``save_scrape``; the round from the second on).
- ``run.json``: the metadata below. While a run writes its directory, ``RunDirectory`` is its
  only writer: every change replaces the (immutable) ``RunMeta`` and rewrites the file at
  once, so what the run holds in memory and what ``run.json`` says never disagree.
- the report files ``benchmark.report.write_report`` derives from the above.

``run.json`` (``schema`` 1)::

    {"schema": 1,
     "label": "alone" | "shared" | "all" | "load",   # the directory's suffix
     "created": "2026-11-26T20:40:05Z",              # UTC, when the run started
     "repeats": int,                                 # rounds of the scenarios (--repeats; 1: a single pass)
     "seed": int | null,                             # --seed: rounds shuffled with it; null: rotated
     "simulated": bool,                              # any model's /info said "simulated": true
     "time_scale": float | null,                     # then its /info "simulation.time_scale" (x0.1: 10x faster)
     "settings": {...},       # the load settings (pattern, iterations, max_new_tokens, api...):
                              # baselines must have equal settings to be used
     "contract": {"version": 1, "gpu": {...},        # the stack-outputs contract, its "models"
                  "models": {"<key>": {...}}},       # cut to the models this run measured
     "access": {"<key>": {"path": "port-forward" | "endpoint",
                          "url": str,                # what the client called
                          "health_rtt_s": float | null,  # median GET /health round trip
                          "model_name": str | null,      # openai-chat: the "model" field sent
                          "served_models": [str] | null}},  # and what GET /v1/models listed
     "scenarios": [                                  # in the order they ran
        {"scenario": "alone" | "shared" | label,     # = RequestRecord.scenario of its records
         "models": ["<key>", ...],                   # the models that ran together
         "round": int,                               # = RequestRecord.round of its records
         "started": iso, "finished": iso,
         "metrics": {"<key>": {"before": "metrics/...prom", "after": "metrics/...prom"}},
         "self_check": {...}}],                      # the engine's client self-check, as JSON
     "baselines": {"<key>": "<directory name>"},     # where baseline.jsonl's records came from
     "baseline_scenarios": [...]}                    # their scenarios, as above; their scrapes
                                                     # copied to metrics/baseline-<dir>-<file>

Unknown keys are kept and ignored, so a newer writer does not break an older reader;
a different ``schema`` number is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from benchmark.engine.records import FILLER_SUFFIX, RequestRecord
from benchmark.engine.results import ResultsWriter, read_records
from benchmark.errors import BenchmarkError

__all__ = [
    "SCHEMA",
    "RUN_JSON",
    "REQUESTS",
    "BASELINE",
    "WARMUP",
    "AccessMeta",
    "ScenarioMeta",
    "RunMeta",
    "RunDirectory",
    "new_run_dir",
    "utc_now",
    "write_run_meta",
    "read_run_meta",
    "save_scrape",
    "find_baselines",
    "import_baselines",
    "load_run",
]

SCHEMA = 1
RUN_JSON = "run.json"
REQUESTS = "requests.jsonl"
BASELINE = "baseline.jsonl"
WARMUP = "warmup.jsonl"  # the warmup and keep-busy filler requests, never in the figures


def utc_now() -> str:
    """Now, as run.json writes times: ISO 8601, UTC, to the second, with a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class AccessMeta:
    """How the client reached one model, and what that path costs per round trip."""

    path: Literal["port-forward", "endpoint"]
    url: str
    health_rtt_s: float | None = None  # median GET /health round trip through this path
    model_name: str | None = None  # the OpenAI "model" field sent (openai-chat only)
    served_models: list[str] | None = None  # what GET /v1/models listed (openai-chat; None: no such route)


@dataclass(frozen=True, kw_only=True)
class ScenarioMeta:
    """One scenario of the run: the models that ran together, under one label."""

    scenario: str
    models: list[str]
    round: int = 1  # which run of this scenario (1 to RunMeta.repeats)
    started: str = ""
    finished: str = ""
    metrics: dict[str, dict[str, str]] = field(default_factory=dict)  # model -> phase -> file
    self_check: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunMeta:
    """The contents of ``run.json`` (see the module docstring)."""

    label: str
    created: str = field(default_factory=utc_now)
    repeats: int = 1  # rounds of the scenarios (--repeats)
    seed: int | None = None  # --seed: each round's order shuffled with it; None: rotated
    simulated: bool = False
    time_scale: float | None = None  # the simulator's, from /info; None: real servers, or not recorded
    settings: dict[str, Any] = field(default_factory=dict)
    contract: dict[str, Any] = field(default_factory=dict)
    access: dict[str, AccessMeta] = field(default_factory=dict)
    scenarios: list[ScenarioMeta] = field(default_factory=list)
    baselines: dict[str, str] = field(default_factory=dict)
    baseline_scenarios: list[ScenarioMeta] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA} | asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = RUN_JSON) -> RunMeta:
        if data.get("schema") != SCHEMA:
            raise BenchmarkError(
                f"{source}: schema {data.get('schema')!r} is not one this version reads (it reads {SCHEMA})"
            )
        try:
            known = _known(cls, data)
            known["access"] = {k: AccessMeta(**_known(AccessMeta, v)) for k, v in known.get("access", {}).items()}
            for key in ("scenarios", "baseline_scenarios"):
                known[key] = [ScenarioMeta(**_known(ScenarioMeta, s)) for s in known.get(key, [])]
            return cls(**known)
        except (TypeError, AttributeError) as e:
            raise BenchmarkError(f"{source}: not a valid run.json: {e}") from e

    def planned_kv_tokens(self, model: str) -> int | None:
        """The planner's KV-token budget for ``model``, from the contract excerpt."""
        value = self.contract.get("models", {}).get(model, {}).get("planned_kv_tokens")
        return int(value) if isinstance(value, int | float) else None


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def new_run_dir(root: str | os.PathLike[str], label: str) -> Path:
    """``root/<UTC time>-<label>``, not yet existing (``-2``, ``-3``... for runs in one second)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(root) / f"{stamp}-{label}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{stamp}-{label}-{n}"
    return path


class RunDirectory:
    """A results directory while a run writes it: the one writer of its ``run.json``."""

    def __init__(self, path: Path, meta: RunMeta) -> None:
        self.path = path
        self._meta = meta
        write_run_meta(path, meta)

    @classmethod
    def create(cls, root: str | os.PathLike[str], meta: RunMeta) -> RunDirectory:
        """A new directory under ``root`` named after ``meta.label``."""
        return cls(new_run_dir(root, meta.label), meta)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDirectory:
        """An existing results directory, to change its run.json."""
        return cls(Path(path), read_run_meta(path))

    @property
    def meta(self) -> RunMeta:
        return self._meta

    def update(self, **changes: Any) -> RunMeta:
        """Replace fields of the metadata and write run.json (atomically); returns the new metadata."""
        self._meta = dataclasses.replace(self._meta, **changes)
        write_run_meta(self.path, self._meta)
        return self._meta

    def add_scenario(self, scenario: ScenarioMeta) -> None:
        self.update(scenarios=[*self._meta.scenarios, scenario])

    def replace_scenario(self, scenario: ScenarioMeta) -> None:
        """The last scenario of that name, models and round, replaced (a scenario finished)."""
        scenarios = list(self._meta.scenarios)
        same = (scenario.scenario, scenario.models, scenario.round)
        i = max(i for i, s in enumerate(scenarios) if (s.scenario, s.models, s.round) == same)
        scenarios[i] = scenario
        self.update(scenarios=scenarios)


def write_run_meta(run_dir: str | os.PathLike[str], meta: RunMeta) -> Path:
    """Write ``run.json`` atomically (a reader never sees half of it); returns its path."""
    path = Path(run_dir) / RUN_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def read_run_meta(run_dir: str | os.PathLike[str]) -> RunMeta:
    path = Path(run_dir) / RUN_JSON
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchmarkError(f"{path}: no run.json: is {Path(run_dir)} a results directory?") from None
    except (OSError, json.JSONDecodeError) as e:
        raise BenchmarkError(f"{path}: cannot be read as JSON: {e}") from e
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return RunMeta.from_dict(data, source=str(path))


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def save_scrape(run_dir: str | os.PathLike[str], scenario: str, model: str, phase: str, text: str,
                round: int = 1) -> str:  # fmt: skip
    """Keep one raw ``/metrics`` scrape; returns its path relative to ``run_dir`` for
    ``ScenarioMeta.metrics[model][phase]``; ``phase`` is ``before`` or ``after``."""
    if phase not in ("before", "after"):
        raise ValueError(f"phase: got {phase!r}; allowed: 'before', 'after'")
    parts = (scenario, *([f"r{round}"] if round != 1 else []), model, phase)
    name = "-".join(_SAFE.sub("_", part) for part in parts) + ".prom"
    path = Path(run_dir) / "metrics" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return f"metrics/{name}"


def find_baselines(
    results_root: str | os.PathLike[str], models: Iterable[str], settings: Mapping[str, Any]
) -> dict[str, Path]:
    """For each model, the latest results directory under ``results_root`` in which it ran
    alone with these exact ``settings``. Models without one are left out.

    "Alone" means a scenario labelled ``alone`` whose only model is this one (an ``all``
    directory holds several such scenarios); "latest" is by ``created``, then by name.
    Directories that are not results directories, or whose run.json is unreadable, are
    skipped.
    """
    wanted = set(models)
    found: dict[str, tuple[str, str, Path]] = {}
    root = Path(results_root)
    if not root.is_dir():
        return {}
    for run_dir in root.iterdir():
        if not (run_dir / RUN_JSON).is_file() or not (run_dir / REQUESTS).is_file():
            continue
        try:
            meta = read_run_meta(run_dir)
        except BenchmarkError:
            continue
        if meta.settings != dict(settings):
            continue
        for s in meta.scenarios:
            if s.scenario == "alone" and len(s.models) == 1 and s.models[0] in wanted:
                key = (meta.created, run_dir.name, run_dir)
                if s.models[0] not in found or key[:2] > found[s.models[0]][:2]:
                    found[s.models[0]] = key
    return {model: key[2] for model, key in sorted(found.items())}


def import_baselines(run_dir: str | os.PathLike[str], baselines: Mapping[str, Path]) -> dict[str, Any]:
    """Copy each model's alone records from its baseline directory into ``run_dir``'s
    ``baseline.jsonl`` (replacing what was there), with that scenario's ``/metrics`` scrapes;
    returns the metadata that says so (``baselines``, ``baseline_scenarios``) for
    ``RunDirectory.update``.
    """
    run_dir = Path(run_dir)
    sources: dict[str, str] = {}
    scenarios: list[ScenarioMeta] = []
    (run_dir / BASELINE).unlink(missing_ok=True)  # the writer appends; start afresh
    with ResultsWriter(run_dir / BASELINE) as writer:
        for model, source in sorted(baselines.items()):
            source = Path(source)
            for record in read_records(source / REQUESTS):
                if record.model == model and record.scenario == "alone":
                    writer.write(record)
            sources[model] = source.name
            alone = [s for s in read_run_meta(source).scenarios if s.scenario == "alone" and s.models == [model]]
            scenarios += [_copy_scenario(s, source, run_dir) for s in alone]  # every round of it
    return {"baselines": sources, "baseline_scenarios": scenarios}


def _copy_scenario(scenario: ScenarioMeta, source: Path, run_dir: Path) -> ScenarioMeta:
    """``scenario`` of directory ``source``, its scrapes copied into ``run_dir``'s metrics/."""
    metrics: dict[str, dict[str, str]] = {}
    for model, phases in scenario.metrics.items():
        for phase, relative in phases.items():
            if (source / relative).is_file():
                name = f"metrics/baseline-{_SAFE.sub('_', source.name)}-{Path(relative).name}"
                (run_dir / "metrics").mkdir(exist_ok=True)
                (run_dir / name).write_bytes((source / relative).read_bytes())
                metrics.setdefault(model, {})[phase] = name
    return dataclasses.replace(scenario, metrics=metrics)


@dataclass(frozen=True)
class LoadedRun:
    """A results directory read back: its metadata, its own records, and its baseline's."""

    run_dir: Path
    meta: RunMeta
    records: Sequence[RequestRecord]
    baseline: Sequence[RequestRecord]
    fillers: Sequence[RequestRecord] = ()  # warmup.jsonl's keep-busy fillers (never in the figures)

    def scrape_text(self, relative: str) -> str | None:
        path = self.run_dir / relative
        return path.read_text() if path.is_file() else None


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Read a results directory's raw files (``run.json``, ``requests.jsonl``, ``baseline.jsonl``).

    A directory with records but no ``run.json`` is an older ``load``'s: its metadata is rebuilt
    from the records (one scenario per label, in first-seen order) and its ``self_check.json``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BenchmarkError(f"results directory {str(run_dir)!r} does not exist")
    requests = run_dir / REQUESTS
    legacy_load = not (run_dir / RUN_JSON).exists() and requests.is_file()
    meta = None if legacy_load else read_run_meta(run_dir)
    if not requests.is_file():
        raise BenchmarkError(f"{requests}: missing: the run recorded no requests")
    records = read_records(requests)
    baseline, warmup = run_dir / BASELINE, run_dir / WARMUP
    return LoadedRun(
        run_dir=run_dir,
        meta=meta or _load_meta(run_dir, records),
        records=records,
        baseline=read_records(baseline) if baseline.is_file() else [],
        fillers=[r for r in read_records(warmup) if r.scenario.endswith(FILLER_SUFFIX)] if warmup.is_file() else [],
    )


def _load_meta(run_dir: Path, records: Sequence[RequestRecord]) -> RunMeta:
    """The metadata an older ``load`` did not write, from what it did: its records and self-check."""
    try:
        check = json.loads((run_dir / "self_check.json").read_text())
    except (OSError, ValueError):
        check = {}
    models: dict[str, list[str]] = {}
    for r in records:
        models.setdefault(r.scenario, [])
        if r.model not in models[r.scenario]:
            models[r.scenario].append(r.model)
    written = datetime.fromtimestamp((run_dir / REQUESTS).stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return RunMeta(label="load", created=written, scenarios=[
        ScenarioMeta(scenario=s, models=m, self_check=check if isinstance(check, dict) and check.get("scenario") == s else {})
        for s, m in models.items()
    ])  # fmt: skip
