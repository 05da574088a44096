"""Shared fixtures: tiny generated image folders and the committed Fashion-MNIST sample."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unfreeze.data import sample_path


def write_image(path: Path, size: tuple[int, int] = (24, 20), color: tuple[int, int, int] = (200, 30, 30),
                seed: int = 0) -> Path:
    """Write a small noisy RGB image; the format follows the suffix."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(name="write_image", scope="session")  # a pure function: shareable by any scope
def write_image_fixture() -> Callable[..., Path]:
    """The `write_image(path, size=(24, 20), color=..., seed=0)` helper, as a fixture."""
    return write_image


@pytest.fixture
def make_image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: root/train/<class>/*.png and root/valid/<class>/*.png (or root/<class>/* if flat)."""

    def make(classes: tuple[str, ...] = ("cat", "dog"), n_train: int = 6, n_valid: int = 3,
             flat: bool = False, size: tuple[int, int] = (24, 20)) -> Path:
        root = tmp_path / "images"
        colors = [(220, 40, 40), (40, 220, 40), (40, 40, 220), (220, 220, 40)]
        for class_index, name in enumerate(classes):
            color = colors[class_index % len(colors)]
            splits = [("", n_train + n_valid)] if flat else [("train", n_train), ("valid", n_valid)]
            for split, count in splits:
                for index in range(count):
                    write_image(root / split / name / f"{name}_{index}.png", size, color, seed=index)
        return root

    return make


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The committed Fashion-MNIST sample (10 classes, 40 train and 20 valid PNGs each)."""
    return sample_path()
