"""The features an out-of-distribution score reads: the input of the model's last linear layer, and the
pooled output of a middle stage of the body where the model has one.

For a `TransferModel` the first part is the input of the head's final `nn.Linear` (the pooled body
features under the linear head; the hidden layer under fastai's head); for any other module (fastai's
`Learner(dls, module)`, a timm model) the input of the last `nn.Linear` it registers. Those features
were trained to tell the classes apart, so an image unlike every class can still land near one of them
(an upscaled digit near a bag). The second part, the spatially averaged output of the body's stage at
half the final resolution (`mid_layer`), still describes what the image looks like, and sets such
images apart (benchmarks/results/trust.md). Both are captured by forward hooks while the model computes
its logits, so scoring costs no second pass; `FeatureTap.features()` puts them side by side and
`FeatureTap.parts` says where one ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["FeatureTap", "NoFeatureLayerError", "feature_layer", "mid_layer"]


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


def mid_layer(model: nn.Module) -> nn.Module | None:
    """The body's stage whose output, averaged over space, is the second part of the features; None if none.

    In order: a module the model names itself (`model.mid_features`, e.g. a runtime's output split); the
    last stage of a timm body at half the final resolution (its `feature_info`: `blocks.4` of
    efficientnet_lite0, `layer3` of a resnet); `layer3` of a torchvision resnet body. Other models (a
    plain `nn.Module`, a transformer whose stages all share one resolution) have none, and their score
    reads the last linear layer's input alone.

    Example:
        >>> mid_layer(nn.Sequential(nn.Flatten(), nn.Linear(12, 2))) is None
        True
    """
    named = getattr(model, "mid_features", None)
    if isinstance(named, nn.Module):
        return named
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Module):
        return None
    stages = [stage for stage in getattr(body, "feature_info", None) or []
              if isinstance(stage, dict) and "reduction" in stage and "module" in stage]
    if stages:
        final = max(stage["reduction"] for stage in stages)
        halves = [stage["module"] for stage in stages if stage["reduction"] * 2 == final]
        try:
            return body.get_submodule(halves[-1]) if halves else None
        except AttributeError:  # a feature_info naming a module the body no longer has (pruned models)
            return None
    layer3, layer4 = getattr(body, "layer3", None), getattr(body, "layer4", None)
    return layer3 if isinstance(layer3, nn.Module) and isinstance(layer4, nn.Module) else None


def _pooled(output: Any) -> torch.Tensor:
    """A stage's output as [N, C]: maps averaged over their spatial positions (an [N, C] output as it is)."""
    tensor = output[0] if isinstance(output, (tuple, list)) else output
    return (tensor.float().flatten(2).mean(dim=2) if tensor.ndim > 2 else tensor.float()).detach()


class FeatureTap:
    """Captures the features (the input of `feature_layer(model)`, then the pooled output of
    `mid_layer(model)` where there is one) of every forward pass while open.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.Linear(4, 2))
        >>> with FeatureTap(model).open() as tap:
        ...     _ = model(torch.zeros(3, 12))
        >>> tap.features().shape, tap.parts
        (torch.Size([3, 4]), (4,))
    """

    def __init__(self, model: nn.Module) -> None:
        self.layer = feature_layer(model)
        self.model_name = type(model).__name__
        self.layer_name = next(name for name, module in model.named_modules() if module is self.layer)
        self.middle = mid_layer(model)
        self.captured: list[torch.Tensor] = []
        self.captured_mid: list[torch.Tensor] = []

    def _hook(self, _module: nn.Module, inputs: tuple[Any, ...]) -> None:
        self.captured.append(inputs[0].flatten(1).float().detach())

    def _mid_hook(self, _module: nn.Module, _inputs: tuple[Any, ...], output: Any) -> None:
        self.captured_mid.append(_pooled(output))

    def attach(self) -> list[torch.utils.hooks.RemovableHandle]:
        """Hook the layers until the returned handles are removed (`open` does both for a block)."""
        handles = [self.layer.register_forward_pre_hook(self._hook)]
        if self.middle is not None:
            handles.append(self.middle.register_forward_hook(self._mid_hook))
        return handles

    @contextmanager
    def open(self) -> Iterator[FeatureTap]:
        """Hook the layers for the block; the hooks are removed however the block ends."""
        handles = self.attach()
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def clear(self) -> None:
        """Forget what was captured."""
        self.captured.clear()
        self.captured_mid.clear()

    @property
    def parts(self) -> tuple[int, ...]:
        """The widths of the feature parts, in order: (last linear input,) or (that, middle stage)."""
        first = self.captured[0].shape[1] if self.captured else self.layer.in_features
        if not self._both():
            return (first,)
        return first, self.captured_mid[0].shape[1]

    def _both(self) -> bool:
        """Whether the middle stage ran once with every pass of the last linear layer (a stage reused in
        one pass, or a model that skips it, leaves the first part alone)."""
        if self.middle is None or not len(self.captured_mid) == len(self.captured) > 0:
            return False
        if torch.jit.is_tracing():  # an export traces one pass; its traced batch sizes cannot be compared
            return True
        return all(mid.shape[0] == first.shape[0] for mid, first in zip(self.captured_mid, self.captured, strict=True))

    def check_rows(self, features: torch.Tensor, items: int) -> None:
        """Refuse features that are not one row per image: the last nn.Linear the model registers is not the
        one its forward pass ends with (an auxiliary head it never runs, or a layer run several times).

        Raises:
            NoFeatureLayerError: `len(features)` is not `items`.
        """
        if len(features) == items:
            return
        raise NoFeatureLayerError(
            f"the features are the input of {self.model_name}'s last nn.Linear, `{self.layer_name}`, which gave "
            f"{len(features)} of {items} images a row: the forward pass must run it once per image, as "
            "the classifier that ends the model. Register the classifier last (or name it `head`), or pass "
            "unknown_rate=None to calibrate() to skip the unknown flag.")

    def features(self) -> torch.Tensor:
        """All features captured so far, in order, as one float [N, sum(parts)] tensor."""
        if not self.captured:
            return torch.zeros(0, self.layer.in_features)
        first = torch.cat(self.captured)
        if not self._both():
            return first
        return torch.cat([first, torch.cat(self.captured_mid)], dim=1)
