"""How a real GPU time-slices two processes: the measurement behind ``benchmark/sim/gpu.py``.

Needs a CUDA GPU and PyTorch (not part of ``requirements.txt``: run it on a GPU machine, e.g.
``pip install torch`` there). Two processes each replay a CUDA graph of ``n`` memory-bound bf16
matrix-vector products (8192 x 8192, about 0.13 ms each on an H200): one "decode step". Each
step is timed with CUDA events and wall-clock stamps; between steps a process may spend a
"host gap" (busy-waiting, as a server's scheduling and sampling would) or sleep.

For each case ``nA,nB,gapA_ms,gapB_ms`` it runs A alone, B alone, then both at once, and prints
each one's step period (the median 60 % of the run) alone and shared. Negative gaps sleep
instead of spinning. The raw per-step stamps go to ``$OUT/trace.json`` (default /tmp).

    python scripts/timeslice_probe.py 125,175,0,0 125,175,3,3 125,175,10,10 330,610,6,6

What it showed on an H200 (2026-12-01, see ``benchmark/sim/gpu.py``; e.g. ``125,175,0,0``: steps of
4.24 / 6.10 ms alone, 11.43 / 11.56 ms shared, +170 % / +90 %): two busy processes take
turns of about 2.1 ms with 0.14 ms of idle between them; a step that arrives while the other
process computes starts at the end of the current turn, not after the other's whole step.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

STEPS_MAX = 3000  # CUDA events kept per run
DIM = 8192


def worker(conn: Connection) -> None:  # pragma: no cover - needs a GPU
    import torch  # pyright: ignore[reportMissingImports]

    torch.cuda.set_device(0)
    weights = [torch.randn(DIM, DIM, device="cuda", dtype=torch.bfloat16) for _ in range(16)]
    x = torch.randn(DIM, device="cuda", dtype=torch.bfloat16)
    stream = torch.cuda.current_stream()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(STEPS_MAX)]
    graph = None
    while True:
        command = conn.recv()
        if command[0] == "graph":  # capture a step of n products
            n = command[1]
            side = torch.cuda.Stream()
            side.wait_stream(stream)
            with torch.cuda.stream(side):  # warm up before capture, as CUDA graphs require
                for i in range(n):
                    weights[i % 16].mv(x)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for i in range(n):
                    weights[i % 16].mv(x)
            for _ in range(3):
                graph.replay()
            torch.cuda.synchronize()
            conn.send("ok")
        elif command[0] == "run":  # steps from t0 for dur seconds, with a host gap after each
            _, t0, duration, gap = command
            assert graph is not None
            origin = torch.cuda.Event(enable_timing=True)
            origin.record()
            stream.synchronize()
            wall_origin = time.time()
            stamps: list[tuple[float, float]] = []
            while time.time() < t0:
                pass
            while time.time() < t0 + duration and len(stamps) < STEPS_MAX:
                launched = time.time()
                start, end = events[len(stamps)]
                start.record()
                graph.replay()
                end.record()
                stream.synchronize()
                stamps.append((launched, time.time()))
                if gap > 0:  # host work: spin
                    until = time.perf_counter() + gap
                    while time.perf_counter() < until:
                        pass
                elif gap < 0:
                    time.sleep(-gap)
            conn.send([(launched, wall_origin + origin.elapsed_time(events[i][0]) / 1e3,
                        wall_origin + origin.elapsed_time(events[i][1]) / 1e3, done)
                       for i, (launched, done) in enumerate(stamps)])
        else:
            return


def period_ms(steps: list[Any]) -> float:
    """The mean step period over the middle 60 % of a run (its edges overlap the other's start and end)."""
    ends = [s[3] for s in steps]
    ends = ends[len(ends) // 5: len(ends) * 4 // 5]
    return (ends[-1] - ends[0]) / (len(ends) - 1) * 1e3


def main() -> int:
    mp.set_start_method("spawn")
    pipes = [mp.Pipe() for _ in range(2)]
    procs = [mp.Process(target=worker, args=(child,)) for _, child in pipes]
    for p in procs:
        p.start()

    def capture(i: int, n: int) -> None:
        pipes[i][0].send(("graph", n))
        assert pipes[i][0].recv() == "ok"

    def run(which: list[int], duration: float, gaps: tuple[float, float]) -> dict[int, Any]:
        t0 = time.time() + 0.3  # a common start
        for i in which:
            pipes[i][0].send(("run", t0, duration, gaps[i]))
        return {i: pipes[i][0].recv() for i in which}

    traces = {}
    for case in sys.argv[1:]:
        n_a, n_b, gap_a, gap_b = case.split(",")
        gaps = (float(gap_a) / 1e3, float(gap_b) / 1e3)
        capture(0, int(n_a))
        capture(1, int(n_b))
        a, b = run([0], 1.5, gaps)[0], run([1], 1.5, gaps)[1]
        shared = run([0, 1], 2.0, gaps)
        gpu_a = sum(s[2] - s[1] for s in a) / len(a) * 1e3
        gpu_b = sum(s[2] - s[1] for s in b) / len(b) * 1e3
        print(f"{case}: alone A {period_ms(a):.2f} ms (GPU {gpu_a:.2f}), B {period_ms(b):.2f} ms (GPU {gpu_b:.2f}) | "
              f"shared A {period_ms(shared[0]):.2f} ms, B {period_ms(shared[1]):.2f} ms", flush=True)
        traces[case] = {"A": shared[0], "B": shared[1]}
    with open(os.path.join(os.environ.get("OUT", "/tmp"), "trace.json"), "w") as f:
        json.dump(traces, f)
    for parent, _ in pipes:
        parent.send(("quit",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
