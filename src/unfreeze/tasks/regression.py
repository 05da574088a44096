"""Regression: each image has one or more numbers (fastai's `RegressionBlock`), or points (`PointBlock`).

| | `Regression()` | `Regression(points=True)` |
|---|---|---|
| a label | a tuple of numbers | a tuple x0, y0, x1, y1, ... scaled to [-1, 1] |
| target tensor | float [N, K] (a NaN row: unlabelled) | the same, K = 2 × points |
| loss | mean squared error (or L1 with `loss="l1"`) | the same |
| activation | none: the model's outputs are the values (a `y_range` sits on the head) | the same |
| augmentation | the image only | the points move with the image (flips, rotation, zoom) |
| default metrics | mae, r2_score | mae |

The vocab of regression data names the outputs ("value", or the CSV's columns; "x0", "y0", ... for
points), so `len(vocab)` is the number of outputs, as `len(vocab)` is the number of classes elsewhere.

Example:
    >>> task = Regression()
    >>> task.encode([(1.5,), None], ["value"]).tolist()
    [[1.5], [nan]]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unfreeze.losses import L1LossFlat, MSELossFlat
from unfreeze.tasks.item_losses import labelled_item_losses

__all__ = ["Regression", "point_names"]

LOSSES = ("mse", "l1")


def point_names(n_points: int) -> list[str]:
    """The output names of `n_points` points: x0, y0, x1, y1, ...

    Example:
        >>> point_names(2)
        ['x0', 'y0', 'x1', 'y1']
    """
    return [f"{axis}{index}" for index in range(n_points) for axis in ("x", "y")]


@dataclass(frozen=True)
class Regression:
    """Numbers per image: no activation, mean squared error, the outputs are the predictions.

    Args:
        points: The numbers are (x, y) points in [-1, 1] (x left to right, y top to bottom), which
            augmentation moves with the image.
        loss: "mse" (fastai's `MSELossFlat`, its default for regression) or "l1" (`L1LossFlat`).
    """

    points: bool = False
    loss_name: str = "mse"
    name: str = "regression"

    def __post_init__(self) -> None:
        if self.loss_name not in LOSSES:
            raise ValueError(f"Regression(loss_name=...) must be one of {LOSSES}, got {self.loss_name!r}.")

    def encode(self, labels: Sequence[Any], vocab: Sequence[str]) -> torch.Tensor:
        """Float [N, K]; an unlabelled item (None or an empty tuple) gets a row of NaN, which no loss counts.

        Raises:
            ValueError: A label does not hold one number per output.
        """
        targets = torch.full((len(labels), len(vocab)), math.nan)
        for row, label in enumerate(labels):
            if label is None or (isinstance(label, (tuple, list)) and not label) or label == "":
                continue
            values = torch.as_tensor(label, dtype=torch.float32).reshape(-1)
            if len(values) != len(vocab):
                raise ValueError(f"Item {row} has {len(values)} value(s) ({label!r}) but the data has {len(vocab)} "
                                 f"outputs ({', '.join(vocab)}). Give every item one number per output.")
            targets[row] = values
        return targets

    def classes_of(self, label: Any) -> tuple[str, ...]:
        """Regression labels name no classes."""
        return ()

    def balanced_weights(self, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
        raise ValueError("Class weights balance classes; regression data has none. Leave class_weights out.")

    def item_weights(self, targets: torch.Tensor) -> torch.Tensor:
        raise ValueError("Balanced sampling draws classes equally often; regression data has none. Leave it out.")

    def chance_loss(self, n_classes: int) -> float:
        """Unknown for regression (it depends on the targets' spread): 0, so that only the best loss counts."""
        return 0.0

    def loss(self, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
        """Mean squared error (or L1) over every output of every item."""
        if class_weights is not None or label_smoothing:
            raise ValueError("class_weights and label_smoothing apply to classification, not regression data.")
        return MSELossFlat() if self.loss_name == "mse" else L1LossFlat()

    def item_losses(self, logits: torch.Tensor, targets: torch.Tensor,
                    loss_func: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        """Unreduced loss per item (the mean over its outputs) under `loss_func` (default: `loss()`), NaN where
        the item is unlabelled."""
        return labelled_item_losses(loss_func or self.loss(), logits.float(), targets, self.labelled(targets))

    def labelled(self, targets: torch.Tensor) -> torch.Tensor:
        return ~targets.isnan().any(dim=-1)

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """The outputs as they are: a regression model's outputs are its predictions."""
        return logits

    def decode(self, probs: torch.Tensor) -> torch.Tensor:
        return probs

    def labels_of(self, decoded: torch.Tensor, vocab: Sequence[str]) -> tuple[float, ...]:
        """The predicted numbers of one item, as a tuple of floats."""
        return tuple(float(value) for value in decoded.reshape(-1).tolist())

    def default_metrics(self) -> list[str]:
        return ["mae"] if self.points else ["mae", "r2_score"]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "points": self.points, "loss": self.loss_name}
