"""convert_fastai: a fastai-layout state dict becomes an unfreeze export that predicts the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from unfreeze import load_learner
from unfreeze.inference import FastaiConversionError, convert_fastai


class ConcatPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([nn.functional.adaptive_max_pool2d(x, 1), nn.functional.adaptive_avg_pool2d(x, 1)], 1)


def fastai_style_resnet18(n_out: int) -> nn.Sequential:
    """The layout fastai's vision_learner builds: Sequential(body up to the pooling, default head)."""
    body = nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])
    head = nn.Sequential(ConcatPool(), nn.Flatten(), nn.BatchNorm1d(1024), nn.Dropout(0.25),
                         nn.Linear(1024, 512, bias=False), nn.ReLU(inplace=True), nn.BatchNorm1d(512),
                         nn.Dropout(0.5), nn.Linear(512, n_out, bias=False))
    model = nn.Sequential(body, head)
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # non-trivial norm statistics, so a wrong mapping shows
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def test_learn_save_file_converts_and_predicts_the_same(tmp_path: Path) -> None:
    reference = fastai_style_resnet18(3)
    weights = tmp_path / "stage.pth"
    torch.save({"model": reference.state_dict(), "opt": {"state": [], "hypers": [{"lr": 1e-3, "mom": 0.9}]}},
               weights)

    out = convert_fastai(weights, torchvision.models.resnet18, tmp_path / "pets.unfreeze", vocab=["a", "b", "c"],
                         size=64)
    learn = load_learner(out)

    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(learn.model.eval()(images), reference(images), atol=1e-5)
    assert learn.dls.vocab == ["a", "b", "c"] and learn.dls.size == 64


def test_a_pickled_learner_is_refused_with_the_conversion_steps(tmp_path: Path) -> None:
    export_pkl = tmp_path / "export.pkl"
    torch.save(ConcatPool(), export_pkl)  # any pickled object stands in for fastai's Learner
    with pytest.raises(FastaiConversionError, match=r"learn.save\('stage'\).*unfreeze convert-fastai"):
        convert_fastai(export_pkl, "resnet18", tmp_path / "out.unfreeze", vocab=["a", "b"])


@pytest.mark.parametrize("content", [b"hi", b"name,label\na.png,cat\n", bytes(range(256))])
def test_a_file_that_is_no_torch_file_is_not_called_a_pickled_learner(tmp_path: Path, content: bytes) -> None:
    # torch.load raises UnpicklingError for any bytes; only a pickle or torch's zip may get the pickle steps.
    weights = tmp_path / "weights.pth"
    weights.write_bytes(content)
    with pytest.raises(FastaiConversionError, match="not a torch file") as refused:
        convert_fastai(weights, "resnet18", tmp_path / "out.unfreeze", vocab=["a", "b"])
    assert "pickled fastai Learner" not in str(refused.value)


def test_wrong_arch_or_vocab_names_the_mismatch(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pth"
    torch.save(fastai_style_resnet18(2).state_dict(), weights)
    with pytest.raises(FastaiConversionError, match="predicts 2 classes; vocab has 3"):
        convert_fastai(weights, "resnet18", tmp_path / "out.unfreeze", vocab=["a", "b", "c"])
    with pytest.raises(FastaiConversionError, match="Check --arch"):
        convert_fastai(weights, torchvision.models.resnet34, tmp_path / "out.unfreeze", vocab=["a", "b"])
