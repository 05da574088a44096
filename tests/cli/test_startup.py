"""Startup: `--help`, `--version`, every `COMMAND --help` and `import unfreeze` load no heavy package.

Each case runs in a fresh interpreter (the test process has torch loaded already) and lists the heavy
packages in its sys.modules; no timing is asserted (benchmarks/bench_import.py measures the time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import unfreeze
from unfreeze.cli import build_parser

HEAVY = ("torch", "torchvision", "timm", "matplotlib", "rich")
SRC = str(Path(unfreeze.__file__).resolve().parent.parent)

# Runs `code` (which may print to stdout), then prints the heavy packages loaded as the last line: from an
# atexit handler, because the program's own `main()` ends the process itself once the handlers ran.
_PROBE = """\
import atexit, json, sys
atexit.register(lambda: print(json.dumps([name for name in {heavy!r} if name in sys.modules])))
sys.argv = ["unfreeze", *{argv!r}]
try:
    {code}
except SystemExit:
    pass
"""


def heavy_modules_after(code: str, argv: tuple[str, ...] = ()) -> tuple[list[str], str]:
    """The heavy packages a fresh interpreter has loaded after running `code`, and what it printed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    probe = _PROBE.format(argv=list(argv), code=code, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    *printed, last = result.stdout.rstrip("\n").split("\n")
    return json.loads(last), "\n".join(printed)


def command_names() -> list[str]:
    subparsers = next(action for action in build_parser()._actions if action.dest == "command")
    return sorted(subparsers.choices)


def test_import_unfreeze_loads_no_heavy_package() -> None:
    loaded, _ = heavy_modules_after("import unfreeze")
    assert loaded == []


@pytest.mark.parametrize("argv", [("--help",), ("--version",)], ids=["help", "version"])
def test_help_and_version_load_no_heavy_package(argv: tuple[str, ...]) -> None:
    loaded, printed = heavy_modules_after("from unfreeze.cli import main; main()", argv)
    assert loaded == []
    assert "usage: unfreeze" in printed or printed.startswith("unfreeze ")


def test_every_command_help_loads_no_heavy_package() -> None:
    names = command_names()
    assert {"train", "predict", "export", "serve", "convert-fastai"} <= set(names)
    for name in names:
        loaded, printed = heavy_modules_after("from unfreeze.cli import main; main()", (name, "--help"))
        assert loaded == [], name
        assert f"usage: unfreeze {name}" in printed


def test_using_a_name_loads_its_module_then() -> None:
    loaded, printed = heavy_modules_after("import unfreeze; print(unfreeze.error_rate.__module__)")
    assert printed == "unfreeze.train.metrics" and "torch" in loaded
    loaded, _ = heavy_modules_after("import unfreeze; unfreeze.Recipe()")
    assert loaded == []  # the recipe's settings are plain values
    loaded, printed = heavy_modules_after("import unfreeze; print(unfreeze.inference.ExportError.__name__)")
    assert printed == "ExportError"  # subpackages are attributes, as when the package imported them all


def test_star_import_gives_every_public_name() -> None:
    namespace: dict[str, object] = {}
    exec("from unfreeze import *", namespace)
    assert set(unfreeze.__all__) <= set(namespace)
    assert namespace["vision_learner"] is unfreeze.vision_learner and namespace["resnet18"].__name__ == "resnet18"
    assert set(unfreeze.__all__) <= set(dir(unfreeze))


def test_the_lazy_table_matches_what_type_checkers_see() -> None:
    """unfreeze/__init__.py lists each public name twice: the run-time table and the TYPE_CHECKING imports."""
    import ast

    tree = ast.parse(Path(unfreeze.__file__).read_text())
    checking = next(node for node in tree.body if isinstance(node, ast.If))
    static = {alias.asname or alias.name: node.module for node in checking.body if isinstance(node, ast.ImportFrom)
              for alias in node.names}
    assert static == unfreeze._PUBLIC
    assert set(unfreeze.__all__) == {*static, *unfreeze.LAZY_NAMES, *unfreeze.UNSUPPORTED, "__version__"}


def test_options_written_out_match_the_library() -> None:
    """Values the parser would otherwise import from modules that load torch."""
    from unfreeze.cli import options
    from unfreeze.data.augment import AUGMENT_PRESETS
    from unfreeze.data.transforms import MAX_SIZE, RESIZE_METHODS
    from unfreeze.inference.deploy import FORMATS
    from unfreeze.inference.runtime import RUNTIMES
    from unfreeze.models.heads import HEAD_KINDS

    def choices(command: str, dest: str) -> set[str]:
        parser = next(action for action in build_parser()._actions if action.dest == "command").choices[command]
        return set(next(action for action in parser._actions if action.dest == dest).choices)

    assert options.MAX_SIZE == MAX_SIZE
    assert choices("train", "augment") == set(AUGMENT_PRESETS)
    assert choices("train", "head") == set(HEAD_KINDS)
    assert choices("convert-fastai", "resize_method") == set(RESIZE_METHODS)
    assert choices("export", "format") == set(FORMATS)
    assert choices("predict", "runtime") == choices("serve", "runtime") == set(RUNTIMES)


@pytest.mark.parametrize(("argv", "code"), [(("--version",), 0), (("train", "no/such/folder"), 2)],
                         ids=["version", "user-error"])
def test_the_program_exits_with_its_code_after_the_atexit_handlers_and_with_its_output(argv: tuple[str, ...],
                                                                                       code: int) -> None:
    # `main()` as the program ends the process without the interpreter's teardown: the atexit handlers
    # must still run, buffered output must still arrive (stdout is a pipe here), and the code must be kept.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    probe = ("import atexit, sys; atexit.register(lambda: print('handler ran', flush=True)); "
             f"sys.argv = ['unfreeze', *{list(argv)!r}]; "
             "from unfreeze.cli import main; print('buffered ' * 2000); main(); print('not reached')")
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert result.returncode == code, result.stderr
    assert result.stdout.count("buffered") == 2000 and "not reached" not in result.stdout
    assert result.stdout.rstrip().endswith("handler ran")
    assert (result.stdout if code == 0 else result.stderr).count("unfreeze") >= 1
