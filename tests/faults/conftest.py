"""Fixtures of the fault-case corpus: tiny generated folders, one tiny run, the user-error contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cli_helpers import TINY
from unfreeze.cli import main


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never wait for a download attempt."""
    monkeypatch.setenv("UNFREEZE_OFFLINE", "1")


@pytest.fixture
def tiny_data(make_image_folder: Callable[..., Path]) -> Path:
    """images/{train,valid}/{ant,bee}/*.png: 8 train and 4 valid images per class."""
    return make_image_folder(classes=("ant", "bee"), n_train=8, n_valid=4)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, write_image: Callable[..., Path]) -> Path:
    """One trained run directory (a few seconds), shared by a test module."""
    root = tmp_path_factory.mktemp("faults") / "images"
    for name, color in (("ant", (220, 40, 40)), ("bee", (40, 220, 40))):
        for split, count in (("train", 8), ("valid", 4)):
            for index in range(count):
                write_image(root / split / name / f"{name}_{index}.png", color=color, seed=index)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNFREEZE_OFFLINE", "1")
        code = main(["train", str(root), *TINY, "--out", str(root.parent / "run"), "--quiet"])
    assert code == 0
    return root.parent / "run"
