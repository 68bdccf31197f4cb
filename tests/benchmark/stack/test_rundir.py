"""run.json and baselines: a shared run finds the latest alone runs of the same models and settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from synthetic_records import sequential_run

from benchmark.engine.records import RequestRecord
from benchmark.engine.results import ResultsWriter, read_records
from benchmark.errors import BenchmarkError
from benchmark.stack.rundir import (
    AccessMeta,
    RunDirectory,
    RunMeta,
    ScenarioMeta,
    find_baselines,
    import_baselines,
    load_run,
    read_run_meta,
    save_scrape,
    write_run_meta,
)

SETTINGS = {"pattern": "suite", "iterations": 10, "max_new_tokens": 100}


def make_run(root: Path, name: str, created: str, scenarios: list[tuple[str, list[str]]],
             records: list[RequestRecord], settings: dict = SETTINGS) -> Path:
    run_dir = root / name
    with ResultsWriter(run_dir / "requests.jsonl") as writer:
        for r in records:
            writer.write(r)
    meta = RunMeta(label=name.split("-", 1)[1], created=created, settings=dict(settings),
                   scenarios=[ScenarioMeta(scenario=s, models=m) for s, m in scenarios])
    write_run_meta(run_dir, meta)
    return run_dir


def test_run_json_round_trips_keeps_unknown_keys_out_and_refuses_other_schemas(tmp_path: Path) -> None:
    meta = RunMeta(label="shared", simulated=True, settings=SETTINGS,
                   access={"phi": AccessMeta(path="port-forward", url="http://127.0.0.1:4000", health_rtt_s=0.002)},
                   scenarios=[ScenarioMeta(scenario="shared", models=["phi", "llama"],
                                           metrics={"phi": {"before": "metrics/a.prom"}})])
    path = write_run_meta(tmp_path, meta)
    assert read_run_meta(tmp_path) == meta
    data = json.loads(path.read_text())
    data["added_by_a_newer_version"] = 1
    data["scenarios"][0]["also_new"] = True
    path.write_text(json.dumps(data))
    assert read_run_meta(tmp_path) == meta
    data["schema"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(BenchmarkError, match="schema 99 .* reads 1"):
        read_run_meta(tmp_path)
    path.write_text("{not json")
    with pytest.raises(BenchmarkError, match="run.json: cannot be read as JSON"):
        read_run_meta(tmp_path)
    with pytest.raises(BenchmarkError, match="no run.json"):
        read_run_meta(tmp_path / "elsewhere")


def test_find_baselines_takes_the_latest_alone_run_with_equal_settings(tmp_path: Path) -> None:
    make_run(tmp_path, "20261126T100000Z-alone", "2026-11-26T10:00:00Z", [("alone", ["phi"])],
             sequential_run("phi", "alone"))
    newest_phi = make_run(tmp_path, "20261126T110000Z-all", "2026-11-26T11:00:00Z",
                          [("alone", ["phi"]), ("alone", ["llama"]), ("shared", ["phi", "llama"])],
                          sequential_run("phi", "alone") + sequential_run("llama", "alone"))
    # later, but with other settings, or shared only: not a baseline
    make_run(tmp_path, "20261126T120000Z-alone", "2026-11-26T12:00:00Z", [("alone", ["phi"])],
             sequential_run("phi", "alone"), settings=SETTINGS | {"max_new_tokens": 200})
    make_run(tmp_path, "20261126T130000Z-shared", "2026-11-26T13:00:00Z", [("shared", ["phi", "llama"])],
             sequential_run("phi", "shared"))
    newest_llama = make_run(tmp_path, "20261126T140000Z-alone", "2026-11-26T14:00:00Z",
                            [("alone", ["llama"])], sequential_run("llama", "alone"))
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("[]")
    (tmp_path / "broken" / "requests.jsonl").write_text("")

    found = find_baselines(tmp_path, ["phi", "llama", "mistral"], SETTINGS)
    assert found == {"phi": newest_phi, "llama": newest_llama}
    assert find_baselines(tmp_path / "missing", ["phi"], SETTINGS) == {}


def test_import_baselines_copies_only_each_models_alone_records_and_scrapes(tmp_path: Path) -> None:
    plan = make_run(tmp_path, "20261126T110000Z-all", "2026-11-26T11:00:00Z",
                    [("alone", ["phi"]), ("alone", ["llama"]), ("shared", ["phi", "llama"])],
                    sequential_run("phi", "alone", seed=1) + sequential_run("llama", "alone", seed=2)
                    + sequential_run("phi", "shared", seed=3))
    plan_dir = RunDirectory.open(plan)
    first = dataclasses.replace(plan_dir.meta.scenarios[0], metrics={"phi": {
        p: save_scrape(plan, "alone", "phi", p, f"tgi_request_success {n}\n") for p, n in (("before", 1), ("after", 51))}})
    plan_dir.update(scenarios=[first, *plan_dir.meta.scenarios[1:]])
    shared = make_run(tmp_path, "20261126T120000Z-shared", "2026-11-26T12:00:00Z",
                      [("shared", ["phi", "llama"])], sequential_run("phi", "shared", seed=4))
    shared_dir = RunDirectory.open(shared)
    shared_dir.update(**import_baselines(shared, {"phi": plan}))
    meta = shared_dir.update(**import_baselines(shared, {"phi": plan}))  # importing again replaces, never duplicates
    assert meta.baselines == {"phi": plan.name} and read_run_meta(shared) == meta
    (scenario,) = meta.baseline_scenarios
    assert (scenario.scenario, scenario.models) == ("alone", ["phi"])
    assert (shared / scenario.metrics["phi"]["after"]).read_text() == "tgi_request_success 51\n"
    assert scenario.metrics["phi"]["before"].startswith(f"metrics/baseline-{plan.name}-")
    copied = read_records(shared / "baseline.jsonl")
    assert copied == sequential_run("phi", "alone", seed=1)
    run = load_run(shared)
    assert run.baseline == copied and len(run.records) == 50


def test_load_run_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_run(tmp_path / "nope")
    write_run_meta(tmp_path, RunMeta(label="alone"))
    with pytest.raises(BenchmarkError, match="requests.jsonl: missing"):
        load_run(tmp_path)
