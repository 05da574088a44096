"""Case 6: load_learner checks the metadata before building anything; NaN weights warn at load."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from unfreeze import load_learner
from unfreeze.inference import ExportError, NonFiniteWeightsWarning


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


def setter(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(metadata: dict[str, Any]) -> None:
        target = metadata
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


@pytest.mark.parametrize(("keys", "value", "expected"), [
    (("model", "n_out"), 3, "n_out is 3 but vocab has 2"),
    (("model", "n_out"), 10**9, "n_out must be a whole number"),
    (("vocab",), ["ant", "ant"], "vocab repeats 'ant'"),
    (("vocab",), ["ant", 7], "list of class names"),
    (("vocab",), "ant,bee", "list of class names"),
    (("size",), 0, "size must be a whole number"),
    (("item_size",), 10**7, "item_size must be a whole number"),
    (("size",), 16.5, "size must be a whole number"),
    (("mean",), [0.5, 0.5], "mean must be 3 finite numbers"),
    (("std",), [0.2, 0.0, 0.2], "std must be > 0"),
    (("std",), [0.2, float("nan"), 0.2], "std must be 3 finite numbers"),
])  # fmt: skip
def test_invalid_metadata_is_refused_before_building(craft: Callable[..., Path], keys: tuple[str, ...], value: Any,
                                                     expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    export_module = importlib.import_module("unfreeze.inference.export")  # the name `export` is the function

    def never(*args: object) -> None:
        raise AssertionError("a model was built from invalid metadata")

    monkeypatch.setattr(export_module, "model_from_config", never)
    path = craft(setter(*keys, value=value))
    with pytest.raises(ExportError, match="invalid metadata") as caught:
        load_learner(path)
    assert expected in str(caught.value) and str(path) in str(caught.value)


def test_all_problems_are_reported_at_once(craft: Callable[..., Path]) -> None:
    def edit(metadata: dict[str, Any]) -> None:
        metadata["size"], metadata["std"] = -1, [1.0, 1.0, -1.0]

    with pytest.raises(ExportError, match=r"size must be.*std must be > 0"):
        load_learner(craft(edit))


def test_non_finite_weights_warn_at_load(craft: Callable[..., Path]) -> None:
    def poison(state: dict[str, torch.Tensor]) -> None:
        floats = [name for name, tensor in state.items() if tensor.is_floating_point()]
        state[floats[0]] = torch.full_like(state[floats[0]], float("nan"))
        state[floats[1]] = torch.full_like(state[floats[1]], float("inf"))

    path = craft(tensors=poison)
    with pytest.warns(NonFiniteWeightsWarning, match=r"edited\.unfreeze.* 2 of its"):
        load_learner(path)


def test_a_clean_export_loads_without_warnings(craft: Callable[..., Path]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWeightsWarning)
        assert load_learner(craft()).dls.vocab == ["ant", "bee"]


def test_cli_reports_invalid_metadata(craft: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helpers import run_user_error

    path = craft(setter("model", "n_out", value=5))
    line = run_user_error(["export", str(path)], capsys)
    assert str(path) in line and "n_out is 5" in line
