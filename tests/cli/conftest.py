"""Fixtures for the command-line tests: a tiny image folder and one trained run shared by a module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import TINY
from unfreeze.cli import main


def write_png(path: Path, color: tuple[int, int, int], seed: int = 0) -> Path:
    """A 24x20 noisy image of one colour."""
    noise = np.random.default_rng(seed).integers(-20, 20, (20, 24, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.array(color) + noise, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never wait for a download attempt: the weights lookup sees the machine as offline."""
    monkeypatch.setenv("UNFREEZE_OFFLINE", "1")


@pytest.fixture
def image_folder(make_image_folder: Callable[..., Path]) -> Path:
    """images/train/<ant|bee|cat>/*.png (8 each) and images/valid/<class>/*.png (4 each)."""
    return make_image_folder(classes=("ant", "bee", "cat"), n_train=8, n_valid=4)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `unfreeze train` run directory on a tiny folder, shared by the whole session."""
    root = tmp_path_factory.mktemp("shared") / "images"
    colors = {"ant": (220, 40, 40), "bee": (40, 220, 40), "cat": (40, 40, 220)}
    for name, color in colors.items():
        for split, count in (("train", 8), ("valid", 4)):
            for index in range(count):
                write_png(root / split / name / f"{name}_{index}.png", color, seed=index)
    out = root.parent / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNFREEZE_OFFLINE", "1")
        code = main(["train", str(root), *TINY, "--out", str(out), "--quiet"])
    if code != 0:
        raise RuntimeError(f"the shared training run failed with exit code {code}")
    return out
