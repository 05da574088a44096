"""cropped_convolutions: kernels cropped to the taps a small map reaches, same outputs and gradients."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from unfreeze.models.conv_cropping import cropped_convolutions, kernel_crop


def _outputs_and_grads(model: nn.Module, images: torch.Tensor, crop: bool) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    inputs = images.clone().requires_grad_(True)
    if crop:
        with cropped_convolutions(model) as n_patched:
            assert n_patched > 0
            out = model(inputs)
    else:
        out = model(inputs)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads | {"input": inputs.grad.clone()}


@pytest.mark.parametrize(("size", "conv"), [
    (2, nn.Conv2d(6, 6, 5, padding=2, groups=6)),  # depthwise 5×5 on 2×2: the centre 3×3
    (1, nn.Conv2d(4, 8, 3, padding=1)),  # 3×3 on 1×1: the centre tap
    (4, nn.Conv2d(6, 6, 5, stride=2, padding=2, groups=6)),  # strided: every tap reached, left whole
    (3, nn.Conv2d(4, 4, 5, padding=4, dilation=2)),  # dilated
    (2, nn.Conv2d(4, 4, (1, 7), padding=(0, 3))),  # a non-square kernel
    (5, nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)),
])
def test_a_cropped_convolution_gives_the_same_outputs_and_gradients(size: int, conv: nn.Conv2d) -> None:
    torch.manual_seed(0)
    images = torch.randn(3, conv.in_channels, size, size + 1)
    model = nn.Sequential(conv, nn.ReLU())
    plain, plain_grads = _outputs_and_grads(model, images, crop=False)
    cropped, cropped_grads = _outputs_and_grads(model, images, crop=True)
    assert cropped.shape == plain.shape and torch.allclose(cropped, plain, atol=1e-5)
    assert plain_grads.keys() == cropped_grads.keys()
    for name, grad in plain_grads.items():
        assert torch.allclose(cropped_grads[name], grad, atol=1e-5), name
    assert "forward" not in vars(conv)  # the class's forward again


def test_the_crop_keeps_only_reachable_taps_and_every_output_in_place() -> None:
    assert kernel_crop(2, 2, (5, 5), (1, 1), (2, 2), (1, 1)) == (1, 4, 1, 4, (1, 1))
    assert kernel_crop(1, 1, (3, 3), (1, 1), (1, 1), (1, 1)) == (1, 2, 1, 2, (0, 0))
    assert kernel_crop(2, 8, (5, 5), (1, 1), (2, 2), (1, 1)) == (1, 4, 0, 5, (1, 2))  # rows only
    assert kernel_crop(16, 16, (3, 3), (1, 1), (1, 1), (1, 1)) is None
    assert kernel_crop(2, 2, (3, 3), (1, 1), (0, 0), (1, 1)) is None  # no padding: nothing to crop


def test_efficientnet_trains_identically_with_cropped_kernels_and_frozen_or_eval_passes_are_left_alone() -> None:
    model = timm.create_model("efficientnet_lite0", num_classes=5)
    images = torch.rand(2, 3, 64, 64)  # its last stages run at 2×2: their 5×5 depthwise kernels crop
    plain, plain_grads = _outputs_and_grads(model, images, crop=False)
    cropped, cropped_grads = _outputs_and_grads(model, images, crop=True)
    assert torch.allclose(cropped, plain, atol=1e-5)
    for name, grad in plain_grads.items():
        assert torch.allclose(cropped_grads[name], grad, atol=1e-5 * float(grad.abs().max()) + 1e-7), name
    with torch.no_grad(), cropped_convolutions(model) as n_patched:  # no gradient, no weight gradient to save
        assert n_patched == 0
    for param in model.parameters():
        param.requires_grad_(False)
    with cropped_convolutions(model) as n_patched:  # a frozen convolution is not patched
        assert n_patched == 0
    assert not any("forward" in vars(module) for module in model.modules())
