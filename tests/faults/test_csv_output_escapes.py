"""`unfreeze predict --format csv` escapes control characters in class names and paths, as the table does."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from unfreeze.cli import main


def test_predict_csv_escapes_control_characters(hostile_model: Path, tiny_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The CSV carried the raw ESC [2J of a class name: `cat predictions.csv` cleared the terminal."""
    image = next((tiny_run.parent / "images" / "valid").rglob("*.png"))
    hostile_path = tmp_path / "photo\x1b]0;title\x07.png"
    hostile_path.write_bytes(image.read_bytes())
    assert main(["predict", str(hostile_model), str(image), str(hostile_path), "--format", "csv", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out.replace("\r\n", "\n") and "\u202e" not in out and "\x07" not in out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2  # still one row per image, the escapes inside the cells
    assert {rows[0]["label"], rows[1]["label"]} <= {"ant\\x1b[2J\\x1b[H", "bee\\x0d\\u202eevil"}
    assert rows[1]["file"].endswith("photo\\x1b]0;title\\x07.png")
