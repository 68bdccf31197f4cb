"""The orchestrated plan against the fake Kubernetes API, through the real kubernetes client:
who runs in each scenario, start order, and the restore of the original replicas whatever
happens (success, exception, failed wait, KeyboardInterrupt, cancellation)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest
from stack_helpers import HealthBackend, model_entry

from benchmark.errors import BenchmarkError
from benchmark.sim.kube_api import FakeDeployment, FakeKubeApi
from benchmark.stack.kube import Kube
from benchmark.stack.outputs import parse_outputs
from benchmark.stack.scaling import ORIGINAL_REPLICAS, Orchestrator, Scenario, _finish, all_scenarios, run_scenarios
from workloads.contract import ModelContract

NS = "llm-testing"


def _models(*keys: str) -> list[ModelContract]:
    from stack_helpers import outputs

    data = outputs({k: model_entry(k, start_order=i + 1) for i, k in enumerate(keys)})
    return parse_outputs(data, source="test").active_models()


async def _cluster(original: dict[str, int], *, healthy: bool = True,
                   warmup: float = 0.0) -> tuple[FakeKubeApi, dict[str, HealthBackend], list[str]]:  # fmt: skip
    """A fake API whose Deployments (in start order) are backed by health backends (ready
    ``warmup`` s after a start) and gated like the stack's pods (a new pod waits until the
    earlier models are ready); ``events`` logs every scale as 'name=n' followed by which other
    models were up then."""
    backends = {name: HealthBackend(n, warmup=warmup) for name, n in original.items()}
    events: list[str] = []
    for b in backends.values():
        await b.start()

    def hook(name: str) -> Callable[[int], None]:
        def on_scale(n: int) -> None:
            up = sorted(k for k, b in backends.items() if b.replicas > 0 and k != name)
            events.append(f"{name}={n} while up:{','.join(up)}")
            backends[name].set_replicas(n)

        return on_scale

    names = list(original)
    deps = [
        FakeDeployment(name=name, replicas=n, backend=backends[name].url if healthy else None, on_scale=hook(name),
                       after=names[: names.index(name)])
        for name, n in original.items()
    ]  # fmt: skip
    api = FakeKubeApi(NS, deps, terminate_s=0.05)
    await api.start()
    return api, backends, events


async def _teardown(api: FakeKubeApi, backends: dict[str, HealthBackend]) -> None:
    await api.stop()
    for b in backends.values():
        await b.stop()


def _plan(api: FakeKubeApi, models: list[ModelContract], *, timeout: float = 5,
          log: Callable[[str], None] = lambda s: None) -> Orchestrator:  # fmt: skip
    return Orchestrator(Kube(api.kubeconfig(), NS), models, ready_timeout=timeout, poll=0.02, log=log)


def _annotations(api: FakeKubeApi) -> dict[str, str | None]:
    return {name: d.annotations.get(ORIGINAL_REPLICAS) for name, d in api.deployments.items()}


def test_plan_runs_each_alone_then_shared_in_start_order_and_restores() -> None:
    async def main() -> None:
        api, backends, events = await _cluster({"a": 1, "b": 0, "c": 1})
        models = _models("a", "b", "c")
        seen: list[tuple[str, tuple[str, ...], dict[str, int]]] = []

        async def run_scenario(s: Scenario) -> None:
            # who is up, as the cluster (not the orchestrator) says
            seen.append((s.name, s.models, {k: len(d.pods) for k, d in api.deployments.items()}))

        try:
            await run_scenarios(_plan(api, models), all_scenarios(models), run_scenario)
            assert [(n, m) for n, m, _ in seen] == [
                ("alone", ("c",)), ("alone", ("b",)), ("alone", ("a",)), ("shared", ("a", "b", "c"))
            ]
            for name, keys, pods in seen:  # exactly the scenario's models have pods
                assert {k for k, n in pods.items() if n > 0} == set(keys), (name, keys, pods)
            _assert_started_in_order(events, ["a", "b", "c"])
            # the shared scenario adds b then c to a, which ran alone last; the restore only stops b
            assert events[-3:] == ["b=1 while up:a", "c=1 while up:a,b", "b=0 while up:a,c"], events
            assert api.replicas() == {"a": 1, "b": 0, "c": 1}  # the originals, b included
        finally:
            await _teardown(api, backends)

    asyncio.run(main())


def _assert_started_in_order(events: list[str], order: list[str]) -> None:
    """Every start happened with every earlier model up (the gate) and no later one (memory)."""
    for event in events:
        name, rest = event.split("=", 1)
        n, up = rest.split(" while up:")
        if int(n) > 0:
            up_set = set(filter(None, up.split(",")))
            earlier, later = set(order[: order.index(name)]), set(order[order.index(name) + 1 :])
            assert earlier <= up_set and not (later & up_set), (event, events)


def test_alone_scenarios_start_the_earlier_models_for_the_gate_and_a_subset_plan_stops_the_rest() -> None:
    async def main() -> None:
        api, backends, events = await _cluster({"a": 1, "b": 1, "c": 1, "d": 1})
        catalog = _models("a", "b", "c", "d")
        measured = [m for m in catalog if m.key in ("b", "c")]  # --models b,c: a and d are not measured
        seen: list[tuple[str, tuple[str, ...], set[str]]] = []

        async def run_scenario(s: Scenario) -> None:
            seen.append((s.name, s.models, {k for k, d in api.deployments.items() if d.pods}))

        try:
            orchestrator = Orchestrator(Kube(api.kubeconfig(), NS), catalog, ready_timeout=5, poll=0.02, log=lambda s: None)
            await run_scenarios(orchestrator, all_scenarios(measured), run_scenario)
            assert seen == [("alone", ("c",), {"c"}), ("alone", ("b",), {"b"}), ("shared", ("b", "c"), {"b", "c"})]
            _assert_started_in_order(events, ["a", "b", "c", "d"])
            assert "a=1 while up:" in events  # a helped b (and then c) through the gate, then stopped
            assert api.replicas() == {"a": 1, "b": 1, "c": 1, "d": 1}
        finally:
            await _teardown(api, backends)

    asyncio.run(main())


@pytest.mark.parametrize("failure", ["exception", "cancel"])
def test_restore_after_failure_in_the_second_scenario(failure: str) -> None:
    async def main() -> None:
        api, backends, _ = await _cluster({"a": 1, "b": 1})
        models = _models("a", "b")
        ran: list[Scenario] = []
        second = asyncio.Event()

        async def run_scenario(s: Scenario) -> None:
            ran.append(s)
            if len(ran) == 2:
                assert api.replicas() == {"a": 1, "b": 0}  # in the middle: b scaled away
                second.set()
                if failure == "exception":
                    raise RuntimeError("load failed")
                await asyncio.sleep(30)  # cancelled from outside, as asyncio.run does on Ctrl-C

        try:
            task = asyncio.ensure_future(run_scenarios(_plan(api, models), all_scenarios(models), run_scenario))
            if failure == "cancel":
                await second.wait()
                task.cancel()
            with pytest.raises(RuntimeError if failure == "exception" else asyncio.CancelledError):
                await task
            assert len(ran) == 2
            assert api.replicas() == {"a": 1, "b": 1}
        finally:
            await _teardown(api, backends)

    asyncio.run(main())


def test_restore_on_keyboard_interrupt() -> None:
    """A KeyboardInterrupt raised in a task escapes asyncio.run; the restore happens first."""
    holder: dict[str, FakeKubeApi] = {}

    async def main() -> None:
        api, _, _ = await _cluster({"a": 1, "b": 1})
        holder["api"] = api
        models = _models("a", "b")
        ran: list[Scenario] = []

        async def run_scenario(s: Scenario) -> None:
            ran.append(s)
            if len(ran) == 2:
                assert api.replicas() == {"a": 1, "b": 0}
                raise KeyboardInterrupt

        await run_scenarios(_plan(api, models), all_scenarios(models), run_scenario)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    assert holder["api"].replicas() == {"a": 1, "b": 1}


def test_failed_wait_names_the_deployment_and_restores() -> None:
    async def main() -> None:
        api, backends, _ = await _cluster({"a": 0, "b": 1}, healthy=False)  # pods never Ready
        models = _models("a", "b")
        try:
            with pytest.raises(BenchmarkError) as err:
                await run_scenarios(_plan(api, models, timeout=0.3), all_scenarios(models), lambda s: asyncio.sleep(0))
            msg = str(err.value)
            # b is found not ready: its gate needs a (enabled, earlier), which is started first and never gets ready
            assert "timed out after 0.3 s waiting for deployment 'a' to have 1 ready, available pod(s)" in msg
            assert "ready 0" in msg
            assert api.replicas() == {"a": 0, "b": 1}
        finally:
            await _teardown(api, backends)

    asyncio.run(main())


def test_api_error_is_one_line_and_restore_still_runs() -> None:
    async def main() -> None:
        api, backends, _ = await _cluster({"a": 1, "b": 1})
        models = _models("a", "b")

        async def run_scenario(s: Scenario) -> None:
            api.errors["read"] = 403  # the next status read is refused

        try:
            with pytest.raises(BenchmarkError) as err:
                await run_scenarios(_plan(api, models), all_scenarios(models), run_scenario)
            assert str(err.value).startswith("Kubernetes API: reading deployment")
            assert "HTTP 403" in str(err.value) and "\n" not in str(err.value)
            assert api.replicas() == {"a": 1, "b": 1}  # restore uses the scale calls, which still work
        finally:
            await _teardown(api, backends)

    asyncio.run(main())


def test_evicted_pods_left_behind_do_not_block_the_waits() -> None:
    async def main() -> None:
        api, backends, _ = await _cluster({"a": 1, "b": 1})
        for dep in api.deployments.values():
            dep.failed_pods = 1  # an evicted pod stays listed until garbage-collected
        models = _models("a", "b")
        ran: list[str] = []
        try:
            await run_scenarios(_plan(api, models), all_scenarios(models), lambda s: asyncio.sleep(0, ran.append(s.title)))
            assert ran == ["alone: b", "alone: a", "shared: a + b"]
            assert api.replicas() == {"a": 1, "b": 1}
        finally:
            await _teardown(api, backends)

    asyncio.run(main())


def test_a_missing_deployment_fails_before_any_change() -> None:
    async def main() -> None:
        api, backends, _ = await _cluster({"a": 1, "b": 1})
        models = _models("a", "b", "c")  # the contract names a Deployment the cluster lacks
        try:
            with pytest.raises(BenchmarkError, match=r"reading the scale of deployment 'c'.*HTTP 404"):
                await run_scenarios(_plan(api, models), all_scenarios(models), lambda s: asyncio.sleep(0))
            assert not [c for c in api.calls if c[0] != "GET"]  # nothing was scaled, nothing "restored"
            assert api.replicas() == {"a": 1, "b": 1}
        finally:
            await _teardown(api, backends)

    asyncio.run(main())


def test_all_scenarios_needs_two_models() -> None:
    with pytest.raises(BenchmarkError, match="--scenarios all needs at least two models"):
        all_scenarios(_models("a"))



def test_a_ctrl_c_during_the_restore_only_prints_a_message() -> None:
    heard: list[str] = []

    async def restore() -> str:
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C again
        await asyncio.sleep(0.2)
        return "restored"

    try:
        result = asyncio.run(_finish(restore(), heard.append))
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C interrupted the restore")
    assert result == "restored"
    assert heard == ["restoring the original replicas first, please wait"]


def test_the_originals_are_recorded_on_the_deployments_before_the_first_change_and_removed_after_the_restore() -> None:
    async def main() -> None:
        api, backends, _ = await _cluster({"a": 1, "b": 0, "c": 1})
        models = _models("a", "b", "c")
        during: list[dict[str, str | None]] = []
        try:
            await run_scenarios(_plan(api, models), all_scenarios(models), lambda s: asyncio.sleep(0, during.append(_annotations(api))))
            assert during and all(seen == {"a": "1", "b": "0", "c": "1"} for seen in during)
            patches = [path for method, path in api.calls if method == "PATCH"]
            first_scale = next(i for i, path in enumerate(patches) if path.endswith("/scale"))
            assert sorted(p.rsplit("/", 1)[1] for p in patches[:first_scale]) == ["a", "b", "c"]  # the annotations
            assert _annotations(api) == {"a": None, "b": None, "c": None}  # removed once restored
            assert api.replicas() == {"a": 1, "b": 0, "c": 1}
        finally:
            await _teardown(api, backends)

    asyncio.run(main())


def test_a_run_killed_before_its_restore_is_undone_by_the_next_run() -> None:
    async def main() -> None:
        api, backends, _ = await _cluster({"a": 1, "b": 1})
        models = _models("a", "b")
        scenarios = all_scenarios(models)
        try:
            killed = _plan(api, models)  # a run killed in its second scenario: no restore ever runs
            await killed.prepare(scenarios[0])
            await killed.prepare(scenarios[1])
            assert api.replicas() == {"a": 1, "b": 0} and _annotations(api) == {"a": "1", "b": "1"}

            heard: list[str] = []  # the next run fails before it changes anything, and still restores b
            with pytest.raises(RuntimeError):
                await run_scenarios(_plan(api, models, log=heard.append), scenarios[:1],
                                    lambda s: (_ for _ in ()).throw(RuntimeError("load failed")))
            assert any("b: a run that did not finish recorded 1 original replica(s)" in line for line in heard), heard
            assert api.replicas() == {"a": 1, "b": 1} and _annotations(api) == {"a": None, "b": None}

            killed = _plan(api, models)  # killed again; the next run goes through all its scenarios
            await killed.prepare(scenarios[1])
            ran: list[str] = []
            await run_scenarios(_plan(api, models), scenarios, lambda s: asyncio.sleep(0, ran.append(s.title)))
            assert ran == ["alone: b", "alone: a", "shared: a + b"]
            assert api.replicas() == {"a": 1, "b": 1} and _annotations(api) == {"a": None, "b": None}
        finally:
            await _teardown(api, backends)

    asyncio.run(main())


def test_a_model_gated_on_one_still_starting_is_never_left_waiting_by_a_stop_in_the_same_step() -> None:
    """What an interrupted run's restore leaves: a restarting (not yet ready), and b's new pod
    held by its start-order gate until a is ready. The next run's first scenario wants b
    alone; stopping a before b is ready would hold b's gate shut until the timeout."""

    async def main() -> None:
        api, backends, events = await _cluster({"a": 1, "b": 1}, warmup=0.3)
        models = _models("a", "b")
        for name, n in (("b", 0), ("a", 0), ("a", 1), ("b", 1)):  # the restore: stopped, started again in order
            await api.scale(api.deployments[name], n)
        assert not (await Kube(api.kubeconfig(), NS).state("b")).ready_pods  # b's pod waits for a
        events.clear()
        ran: list[str] = []
        try:
            await run_scenarios(_plan(api, models, timeout=3), all_scenarios(models),
                                lambda s: asyncio.sleep(0, ran.append(s.title)))
            assert ran == ["alone: b", "alone: a", "shared: a + b"]
            assert events[0] == "a=0 while up:b", events  # a is stopped only once b is ready
            assert api.replicas() == {"a": 1, "b": 1}
        finally:
            await _teardown(api, backends)

    asyncio.run(main())


def test_a_long_wait_says_what_it_waits_for_whose_gate_holds_it_how_long_and_the_limit() -> None:
    async def main() -> None:
        api, backends, _ = await _cluster({"a": 1, "b": 0}, warmup=0.6)  # b takes 0.6 s to get ready
        models = _models("a", "b")
        heard: list[str] = []
        orchestrator = Orchestrator(Kube(api.kubeconfig(), NS), models, ready_timeout=5, poll=0.02, log=heard.append,
                                    note_every=0.2)  # fmt: skip
        try:
            await orchestrator.prepare(all_scenarios(models)[0])  # b alone: b starts behind a's gate
            notes = [h for h in heard if h.startswith("  waiting for deployment b")]
            assert notes, heard
            assert "to have 1 ready, available pod(s) (its pods' start-order gate waits for a)" in notes[0]
            assert " s of at most 5 s (--ready-timeout); now: spec 1, ready 0" in notes[0], notes
            await orchestrator.restore()
        finally:
            await _teardown(api, backends)

    asyncio.run(main())
