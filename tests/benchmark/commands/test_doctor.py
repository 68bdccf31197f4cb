"""`python -m benchmark doctor` through the real command, against the demo's simulated stack (the
fake Kubernetes API and simulated TGI servers): it passes there, and names each failure staged in
the fake cluster the way a real cluster would report it, with the fix."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmark.cli import main
from benchmark.commands.demo import SimulatedStack, simulated_stack
from benchmark.errors import EXIT_DOCTOR_FAILED
from benchmark.sim.background import BackgroundLoop
from benchmark.sim.kube_objects import (
    FakeNode,
    Trouble,
    cpu_node,
    crash_loop,
    gpu_node,
    not_configurable,
    unpullable,
    unschedulable,
)

FIRST, SECOND = "phi35-mini", "deepseek-r1-8b"  # the reference pair, in start order
ORDER = ["stack outputs", "kubernetes api", "gpu nodes", "gpu operator", "gpu sharing",
         f"model {FIRST}", f"model {FIRST} kv cache", f"model {FIRST} load",
         f"model {SECOND}", f"model {SECOND} kv cache", f"model {SECOND} load"]  # fmt: skip
TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
OOM_AT_WARMUP = (
    "INFO text_generation_launcher: Warming up model\n"
    "ERROR text_generation_launcher: Method Warmup encountered an error.\n"
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.96 GiB. GPU 0 has a total capacity of 44.39 GiB "
    "of which 1.12 GiB is free.\n"
    "RuntimeError: Not enough memory to handle 4096 prefill tokens. You need to decrease `--max-batch-prefill-tokens`\n"
    "ERROR text_generation_launcher: Webserver Crashed\n"
)


@dataclasses.dataclass
class Served:
    sim: SimulatedStack
    outputs: Path
    loop: BackgroundLoop

    def write(self, change: Any = None) -> None:
        """Rewrite the outputs file, ``change(outputs)`` applied first."""
        outputs = json.loads(json.dumps(self.sim.outputs))
        if change is not None:
            change(outputs)
        self.outputs.write_text(json.dumps(outputs))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    loop = BackgroundLoop("doctor-test")
    context = simulated_stack(time_scale=0.05)
    sim = loop.call(context.__aenter__(), timeout=60)
    try:
        for model in sim.models.values():  # warmed up, as a stack that has been up a while
            loop.call(model.wait_ready())
        s = Served(sim=sim, outputs=tmp_path / "outputs.json", loop=loop)
        s.write()
        yield s
    finally:
        loop.call(context.__aexit__(None, None, None))
        loop.close()


def doctor(served: Served, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, dict[str, tuple[str, str]]]:
    """Run the command; returns its exit status and each check's (status, rest of its line)."""
    rc = main(["doctor", "--outputs", str(served.outputs), *flags])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    checks = {}
    for line in out.splitlines():
        if m := re.match(r"(ok|FAIL|skip)\s+(.+?): (.*)$", line):
            checks[m[2]] = (m[1], m[3])
    return rc, checks


def failed(checks: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {name: rest for name, (status, rest) in checks.items() if status == "FAIL"}


def test_doctor_passes_on_the_demos_simulated_stack(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rc, checks = doctor(served, capsys)
    assert rc == 0
    assert list(checks) == ORDER  # the guide's order, one line per check
    assert {status for status, _ in checks.values()} == {"ok"}
    assert "access entry arn:aws:iam::111122223333:role/benchmark-runner" in checks["kubernetes api"][1]
    assert "nvidia.com/gpu: 10" in checks["gpu sharing"][1]
    assert "within 10%" in checks[f"model {FIRST} kv cache"][1]

    rc = main(["doctor", "--outputs", str(served.outputs), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["ok"] is True
    assert [c["check"] for c in report["checks"]] == ORDER and {c["status"] for c in report["checks"]} == {"ok"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_api_fails_and_what_needs_it_is_skipped(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    port = _closed_port()
    served.write(lambda o: o["kubeconfig"]["clusters"][0]["cluster"].update(server=f"http://127.0.0.1:{port}"))
    phi = served.sim.models[FIRST].base_url
    rc, checks = doctor(served, capsys, "--endpoint", f"{FIRST}={phi}")
    assert rc == EXIT_DOCTOR_FAILED
    assert checks["kubernetes api"][0] == "FAIL" and f"127.0.0.1:{port}" in checks["kubernetes api"][1]
    assert {checks[n][0] for n in ("gpu nodes", "gpu operator", "gpu sharing", f"model {SECOND}")} == {"skip"}
    assert checks[f"model {FIRST} kv cache"][0] == "ok"  # reached through its --endpoint


def test_rejected_credentials_are_named(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    served.write(lambda o: o["kubeconfig"]["users"][0]["user"].update(token="not-the-token"))
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED
    assert "HTTP 401" in checks["kubernetes api"][1] and "aws eks get-token" in checks["kubernetes api"][1]


GPU_NODE = "ip-10-0-3-17.us-west-2.compute.internal"


@pytest.mark.parametrize(
    ("nodes", "check", "seen", "fix"),
    [
        ([cpu_node("cpu-1"), cpu_node("cpu-2")], "gpu nodes", "no node carries the GPU node group's labels eks-node=gpu",
         "G-instance vCPU quota"),
        ([dataclasses.replace(gpu_node(GPU_NODE, labels={"eks-node": "gpu"}, taint=TAINT), ready=False)], "gpu nodes",
         f"{GPU_NODE} not Ready (NodeStatusUnknown", "kubectl describe node"),
        ([gpu_node(GPU_NODE, labels={"eks-node": "gpu"}, taint=None)], "gpu nodes",
         "taint nvidia.com/gpu=true:NoSchedule absent", "pulumi up"),
        # the device plugin without the sharing config: one nvidia.com/gpu per GPU, labelled unshared
        ([gpu_node(GPU_NODE, labels={"eks-node": "gpu"}, taint=TAINT, replicas=1, strategy="none")], "gpu sharing",
         "advertises nvidia.com/gpu: 1, not 10 (10 replicas x 1 GPU)", "devicePlugin.config"),
    ],
)
def test_gpu_node_troubles_are_named(served: Served, capsys: pytest.CaptureFixture[str], nodes: list[FakeNode],
                                     check: str, seen: str, fix: str) -> None:  # fmt: skip
    served.sim.api.nodes = nodes
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED
    status, rest = checks[check]
    assert status == "FAIL" and seen in rest and fix in rest.split(" -> fix: ")[1], rest


def test_gpu_operator_troubles_are_named(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    pods = served.sim.api.operator_pods
    plugin = next(p for p in pods if p.labels["app"] == "nvidia-device-plugin-daemonset")
    plugin.trouble = crash_loop("E1130 config-manager: unable to load config 'time-slicing'", restarts=7)
    served.sim.api.operator_pods = [p for p in pods if p.labels["app"] != "nvidia-dcgm-exporter"]
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED
    status, rest = checks["gpu operator"]
    assert status == "FAIL"
    assert f"device plugin pod {plugin.name} in CrashLoopBackOff" in rest and "7 restarts" in rest
    assert f"no DCGM exporter pod (app=nvidia-dcgm-exporter) on {GPU_NODE}" in rest


@pytest.mark.parametrize(
    ("trouble", "seen", "fix"),
    [
        (unschedulable("0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node "
                       "affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for "
                       "incoming pod, 2 Preemption is not helpful for scheduling."),
         "every nvidia.com/gpu share is taken", "raise gpuSharing.replicas"),
        (unschedulable("0/3 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: true}, 2 node(s) "
                       "didn't match Pod's node affinity/selector."),
         "tainted {nvidia.com/gpu: true}, which the pod does not tolerate", "lacks the toleration"),
        (unschedulable("0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node "
                       "affinity/selector."),
         "not enough allocatable memory", f"lower models.{FIRST}.memory"),
        (crash_loop(OOM_AT_WARMUP), "CUDA out of memory at warmup", "cudaMemoryFraction"),
        (crash_loop("unable to refresh ld cache, not a big deal in most cases\n/usr/local/bin/text-generation-launcher: "
                    "error while loading shared libraries: libpython3.11.so.1.0: cannot open shared object file: No such "
                    "file or directory\n", exit_code=127),
         "exit code 127): the image's Python is not readable by the container's user", "runs only as root"),
        (crash_loop("huggingface_hub.errors.GatedRepoError: 403 Client Error. (Request ID: Root=1-6f0b)\nCannot access "
                    "gated repo for url https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/resolve/main/config.json."
                    "\nAccess to model meta-llama/Llama-3.1-8B-Instruct is restricted and you are not in the authorized "
                    "list.\nError: DownloadError\n"),
         "the Hugging Face Hub refused the download", "pulumi config set --secret hfToken"),
        (crash_loop("OSError: [Errno 28] No space left on device\nError: DownloadError\n"),
         "the GPU node's disk is full", "gpuNodes.diskSizeGib"),
        (crash_loop("INFO text_generation_launcher: Loading weights\n", exit_code=137, reason="OOMKilled"),
         "last run OOMKilled, exit code 137): killed at its memory limit", f"raise models.{FIRST}.memory"),
        (unpullable('Back-off pulling image "ghcr.io/huggingface/text-generation-inference:3.3.99"'),
         "ImagePullBackOff", f"check models.{FIRST}.image"),
        (not_configurable('secret "hf-token" not found'), "CreateContainerConfigError", "hfToken"),
    ],
)
def test_each_staged_model_failure_is_named_with_its_fix(served: Served, capsys: pytest.CaptureFixture[str],
                                                         trouble: Trouble, seen: str, fix: str) -> None:  # fmt: skip
    served.sim.api.deployments[FIRST].trouble = trouble
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED
    assert list(failed(checks)) == [f"model {FIRST}"], failed(checks)  # nothing else fails
    rest = failed(checks)[f"model {FIRST}"]
    assert "not ready (0/1)" in rest and seen in rest.split(" -> fix: ")[0] and fix in rest.split(" -> fix: ")[1], rest
    assert checks[f"model {FIRST} kv cache"][0] == "skip"
    assert checks[f"model {SECOND}"][0] == "ok"  # already running: the gate held it only at its start


def test_a_model_held_by_the_start_order_gate_names_the_model_it_waits_for(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    api = served.sim.api
    api.deployments[FIRST].trouble = crash_loop(OOM_AT_WARMUP)
    api.deployments[SECOND].pods[0].initialized = False  # restarted: its init container waits again
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED
    assert "CUDA out of memory at warmup" in failed(checks)[f"model {FIRST}"]
    second = failed(checks)[f"model {SECOND}"]
    assert f"waits on the start-order gate (init container wait-for-earlier-models) for model {FIRST}" in second
    assert f"model {FIRST} starts before it" in second


def test_a_gate_that_waits_for_a_ready_model_points_at_the_service_path(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first model is up, but the second's init container cannot reach it (its Service, the
    NetworkPolicy): the gate's log says it waits for a model that is ready."""
    second = served.sim.api.deployments[SECOND]
    second.pods[0].initialized, second.gate_reaches = False, False
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED and checks[f"model {FIRST}"][0] == "ok"
    second = failed(checks)[f"model {SECOND}"]
    assert f"for model {FIRST}, which is ready" in second and "NetworkPolicy" in second


def test_a_model_still_starting_shows_its_last_log_line(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    dep = served.sim.api.deployments[SECOND]
    dep.backend = f"http://127.0.0.1:{_closed_port()}"  # its readiness probe fails: running, not ready
    dep.log = ("INFO text_generation_launcher: Starting download process.\n"
               "INFO download: text_generation_launcher: Download file: model-00002-of-00002.safetensors\n")  # fmt: skip
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED
    rest = failed(checks)[f"model {SECOND}"]
    assert "not ready yet" in rest and "model-00002-of-00002.safetensors" in rest and "startupMinutes" in rest


def test_a_model_scaled_to_zero_is_named(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    api = served.sim.api
    served.loop.call(api.scale(api.deployments[SECOND], 0))
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED
    assert f"is scaled to 0; the stack declares 1 -> fix: `kubectl -n llm-testing scale deployment/{SECOND} --replicas=1`" in (
        failed(checks)[f"model {SECOND}"])


def test_a_deployment_missing_from_the_cluster_is_named(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    del served.sim.api.deployments[SECOND]
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED
    assert f'deployments.apps "{SECOND}" not found -> fix: `pulumi up` declares it' in failed(checks)[f"model {SECOND}"]


@pytest.mark.parametrize(("factor", "seen"), [(4.0, "75% fewer: the memory plan is optimistic"),
                                              (0.5, "100% more: the memory plan is pessimistic")])  # fmt: skip
def test_kv_tokens_off_the_plan_say_which_way(served: Served, capsys: pytest.CaptureFixture[str],
                                              factor: float, seen: str) -> None:  # fmt: skip
    def planned(outputs: dict[str, Any]) -> None:
        model = outputs["contract"]["models"][FIRST]
        model["planned_kv_tokens"] = model["planned_kv_tokens_first_start"] = int(model["max_batch_total_tokens"] * factor)

    served.write(planned)
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED
    assert list(failed(checks)) == [f"model {FIRST} kv cache"]
    assert seen in failed(checks)[f"model {FIRST} kv cache"] and "workloads/warmup.py Assumptions" in (
        failed(checks)[f"model {FIRST} kv cache"])


def test_a_stack_exported_before_doctor_gets_its_cluster_checks_skipped(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    served.write(lambda o: [o["contract"].pop(k) for k in ("gpu_nodes", "gpu_operator", "access")])
    rc, checks = doctor(served, capsys)
    assert rc == 0
    assert {checks[n][0] for n in ("gpu nodes", "gpu operator", "gpu sharing")} == {"skip"}
    assert "`pulumi up` exports it" in checks["gpu nodes"][1]
    assert checks[f"model {SECOND} kv cache"][0] == "ok"


def test_missing_permissions_are_skips_naming_the_verb(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    served.sim.api.errors.update({"list_nodes": 403, "list_pods:gpu-operator": 403})
    rc, checks = doctor(served, capsys)
    assert rc == 0  # nothing seen is wrong
    assert checks["gpu nodes"] == ("skip", checks["gpu nodes"][1]) and "no permission to list nodes" in checks["gpu nodes"][1]
    assert "no permission to list pods in namespace 'gpu-operator'" in checks["gpu operator"][1]
    assert checks["gpu sharing"][0] == "skip"


def test_a_crash_loop_whose_log_is_not_readable_says_so(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    served.sim.api.deployments[FIRST].trouble = crash_loop(OOM_AT_WARMUP)
    served.sim.api.errors["read_log"] = 403
    rc, checks = doctor(served, capsys)
    assert rc == EXIT_DOCTOR_FAILED
    assert "CrashLoopBackOff (5 restarts" in failed(checks)[f"model {FIRST}"]
    assert "no permission to get pods/log" in failed(checks)[f"model {FIRST}"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--endpoint", "phi35-mini"], "--endpoint 'phi35-mini': expected KEY=URL"),
        (["--endpoint", "nope=http://127.0.0.1:1"], "--endpoint 'nope=http://127.0.0.1:1': model 'nope' is not in"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(served: Served, capsys: pytest.CaptureFixture[str],
                                               flags: list[str], expected: str) -> None:  # fmt: skip
    rc = main(["doctor", "--outputs", str(served.outputs), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and [ln for ln in err.splitlines() if ln.startswith("error: ")] == [ln for ln in err.splitlines() if ln]
    assert expected in err


def test_help_documents_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with contextlib.suppress(SystemExit):
        main(["doctor", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"{EXIT_DOCTOR_FAILED} a check FAILed" in out and "--json" in out
