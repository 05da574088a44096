"""fastai's xresnet constructors: ResNet-D with random weights, a linear head and the backbone contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unfreeze.models import WeightsNotFoundError, model_from_config, xresnet18, xresnet50


def test_xresnet18_is_resnet_d_with_fastais_initialisation():
    model = xresnet18(n_out=5)
    body = model.body
    stem = [module.out_channels for module in body.conv1 if isinstance(module, nn.Conv2d)]
    downsample = body.layer2[0].downsample
    assert stem == [32, 32, 64]  # the deep stem of three 3x3 convolutions
    assert isinstance(downsample[0], nn.AvgPool2d)  # average pooling before the shortcut's 1x1 convolution
    assert all(block.bn2.weight.abs().sum() == 0 for layer in (body.layer1, body.layer4) for block in layer)
    assert isinstance(model.head[-1], nn.Linear) and model.head[-1].out_features == 5
    assert model.weights_source == "random" and len(model.param_groups) == 3
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_xresnet50_rebuilds_from_its_config_and_takes_one_channel():
    model = xresnet50(n_out=3, c_in=1)
    rebuilt = model_from_config(model.config())
    assert (model.arch, rebuilt.arch, rebuilt.n_in) == ("resnet50d", "resnet50d", 1)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 3)


def test_pretrained_xresnet_looks_for_timms_weights_and_names_the_bundled_backbone():
    with pytest.raises(WeightsNotFoundError, match="resnet18d") as caught:
        xresnet18(pretrained=True, n_out=2)
    assert "bundled 'efficientnet_lite0'" in str(caught.value)
