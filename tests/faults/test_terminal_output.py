"""Class names come from the model file: control characters in them are escaped in what is printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from unfreeze.cli import main
from unfreeze.cli.output import printable


def image_of(tiny_run: Path) -> Path:
    return next((tiny_run.parent / "images" / "valid").rglob("*.png"))


def test_predict_table_escapes_control_characters(hostile_model: Path, tiny_run: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A name holding ESC [2J cleared the terminal when `unfreeze predict` printed it."""
    assert main(["predict", str(hostile_model), str(image_of(tiny_run)), "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert "\\x1b[2J" in out and "\\x0d\\u202eevil" in out
    header, row = out.splitlines()
    assert row.index("  /") == header.index("  path")  # the column width counts the escapes as printed


def test_machine_formats_keep_the_names(hostile_model: Path, hostile_names: list[str], tiny_run: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(hostile_model), str(image_of(tiny_run)), "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out  # JSON escapes them itself
    assert json.loads(out)["predictions"][0]["label"] in hostile_names


def test_evaluate_report_escapes_control_characters(hostile_model: Path, hostile_names: list[str], tmp_path: Path,
                                                    write_image: Callable[..., Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "test"
    for name in hostile_names:  # class folders named as the model's classes (Linux allows any byte but / and NUL)
        for index in range(2):
            write_image(data / name / f"{index}.png", seed=index)
    assert main(["evaluate", str(hostile_model), str(data)]) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err and "\u202e" not in captured.out + captured.err
    assert "ant\\x1b[2J" in captured.out


def test_error_lines_escape_control_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "gone\x1b[2J.png"
    assert main(["predict", str(missing), str(missing)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "gone\\x1b[2J.png" in err


@pytest.mark.parametrize(("text", "shown"), [
    ("plain", "plain"), ("tab\there", "tab\there"), ("café 🐈 日本", "café 🐈 日本"),
    ("\x00\x07\x7f\x9b", "\\x00\\x07\\x7f\\x9b"), ("a\u2066b\u200fc", "a\\u2066b\\u200fc"),
])  # fmt: skip
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable("two\nlines", keep_newlines=True) == "two\nlines"


@pytest.mark.parametrize("threshold", [-1.0, 1e9], ids=["every-image-unknown", "none-unknown"])
def test_predict_table_keeps_its_columns_when_a_prediction_is_unknown(craft: Callable[..., Path], tiny_run: Path,
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       threshold: float) -> None:
    """A row whose label carried " (unknown)" pushed its path past the header's column."""
    def flag(metadata: dict[str, Any]) -> None:
        metadata["trust"]["ood"]["threshold"] = threshold

    model = craft(flag)
    assert main(["predict", str(model), str(image_of(tiny_run))]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert ("(unknown)" in row) is (threshold < 0)
    assert row.index("  /") == header.index("  path")
