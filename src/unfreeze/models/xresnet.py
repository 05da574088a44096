"""fastai's `xresnet18/34/50` (ResNet-D, "Bag of Tricks", He et al. 2019) as timm's `resnet18d/34d/50d`.

fastai's XResNet and timm's ResNet-D are the same network: a deep stem of three 3x3 convolutions
(32, 32, 64 channels), average pooling before the 1x1 convolution of each downsampling shortcut, and
the last BatchNorm of every residual block initialised to zero. Here each is a `TransferModel` with a
linear head (fastai's XResNet head: average pooling, then one linear layer), so it has the parameter
groups and input statistics the learner, lr_find and export rely on, and an export rebuilds it.

Example:
    >>> model = xresnet18(n_out=10)
    >>> model.arch, model(torch.zeros(2, 3, 32, 32)).shape
    ('resnet18d', torch.Size([2, 10]))
"""

from __future__ import annotations

import torch  # noqa: F401  (the examples use it)

from unfreeze.models.backbones import TransferModel, create_model

__all__ = ["xresnet18", "xresnet34", "xresnet50"]


def _xresnet(arch: str, pretrained: bool, n_out: int, c_in: int) -> TransferModel:
    # Random weights by default, as fastai's xresnet; pretrained=True looks for timm's ImageNet
    # weights of the same network like any other backbone (local file, caches, download).
    return create_model(arch, n_out, pretrained=pretrained, n_in=c_in, head="linear")


def xresnet18(pretrained: bool = False, n_out: int = 1000, c_in: int = 3) -> TransferModel:
    """fastai's xresnet18: timm's `resnet18d`, random weights unless `pretrained`, `n_out` classes.

    Example:
        >>> xresnet18(n_out=3).n_out
        3
    """
    return _xresnet("resnet18d", pretrained, n_out, c_in)


def xresnet34(pretrained: bool = False, n_out: int = 1000, c_in: int = 3) -> TransferModel:
    """fastai's xresnet34: timm's `resnet34d`, random weights unless `pretrained`, `n_out` classes.

    Example:
        >>> xresnet34(n_out=3).arch
        'resnet34d'
    """
    return _xresnet("resnet34d", pretrained, n_out, c_in)


def xresnet50(pretrained: bool = False, n_out: int = 1000, c_in: int = 3) -> TransferModel:
    """fastai's xresnet50 (fastbook chapter 7): timm's `resnet50d`, random weights unless `pretrained`.

    Example:
        >>> model = xresnet50(n_out=dls.c)  # doctest: +SKIP
        >>> learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)  # doctest: +SKIP
    """
    return _xresnet("resnet50d", pretrained, n_out, c_in)
