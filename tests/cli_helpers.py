"""Helpers of the command-line and fault-case tests (imported by name: the tests folders are not packages;
pytest puts tests/ on sys.path for its conftest.py)."""

from __future__ import annotations

import pytest

from unfreeze.cli import main

# A tiny timm model with random weights: a run takes seconds on one CPU thread.
TINY = ["--arch", "test_resnet", "--no-pretrained", "--size", "16", "--bs", "4", "--epochs", "1",
        "--freeze-epochs", "1"]


def run_user_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `argv`, check the user-error contract (exit 2, one line, no traceback), return the line."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("unfreeze: warning:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("unfreeze: error: ")
    assert "Traceback" not in err
    return lines[0]
