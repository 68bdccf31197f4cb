"""The report's plots: the E2E latency CDF per model (one curve per scenario) and the output
tokens/s over time: a panel per scenario (columns) and round (rows), all on one y-axis, the
last bin as the timeline rated it (over the time it covers), and in a shared scenario each
model's unrecorded keep-busy fillers dashed, so the panel shows what the GPU was doing after
a model's recorded requests ended. They only draw what the analysis computed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display; before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmark.analysis.comparison import BIN_S, Analysis, scenario_order  # noqa: E402
from benchmark.stack.rundir import RunMeta  # noqa: E402

__all__ = ["latency_figure", "plots", "throughput_figure"]


def plots(a: Analysis, out: Path) -> list[Path]:
    paths = [out / "latency_cdf.png", out / "throughput.png"]
    _save(latency_figure(a), paths[0], a.run.meta)
    _save(throughput_figure(a), paths[1], a.run.meta)
    return paths


def latency_figure(a: Analysis) -> Any:
    """E2E latency CDF per model, one curve per scenario."""
    models = sorted({r.model for r in a.records})
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
    return fig


def throughput_figure(a: Analysis) -> Any:
    """Output tokens/s over time: a panel per (round, scenario), one y-axis for all, so a model
    that lost half its tokens/s when shared draws half as high as alone."""
    models = sorted({r.model for r in a.records})
    scenarios = scenario_order(a.records)
    rounds = sorted({r.round for r in a.records}) or [1]
    fig, axes = plt.subplots(len(rounds), max(1, len(scenarios)), figsize=(7 * max(1, len(scenarios)), 3 * len(rounds)),
                             squeeze=False, sharey=True)  # fmt: skip
    colours = {m: f"C{i}" for i, m in enumerate(models)}
    for row, rnd in zip(axes, rounds):
        for ax, scenario in zip(row, scenarios):
            part = a.timeline[(a.timeline["scenario"] == scenario) & (a.timeline["round"] == rnd)]
            for model in models:
                for source, style, label in (("recorded", "-", model), ("filler", "--", f"{model}: unrecorded fillers")):
                    line = part[(part["model"] == model) & (part["source"] == source)]
                    t, width, y = (line[c].tolist() for c in ("t", "width", "tokens_per_s"))
                    if source == "filler":  # from its first tokens on
                        first = next((i for i, v in enumerate(y) if v), len(y))
                        t, width, y = t[first:], width[first:], y[first:]
                    if t:  # the last bin drawn as wide as it is
                        ax.step([*t, t[-1] + width[-1]], y + y[-1:], where="post", linestyle=style,
                                color=colours[model], label=label)
            which = f", round {rnd}" if len(rounds) > 1 else ""
            ax.set(title=f"{scenario}{which}: output tokens/s ({BIN_S:g} s bins)",
                   xlabel="seconds since the scenario's start", ylabel="tokens/s")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="lower left", fontsize="small")
    return fig


def _save(fig: Any, path: Path, meta: RunMeta) -> None:
    if meta.simulated:
        scale = f", time x{meta.time_scale:g}" if meta.time_scale is not None else ""
        fig.suptitle(f"SIMULATED (benchmark/sim{scale}): not GPU measurements", color="firebrick")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


