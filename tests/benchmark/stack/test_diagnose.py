"""doctor's readings of what real clusters and real TGI servers print: the scheduler's message, a
container's state, TGI's failures in its log, the start-order gate's log (from the stack's own
script, run here), and the memory plan against the KV tokens TGI found."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchmark.sim.kube_objects import gate_log
from benchmark.stack.diagnose import classify_log, explain_unschedulable, gate_wait, kv_verdict, pod_state, scheduler_reasons
from workloads.pod import WAIT_COMMAND

# kubernetes FitError.Error(): sorted "<count> <reason>" pairs, then the preemption plugin's own sentence
ISSUE_EXAMPLE = ("0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint "
                 "{nvidia.com/gpu: true}. preemption: 0/3 nodes are available: 1 No preemption victims found for "
                 "incoming pod, 2 Preemption is not helpful for scheduling.")  # fmt: skip
GPU = {"resource": "nvidia.com/gpu", "labels": {"eks-node": "gpu"}, "taint_key": "nvidia.com/gpu", "model": "phi"}


def test_the_schedulers_message_is_read_node_count_by_reason() -> None:
    assert scheduler_reasons(ISSUE_EXAMPLE) == [
        (1, "Insufficient nvidia.com/gpu"), (2, "node(s) had untolerated taint {nvidia.com/gpu: true}")]  # fmt: skip
    assert scheduler_reasons("pod has unbound immediate PersistentVolumeClaims") == []


@pytest.mark.parametrize(
    ("message", "seen", "fix"),
    [
        ("0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector. "
         "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not "
         "helpful for scheduling.", "every nvidia.com/gpu share is taken", "gpuSharing.replicas"),
        ("0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector.",
         "not enough allocatable memory", "models.phi.memory"),
        ("0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
         "no node carries the GPU node group's labels eks-node=gpu", "gpuNodes.minSize"),
        ("0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 2 node(s) "
         "didn't match Pod's node affinity/selector.", "tainted {node.kubernetes.io/not-ready: }", "gpu nodes check"),
        (ISSUE_EXAMPLE, "tainted {nvidia.com/gpu: true}", "lacks the toleration for nvidia.com/gpu"),
    ],
)
def test_each_unschedulable_reason_is_named_with_its_fix(message: str, seen: str, fix: str) -> None:
    finding = explain_unschedulable(message, **GPU)
    assert seen in finding.seen and finding.fix is not None and fix in finding.fix
    assert "didn't match" not in finding.seen or "no node carries" in finding.seen  # the CPU nodes are no news


def test_the_start_order_gates_own_log_names_the_model_it_waits_for(tmp_path: Path) -> None:
    """Run the stack's init-container script against an earlier model that does not answer: doctor
    reads the model it waits for from what the script prints, and the fake API prints the same."""
    listing = tmp_path / "enabled"
    listing.write_text("phi35-mini\ndeepseek-r1-8b\n")
    argv = [*WAIT_COMMAND, str(listing), "http://127.0.0.1:9/{key}/health", "1", "phi35-mini"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        time.sleep(2.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
    log = proc.communicate(timeout=10)[0]
    assert gate_wait(log) == "phi35-mini", log
    assert gate_wait(gate_log(["phi35-mini"], {"phi35-mini": False})) == "phi35-mini"
    assert gate_wait(gate_log(["a", "b"], {"a": True, "b": False})) == "b"


@pytest.mark.parametrize(
    ("log", "cause"),
    [
        # TGI 3.3.6's warmup (flash_causal_lm.py) re-raises PyTorch's OOM; the router prints it once more
        ("\x1b[2m2026-11-30T10:00:01Z\x1b[0m \x1b[31mERROR\x1b[0m text_generation_launcher: Method Warmup encountered an error.\n"
         "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.96 GiB. GPU 0 has a total capacity of 44.39 GiB "
         "of which 1.12 GiB is free.\n"
         "RuntimeError: Not enough memory to handle 4096 prefill tokens. You need to decrease `--max-batch-prefill-tokens`\n"
         "Error: Backend(Warmup(Generation(\"Not enough memory to handle 4096 prefill tokens.\")))\n", "cuda-oom"),
        # huggingface/text-generation-inference#3082, as the issue quotes it
        ("unable to refresh ld cache, not a big deal in most cases\n/usr/local/bin/text-generation-launcher: error while "
         "loading shared libraries: libpython3.11.so.1.0: cannot open shared object file: No such file or directory\n",
         "non-root"),
        ("huggingface_hub.errors.GatedRepoError: 401 Client Error. (Request ID: Root=1-6f0b)\n\nCannot access gated repo "
         "for url https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/resolve/main/config.json.\nAccess to model "
         "meta-llama/Llama-3.1-8B-Instruct is restricted. You must have access to it and be authenticated to access it. "
         "Please log in.\nError: DownloadError\n", "hub-auth"),
        ("huggingface_hub.errors.RepositoryNotFoundError: 404 Client Error. (Request ID: Root=1-6f0c)\n", "hub-not-found"),
        ("OSError: [Errno 28] No space left on device: '/data/models--org--m/blobs/abc.incomplete'\n", "disk-full"),
    ],
)
def test_tgi_failures_are_recognised_in_its_log(log: str, cause: str) -> None:
    found = classify_log(log)
    assert found is not None and found[0].name == cause
    assert "\x1b" not in found[1]  # the line is quoted without the launcher's colours


def test_an_unknown_log_is_no_cause() -> None:
    assert classify_log("INFO text_generation_launcher: Starting shard rank=0\n") is None


def test_the_kv_tokens_found_against_the_plan_say_which_way_it_is_off() -> None:
    ok, finding = kv_verdict(26_000, 26_624, 30_000, source="/metrics")
    assert ok and "within 10%" in finding.seen
    ok, _ = kv_verdict(32_500, 26_624, 30_000, source="/metrics")  # first start: later models get more
    assert ok
    ok, finding = kv_verdict(8_176, 27_989, None, source="/metrics")
    assert not ok and "71% fewer" in finding.seen and "optimistic" in finding.seen and finding.fix
    ok, finding = kv_verdict(40_000, 26_624, 26_624, source="/metrics")
    assert not ok and "50% more" in finding.seen and "pessimistic" in finding.seen


def test_a_pod_held_by_an_init_container_is_not_read_as_its_main_container() -> None:
    pod = {"metadata": {"name": "b-1"}, "status": {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "False"}],
        "initContainerStatuses": [{"name": "wait-for-earlier-models", "state": {"running": {"startedAt": "t"}}}],
        "containerStatuses": [{"name": "tgi", "ready": False, "state": {"waiting": {"reason": "PodInitializing"}}}]}}  # fmt: skip
    state = pod_state(pod)
    assert (state.kind, state.container) == ("init", "wait-for-earlier-models")
