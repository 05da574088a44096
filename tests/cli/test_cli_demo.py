"""`unfreeze demo`: the bundled backbone, pretrained, on the bundled sample, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unfreeze.cli import DEMO, main


@pytest.mark.slow
def test_demo_runs_offline_and_learns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["arch"] == "efficientnet_lite0" and config["options"]["pretrained"] is True
    assert config["options"]["size"] == DEMO["size"] and config["argv"] == ["demo", "--out", str(out)]
    assert summary["data"] == {"train": 400, "valid": 200, "classes": summary["data"]["classes"]}
    assert summary["final"]["accuracy"] > 0.65  # 10 classes: chance is 0.1; measured 0.755
    assert "Final: error_rate" in printed and f"Plots: {out / 'loss.png'}" in printed
    assert (out / "confusion_matrix.png").is_file() and (out / "top_losses.png").is_file()


def test_demo_help_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--epochs" in help_text and "--out" in help_text and "offline" in help_text
