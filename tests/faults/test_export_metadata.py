"""Case 6: load_learner checks the metadata, then the tensors, before building or predicting anything."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from cli_helpers import run_user_error
from unfreeze import load_learner
from unfreeze.inference import ExportError, NonFiniteWeightsWarning

export_module = importlib.import_module("unfreeze.inference.export")  # the name `export` is the function


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
    (("vocab",), ["ant", "b" * 5000], "every class name must have 1 to 1000 characters"),
    (("vocab",), ["ant", ""], "every class name must have 1 to 1000 characters"),
    (("size",), 0, "size must be a whole number"),
    (("item_size",), 10**7, "item_size must be a whole number"),
    (("item_size",), 8, "item_size 8 is below size 16"),
    (("size",), 16.5, "size must be a whole number"),
    (("resize_method",), "stretch", "resize_method must be one of"),
    (("mean",), [0.5, 0.5], "mean must be 3 finite numbers"),
    (("std",), [0.2, 0.0, 0.2], "std must be > 0"),
    (("std",), [0.2, float("nan"), 0.2], "std must be 3 finite numbers"),
    # Each of these was built as given: n_in 10**8 asks timm for a first convolution of gigabytes.
    (("model", "n_in"), 10**8, "model.n_in must be a whole number from 1 to 256"),
    (("model", "n_groups"), 10**9, "model.n_groups must be a whole number from 2 to 1000"),
    (("model", "input_size"), 10**6, "model.input_size must be a whole number from 1 to 16384"),
    (("model", "arch"), "x" * 10_000, "model.arch must be a name of 1 to 200 characters"),
    (("model", "mean"), [0.5] * 10**5, "model.mean must be a list of finite numbers"),
    (("model", "head"), {"kind": "fastai", "ps": 7.0}, "model.head must be an object with kind"),
    (("model", "head"), {"kind": "transformer"}, "model.head must be an object with kind"),
    (("augment",), {"max_lighting": 0.9}, "augment.max_lighting must be a number from 0.0 to 0.49"),
    (("augment",), {"max_zoom": float("inf")}, "augment.max_zoom must be a number"),
    (("augment",), {"min_zoom": 2.0, "max_zoom": 1.5}, "min_zoom 2.0 is above max_zoom 1.5"),
    (("task",), {"name": "multi_label", "threshold": float("nan")}, "task.threshold must be a number"),
    (("task",), {"name": "segmentation"}, "task must be single_label, multi_label or regression"),
    (("task",), {"name": "regression", "loss": "huber"}, "task must have points true/false and loss mse or l1"),
    (("model", "head"), {"kind": "fastai", "y_range": [1.0, -1.0]}, "model.head must be an object with kind"),
    (("seed",), 10**30, "seed must be null or a whole number"),
    (("library_version",), "9" * 5000, "library_version must be a name"),
])  # fmt: skip
def test_invalid_metadata_is_refused_before_building(craft: Callable[..., Path], keys: tuple[str, ...], value: Any,
                                                     expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object) -> None:
        raise AssertionError("a model was built from invalid metadata")

    monkeypatch.setattr(export_module, "model_from_config", never)
    path = craft(setter(*keys, value=value))
    with pytest.raises(ExportError, match="invalid metadata") as caught:
        load_learner(path)
    assert expected in str(caught.value) and str(path) in str(caught.value)
    assert len(str(caught.value)) < 1000  # a 10,000-character value is shown cut short


def test_all_problems_are_reported_at_once(craft: Callable[..., Path]) -> None:
    def edit(metadata: dict[str, Any]) -> None:
        metadata["size"], metadata["std"], metadata["model"]["n_in"] = -1, [1.0, 1.0, -1.0], 0

    with pytest.raises(ExportError, match=r"model\.n_in must be.*size must be.*std must be > 0"):
        load_learner(craft(edit))


def first_float(state: dict[str, torch.Tensor]) -> str:
    return next(name for name, tensor in state.items() if tensor.is_floating_point() and tensor.ndim > 1)


def test_int8_weights_are_refused(craft: Callable[..., Path]) -> None:
    """int8 weights used to load silently (load_state_dict converts) and predict near-uniform."""
    names = []

    def quantize(state: dict[str, torch.Tensor]) -> None:
        names.append(first_float(state))
        state[names[0]] = state[names[0]].clamp(-1, 1).mul(127).to(torch.int8)

    path = craft(tensors=quantize)
    with pytest.raises(ExportError, match=rf"{names[0]} is stored as I8, expected a float dtype \(F32\)"):
        load_learner(path)


def test_half_precision_weights_load(craft: Callable[..., Path], tiny_run: Path) -> None:
    path = craft(tensors=lambda state: state.update({name: tensor.half() for name, tensor in state.items()
                                                     if tensor.is_floating_point()}))
    assert load_learner(path).model.state_dict()["head.2.weight"].dtype == torch.float32


@pytest.mark.parametrize("change", ["shape", "counter dtype", "extra", "missing"])
def test_tensors_that_do_not_fit_the_architecture(change: str, craft: Callable[..., Path]) -> None:
    def edit(state: dict[str, torch.Tensor]) -> None:
        name = first_float(state)
        if change == "shape":
            state[name] = torch.zeros(*state[name].shape[:-1], state[name].shape[-1] + 1)
        elif change == "counter dtype":
            counter = next(key for key in state if key.endswith("num_batches_tracked"))
            state[counter] = state[counter].float()
        elif change == "extra":
            state["payload"] = torch.zeros(3)
        else:
            del state[name]

    expected = {"shape": "has shape", "counter dtype": "num_batches_tracked is stored as F32, expected I64",
                "extra": "do not belong to the architecture, e.g. 'payload'", "missing": "are missing"}[change]
    with pytest.raises(ExportError, match="do not fit the stored architecture") as caught:
        load_learner(craft(tensors=edit))
    assert expected in str(caught.value)


def test_non_finite_weights_are_refused(craft: Callable[..., Path]) -> None:
    """They used to load with a warning, then predict NaN with exit status 0."""
    def poison(state: dict[str, torch.Tensor]) -> None:
        floats = [name for name, tensor in state.items() if tensor.is_floating_point()]
        state[floats[0]] = torch.full_like(state[floats[0]], float("nan"))
        state[floats[1]] = torch.full_like(state[floats[1]], float("inf"))

    with pytest.raises(ExportError, match=r"edited\.unfreeze holds NaN or infinite values in 2 of its"):
        load_learner(craft(tensors=poison))


def test_cli_refuses_non_finite_weights(craft: Callable[..., Path], tiny_run: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    def poison(state: dict[str, torch.Tensor]) -> None:
        state["head.2.weight"] = torch.full_like(state["head.2.weight"], float("nan"))

    path = craft(tensors=poison)
    image = next((tiny_run.parent / "images" / "valid").rglob("*.png"))
    line = run_user_error(["predict", str(path), str(image)], capsys)
    assert "NaN or infinite values" in line and "head.2.weight" in line


def test_export_of_non_finite_weights_warns(tiny_run: Path, tmp_path: Path) -> None:
    learn = load_learner(tiny_run / "model.unfreeze")
    with torch.no_grad():
        learn.model.head[-1].weight.fill_(float("nan"))
    with pytest.warns(NonFiniteWeightsWarning, match="load_learner will refuse the file"):
        learn.export(tmp_path / "nan.unfreeze")
    with pytest.raises(ExportError, match="NaN or infinite"):
        load_learner(tmp_path / "nan.unfreeze")


def test_a_clean_export_loads_without_warnings(craft: Callable[..., Path]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_learner(craft()).dls.vocab == ["ant", "bee"]


def test_cli_reports_invalid_metadata(craft: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = craft(setter("model", "n_out", value=5))
    line = run_user_error(["export", str(path)], capsys)
    assert str(path) in line and "n_out is 5" in line


@pytest.mark.parametrize("name", ["model.unfreeze", "model.pth"])
def test_a_zero_byte_export_is_described_as_empty(name: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    line = run_user_error(["export", str(path)], capsys)
    assert f"{path} is empty (0 bytes)" in line and "pickle" not in line


def test_a_zero_byte_pth_is_not_called_a_fastai_learner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "stage-1.pth"
    weights.write_bytes(b"")
    line = run_user_error(["convert-fastai", str(weights), "--arch", "test_resnet", "--vocab", "a,b",
                           "--out", str(tmp_path / "out.unfreeze")], capsys)
    assert f"{weights} is empty (0 bytes)" in line and "fastai Learner" not in line


def test_a_zero_byte_weights_file_is_described_as_empty(tiny_data: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helpers import TINY

    weights = tmp_path / "resnet.pth"
    weights.write_bytes(b"")
    argv = ["train", str(tiny_data), *[word for word in TINY if word != "--no-pretrained"], "--weights", str(weights),
            "--out", str(tmp_path / "run")]
    line = run_user_error(argv, capsys)
    assert f"{weights} is empty (0 bytes)" in line


@pytest.mark.parametrize("content", [b"hello\n", b"{}", b"12345678"])
def test_a_short_file_that_is_no_export_is_not_called_truncated(tmp_path: Path, content: bytes) -> None:
    """`evaluate notes.txt DATA` said 'is truncated: its header needs 8 bytes', sending the user to re-export."""
    from unfreeze.inference.export import ExportError, read_export_metadata

    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(ExportError, match=r"is not an unfreeze export .*learn\.export\(\)") as caught:
        read_export_metadata(path)
    assert "truncated" not in str(caught.value)
