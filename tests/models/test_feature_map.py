"""The final feature map at a given input size: measured on real timm bodies, modes restored, the
smallest usable size, non-spatial bodies and the warning text."""

from __future__ import annotations

import pytest
from torch import nn

from unfreeze.models import create_model
from unfreeze.models.feature_map import check_input_size, feature_map_size, min_input_size


@pytest.fixture(scope="module")
def body() -> nn.Module:
    return create_model("test_resnet", 3, pretrained=False).body  # timm's tiny resnet, stride 32


def test_the_map_shrinks_with_the_stride(body):
    assert feature_map_size(body, 32) == (1, 1)
    assert feature_map_size(body, 64) == (2, 2)
    assert feature_map_size(body, 96) == (3, 3)


def test_every_module_keeps_its_mode_and_no_gradient_is_left(body):
    body.train()
    body.layer1.eval()  # a mix, as train_bn=False leaves it
    feature_map_size(body, 48)
    assert body.training and not body.layer1.training and body.layer2.training
    assert all(parameter.grad is None for parameter in body.parameters())


def test_min_input_size_is_the_first_size_with_enough_cells(body):
    size = min_input_size(body, min_cells=2)
    assert min(feature_map_size(body, size)) >= 2 > min(feature_map_size(body, size - 1))
    with pytest.raises(ValueError, match="stays below 4096×4096 up to 64 px"):
        min_input_size(body, min_cells=4096, limit=64)


def test_the_check_flags_small_maps_with_a_fix(body):
    small, fine = check_input_size(body, 32), check_input_size(body, 64)
    assert small.too_small and small.feature_map == (1, 1) and not fine.too_small
    assert "At 32 px, test_resnet's final feature map is 1×1" in small.message("test_resnet")
    assert "Use a larger size" in small.message() and fine.message() == ""


def test_bodies_without_a_spatial_map_pass():
    pooled = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert feature_map_size(pooled, 16) is None
    assert not check_input_size(pooled, 16).too_small


def test_a_size_too_small_to_run_counts_as_too_small():
    strict = nn.Conv2d(3, 4, 7)  # no padding: fails under 7 px
    assert check_input_size(strict, 4).too_small
    assert min_input_size(strict, min_cells=2) == 8
    with pytest.raises(ValueError, match="whole number of pixels"):
        feature_map_size(strict, 0)
