"""Shared fixtures: tiny generated image folders and the committed Fashion-MNIST sample."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
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


@pytest.fixture
def make_tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Factory: `make_tmpfs(name, size)` mounts a tmpfs of `size` ("256k", "16m") at tmp_path/name, a real
    small or other file system (full-disk and cross-device tests). Needs root and a sandbox that allows
    mounts; the test is skipped otherwise. Unmounted at the end, also when a failed test left a file open."""
    with contextlib.ExitStack() as mounts:
        def make(name: str, size: str) -> Path:
            mount = tmp_path / name
            mount.mkdir()
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                                  capture_output=True)
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
            mounts.callback(subprocess.run, ["umount", "--lazy", str(mount)], check=True)
            return mount

        yield make
