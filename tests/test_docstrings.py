"""Every docstring example in the package parses as a doctest: `python -m doctest` reads each module."""

import ast
import doctest
from pathlib import Path

import unfreeze

PACKAGE = Path(unfreeze.__file__).parent


def test_every_docstring_example_parses_as_a_doctest():
    parser = doctest.DocTestParser()
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            docstring = ast.get_docstring(node, clean=False)
            if docstring is None:
                continue
            try:
                parser.get_examples(docstring, f"{path.name}:{getattr(node, 'name', '<module>')}")
            except ValueError as error:  # an unknown option after "# doctest:" stops the whole module
                broken.append(f"{path.relative_to(PACKAGE)}: {error}")
    assert not broken, "\n".join(broken)
