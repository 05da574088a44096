"""`unfreeze convert-fastai`: fastai-layout weights become an export; bad files are one-line user errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from unfreeze import create_model, load_learner
from unfreeze.cli import main


class FastaiLearner:
    """Stands in for the pickled Learner of a fastai export.pkl."""


def fastai_layout_weights(path: Path, n_classes: int) -> torch.nn.Module:
    """learn.save's file for a model laid out as fastai's Sequential(body, head): keys 0.* and 1.*."""
    torch.manual_seed(0)
    model = create_model("test_resnet", n_classes, pretrained=False).eval()
    state = {**{f"0.{key}": value for key, value in model.body.state_dict().items()},
             **{f"1.{key}": value for key, value in model.head.state_dict().items()}}
    torch.save({"model": state, "opt": {"state": [], "hypers": [{"lr": 1e-3}]}}, path)
    return model


def test_convert_fastai_writes_an_export_that_predicts_the_same(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    reference = fastai_layout_weights(tmp_path / "stage-1.pth", 3)
    out = tmp_path / "pets.unfreeze"

    code = main(["convert-fastai", str(tmp_path / "stage-1.pth"), "--arch", "test_resnet", "--vocab", "a, b,c",
                 "--size", "32", "--resize-method", "squish", "--out", str(out)])

    assert code == 0 and f"Wrote {out}" in capsys.readouterr().out
    learn = load_learner(out)
    assert learn.dls.vocab == ["a", "b", "c"] and learn.dls.size == 32
    assert learn.dls.valid.dataset.resize_method == "squish"
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(learn.model.eval()(images), reference(images), atol=1e-5)


@pytest.mark.parametrize("case", ["pickle", "vocab", "arch"])
def test_convert_fastai_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 case: str) -> None:
    weights = tmp_path / "weights.pth"
    fastai_layout_weights(weights, 2)
    arguments = {"pickle": [str(tmp_path / "export.pkl"), "--arch", "test_resnet", "--vocab", "a,b"],
                 "vocab": [str(weights), "--arch", "test_resnet", "--vocab", "a,b,c"],
                 "arch": [str(weights), "--arch", "resnet18", "--vocab", "a,b"]}[case]
    (tmp_path / "export.pkl").write_bytes(pickle.dumps(FastaiLearner()))

    code = main(["convert-fastai", *arguments, "--out", str(tmp_path / "out.unfreeze")])

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("unfreeze: warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("unfreeze: error: "), err
    expected = {"pickle": "learn.save", "vocab": "predicts 2 classes", "arch": "resnet18"}[case]
    assert expected in lines[0] and "Traceback" not in err
    assert not (tmp_path / "out.unfreeze").exists()
