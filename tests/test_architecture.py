"""The import layers of the package: data flows one way, and no module imports a layer above its own.

    base (tasks, losses, fastai_names, distributed, plots, _io, _version, _device) → data, models → trust → inference
        → train → runs → apps → cli → unfreeze

Every import statement counts, also one inside a function or under TYPE_CHECKING: a lazy import is
still a dependency, and two of them pointing at each other are an import circle. Inside a layer the
modules import one way too: `test_no_import_cycle` finds every cycle between modules (Tarjan's
strongly connected components over all import statements). Below the command line nothing imports the
`unfreeze` facade itself (that circle only works by luck of import order); the command line, which
the facade never imports, uses the public API as users do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import unfreeze

PACKAGE = Path(unfreeze.__file__).parent
BASE = {"tasks", "losses", "fastai_names", "distributed", "plots", "progress", "_io", "_version", "_device"}
# trust/ (calibration and the unknown score) sits between models and inference: inference/ imports it.
LAYER = {"base": 0, "data": 1, "models": 1, "trust": 1.5, "inference": 2, "train": 3, "runs": 4, "apps": 5, "cli": 6,
         "facade": 7}
# Sibling layers that must not know each other: data knows nothing of models, and models nothing of data.
FORBIDDEN_SIBLINGS = {("data", "models"), ("models", "data")}


def component(module: str) -> str:
    """The architectural component of a dotted module name inside the package."""
    parts = module.split(".")
    if parts == ["unfreeze"] or parts[1] in ("__init__", "__main__"):
        return "facade"
    return "base" if parts[1] in BASE else parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of a unfreeze module in `path`, resolving `from unfreeze import x`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("unfreeze")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unfreeze"):
            if node.module == "unfreeze":
                for alias in node.names:
                    is_module = (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file()
                    found.append((node.lineno, f"unfreeze.{alias.name}" if is_module else "unfreeze"))
            else:
                found.append((node.lineno, node.module))
    return found


def layer_violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = component(module_name(path))
        for line, target_module in imported_modules(path):
            target = component(target_module)
            if source == "facade" or target == source or (source, target) == ("cli", "facade"):
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{line} ({source}) imports {target_module} ({target})"
            if target == "facade" and source != "cli":
                problems.append(f"{where}: import the submodule, not the package facade")
            elif LAYER[target] > LAYER[source] or (source, target) in FORBIDDEN_SIBLINGS:
                problems.append(where)
    return problems


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert layer_violations() == []


def test_the_checker_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: an inference module importing the Learner is reported."""
    fake = tmp_path / "unfreeze"
    (fake / "inference").mkdir(parents=True)
    (fake / "train").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "inference" / "__init__.py").write_text("")
    (fake / "inference" / "bad.py").write_text("def f():\n    from unfreeze.train.learner import Learner\n")
    (fake / "data").mkdir()
    (fake / "data" / "ok.py").write_text("from unfreeze import tasks\nfrom unfreeze.data import ok\n")
    (fake / "tasks.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert layer_violations() == ["unfreeze/inference/bad.py:2 (inference) imports unfreeze.train.learner (train)"]


def _resolve(module: str, known: set[str]) -> str | None:
    """The package module an import names: itself, or the package of `from pkg import name`."""
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def import_graph() -> dict[str, set[str]]:
    """module → the package modules it imports (any statement, lazy and TYPE_CHECKING ones included).

    `from unfreeze.train import learner` resolves to `unfreeze.train.learner`; an import of a package
    (`from unfreeze.inference import export`, a function) counts as an import of its `__init__`, which
    is how Python runs it.
    """
    paths = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    known = set(paths)
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                resolved = _resolve(target, known) if target.startswith("unfreeze") else None
                if resolved is not None and resolved != name:
                    graph[name].add(resolved)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or around a circle (sorted names)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                cycles.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_no_import_cycle() -> None:
    assert import_cycles(import_graph()) == []


def test_the_checker_catches_an_import_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cycle check itself can fail: a TYPE_CHECKING import closing a circle inside train/ is found."""
    fake = tmp_path / "unfreeze"
    (fake / "train").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "train" / "__init__.py").write_text("")
    (fake / "train" / "learner.py").write_text("from unfreeze.train import loop\n")
    (fake / "train" / "loop.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from unfreeze.train.learner import Learner\n")
    (fake / "train" / "metrics.py").write_text("from unfreeze.train.loop import run_fit\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert import_cycles(import_graph()) == [["unfreeze.train.learner", "unfreeze.train.loop"]]
