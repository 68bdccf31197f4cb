"""The Pulumi program's packages import one way, without a circle, and share only the contract
with the benchmark (read from the source with ``ast``; nothing is imported).

The arrows: ``config`` (validation, facts, instances, the cluster's settings) <- ``workloads``
<- ``config.settings`` (composes both) <- ``infra`` <- ``__main__``; ``policy`` may read
``config`` and ``workloads``, and nothing reads ``policy``. ``workloads/contract.py`` imports no
other module of the project and not Pulumi: it is the one module the benchmark imports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.layoutkit import find_circle, imports, module_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "infra", "workloads", "policy")
CONTRACT = "workloads.contract"
MAX_LINES = 400  # no module over about 400 lines in config/, infra/, workloads/

# What each group of modules may import from the project (a group: a package, with
# config.settings apart from the rest of config because it composes workloads.settings).
MAY_IMPORT = {
    "config": {"config"},
    "workloads": {"config", "workloads"},
    "config.settings": {"config", "workloads"},
    "infra": {"config", "config.settings", "infra", "workloads"},
    "__main__": {"config", "config.settings", "infra"},
    "policy": {"config", "workloads", "policy"},
}


MODULES: dict[str, Path] = {
    module_name(ROOT, p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
}
MODULES["__main__"] = ROOT / "__main__.py"


def _group(module: str) -> str:
    return module if module == "config.settings" else module.split(".")[0]


def _imported(path: Path, *, module_level: bool) -> list[tuple[str, int]]:
    return list(imports(path, MODULES, module_level=module_level))


def _project_imports(path: Path, *, module_level: bool) -> list[tuple[str, int]]:
    return [(m, line) for m, line in _imported(path, module_level=module_level) if m.split(".")[0] in PACKAGES]


def test_the_walk_sees_every_package() -> None:
    # A test that walks nothing passes for the wrong reason.
    assert {_group(m) for m in MODULES} == set(MAY_IMPORT)
    assert {CONTRACT, "config.settings", "infra.program", "policy.rules"} <= set(MODULES)


def test_no_import_circle() -> None:
    graph = {m: sorted({t for t, _ in _project_imports(p, module_level=True) if t in MODULES}) for m, p in MODULES.items()}
    assert find_circle(graph) is None, "import circle: " + " -> ".join(find_circle(graph) or [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_packages_import_one_way(module: str) -> None:
    allowed = MAY_IMPORT[_group(module)]
    wrong = [
        f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}"
        for target, line in _project_imports(MODULES[module], module_level=False)
        if _group(target) not in allowed
    ]
    assert not wrong, f"{wrong}; {_group(module)} may import from {sorted(allowed)} only"


def test_the_contract_imports_nothing_of_the_project_nor_pulumi() -> None:
    imported = [m for m, _ in _imported(MODULES[CONTRACT], module_level=False)]
    assert not [m for m in imported if m.split(".")[0] in (*PACKAGES, "benchmark") or m.startswith("pulumi")], imported


def test_the_benchmark_imports_only_the_contract_from_the_pulumi_side() -> None:
    files = sorted(p for d in ("benchmark", "scripts") for p in (ROOT / d).rglob("*.py"))
    assert files
    wrong = [
        f"{p.relative_to(ROOT)}:{line} imports {m}"
        for p in files
        for m, line in _project_imports(p, module_level=False)
        if m != CONTRACT
    ]
    assert not wrong, wrong


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _group(m) in ("config", "config.settings", "infra", "workloads")))
def test_no_module_is_over_the_size_limit(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)} has {lines} lines: split it by concern"
