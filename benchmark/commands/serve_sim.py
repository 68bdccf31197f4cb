"""``python -m benchmark serve-sim``: serve simulated TGI models on 127.0.0.1 until Ctrl-C.

Models come from ``--model`` (a preset key or HuggingFace id, repeatable; default: the
reference pair) or from ``--config FILE``, a JSON object::

    {"gpu": {"time_scale": 1.0, "timeslice_s": 0.002, "context_switch_s": 0.0001, "drift_per_s": 0.0},
     "models": [{"preset": "phi35-mini", "port": 8080, "replicas": 1,
                 "eos_probability": 0.02, "faults": {"rates": {"stall": 0.1}}},
                {"key": "tiny", "model_id": "example/tiny", "decode_base_s": 0.005}]}

where each model is a preset plus ``ModelSpec`` overrides (or a full spec with ``key`` and
``model_id``). All models share one simulated GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError
from benchmark.sim.faults import FAULT_KINDS, FaultSpec
from benchmark.sim.gpu import SimulatedGpu
from benchmark.sim.model import SimulatedModel
from benchmark.sim.presets import REFERENCE_PAIR, preset
from benchmark.sim.spec import ModelSpec

__all__ = ["configure", "run", "load_config"]

GPU_KEYS = ("time_scale", "timeslice_s", "context_switch_s", "drift_per_s")  # SimulatedGpu's keyword arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=[], metavar="PRESET",
                        help=f"a preset key or model id, repeatable (default: {', '.join(REFERENCE_PAIR)})")
    parser.add_argument("--config", type=Path, metavar="FILE", help="JSON file of models and GPU settings")
    parser.add_argument("--ports", default="", metavar="P1,P2,...",
                        help="ports, in model order (default: free ports, printed)")
    parser.add_argument("--time-scale", type=float, default=None, metavar="X",
                        help="multiply every simulated duration (0.1 = ten times faster; default 1)")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=RATE",
                        help=f"inject a fault into every model at this rate; kinds: {', '.join(FAULT_KINDS)}")
    parser.add_argument("--truth-log", type=Path, metavar="FILE", help="append the truth log to this JSONL file")


def load_config(data: Any, where: str = "--config") -> tuple[list[tuple[ModelSpec, int, int]], dict[str, float]]:
    """Models as (spec, port, replicas) and the GPU's keyword arguments, from JSON data."""
    if not isinstance(data, dict):
        raise BenchmarkError(f"{where}: got {type(data).__name__}; allowed: a JSON object with \"models\"")
    unknown = sorted(set(data) - {"models", "gpu"})
    if unknown:
        raise BenchmarkError(f"{where}: unknown key {unknown[0]!r}; allowed: models, gpu")
    gpu = data.get("gpu", {})
    if (not isinstance(gpu, dict) or set(gpu) - set(GPU_KEYS)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in gpu.values())):
        raise BenchmarkError(f"{where}.gpu: got {gpu!r}; allowed: an object with numbers {', '.join(GPU_KEYS)}")
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise BenchmarkError(f"{where}.models: got {models!r}; allowed: a non-empty list of model objects")
    out: list[tuple[ModelSpec, int, int]] = []
    for i, entry in enumerate(models):
        here = f"{where}.models[{i}]"
        if not isinstance(entry, dict):
            raise BenchmarkError(f"{here}: got {entry!r}; allowed: an object")
        entry = dict(entry)
        port, replicas = entry.pop("port", 0), entry.pop("replicas", 1)
        for name, value in (("port", port), ("replicas", replicas)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                raise BenchmarkError(f"{here}.{name}: got {value!r}; allowed: an integer (port 0 = any free port)")
        try:
            base = preset(entry.pop("preset")) if "preset" in entry else None
            out.append((ModelSpec.from_mapping(entry, base=base, where=here), port, replicas))
        except ValueError as e:
            raise BenchmarkError(str(e)) from e
    return out, gpu


def _models_from_args(args: argparse.Namespace) -> tuple[list[tuple[ModelSpec, int, int]], dict[str, float]]:
    if args.config is not None and args.model:
        raise BenchmarkError("--config and --model: got both; allowed: one of them")
    if args.config is not None:
        try:
            data = json.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BenchmarkError(f"--config: cannot read {str(args.config)!r}: {e}") from e
        models, gpu = load_config(data, f"--config {args.config}")
    else:
        try:
            models = [(preset(name), 0, 1) for name in (args.model or REFERENCE_PAIR)]
        except ValueError as e:
            raise BenchmarkError(f"--model: {e}") from e
        gpu = {}
    if args.ports:
        try:
            ports = [int(p) for p in args.ports.split(",")]
        except ValueError:
            raise BenchmarkError(f"--ports: got {args.ports!r}; allowed: comma-separated port numbers") from None
        if len(ports) != len(models) or not all(0 <= p <= 65535 for p in ports):
            raise BenchmarkError(f"--ports: got {args.ports!r}; allowed: {len(models)} port number(s), one per model")
        models = [(spec, port, replicas) for (spec, _, replicas), port in zip(models, ports)]
    if args.fault:
        rates: dict[str, float] = {}
        for item in args.fault:
            kind, _, rate = item.partition("=")
            try:
                rates[kind] = float(rate)
            except ValueError:
                raise BenchmarkError(f"--fault: got {item!r}; allowed: KIND=RATE such as stall=0.05") from None
        try:
            models = [(spec.replace(faults=FaultSpec(rates=rates, seed=spec.seed)), port, replicas)
                      for spec, port, replicas in models]
        except ValueError as e:
            raise BenchmarkError(f"--fault: {e}") from e
    if args.time_scale is not None:
        gpu = {**gpu, "time_scale": args.time_scale}
    return models, gpu


async def _serve(models: list[tuple[ModelSpec, int, int]], gpu_args: dict[str, Any], truth_log: Path | None) -> None:
    try:
        gpu = SimulatedGpu(truth_log=str(truth_log) if truth_log else None, **gpu_args)
    except (ValueError, OSError) as e:
        raise BenchmarkError(f"serve-sim: {e}") from e
    running: list[SimulatedModel] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        print("SIMULATION: simulated TGI servers (gpu-sharing tgi simulator) on one simulated "
              f"{gpu.name.removesuffix(' (simulated)')}, time scale {gpu.time_scale:g}, time slice "
              f"{gpu.timeslice_s * 1000:g} ms; not real models, not a real GPU.")
        for spec, port, replicas in models:
            model = SimulatedModel(spec, gpu, replicas=replicas)
            try:
                url = await model.start(port=port)
            except OSError as e:
                raise BenchmarkError(f"serve-sim: cannot listen on 127.0.0.1:{port} for {spec.key}: {e}") from e
            running.append(model)
            print(f"  {spec.key}: {url} ({spec.model_id}, {replicas} replica(s), simulated)")
        if truth_log:
            print(f"truth log: {truth_log}")
        print("warming up...", flush=True)
        await asyncio.gather(*(m.wait_ready(timeout=m.spec.warmup_s * gpu.time_scale + 10)
                               for m in running if m.replica_count))
        print("Ctrl-C to stop.", flush=True)
        await stop.wait()
    finally:
        for model in running:
            await model.stop()
        gpu.close()


def run(args: argparse.Namespace) -> int:
    models, gpu_args = _models_from_args(args)
    asyncio.run(_serve(models, gpu_args, args.truth_log))
    sys.stdout.flush()
    return 0
