"""A TGI-compatible SIMULATED server: several models on one simulated time-sliced GPU.

For tests and the offline demo; every answer says it is simulated (``/info`` has
``"simulated": true``, the time scale in ``"simulation"`` and ``router: "gpu-sharing tgi
simulator"``, ``/metrics`` starts with a comment saying so). Formats are TGI 3.x's (see ``benchmark.sim.wire``).

Python API::

    async with SimulatedGpu(time_scale=1.0, truth_log="truth.jsonl") as gpu, \\
               SimulatedModel(preset("phi35-mini"), gpu) as phi, \\
               SimulatedModel(preset("deepseek-r1-8b"), gpu) as r1:
        await phi.wait_ready()             # presets warm up for 2 s (x time_scale)
        phi.base_url                       # http://127.0.0.1:<port>; start(host, port) to choose
        await phi.set_replicas(0)          # port refuses, no GPU load; >0: warm up, then serve
        gpu.truth.get("<X-Request-Id>")    # TruthRecord: emit time of every token event, ...
        gpu.stats["phi35-mini"]            # GpuStats: steps, busy_s, wait_s, host_s, switches

- ``SimulatedGpu`` (``gpu.py``): time-sliced like CUDA, calibrated on an H200: each step
  needs its GPU time after its host time (``host_s``, during which others use the GPU); the
  replicas with work take turns of ``timeslice_s`` (2.04 ms), a step yields the GPU when it
  ends, a switch costs ``context_switch_s`` (0.24 ms); so two GPU-bound models share one
  period and the smaller pays more, host time is partly hidden, long steps share about
  equally (``gpu.py`` cites the measurements); owns the ``TruthLog`` (``truth.py``).
- ``SimulatedModel`` (``model.py``): one Deployment: an aiohttp server on 127.0.0.1 and
  its replicas, each a continuous-batching engine with a KV-token budget and
  ``max_concurrent_requests``. ``await model.wait_ready()`` waits for /health to be 200.
- ``ModelSpec`` (``spec.py``), ``FaultSpec`` (``faults.py``): limits, speed, faults.
- ``PRESETS``/``preset()`` (``presets.py``): the reference pair on an L40S, derived from
  weight bytes / memory bandwidth plus a kernel overhead measured on an H200, and 4 ms of
  host time per step (simulated estimates, not measurements).
- ``python -m benchmark serve-sim`` (``benchmark.commands.serve_sim``): serve models until Ctrl-C;
  ``sim_process`` (``process.py``) runs it in another process for tests and scripts.
"""

from benchmark.sim.faults import FAULT_KINDS, FaultSpec
from benchmark.sim.gpu import GpuStats, SimulatedGpu
from benchmark.sim.model import SimulatedModel
from benchmark.sim.presets import PRESETS, REFERENCE_PAIR, preset
from benchmark.sim.spec import ModelSpec
from benchmark.sim.truth import TruthLog, TruthRecord, read_truth

__all__ = [
    "FAULT_KINDS",
    "FaultSpec",
    "GpuStats",
    "ModelSpec",
    "PRESETS",
    "REFERENCE_PAIR",
    "SimulatedGpu",
    "SimulatedModel",
    "TruthLog",
    "TruthRecord",
    "preset",
    "read_truth",
]
