"""Fixtures of the fault-case corpus: tiny generated folders, one tiny run, crafted copies of its export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

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


@pytest.fixture
def craft(tiny_run: Path, tmp_path: Path) -> Callable[..., Path]:
    """Factory: a copy of the tiny run's export with its metadata (and tensors) edited."""

    def make(edit: Callable[[dict[str, Any]], None] = lambda metadata: None,
             tensors: Callable[[dict[str, torch.Tensor]], None] = lambda state: None) -> Path:
        with safe_open(str(tiny_run / "model.unfreeze"), framework="pt") as handle:
            header = handle.metadata()
            state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        metadata = json.loads(header["unfreeze"])
        edit(metadata)
        tensors(state)
        path = tmp_path / "edited.unfreeze"
        save_file(state, str(path), metadata={"unfreeze": json.dumps(metadata)})
        return path

    return make


# Class names that would rewrite a terminal: clear screen + cursor home; carriage return + RTL override.
HOSTILE = ["ant\x1b[2J\x1b[H", "bee\r\u202eevil"]


@pytest.fixture
def hostile_names() -> list[str]:
    """The class names of `hostile_model`."""
    return list(HOSTILE)


@pytest.fixture
def hostile_model(craft: Callable[..., Path]) -> Path:
    """The tiny run's export with `HOSTILE` class names (for the escaping tests)."""
    def rename(metadata: dict[str, Any]) -> None:
        metadata["vocab"] = list(HOSTILE)

    return craft(rename)
