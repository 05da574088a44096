"""fastai's loss classes, for `Learner(..., loss_func=...)`: `CrossEntropyLossFlat`, `LabelSmoothingCrossEntropy`,
and for regression `MSELossFlat`, `L1LossFlat`.

unfreeze's own default loss comes from the task (`SingleLabel().loss()`, `MultiLabel().loss()`); these
classes exist so that fastai code naming them runs unchanged. Both take logits `[N, C]` and class
indices `[N]`, or class probabilities `[N, C]` (the targets of a batch that MixUp or CutMix mixed).

Example:
    >>> loss = LabelSmoothingCrossEntropy(eps=0.1)
    >>> round(loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0])).item(), 4)
    0.2269
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossEntropyLossFlat", "L1LossFlat", "LabelSmoothingCrossEntropy", "MSELossFlat"]

_REDUCTIONS = ("mean", "sum", "none")


def _is_probabilities(input: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether `target` holds class probabilities (mixed batches) rather than class indices."""
    return target.is_floating_point() and target.shape == input.shape


class CrossEntropyLossFlat(nn.CrossEntropyLoss):
    """fastai's `CrossEntropyLossFlat`: cross-entropy with the classes on `axis`, every other axis
    flattened into items. For image classification (`[N, C]` logits) it is `nn.CrossEntropyLoss`.

    Args:
        *args, **kwargs: `nn.CrossEntropyLoss`'s (`weight`, `ignore_index`, `reduction`, `label_smoothing`).
        axis: The class axis of the logits (fastai's default, -1).

    Example:
        >>> round(CrossEntropyLossFlat()(torch.zeros(2, 4), torch.tensor([0, 3])).item(), 4)  # log(4)
        1.3863
    """

    def __init__(self, *args: Any, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.axis = axis

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = input.shape[self.axis]
        # movedim keeps the other axes in order, so item i of the flattened logits is item i of the targets.
        flat = input.movedim(self.axis, -1).reshape(-1, n_classes)
        if _is_probabilities(input, target):  # MixUp / CutMix targets: class probabilities on the same axis
            return super().forward(flat, target.movedim(self.axis, -1).reshape(-1, n_classes))
        return super().forward(flat, target.reshape(-1))


class LabelSmoothingCrossEntropy(nn.Module):
    """fastai's label-smoothing cross-entropy (Szegedy et al. 2016), with fastai's formula:

        loss = eps / C * sum_c(-log p_c) + (1 - eps) * nll(log p, target, weight)

    Without `weight` this equals `nn.CrossEntropyLoss(label_smoothing=eps)`; with a weight only the
    target term is weighted, as in fastai (torch weights the smoothing term too).

    Args:
        eps: The share of the target moved evenly onto all classes, in [0, 1).
        weight: Optional per-class weights of the target term.
        reduction: "mean" (default), "sum" or "none".

    Example:
        >>> learn = Learner(dls, xresnet50(n_out=dls.c), loss_func=LabelSmoothingCrossEntropy())  # doctest: +SKIP
    """

    def __init__(self, eps: float = 0.1, weight: torch.Tensor | None = None, reduction: str = "mean") -> None:
        super().__init__()
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"LabelSmoothingCrossEntropy: eps must be in [0, 1), got {eps}; 0.1 is usual.")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"LabelSmoothingCrossEntropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        self.eps, self.reduction = eps, reduction
        self.weight: torch.Tensor | None
        self.register_buffer("weight", weight)  # moves with the module to the training device

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(input, dim=-1)
        smoothing = -log_probs.sum(dim=-1)
        if self.reduction == "mean":
            smoothing = smoothing.mean()
        elif self.reduction == "sum":
            smoothing = smoothing.sum()
        if _is_probabilities(input, target):  # MixUp / CutMix targets: the same formula on soft targets
            weighted = log_probs if self.weight is None else log_probs * self.weight
            target_term = -(target * weighted).sum(dim=-1)
            if self.reduction != "none":
                target_term = target_term.mean() if self.reduction == "mean" else target_term.sum()
        else:
            target_term = F.nll_loss(log_probs, target.long(), weight=self.weight, reduction=self.reduction)
        return smoothing * self.eps / input.shape[-1] + (1.0 - self.eps) * target_term


class _Flattened:
    """fastai's *Flat losses: predictions and targets flattened to one float vector before the loss (`axis`
    and `floatify` accepted for fastai's signature; the flattening makes them moot)."""

    def __init__(self, *args: Any, axis: int = -1, floatify: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.axis = axis

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(input.float().reshape(-1), target.float().reshape(-1))  # type: ignore[misc]


class MSELossFlat(_Flattened, nn.MSELoss):
    """fastai's `MSELossFlat`: mean squared error over every value, predictions and targets flattened
    (fastai's default loss for regression and points).

    Example:
        >>> MSELossFlat()(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 2.0]])).item()
        0.5
    """


class L1LossFlat(_Flattened, nn.L1Loss):
    """fastai's `L1LossFlat`: mean absolute error over every value, flattened.

    Example:
        >>> L1LossFlat()(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 2.0]])).item()
        0.5
    """
