"""A depthwise convolution whose weight gradient is a sum of shifted products, for small maps on the CPU.

oneDNN's weight gradient of a depthwise convolution on a map of a few pixels costs many times its forward
pass, while the same sums written as one product per kernel tap cost little: for tap (a, b), the gradient
of channel c is the sum over the batch and the output positions of the output gradient times the input
shifted by (a, b). `depthwise_conv2d` runs the forward pass and the input gradient through oneDNN as usual
and computes the weight gradient that way (benchmarks/results/profile.md has the measurements, with
PyTorch's AVX-512 and AVX2 kernels).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

__all__ = ["depthwise_conv2d"]


class _DepthwiseConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, images: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(images, weight)
        ctx.stride, ctx.padding = stride, padding
        return functional.conv2d(images, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        images, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        channels, _, kernel_rows, kernel_columns = weight.shape
        grad_images = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_images = torch.ops.aten.convolution_backward(
                grad, images, weight, None, list(stride), list(padding), [1, 1], False, [0, 0], channels,
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            # Channels last: each tap's product and sum run over contiguous channel vectors. Each tap multiplies
            # only the output positions whose input lies inside the image: the padding would add exact zeros.
            images_last, grad_last = images.permute(0, 2, 3, 1), grad.permute(0, 2, 3, 1)
            taps = grad.new_zeros(kernel_rows * kernel_columns, channels)
            row_spans = [_inside(tap, padding[0], stride[0], grad.shape[-2], images.shape[-2])
                         for tap in range(kernel_rows)]
            column_spans = [_inside(tap, padding[1], stride[1], grad.shape[-1], images.shape[-1])
                            for tap in range(kernel_columns)]
            for a, (outputs_a, inputs_a) in enumerate(row_spans):
                for b, (outputs_b, inputs_b) in enumerate(column_spans):
                    if outputs_a is not None and outputs_b is not None:
                        taps[a * kernel_columns + b] = (images_last[:, inputs_a, inputs_b, :]
                                                        * grad_last[:, outputs_a, outputs_b, :]).sum((0, 1, 2))
            grad_weight = taps.t().reshape(channels, 1, kernel_rows, kernel_columns)
        return grad_images, grad_weight, None, None


def _inside(tap: int, padding: int, stride: int, outputs: int, inputs: int) -> tuple[slice, slice] | tuple[None, None]:
    """The output positions whose input (output * stride + tap - padding) lies inside the map along one axis,
    and those inputs, as slices; (None, None) when the tap reads only padding."""
    first = max(0, -((tap - padding) // stride))  # the smallest output whose input is >= 0
    last = min(outputs - 1, (inputs - 1 + padding - tap) // stride)
    if last < first:
        return None, None
    start = first * stride + tap - padding
    return slice(first, last + 1), slice(start, start + (last - first) * stride + 1, stride)


def depthwise_conv2d(images: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                     padding: tuple[int, int]) -> torch.Tensor:
    """A depthwise convolution (one filter per channel, no bias, no dilation) with the shifted-product weight
    gradient; outputs and input gradient as `functional.conv2d`'s.

    Args:
        images: [N, C, H, W].
        weight: [C, 1, kh, kw].
        stride: Rows, columns.
        padding: Zero padding, rows and columns.

    Example:
        >>> weight = torch.rand(8, 1, 3, 3, requires_grad=True)
        >>> out = depthwise_conv2d(torch.rand(2, 8, 4, 4), weight, (1, 1), (1, 1))
        >>> out.sum().backward(); weight.grad.shape
        torch.Size([8, 1, 3, 3])
    """
    return _DepthwiseConv2d.apply(images, weight, stride, padding)
