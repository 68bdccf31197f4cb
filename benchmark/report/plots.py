"""The report's plots: the E2E latency CDF per model (one curve per scenario) and the output
tokens/s over time (one panel per scenario). They only draw what the analysis computed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display; before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmark.analysis.comparison import BIN_S, Analysis, scenario_order  # noqa: E402
from benchmark.stack.rundir import RunMeta  # noqa: E402

__all__ = ["plots"]


def plots(a: Analysis, out: Path) -> list[Path]:
    models = sorted({r.model for r in a.records})
    paths = [out / "latency_cdf.png", out / "throughput.png"]
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(5 * max(1, len(models)), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for scenario in scenario_order(a.records):
            e2e = np.sort([r.e2e for r in a.records if r.model == model and r.scenario == scenario
                           and r.success and r.e2e is not None])
            if e2e.size:
                ax.step(e2e, np.arange(1, e2e.size + 1) / e2e.size, where="post", label=f"{scenario} (n={e2e.size})")
        ax.set(title=model, xlabel="E2E latency (s)", ylabel="fraction of requests", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no successful request: nothing to label
            ax.legend(loc="lower right")
    _save(fig, paths[0], a.run.meta)

    scenarios = scenario_order(a.records)
    fig, axes = plt.subplots(len(scenarios) or 1, 1, figsize=(10, 3 * max(1, len(scenarios))), squeeze=False)
    for ax, scenario in zip(axes[:, 0], scenarios):
        part = a.timeline[a.timeline["scenario"] == scenario]
        for model in models:
            line = part[part["model"] == model]
            if len(line):  # repeat the last value to the end of its bin
                t, y = line["t"].tolist(), line["tokens_per_s"].tolist()
                ax.step(t + [t[-1] + BIN_S], y + y[-1:], where="post", label=model)
        ax.set(title=f"{scenario}: output tokens per second ({BIN_S:g} s bins)",
               xlabel="seconds since the scenario's start", ylabel="tokens/s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
    _save(fig, paths[1], a.run.meta)
    return paths


def _save(fig: Any, path: Path, meta: RunMeta) -> None:
    if meta.simulated:
        scale = f", time x{meta.time_scale:g}" if meta.time_scale is not None else ""
        fig.suptitle(f"SIMULATED (benchmark/sim{scale}): not GPU measurements", color="firebrick")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


