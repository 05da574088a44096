"""Crop convolution kernels to the taps a small feature map can reach, for the training steps.

At the end of an EfficientNet trained at 64 px, a 5×5 depthwise convolution runs on a 2×2 map with
padding 2: whichever output it computes, its outer ring of taps only ever meets the zero padding. The
result is the same with the centre 3×3 of the kernel and padding 1, and the gradients are the same
too (the left-out taps would get exactly zero), while oneDNN's weight gradient of a depthwise
convolution on such a small map costs many times its forward pass, and more with every tap: the
recipe's unfrozen training step is faster with the kernels cropped, with identical outputs and
gradients (benchmarks/results/profile.md has the measurement).

`cropped_convolutions(model)` is a context manager for the block of a training step: inside it, each
plain `nn.Conv2d` whose weight trains runs with its kernel cropped to the taps its input can reach,
when some cannot be reached. The crop is a slice of the module's own weight, so the gradient lands in
the parameter the optimizer steps; nothing is copied, and on exit the modules are as they were. Only
on the CPU and in float32, as `batchnorm_folding`: on a GPU the convolution library is not the
bottleneck.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional

__all__ = ["cropped_convolutions", "kernel_crop"]

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


def _croppable(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str)
            and module.weight.requires_grad and "forward" not in vars(module))


def _cropped_forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    crop = kernel_crop(x.shape[-2], x.shape[-1], conv.kernel_size, conv.stride, conv.padding,  # type: ignore[arg-type]
                       conv.dilation)  # type: ignore[arg-type]
    if crop is None:
        return conv._conv_forward(x, conv.weight, conv.bias)
    rows, columns = slice(crop[0], crop[1]), slice(crop[2], crop[3])
    return functional.conv2d(x, conv.weight[:, :, rows, columns], conv.bias, conv.stride, crop[4], conv.dilation,
                             conv.groups)


@contextlib.contextmanager
def cropped_convolutions(model: nn.Module) -> Iterator[int]:
    """Run `model`'s training convolutions with kernels cropped to the reachable taps; yields how many.

    Args:
        model: The model; nothing changes unless it runs on the CPU in float32 and gradients are on.

    Example:
        >>> conv = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        >>> x = torch.rand(4, 8, 2, 2)
        >>> with cropped_convolutions(conv) as n_patched:
        ...     y = conv(x)
        >>> n_patched, torch.allclose(y, conv(x), atol=1e-6)
        (1, True)
    """
    parameter = next(model.parameters(), None)
    if (parameter is None or parameter.device.type != "cpu" or parameter.dtype != torch.float32
            or not torch.is_grad_enabled()):
        yield 0
        return
    patched = [module for module in model.modules() if _croppable(module)]
    try:
        for conv in patched:
            conv.forward = functools.partial(_cropped_forward, conv)  # type: ignore[method-assign]
        yield len(patched)
    finally:
        for conv in patched:
            vars(conv).pop("forward", None)  # the class's forward again
