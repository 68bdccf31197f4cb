"""``python -m benchmark demo`` (``make demo``): the whole stack run, offline, SIMULATED.

It starts the reference pair as simulated TGI servers sharing one simulated L40S
(``benchmark.sim``), a fake Kubernetes API whose Deployments drive them
(``benchmark.sim.kube_api``), writes a stack-outputs file for them (the contract, with a
kubeconfig for the fake API), and then runs exactly what a user runs against a stack:
``python -m benchmark run --outputs FILE --scenarios all --repeats 3 --endpoint KEY=URL ...``
(the same parser and the same code path): three interleaved rounds of each model alone and
both together, each with the guide's standard suite at 4 iterations (5 prompts x 4: 60
requests per model and scenario over the rounds, more than the guide's 50), so the report
shows each round, the drift between rounds and an impact interval over them. The simulated
GPU runs ``--time-scale`` times the presets' estimated step times (0.1: ten times faster
than the estimate), so the demo ends in about 75 s.
Whether the figures are simulated, and their time scale, are read from the servers'
``/info`` (``"simulated": true``, ``"simulation": {"time_scale": ...}``), not assumed, and
said on the console and in the report.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmark.commands import run as run_command
from benchmark.commands.flags import positive_float, positive_int
from benchmark.report.text import time_scale_note
from benchmark.sim import REFERENCE_PAIR, SimulatedGpu, SimulatedModel, preset
from benchmark.sim.background import BackgroundLoop
from benchmark.sim.kube_api import FakeDeployment, FakeKubeApi
from benchmark.sim.kube_objects import cpu_node, gpu_node, gpu_operator_pods
from benchmark.sim.spec import ModelSpec
from benchmark.stack.rundir import read_run_meta
from workloads.contract import PORT, Contract, GpuNodes, ModelContract

__all__ = ["SimulatedStack", "configure", "demo", "demo_outputs", "run", "simulated_stack"]

NAMESPACE = "llm-testing"
OPERATOR_NAMESPACE = "gpu-operator"
# The GPU node group as the dev stack declares it (README "Deploying"): what doctor checks.
GPU_NODES = GpuNodes(labels={"eks-node": "gpu"}, taint={"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"},
                     resource="nvidia.com/gpu", gpus_per_node=1)  # fmt: skip
SHARING = {"strategy": "time-slicing", "replicas": 10}
# The guide's multi-model TGI limits (the workloads' catalog defaults), so the simulated
# servers refuse and batch what a real deployment of the stack would.
GUIDE_LIMITS = {"max_input_tokens": 256, "max_total_tokens": 512, "max_batch_total_tokens": 8192,
                "max_concurrent_requests": 16}  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=positive_int(), default=4,
                        help="repeats of the 5 standard prompts per model, scenario and round (default 4)")
    parser.add_argument("--repeats", type=positive_int(), default=3,
                        help="interleaved rounds of the scenarios (default 3; 1: the guide's single pass)")
    parser.add_argument("--time-scale", type=positive_float(), default=0.1,
                        help="simulated step time multiplier (default 0.1: 10x faster than the L40S estimate)")
    parser.add_argument("--results-dir", type=Path, default=Path("results"), help="root of the results directories")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")  # fmt: skip


def demo_outputs(specs: list[ModelSpec], api: FakeKubeApi) -> dict[str, Any]:
    """The stack outputs a deployed stack would print for the simulated models, built with the
    contract module the stack exports with (``workloads.contract``)."""
    models = {
        spec.key: ModelContract(
            key=spec.key, model_id=spec.model_id, deployment=spec.key, service=spec.key, port=PORT, enabled=True,
            replicas=1, start_order=i + 1, api="tgi", max_input_tokens=spec.max_input_tokens,
            max_total_tokens=spec.max_total_tokens, max_batch_total_tokens=spec.max_batch_total_tokens,
            cuda_memory_fraction=0.0, planned_kv_tokens=spec.max_batch_total_tokens,
            max_batch_prefill_tokens=spec.max_batch_prefill_tokens,
            max_concurrent_requests=spec.max_concurrent_requests,
        )
        for i, spec in enumerate(specs)
    }  # fmt: skip
    contract = Contract(
        cluster_name="simulated", region="local", namespace=NAMESPACE, models=models,
        gpu={"instance_type": "g6e.2xlarge", "gpu_model": "NVIDIA L40S (simulated)", "memory_gib": 44.39,
             "sharing": dict(SHARING)},
        gpu_nodes=GPU_NODES, gpu_operator_namespace=OPERATOR_NAMESPACE, benchmark_group="gpu-sharing-benchmark",
    )  # fmt: skip
    return {"contract": contract.to_dict(), "kubeconfig": api.kubeconfig(), "clusterName": "simulated"}


@dataclasses.dataclass(frozen=True)
class SimulatedStack:
    """What ``simulated_stack`` serves: the stack outputs of a deployed stack, simulated."""

    gpu: SimulatedGpu
    models: dict[str, SimulatedModel]  # key -> its simulated server (and Deployment)
    api: FakeKubeApi
    outputs: dict[str, Any]  # as `pulumi stack output --json --show-secrets` would print


@contextlib.asynccontextmanager
async def simulated_stack(*, time_scale: float = 0.1, specs: list[ModelSpec] | None = None,
                          drift_per_s: float = 0.0) -> AsyncIterator[SimulatedStack]:  # fmt: skip
    """The reference pair (or ``specs``) on one simulated GPU (slowing down by ``drift_per_s``
    per second, ``SimulatedGpu``), behind a fake Kubernetes API."""
    gpu = SimulatedGpu(time_scale=time_scale, drift_per_s=drift_per_s)
    specs = specs or [dataclasses.replace(preset(key), **GUIDE_LIMITS) for key in REFERENCE_PAIR]
    async with contextlib.AsyncExitStack() as stack:
        sims = {spec.key: await stack.enter_async_context(SimulatedModel(spec, gpu)) for spec in specs}
        keys = list(sims)  # in start order, gated like the stack's pods
        node = gpu_node("ip-10-0-3-17.us-west-2.compute.internal", labels=GPU_NODES.labels, taint=GPU_NODES.taint,
                        resource=GPU_NODES.resource, replicas=SHARING["replicas"], strategy=str(SHARING["strategy"]))
        nodes = [node, cpu_node("ip-10-0-1-20.us-west-2.compute.internal"), cpu_node("ip-10-0-2-31.us-west-2.compute.internal")]
        api = await stack.enter_async_context(FakeKubeApi(NAMESPACE, [
            FakeDeployment(name=key, replicas=1, backend=sim.base_url, on_scale=sim.set_replicas,
                           after=keys[: keys.index(key)])
            for key, sim in sims.items()
        ], nodes=nodes, operator_namespace=OPERATOR_NAMESPACE, operator_pods=gpu_operator_pods([node])))  # fmt: skip
        yield SimulatedStack(gpu=gpu, models=sims, api=api, outputs=demo_outputs(specs, api))


class _ServedInThread:
    """``simulated_stack`` served from a ``BackgroundLoop``, so the benchmark keeps the main
    thread and its own loop (``asyncio.run``), exactly as against a real stack."""

    def __init__(self, time_scale: float) -> None:
        self.context = simulated_stack(time_scale=time_scale)
        self.background: BackgroundLoop | None = None

    def __enter__(self) -> SimulatedStack:
        self.background = BackgroundLoop("simulated-stack")
        return self.background.call(self.context.__aenter__(), timeout=60)

    def __exit__(self, *exc: object) -> None:
        assert self.background is not None
        try:
            self.background.call(self.context.__aexit__(None, None, None))
        finally:
            self.background.close()


def demo(*, iterations: int = 4, repeats: int = 3, time_scale: float = 0.1, results_dir: Path = Path("results"),
         progress: bool = True) -> Path:  # fmt: skip
    """Serve the simulated pair and the fake API, then run ``python -m benchmark run --outputs
    FILE --scenarios all --repeats N --endpoint ...`` against them; returns its results directory."""
    with _ServedInThread(time_scale) as sim:
        results_dir.mkdir(parents=True, exist_ok=True)
        outputs_file = results_dir / "demo-stack-outputs.json"
        outputs_file.write_text(json.dumps(sim.outputs, indent=2) + "\n")
        argv = ["--outputs", str(outputs_file), "--scenarios", "all", "--repeats", str(repeats),
                "--iterations", str(iterations), "--results-dir", str(results_dir), "--ready-timeout", "60"]  # fmt: skip
        argv += [arg for key, model in sim.models.items() for arg in ("--endpoint", f"{key}={model.base_url}")]
        if not progress:
            argv.append("--no-progress")
        print(f"SIMULATED demo: {len(sim.models)} simulated TGI servers on one simulated L40S, a fake Kubernetes "
              f"API at {sim.api.url}. {time_scale_note(sim.gpu.time_scale)}", file=sys.stderr)  # fmt: skip
        print("running: python -m benchmark run " + " ".join(argv), file=sys.stderr)
        parser = argparse.ArgumentParser()
        run_command.configure(parser)
        return run_command.execute(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    run_dir = demo(iterations=args.iterations, repeats=args.repeats, time_scale=args.time_scale,
                   results_dir=args.results_dir, progress=not args.no_progress)  # fmt: skip
    scale = read_run_meta(run_dir).time_scale  # as the servers' /info reported it
    print(f"\nSIMULATED demo done. {time_scale_note(scale)}\nReport: {run_dir / 'report.md'} (plots, CSV and JSON beside it)")
    return 0
