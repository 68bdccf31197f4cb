"""Reading a package's imports from its source (``ast``; nothing is imported), for the layout
tests of the Pulumi program (``tests/infra/test_layout.py``) and of the benchmark
(``tests/benchmark/test_layout.py``)."""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

__all__ = ["find_circle", "imports", "module_name"]


def module_name(root: Path, path: Path) -> str:
    """``benchmark/engine/send.py`` -> ``benchmark.engine.send``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports(path: Path, modules: Collection[str], *, module_level: bool = False) -> Iterator[tuple[str, int]]:
    """(module, line) of each absolute import in ``path``: the statements at the top of the
    module, or every one (inside functions too) when ``module_level`` is False; never those
    under ``if TYPE_CHECKING:``, which only the type checker reads. ``from a import b`` names
    the module ``a.b`` when that is one of ``modules``."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    for node in tree.body if module_level else ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield (sub if sub in modules else node.module), node.lineno


def find_circle(graph: Mapping[str, Collection[str]]) -> list[str] | None:
    """An import circle in ``graph`` (module -> the modules it imports), as the path around it; None if none."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for target in graph.get(module, ()):
            if (circle := visit(target, [*path, module])) is not None:
                return circle
        done.add(module)
        return None

    for module in graph:
        if (circle := visit(module, [])) is not None:
            return circle
    return None
