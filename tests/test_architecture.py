"""The import layers of the package: data flows one way, and no module imports a layer above its own.

    base (tasks, losses, fastai_names, distributed, plots, _io, _version) → data, models → inference → train
        → runs → apps → cli → unfreeze

Every import statement counts, also one inside a function: a lazy import is still a dependency, and
two of them pointing at each other are an import circle. Below the command line nothing imports the
`unfreeze` facade itself (that circle only works by luck of import order); the command line, which
the facade never imports, uses the public API as users do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import unfreeze

PACKAGE = Path(unfreeze.__file__).parent
BASE = {"tasks", "losses", "fastai_names", "distributed", "plots", "_io", "_version"}
LAYER = {"base": 0, "data": 1, "models": 1, "inference": 2, "train": 3, "runs": 4, "apps": 5, "cli": 6, "facade": 7}
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
