"""Convolutions on small feature maps in training steps: kernels cropped to the taps the map reaches, and
depthwise weight gradients by shifted products.

At the end of an EfficientNet trained at 64 px, a 5×5 depthwise convolution runs on a 2×2 map with
padding 2: whichever output it computes, its outer ring of taps only ever meets the zero padding. The
result is the same with the centre 3×3 of the kernel and padding 1, and the gradients are the same
too (the left-out taps would get exactly zero), while oneDNN's weight gradient of a depthwise
convolution on such a small map costs many times its forward pass, and more with every tap (with
PyTorch's AVX2 kernels more still), so `depthwise_gradient` computes it as one product per tap instead.
Both give the same outputs, and gradients equal to rounding (benchmarks/results/profile.md has the
measurements).

`small_map_convolutions(model)` is a context manager for the block of a training step: inside it, each
plain `nn.Conv2d` whose weight trains runs with its kernel cropped to the taps its input can reach,
when some cannot be reached, and a depthwise one on a map of at most `SMALL_MAP` pixels takes its weight
gradient from `depthwise_gradient`. The crop is a slice of the module's own weight, so the gradient lands
in the parameter the optimizer steps; nothing is copied, and on exit the modules are as they were. Only
on the CPU and in float32, as `batchnorm_folding`: on a GPU the convolution library is not the bottleneck.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional

from unfreeze.models.depthwise_gradient import depthwise_conv2d

__all__ = ["SMALL_MAP", "kernel_crop", "small_map_convolutions"]

SMALL_MAP = 16  # input pixels (4×4) up to which a depthwise convolution's weight gradient is written out

# (first row, end row, first column, end column, (padding rows, padding columns)) of a cropped kernel
Crop = tuple[int, int, int, int, tuple[int, int]]


def _reachable(size: int, kernel: int, stride: int, padding: int, dilation: int) -> tuple[int, int, int]:
    """The output length along one axis and the first and last kernel tap that reads an input element."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    taps = [tap for tap in range(kernel)
            if any(0 <= position * stride - padding + tap * dilation < size for position in range(out))]
    return out, (taps[0] if taps else 0), (taps[-1] if taps else kernel - 1)


@functools.lru_cache(maxsize=4096)
def kernel_crop(height: int, width: int, kernel: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int], dilation: tuple[int, int]) -> Crop | None:
    """The part of a kernel that an input of `height` × `width` reaches, or None when it reaches all of it.

    Args:
        height: Input rows.
        width: Input columns.
        kernel: The convolution's kernel size (rows, columns).
        stride: Its stride.
        padding: Its zero padding (rows, columns).
        dilation: Its dilation.

    Returns:
        The rows and columns of the kernel to keep and the padding that keeps every output where it
        was, or None when every tap is reachable (or a crop would change the output's size).

    Example:
        >>> kernel_crop(2, 2, (5, 5), (1, 1), (2, 2), (1, 1))  # a 5×5 kernel on a 2×2 map: its centre 3×3
        (1, 4, 1, 4, (1, 1))
        >>> kernel_crop(8, 8, (3, 3), (1, 1), (1, 1), (1, 1)) is None
        True
    """
    crop: list[int] = []
    new_padding: list[int] = []
    for size, k, s, p, d in zip((height, width), kernel, stride, padding, dilation, strict=True):
        out, first, last = _reachable(size, k, s, p, d)
        kept, pad = last - first + 1, p - first * d
        if pad < 0 or (size + 2 * pad - d * (kept - 1) - 1) // s + 1 != out:
            return None  # symmetric padding cannot keep the outputs in place: leave the kernel whole
        crop += [first, last + 1]
        new_padding.append(pad)
    if crop == [0, kernel[0], 0, kernel[1]]:
        return None
    return crop[0], crop[1], crop[2], crop[3], (new_padding[0], new_padding[1])


def _patchable(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str)
            and module.weight.requires_grad and "forward" not in vars(module))


def _small_map_forward(conv: nn.Conv2d, x: torch.Tensor, shifted_gradient: bool) -> torch.Tensor:
    crop = kernel_crop(x.shape[-2], x.shape[-1], conv.kernel_size, conv.stride, conv.padding,  # type: ignore[arg-type]
                       conv.dilation)  # type: ignore[arg-type]
    weight, padding = conv.weight, conv.padding
    if crop is not None:
        weight, padding = weight[:, :, crop[0]:crop[1], crop[2]:crop[3]], crop[4]
    if shifted_gradient and x.shape[-2] * x.shape[-1] <= SMALL_MAP:
        return depthwise_conv2d(x, weight, conv.stride, padding)  # type: ignore[arg-type]
    if crop is None:
        return conv._conv_forward(x, conv.weight, conv.bias)
    return functional.conv2d(x, weight, conv.bias, conv.stride, padding, conv.dilation, conv.groups)


def _depthwise(conv: nn.Conv2d) -> bool:
    """One filter per channel, no bias, no dilation: what `depthwise_conv2d` computes."""
    return (conv.groups == conv.in_channels == conv.out_channels and conv.bias is None
            and tuple(conv.dilation) == (1, 1))


@contextlib.contextmanager
def small_map_convolutions(model: nn.Module, shifted_gradients: bool = True) -> Iterator[int]:
    """Run `model`'s training convolutions cropped to the reachable taps (and depthwise ones on small maps
    with the shifted-product weight gradient); yields how many it patched.

    Args:
        model: The model; nothing changes unless it runs on the CPU in float32 and gradients are on.
        shifted_gradients: False keeps oneDNN's depthwise weight gradients (for comparisons).

    Example:
        >>> conv = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        >>> x = torch.rand(4, 8, 2, 2)
        >>> with small_map_convolutions(conv) as n_patched:
        ...     y = conv(x)
        >>> n_patched, torch.allclose(y, conv(x), atol=1e-6)
        (1, True)
    """
    parameter = next(model.parameters(), None)
    if (parameter is None or parameter.device.type != "cpu" or parameter.dtype != torch.float32
            or not torch.is_grad_enabled()):
        yield 0
        return
    patched = [module for module in model.modules() if _patchable(module)]
    try:
        for conv in patched:
            conv.forward = functools.partial(  # type: ignore[method-assign]
                _small_map_forward, conv, shifted_gradient=shifted_gradients and _depthwise(conv))
        yield len(patched)
    finally:
        for conv in patched:
            vars(conv).pop("forward", None)  # the class's forward again
