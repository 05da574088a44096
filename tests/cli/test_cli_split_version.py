"""A run whose random split was drawn by an older unfreeze (before fastai 2.8's indices) is not rebuilt
with this version's split: interpret, clean, export --format and --resume say so in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze.cli import main


def test_an_old_random_split_is_refused_not_silently_replaced(make_image_folder, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = make_image_folder(classes=("ant", "bee"), flat=True, n_train=6, n_valid=2)
    out = tmp_path / "run"
    assert main(["train", str(data), *TINY, "--valid-pct", "0.25", "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["split"] == "fastai-2.8"
    assert main(["interpret", str(out)]) == 0  # this version's run rebuilds its own split
    capsys.readouterr()

    del config["options"]["split"]  # as config.json of a run trained before the split changed
    (out / "config.json").write_text(json.dumps(config))
    line = run_user_error(["interpret", str(out)], capsys)
    assert "split at random by an older unfreeze" in line and "Train it again" in line
