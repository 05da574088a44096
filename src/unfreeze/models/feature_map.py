"""How large the backbone's final feature map is at a given input size, and the smallest usable size.

A CNN body divides the input side by its total stride (32 for efficientnet_lite0 and resnets). At
32 px efficientnet_lite0's final map is 1×1: the pooled features then describe one cell, both pooling
halves of the fastai head see the same value, and unfreezing wrecks the head (issue 17 measured
31% accuracy on 32 px digits). The size is measured with one forward pass on zeros, so any body
(timm, torchvision or a custom module) is covered without knowing its strides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["FeatureMapCheck", "check_input_size", "feature_map_size", "min_input_size", "one_image_norm_layers",
           "output_width"]


def feature_map_size(body: nn.Module, size: int, n_in: int = 3) -> tuple[int, int] | None:
    """(height, width) of `body`'s output for a `size` × `size` input; None if the output is not a map.

    Runs one forward pass on zeros without gradients; every module's train/eval mode is restored.
    Raises the body's own error when the input is too small for it to run at all.

    Example:
        >>> model = create_model("efficientnet_lite0", 10)  # doctest: +SKIP
        >>> feature_map_size(model.body, 32), feature_map_size(model.body, 64)  # doctest: +SKIP
        ((1, 1), (2, 2))
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a whole number of pixels >= 1, got {size!r}.")
    parameter = next(body.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    modes = [(module, module.training) for module in body.modules()]
    body.eval()  # batch statistics of a single zero image would be meaningless (and fail for BN at 1×1)
    try:
        with torch.no_grad():
            output = body(torch.zeros(1, n_in, size, size, device=device, dtype=dtype))
    finally:
        for module, training in modes:
            module.training = training
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        return None  # pooled vectors or tokens (a ViT): nothing spatial to check
    return int(output.shape[-2]), int(output.shape[-1])


def output_width(model: nn.Module, size: int, n_in: int = 3) -> int | None:
    """How many values `model` outputs per image at `size` px: its `n_out` when it declares one, else the
    last dimension of one forward pass on a zero image (eval mode, no gradients, every mode restored).

    None when the output is not a tensor of shape [N, K] (a tuple, a dict, a map), which the library
    cannot read as one prediction per image anyway.

    Example:
        >>> output_width(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)), 4)
        5
    """
    declared = getattr(model, "n_out", None)
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared
    parameter = next(model.parameters(), None)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros(1, n_in, size, size, device=parameter.device if parameter is not None else None,
                                       dtype=parameter.dtype if parameter is not None else None))
    finally:
        for module, training in modes:
            module.training = training
    return int(output.shape[-1]) if isinstance(output, torch.Tensor) and output.ndim == 2 else None


def one_image_norm_layers(model: nn.Module, size: int, n_in: int = 3) -> list[str]:
    """The batch-norm layers in training mode that see one value per channel in a one-image batch.

    torch refuses to train such a layer on that batch ("Expected more than 1 value per channel when
    training"): a BatchNorm1d, or a BatchNorm2d on a 1×1 map. Measured with one forward pass of a
    `size` × `size` zero image in eval mode (no statistics change); every module's mode is restored.

    Example:
        >>> model = create_model("test_resnet", 2, pretrained=False).train()  # doctest: +SKIP
        >>> one_image_norm_layers(model, 16)[:1], one_image_norm_layers(model, 64)  # doctest: +SKIP
        (['body.layer3.0.bn2'], ['head.2', 'head.6'])
    """
    training = {module for module in model.modules()
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training}
    if not training:
        return []
    single: list[str] = []

    def watch(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            if inputs[0][0].numel() == inputs[0].shape[1]:  # one image's values: one per channel
                single.append(name)
        return record

    hooks = [module.register_forward_pre_hook(watch(name)) for name, module in model.named_modules()
             if module in training]
    parameter = next(model.parameters(), None)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, n_in, size, size, device=parameter.device if parameter is not None else None,
                              dtype=parameter.dtype if parameter is not None else None))
    finally:
        for hook in hooks:
            hook.remove()
        for module, was_training in modes:
            module.training = was_training
    return single


def _cells(body: nn.Module, size: int, n_in: int) -> int:
    try:
        shape = feature_map_size(body, size, n_in)
    except RuntimeError:  # too small for the body's kernels: as good as no map at all
        return 0
    return 1 << 30 if shape is None else min(shape)


def min_input_size(body: nn.Module, min_cells: int = 2, n_in: int = 3, limit: int = 2048) -> int:
    """The smallest input side whose final feature map is at least `min_cells` × `min_cells`.

    Binary search over sizes (the map never shrinks as the input grows): about 11 small forward passes.

    Raises:
        ValueError: Even a `limit` × `limit` input gives a smaller map.

    Example:
        >>> min_input_size(create_model("efficientnet_lite0", 10).body)  # doctest: +SKIP
        33
    """
    if _cells(body, limit, n_in) < min_cells:
        raise ValueError(f"This body's final feature map stays below {min_cells}×{min_cells} up to {limit} px; "
                         "pass a larger limit or a backbone with a smaller stride.")
    low, high = 1, limit  # _cells(high) >= min_cells
    while low < high:
        middle = (low + high) // 2
        if _cells(body, middle, n_in) >= min_cells:
            high = middle
        else:
            low = middle + 1
    return high


@dataclass(frozen=True)
class FeatureMapCheck:
    """What `check_input_size` found: the map at `size`, and whether it reaches `min_cells` per side."""

    size: int
    feature_map: tuple[int, int] | None
    min_cells: int

    @property
    def too_small(self) -> bool:
        return self.feature_map is not None and min(self.feature_map) < self.min_cells

    def message(self, arch: str = "the backbone") -> str:
        """One line for a warning (empty when the size is fine)."""
        if not self.too_small or self.feature_map is None:
            return ""
        height, width = self.feature_map
        return (f"At {self.size} px, {arch}'s final feature map is {height}×{width} (under "
                f"{self.min_cells}×{self.min_cells}): the pooled features see almost no layout and fine-tuning "
                "is unstable. Use a larger size (upscaling small images helps).")


def check_input_size(body: nn.Module, size: int, min_cells: int = 2, n_in: int = 3) -> FeatureMapCheck:
    """Measure the final feature map at `size` and say whether it is at least `min_cells` per side.

    Example:
        >>> check = check_input_size(create_model("efficientnet_lite0", 10).body, 32)  # doctest: +SKIP
        >>> check.too_small, check.feature_map  # doctest: +SKIP
        (True, (1, 1))
    """
    try:
        shape = feature_map_size(body, size, n_in)
    except RuntimeError:
        shape = (0, 0)  # the body cannot even run at this size
    return FeatureMapCheck(size, shape, min_cells)
