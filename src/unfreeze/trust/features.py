"""The features an out-of-distribution score reads: the input of the model's last linear layer.

For a `TransferModel` that is the head's final `nn.Linear` (the pooled body features under the linear
head; the hidden layer under fastai's head); for any other module (fastai's `Learner(dls, module)`, a
timm model) the last `nn.Linear` it registers. The features are captured by a forward hook while the
model computes its logits, so scoring costs no second pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["FeatureTap", "NoFeatureLayerError", "feature_layer"]


class NoFeatureLayerError(ValueError):
    """A model without a final linear layer: no features to tell known images from unknown ones."""


def feature_layer(model: nn.Module) -> nn.Linear:
    """The last `nn.Linear` of the model's head (or of the model): its input are the features.

    Raises:
        NoFeatureLayerError: The model has no `nn.Linear` (e.g. a convolutional classifier).

    Example:
        >>> feature_layer(nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))).in_features
        4
    """
    head = getattr(model, "head", None)
    for where in ((head,) if isinstance(head, nn.Module) else ()) + (model,):
        linears = [module for module in where.modules() if isinstance(module, nn.Linear)]
        if linears:
            return linears[-1]
    raise NoFeatureLayerError(
        f"{type(model).__name__} has no nn.Linear layer, so there are no features before its output to compare "
        "new images with the training images. End the model with an nn.Linear classifier (as vision_learner's "
        "heads do), or pass unknown_rate=None to calibrate() to skip the unknown flag.")


class FeatureTap:
    """Captures the features (input of `feature_layer(model)`) of every forward pass while open.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.Linear(4, 2))
        >>> with FeatureTap(model).open() as tap:
        ...     _ = model(torch.zeros(3, 12))
        >>> tap.features().shape
        torch.Size([3, 4])
    """

    def __init__(self, model: nn.Module) -> None:
        self.layer = feature_layer(model)
        self.captured: list[torch.Tensor] = []
        self.last: torch.Tensor | None = None

    def _hook(self, _module: nn.Module, inputs: tuple[Any, ...]) -> None:
        features = inputs[0].flatten(1).float()
        self.last = features
        self.captured.append(features.detach())

    @contextmanager
    def open(self) -> Iterator[FeatureTap]:
        """Hook the layer for the block; the hook is removed however the block ends."""
        handle = self.layer.register_forward_pre_hook(self._hook)
        try:
            yield self
        finally:
            handle.remove()

    def features(self) -> torch.Tensor:
        """All features captured so far, in order, as one float [N, D] tensor."""
        if not self.captured:
            return torch.zeros(0, self.layer.in_features)
        return torch.cat(self.captured)
