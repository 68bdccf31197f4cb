"""The benchmark's packages import one way, without a circle, and no module outgrows one concern
(read from the source with ``ast``; nothing is imported).

The layers, lowest first: ``errors``; ``engine`` (load patterns, protocols, the send loop, the
driver, the self-check, results); ``analysis`` (numbers from records) and ``stack`` (the deployed
stack: outputs, Kubernetes, scaling, a session, the results directory); ``report`` (formats only);
``sim`` (the simulator, beside them, on the engine's records and errors only); ``commands`` (flags
in, exit status out) and ``cli`` on top. From the Pulumi side only ``workloads.contract``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.layoutkit import find_circle, imports, module_name

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400

MAY_IMPORT = {
    "benchmark": {"benchmark", "benchmark.cli"},  # __init__, __main__
    "benchmark.errors": set(),
    "benchmark.engine": {"benchmark.engine", "benchmark.errors"},
    "benchmark.analysis": {"benchmark.analysis", "benchmark.engine", "benchmark.errors", "benchmark.stack"},
    "benchmark.stack": {"benchmark.stack", "benchmark.engine", "benchmark.analysis", "benchmark.errors"},
    "benchmark.report": {"benchmark.report", "benchmark.analysis", "benchmark.engine", "benchmark.stack",
                         "benchmark.errors"},
    "benchmark.sim": {"benchmark.sim", "benchmark.engine", "benchmark.errors"},
    "benchmark.commands": {"benchmark.commands", "benchmark.engine", "benchmark.analysis", "benchmark.stack",
                           "benchmark.report", "benchmark.sim", "benchmark.errors"},
    "benchmark.cli": {"benchmark.commands", "benchmark.errors"},
}
# analysis may read the results directory's format, not the cluster code
ANALYSIS_MAY_READ_FROM_STACK = {"benchmark.stack.rundir"}


MODULES = {module_name(ROOT, p): p for p in sorted((ROOT / "benchmark").rglob("*.py"))}


def _group(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in MAY_IMPORT else parts[0]


def _imports(path: Path) -> list[tuple[str, int]]:
    return list(imports(path, MODULES))


def test_the_walk_sees_every_layer() -> None:
    assert {_group(m) for m in MODULES} == set(MAY_IMPORT)


def test_no_import_circle() -> None:
    graph = {m: sorted({t for t, _ in _imports(p) if t in MODULES and t != m}) for m, p in MODULES.items()}
    assert find_circle(graph) is None, "import circle: " + " -> ".join(find_circle(graph) or [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_layers_import_downwards(module: str) -> None:
    group = _group(module)
    wrong = []
    for target, line in _imports(MODULES[module]):
        if target.split(".")[0] != "benchmark":
            continue
        allowed = MAY_IMPORT[group]
        if _group(target) not in allowed and target != "benchmark":
            wrong.append(f"line {line} imports {target}")
        elif group == "benchmark.analysis" and _group(target) == "benchmark.stack" and target not in ANALYSIS_MAY_READ_FROM_STACK:
            wrong.append(f"line {line} imports {target} (analysis reads only the results directory's format)")
    assert not wrong, f"{MODULES[module].relative_to(ROOT)}: {wrong}; {group} may import {sorted(MAY_IMPORT[group])}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_size_limit(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)} has {lines} lines: split it by concern"
