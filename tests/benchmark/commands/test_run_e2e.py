"""`run` end to end, offline: simulated TGI servers on one simulated GPU behind the fake
Kubernetes API, through the real kubernetes client (scale, status, port-forward)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from enginekit import benchmark_argv

from benchmark.commands.demo import SimulatedStack, simulated_stack
from benchmark.commands.run import benchmark_stack
from benchmark.engine.results import read_records
from benchmark.sim.background import BackgroundLoop
from benchmark.stack import rundir
from benchmark.stack.outputs import parse_outputs
from benchmark.stack.scaling import ORIGINAL_REPLICAS
from benchmark.stack.session import RunOptions

PHI, R1 = "phi35-mini", "deepseek-r1-8b"


def _options(tmp_path: Path, **kw: object) -> RunOptions:
    base = RunOptions(iterations=1, max_new_tokens=10, results_dir=tmp_path / "results", ready_timeout=20,
                      poll=0.05, progress=False, warmup=0)  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_all_scenarios_through_port_forwards_restores_and_records_everything(tmp_path: Path) -> None:
    async def main() -> None:
        async with simulated_stack(time_scale=0.05) as sim:
            stack = parse_outputs(sim.outputs, source="test")
            await sim.models[R1].set_replicas(0)  # found at 0: must be put back to 0
            sim.api.deployments[R1].replicas = 0
            run_dir = await benchmark_stack(stack, _options(tmp_path, scenarios="all"), log=lambda s: None)
            assert sim.api.replicas() == {PHI: 1, R1: 0}
            meta = rundir.read_run_meta(run_dir)
            assert run_dir.name.endswith("-all") and meta.label == "all"
            assert [(s.scenario, s.models) for s in meta.scenarios] == [
                ("alone", [R1]), ("alone", [PHI]), ("shared", [PHI, R1])
            ]
            # reached through the benchmark's own port-forwards, whose overhead was measured
            assert {k: a.path for k, a in meta.access.items()} == {PHI: "port-forward", R1: "port-forward"}
            assert all(a.health_rtt_s is not None and a.health_rtt_s > 0 for a in meta.access.values())
            assert any("/portforward" in path for _, path in sim.api.calls)
            assert meta.simulated is True  # read from the servers' /info
            for s in meta.scenarios:  # /metrics before and after every scenario, for each of its models
                assert sorted(s.metrics) == sorted(s.models)
                assert all((run_dir / f).is_file() for phases in s.metrics.values() for f in phases.values())
            records = read_records(run_dir / rundir.REQUESTS)
            counts = {(r.scenario, r.model): 0 for r in records}
            for r in records:
                counts[(r.scenario, r.model)] += 1
                assert r.success, r.error
            assert counts == {("alone", R1): 5, ("alone", PHI): 5, ("shared", PHI): 5, ("shared", R1): 5}

    asyncio.run(main())


def test_plain_runs_detect_alone_and_shared_and_find_the_alone_baselines(tmp_path: Path) -> None:
    async def main() -> None:
        async with simulated_stack(time_scale=0.05) as sim:
            stack = parse_outputs(sim.outputs, source="test")
            endpoints = [f"{k}={m.base_url}" for k, m in sim.models.items()]
            dirs = {}
            for only in (PHI, R1):  # each alone: the other scaled to 0 in the cluster
                for key in sim.models:
                    await sim.api.scale(sim.api.deployments[key], 1 if key == only else 0)
                dirs[only] = await benchmark_stack(stack, _options(tmp_path, models=[only], endpoints=endpoints, warmup=2),
                                                   log=lambda s: None)  # fmt: skip
                assert rundir.read_run_meta(dirs[only]).label == "alone" and "-alone" in dirs[only].name
            # a later alone run with other settings is not a baseline for them
            other = await benchmark_stack(stack, _options(tmp_path, models=[R1], endpoints=endpoints, warmup=2,
                                                          max_new_tokens=5),
                                          log=lambda s: None)  # fmt: skip
            assert rundir.read_run_meta(other).label == "alone"
            for key in sim.models:
                await sim.api.scale(sim.api.deployments[key], 1)
            shared = await benchmark_stack(stack, _options(tmp_path, endpoints=endpoints, warmup=2), log=lambda s: None)
            assert rundir.read_run_meta(shared).label == "shared" and "-shared" in shared.name
            meta = rundir.read_run_meta(shared)
            assert meta.baselines == {PHI: dirs[PHI].name, R1: dirs[R1].name}
            assert {r.model for r in read_records(shared / rundir.BASELINE)} == {PHI, R1}
            assert {k: a.path for k, a in meta.access.items()} == {PHI: "endpoint", R1: "endpoint"}
            # warmup requests are kept apart, before the first scrape; so are the fillers that kept the
            # model that finished first busy: the server's own count (from /metrics) is the measured
            # ones plus those fillers (the ones stopped in flight may or may not have completed)
            kept_apart = read_records(shared / "warmup.jsonl")
            assert sorted(r.scenario for r in kept_apart if "warmup" in r.scenario) == ["shared-warmup"] * 4
            assert {r.scenario for r in kept_apart} <= {"shared-warmup", "shared-filler"}
            assert not any("filler" in r.request_id for r in read_records(shared / rundir.REQUESTS))
            check = {t["model"]: t for t in meta.scenarios[0].self_check["targets"]}  # type: ignore[index]
            assert sum(t["filler_sent"] for t in check.values()) > 0  # the two models do not finish together
            attribution = json.loads((shared / "summary.json").read_text())["attribution"]
            counted = {row["model"]: row["requests"] for row in attribution if row["scenario"] == "shared"}
            for key in (PHI, R1):
                written = sum(r.model == key and r.scenario == "shared-filler" and r.success for r in kept_apart)
                assert 5 + written <= counted[key] <= 5 + written + check[key]["filler_cancelled"]
            assert "every recorded request ran under sharing" in (shared / "report.md").read_text()

    asyncio.run(main())


def test_report_impact_matches_the_simulated_slowdown(tmp_path: Path) -> None:
    """The report's impact interval contains the slowdown the simulator actually produced,
    taken from its truth log (server-side receive and last-token times of the same requests).

    The client's E2E also holds its own overhead (HTTP round trip, parsing, an event loop
    shared with the simulator), measured per request as client E2E minus server E2E: the
    interval is widened by what those overheads do to the ratio, and that must stay small."""

    async def main() -> None:
        async with simulated_stack(time_scale=0.1) as sim:
            stack = parse_outputs(sim.outputs, source="test")
            endpoints = [f"{k}={m.base_url}" for k, m in sim.models.items()]
            opts = _options(tmp_path, scenarios="all", endpoints=endpoints, iterations=2, max_new_tokens=60)
            run_dir = await benchmark_stack(stack, opts, log=lambda s: None)
            written = json.loads((run_dir / "summary.json").read_text())
            report_md = (run_dir / "report.md").read_text()
            assert written["simulated"] is True and "SIMULATED" in report_md
            (impact,) = written["impact"]
            assert (impact["scenario"], impact["baseline"]) == ("shared", "alone")
            rows = {(r["model"], r["metric"]): r for r in impact["per_model"]}
            records = read_records(run_dir / rundir.REQUESTS)
            for model in (PHI, R1):
                server, overhead = {}, {}
                for side in ("alone", "shared"):
                    pairs = [(r, sim.gpu.truth.get(r.request_id)) for r in records if r.model == model and r.scenario == side]
                    assert len(pairs) == 10
                    e2e, extra = [], []
                    for r, t in pairs:
                        assert t is not None and t.end is not None and r.e2e is not None
                        e2e.append(t.end - t.received)
                        extra.append(r.e2e - e2e[-1])
                    server[side], overhead[side] = sum(e2e) / len(e2e), sum(extra) / len(extra)
                simulated = server["shared"] / server["alone"] - 1
                with_overhead = (server["shared"] + overhead["shared"]) / (server["alone"] + overhead["alone"]) - 1
                slack = abs(with_overhead - simulated)
                assert slack < 0.05, (model, overhead, slack)  # small next to the slowdown itself
                row = rows[(model, "e2e_mean")]
                assert row["ci_low"] - slack <= simulated <= row["ci_high"] + slack, (model, simulated, slack, row)
                assert f"Impact on {model} (shared vs alone): latency +" in report_md
            # sharing the GPU costs the smaller model a clear slowdown
            assert rows[(PHI, "e2e_mean")]["ci_low"] > 0.2

    asyncio.run(main())


def _in_the_second_scenario(sim: SimulatedStack, tmp_path: Path) -> tuple[subprocess.Popen[str], list[str], Path]:
    """``run --scenarios all`` in a process of its own, once it is measuring its second scenario
    (PHI alone, R1 scaled to 0) and has recorded one of its requests: the process, its stderr
    lines so far, its results directory. The second scenario lasts seconds (50 requests of 20
    tokens at a fifth of the L40S step times), so a signal lands in it even when a loaded
    machine delays this test's process."""
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(sim.outputs))
    argv = [*benchmark_argv("run"), "--outputs", str(outputs), "--scenarios", "all",
            "--iterations", "10", "--max-new-tokens", "20", "--results-dir", str(tmp_path / "results"),
            "--no-progress", "--ready-timeout", "30"]  # fmt: skip
    argv += [a for k, m in sim.models.items() for a in ("--endpoint", f"{k}={m.base_url}")]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # the second scenario (PHI alone) starts its load
        lines.append(line)
        if line.startswith(f"scenario alone: {PHI}: 1 x") or time.monotonic() > deadline:
            break
    run_dir = Path(next(ln for ln in lines if ln.startswith("results: ")).removeprefix("results: ").strip())
    while not any(r.model == PHI for r in read_records(run_dir / rundir.REQUESTS)):  # one of its requests done
        assert time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    assert sim.api.replicas() == {PHI: 1, R1: 0}, "".join(lines)
    return proc, lines, run_dir


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_second_scenario_restores_replicas(tmp_path: Path, signum: int) -> None:
    bg = BackgroundLoop()
    ctx = simulated_stack(time_scale=0.2)
    sim = bg.call(ctx.__aenter__())
    try:
        proc, lines, run_dir = _in_the_second_scenario(sim, tmp_path)
        proc.send_signal(signum)
        _, rest = proc.communicate(timeout=60)
        err = "".join(lines) + rest
        assert proc.returncode == 128 + signum, err
        assert "Traceback" not in err
        assert "restored replicas" in err and "interrupted" in err
        assert sim.api.replicas() == {PHI: 1, R1: 1}
        assert not any(d.annotations for d in sim.api.deployments.values())  # the originals' record is gone
        kept = read_records(run_dir / rundir.REQUESTS)  # what ran before the interrupt is kept
        assert sum(r.scenario == "alone" and r.model == R1 for r in kept) == 50
        assert any(r.model == PHI for r in kept)
    finally:
        bg.call(ctx.__aexit__(None, None, None))
        bg.close()


def test_a_run_killed_in_its_second_scenario_is_restored_by_the_next_run(tmp_path: Path) -> None:
    """SIGKILL leaves R1 scaled to 0, no restore; the next run, started at once, finds the true
    originals recorded on the Deployments, runs every scenario (no wait on a gate it shut), and
    puts them back."""
    bg = BackgroundLoop()
    ctx = simulated_stack(time_scale=0.2)
    sim = bg.call(ctx.__aenter__())
    try:
        proc, lines, run_dir = _in_the_second_scenario(sim, tmp_path)
        proc.kill()
        proc.communicate(timeout=60)
        assert sim.api.replicas() == {PHI: 1, R1: 0}
        assert {k: d.annotations for k, d in sim.api.deployments.items()} == {
            k: {ORIGINAL_REPLICAS: "1"} for k in (PHI, R1)}
        assert any(r.model == PHI for r in read_records(run_dir / rundir.REQUESTS))  # kept, a torn line at most

        heard: list[str] = []
        stack = parse_outputs(sim.outputs, source="test")
        again = asyncio.run(benchmark_stack(stack, _options(tmp_path, scenarios="all", ready_timeout=30), log=heard.append))
        assert any(f"{R1}: a run that did not finish recorded 1 original replica(s)" in h for h in heard), heard
        assert [s.scenario for s in rundir.read_run_meta(again).scenarios] == ["alone", "alone", "shared"]
        assert sim.api.replicas() == {PHI: 1, R1: 1}
        assert not any(d.annotations for d in sim.api.deployments.values())
    finally:
        bg.call(ctx.__aexit__(None, None, None))
        bg.close()
