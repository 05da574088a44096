"""Classifier heads that sit on top of a backbone's features.

Two heads are built here: fastai's head (concat pooling, BatchNorm, dropout, two linear layers) and a
plain linear head. Both accept either a feature map ``[B, C, H, W]`` (they pool it themselves) or
already pooled features ``[B, C]`` (token models such as ViT pool inside the body; see
``backbones.py``), chosen by ``pool``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["HEAD_KINDS", "AdaptiveConcatPool2d", "SigmoidRange", "build_head", "fastai_head", "linear_head"]

HEAD_KINDS = ("fastai", "linear")


class AdaptiveConcatPool2d(nn.Module):
    """Adaptive max pooling and average pooling, concatenated along channels (2*C features).

    Example:
        >>> pool = AdaptiveConcatPool2d()
        >>> pool(torch.zeros(2, 8, 7, 7)).shape
        torch.Size([2, 16, 1, 1])
    """

    def __init__(self, output_size: int = 1) -> None:
        super().__init__()
        self.max_pool = nn.AdaptiveMaxPool2d(output_size)
        self.avg_pool = nn.AdaptiveAvgPool2d(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Max first, then average: the order fastai uses, so weights transplanted from a fastai
        # head line up.
        return torch.cat([self.max_pool(x), self.avg_pool(x)], dim=1)


class SigmoidRange(nn.Module):
    """fastai's `SigmoidRange(low, high)`: `sigmoid(x) * (high - low) + low`, outputs inside (low, high).

    A regression head ends with it when `y_range` is given (fastbook's head-pose model: (-1, 1)).

    Example:
        >>> SigmoidRange(-1.0, 1.0)(torch.zeros(2)).tolist()
        [0.0, 0.0]
    """

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        if not low < high:
            raise ValueError(f"y_range must be (low, high) with low < high, got ({low}, {high}).")
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * (self.high - self.low) + self.low

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


def fastai_head(
    num_features: int, n_out: int, *, ps: float = 0.5, hidden: int | Sequence[int] = 512, pool: bool = True,
    concat_pool: bool = True,
) -> nn.Sequential:
    """Build fastai's default classifier head (fastai's `create_head`).

    Layers: AdaptiveConcatPool2d → Flatten → BatchNorm1d(2·nf) → Dropout(ps/2) →
    Linear(2·nf, hidden, bias=False) → ReLU → BatchNorm1d(hidden) → Dropout(ps) →
    Linear(hidden, n_out, bias=False). Linear weights get Kaiming-normal init, BatchNorm weight 1
    and bias 0. With ``pool=False`` (features already pooled to ``[B, nf]``) the pooling and
    flatten layers are left out and the first BatchNorm sees ``nf`` features.

    Args:
        num_features: channels of the body's output (``nf``).
        n_out: number of classes.
        ps: dropout probability of the last dropout; the ones before it use ``ps / 2``.
        hidden: width of the hidden linear layer (fastai: 512), or one width per hidden layer, as
            fastai's ``lin_ftrs`` (``[]``: a single BatchNorm → Dropout(ps) → Linear block).
        pool: whether the input is a feature map that must be pooled here.
        concat_pool: max and average pooling concatenated (2·nf features); False: average pooling only.

    Returns:
        The head as an ``nn.Sequential``.

    Example:
        >>> head = fastai_head(512, 10)
        >>> head.eval()(torch.randn(2, 512, 7, 7)).shape
        torch.Size([2, 10])
        >>> fastai_head(512, 10, hidden=[64, 32]).eval()(torch.randn(2, 512, 7, 7)).shape
        torch.Size([2, 10])
    """
    _check_head_args(num_features, n_out, ps)
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    if any(not isinstance(width, int) or isinstance(width, bool) or width < 1 for width in widths):
        raise ValueError(f"hidden (fastai's lin_ftrs) must be positive layer widths, e.g. [512], got {hidden!r}.")
    in_features = 2 * num_features if pool and concat_pool else num_features
    pooling: list[nn.Module] = [AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers: list[nn.Module] = pooling if pool else []
    features = [in_features, *widths, n_out]
    # fastai's blocks: BatchNorm, Dropout, Linear without bias (the BatchNorm after it shifts), ReLU but
    # after the last; every dropout but the last uses ps / 2.
    for index, (width_in, width_out) in enumerate(itertools.pairwise(features)):
        last = index == len(features) - 2
        layers += [nn.BatchNorm1d(width_in), nn.Dropout(ps if last else ps / 2),
                   nn.Linear(width_in, width_out, bias=False)]
        if not last:
            layers.append(nn.ReLU(inplace=True))
    head = nn.Sequential(*layers)
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight)
        elif isinstance(module, nn.BatchNorm1d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return head


def linear_head(num_features: int, n_out: int, *, pool: bool = True) -> nn.Sequential:
    """Build a plain linear head: average pooling → Flatten → Linear(nf, n_out).

    Args:
        num_features: channels of the body's output.
        n_out: number of classes.
        pool: whether the input is a feature map that must be pooled here.

    Returns:
        The head as an ``nn.Sequential``.

    Example:
        >>> linear_head(512, 10)(torch.randn(2, 512, 7, 7)).shape
        torch.Size([2, 10])
    """
    _check_head_args(num_features, n_out, 0.0)
    pooling: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if pool else []
    return nn.Sequential(*pooling, nn.Linear(num_features, n_out))


def build_head(
    head: str | nn.Module, feature_shape: tuple[int, ...], n_out: int, *, ps: float = 0.5,
    y_range: tuple[float, float] | None = None, hidden: int | Sequence[int] = 512, concat_pool: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """`_build_head`, ending in `SigmoidRange(*y_range)` when a `y_range` is given (recorded in the config).

    `hidden` and `concat_pool` shape the fastai head (see `fastai_head`); the config records them only
    when they differ from fastai's defaults, so that a default head's config stays as it was.
    """
    if head != "fastai" and (hidden != 512 or not concat_pool):
        raise ValueError(f"hidden (fastai's lin_ftrs) and concat_pool shape the 'fastai' head, not {head!r}; "
                         "leave them out, or use head='fastai'.")
    module, config = _build_head(head, feature_shape, n_out, ps=ps, hidden=hidden, concat_pool=concat_pool)
    if y_range is None:
        return module, config
    low, high = (float(value) for value in y_range)
    ranged = SigmoidRange(low, high)
    # Appended to the Sequential heads, so their parameter names (and the parameter groups) do not change.
    module = module.append(ranged) if isinstance(module, nn.Sequential) else nn.Sequential(module, ranged)
    return module, {**config, "y_range": [low, high]}


def _build_head(
    head: str | nn.Module, feature_shape: tuple[int, ...], n_out: int, *, ps: float = 0.5,
    hidden: int | Sequence[int] = 512, concat_pool: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the head named by ``head`` (or check a user module) for body features of ``feature_shape``.

    Args:
        head: ``"fastai"``, ``"linear"`` or an ``nn.Module`` used as it is.
        feature_shape: shape of the body's output for one image, ``(1, C, H, W)`` or ``(1, C)``; a
            2-D shape means the body already pooled, so the head does not pool.
        n_out: number of classes.
        ps: dropout of the fastai head.
        hidden, concat_pool: the fastai head's hidden widths and pooling (see `fastai_head`).

    Returns:
        The head and its JSON-able config: ``{"kind": "fastai", "ps": ps}``, ``{"kind": "linear"}`` or
        ``{"kind": "custom", "class": name}`` (a custom head must be rebuilt by the user on load).

    Example:
        >>> head, config = build_head("linear", (1, 512, 7, 7), 10)
        >>> config
        {'kind': 'linear'}
    """
    pooled, num_features = len(feature_shape) == 2, feature_shape[1]
    if head == "fastai":
        config: dict[str, Any] = {"kind": "fastai", "ps": ps}
        if hidden != 512:
            config["hidden"] = [hidden] if isinstance(hidden, int) else list(hidden)
        if not concat_pool:
            config["concat_pool"] = False
        module = fastai_head(num_features, n_out, ps=ps, hidden=hidden, pool=not pooled, concat_pool=concat_pool)
        return module, config
    if head == "linear":
        return linear_head(num_features, n_out, pool=not pooled), {"kind": "linear"}
    if not isinstance(head, nn.Module):
        raise TypeError(f"head must be 'fastai', 'linear' or an nn.Module, got {head!r}.")
    # Run the user's module once on dummy features so that a wrong shape fails here, not mid-fit.
    was_training = head.training
    try:
        with torch.no_grad():
            out_shape = tuple(head.eval()(torch.zeros(2, *feature_shape[1:])).shape)
    except Exception as error:  # any failure of the user's module, reported with the shapes involved
        raise ValueError(
            f"The custom head fails on body features of shape {list(feature_shape[1:])}: {error}"
        ) from error
    finally:
        head.train(was_training)
    if out_shape != (2, n_out):
        raise ValueError(
            f"The custom head maps features {list(feature_shape[1:])} to {list(out_shape[1:])}, expected [{n_out}]."
        )
    return head, {"kind": "custom", "class": type(head).__name__}


def _check_head_args(num_features: int, n_out: int, ps: float) -> None:
    if num_features < 1:
        raise ValueError(f"num_features must be >= 1, got {num_features}.")
    if not isinstance(n_out, int) or isinstance(n_out, bool) or n_out < 1:
        raise ValueError(f"n_out must be a positive int (the number of classes), got {n_out!r}.")
    if not 0.0 <= ps < 1.0:
        raise ValueError(f"ps (dropout probability) must be in [0, 1), got {ps}.")
