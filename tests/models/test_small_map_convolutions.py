"""small_map_convolutions: kernels cropped to the taps a small map reaches, depthwise weight gradients by
shifted products; the same outputs and gradients as the plain convolutions."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn
from torch.nn import functional

from unfreeze.models.depthwise_gradient import depthwise_conv2d
from unfreeze.models.small_map_convolutions import kernel_crop, small_map_convolutions


def _outputs_and_grads(model: nn.Module, images: torch.Tensor, patch: bool,
                       shifted: bool = True) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    inputs = images.clone().requires_grad_(True)
    if patch:
        with small_map_convolutions(model, shifted_gradients=shifted) as n_patched:
            assert n_patched > 0
            out = model(inputs)
    else:
        out = model(inputs)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads | {"input": inputs.grad.clone()}


def _assert_same(model: nn.Module, images: torch.Tensor, shifted: bool = True) -> None:
    plain, plain_grads = _outputs_and_grads(model, images, patch=False)
    patched, patched_grads = _outputs_and_grads(model, images, patch=True, shifted=shifted)
    assert patched.shape == plain.shape and torch.allclose(patched, plain, atol=1e-5)
    assert plain_grads.keys() == patched_grads.keys()
    for name, grad in plain_grads.items():
        assert torch.allclose(patched_grads[name], grad, atol=1e-5 * float(grad.abs().max()) + 1e-6), name
    assert not any("forward" in vars(module) for module in model.modules())  # the class's forward again


CONVOLUTIONS = [
    (2, nn.Conv2d(6, 6, 5, padding=2, groups=6, bias=False)),  # depthwise 5×5 on 2×2: the centre 3×3
    (1, nn.Conv2d(4, 8, 3, padding=1)),  # 3×3 on 1×1: the centre tap
    (4, nn.Conv2d(6, 6, 5, stride=2, padding=2, groups=6, bias=False)),  # strided: every tap reached
    (3, nn.Conv2d(4, 4, 5, padding=4, dilation=2)),  # dilated
    (2, nn.Conv2d(4, 4, (1, 7), padding=(0, 3))),  # a non-square kernel
    (5, nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)),
]


@pytest.mark.parametrize("shifted", [False, True], ids=["onednn-gradient", "shifted-gradient"])
@pytest.mark.parametrize(("size", "conv"), CONVOLUTIONS)
def test_a_small_map_convolution_gives_the_same_outputs_and_gradients(size: int, conv: nn.Conv2d,
                                                                       shifted: bool) -> None:
    torch.manual_seed(0)
    _assert_same(nn.Sequential(conv, nn.ReLU()), torch.randn(3, conv.in_channels, size, size + 1), shifted)


@pytest.mark.parametrize(("size", "kernel", "stride", "padding"),
                         [(2, (3, 3), (1, 1), (1, 1)), (4, (5, 5), (1, 1), (2, 2)), (4, (5, 5), (2, 2), (2, 2)),
                          (3, (3, 5), (2, 1), (1, 2)), (5, (3, 3), (1, 1), (0, 0)),
                          (1, (5, 5), (1, 1), (2, 2)), (5, (5, 3), (2, 2), (2, 1)), (4, (3, 3), (3, 2), (1, 1))])
def test_the_shifted_weight_gradient_equals_onednns(size: int, kernel: tuple[int, int], stride: tuple[int, int],
                                                     padding: tuple[int, int]) -> None:
    torch.manual_seed(0)
    images = torch.randn(4, 6, size, size + 1).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(6, 1, *kernel)
    grads = []
    for convolve in (lambda x, w: functional.conv2d(x, w, None, stride, padding, 1, 6),
                     lambda x, w: depthwise_conv2d(x, w, stride, padding)):
        x, w = images.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        out = convolve(x, w)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append((out.detach(), x.grad, w.grad))
    for plain, shifted in zip(*grads, strict=True):
        assert torch.allclose(shifted, plain, atol=1e-5)


def test_the_crop_keeps_only_reachable_taps_and_every_output_in_place() -> None:
    assert kernel_crop(2, 2, (5, 5), (1, 1), (2, 2), (1, 1)) == (1, 4, 1, 4, (1, 1))
    assert kernel_crop(1, 1, (3, 3), (1, 1), (1, 1), (1, 1)) == (1, 2, 1, 2, (0, 0))
    assert kernel_crop(2, 8, (5, 5), (1, 1), (2, 2), (1, 1)) == (1, 4, 0, 5, (1, 2))  # rows only
    assert kernel_crop(16, 16, (3, 3), (1, 1), (1, 1), (1, 1)) is None
    assert kernel_crop(2, 2, (3, 3), (1, 1), (0, 0), (1, 1)) is None  # no padding: nothing to crop


@pytest.mark.parametrize("shifted", [False, True], ids=["onednn-gradient", "shifted-gradient"])
def test_efficientnet_trains_identically_and_frozen_or_eval_passes_are_left_alone(
        shifted: bool) -> None:
    model = timm.create_model("efficientnet_lite0", num_classes=5)
    images = torch.rand(2, 3, 64, 64)  # its last stages run at 4×4 and 2×2
    _assert_same(model, images, shifted)
    # By default the depthwise convolutions on small maps take the shifted gradient, whatever the CPU's kernels.
    with small_map_convolutions(model) if shifted else small_map_convolutions(model, shifted_gradients=False):
        out = model(images)
    seen, names, stack = set(), set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and id(node) not in seen:
            seen.add(id(node))
            names.add(type(node).__name__)
            stack += [next_node for next_node, _ in node.next_functions]
    assert ("_DepthwiseConv2dBackward" in names) == shifted  # the shifted gradient's own node
    with torch.no_grad(), small_map_convolutions(model) as n_patched:  # no gradient, nothing to save
        assert n_patched == 0
    for param in model.parameters():
        param.requires_grad_(False)
    with small_map_convolutions(model) as n_patched:  # a frozen convolution is not patched
        assert n_patched == 0
