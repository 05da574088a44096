"""The features the unknown score reads: the last linear layer's input and a middle stage of the body."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unfreeze.models import create_model
from unfreeze.trust import FeatureTap
from unfreeze.trust.features import mid_layer


@pytest.mark.parametrize(("arch", "stage", "width"), [("efficientnet_lite0", "blocks.4", 112),
                                                       ("resnet18", "layer3", 256),
                                                       ("torchvision:resnet18", "layer3", 256)])
def test_the_middle_stage_is_the_last_one_at_half_the_final_resolution(arch: str, stage: str, width: int) -> None:
    model = create_model(arch, 3, pretrained=False).eval()
    assert mid_layer(model) is model.body.get_submodule(stage)
    tap = FeatureTap(model)
    with tap.open(), torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
        model(torch.randn(3, 3, 64, 64))
    assert tap.parts == (tap.layer.in_features, width)
    assert tap.features().shape == (5, tap.layer.in_features + width)


def test_a_model_without_stages_has_one_part() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert mid_layer(model) is None
    with FeatureTap(model).open() as tap, torch.no_grad():
        model(torch.randn(2, 3, 8, 8))
    assert tap.parts == (4,) and tap.features().shape == (2, 4)


def test_a_middle_stage_run_twice_a_pass_is_left_out() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Module()
            self.body.layer3, self.body.layer4 = nn.Conv2d(3, 3, 1), nn.Identity()
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = self.body.layer3(self.body.layer3(x)).mean(dim=(2, 3), keepdim=True)
            return self.head(pooled)

    model = Twice()
    with FeatureTap(model).open() as tap, torch.no_grad():
        model(torch.randn(2, 3, 4, 4))
    assert tap.parts == (3,) and tap.features().shape == (2, 3)
