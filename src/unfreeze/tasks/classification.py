"""Classification tasks: what a label is and how the network's outputs become class predictions.

A task owns everything that differs between single-label and multi-label classification, so the rest
of the library asks it instead of assuming softmax and arg-max:

| | `SingleLabel` | `MultiLabel(threshold)` |
|---|---|---|
| a label | one class name | a set of class names (maybe empty) |
| target tensor | long class index [N] | float multi-hot [N, C] |
| loss | cross-entropy | binary cross-entropy with logits |
| activation | softmax | sigmoid |
| decoded prediction | arg-max index | classes whose probability >= threshold |
| default metrics | error_rate | accuracy_multi, f1_multi |

Data encodes labels with it (`encode`), the loop computes the loss with it, prediction, interpretation
and export decode with it. A task is plain data (`config()` / `task_from_config`), so an export can
carry it as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unfreeze.tasks.item_losses import labelled_item_losses

__all__ = ["Label", "MultiLabel", "SingleLabel"]

# A label as items carry it: one class name, or a tuple of class names for multi-label data.
Label = str | tuple[str, ...]


@dataclass(frozen=True)
class SingleLabel:
    """Each image has exactly one class: softmax, cross-entropy, arg-max.

    Example:
        >>> task = SingleLabel()
        >>> task.encode(["dog", "cat"], ["cat", "dog"]).tolist()
        [1, 0]
        >>> task.decode(torch.tensor([[0.2, 0.8]])).tolist()
        [1]
    """

    name: str = "single_label"

    def encode(self, labels: Sequence[Label], vocab: Sequence[str]) -> torch.Tensor:
        """Class index per label (long [N]); -1 for an unlabelled item ("") or an unknown class."""
        lookup = {label: index for index, label in enumerate(vocab)}
        return torch.tensor([lookup.get(label, -1) for label in labels], dtype=torch.long)

    def classes_of(self, label: Label) -> tuple[str, ...]:
        """The class names one item's label holds (none for an unlabelled item)."""
        return (label,) if isinstance(label, str) and label else ()

    def balanced_weights(self, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
        """Per-class loss weights against imbalance: `n_items / (n_classes * count)`, 0 for absent classes.

        Example:
            >>> SingleLabel().balanced_weights(torch.tensor([0, 0, 0, 1]), 2).tolist()
            [0.6666666865348816, 2.0]
        """
        labelled = targets[targets >= 0]
        counts = torch.bincount(labelled, minlength=n_classes).float()
        return torch.where(counts > 0, len(labelled) / (n_classes * counts.clamp(min=1)), torch.zeros(()))

    def item_weights(self, targets: torch.Tensor) -> torch.Tensor:
        """Sampling weight per item so that every class is drawn equally often (1 / its class's count)."""
        counts = torch.bincount(targets.clamp(min=0)).float()
        weights = 1.0 / counts[targets.clamp(min=0)]
        return torch.where(targets >= 0, weights, torch.zeros(()))

    def chance_loss(self, n_classes: int) -> float:
        """The loss of a model that knows nothing (equal probabilities): ln(n_classes)."""
        return math.log(max(n_classes, 1))

    def loss(self, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
        """Cross-entropy, optionally weighted per class and label-smoothed."""
        return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)

    def item_losses(self, logits: torch.Tensor, targets: torch.Tensor,
                    loss_func: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        """Unreduced loss per item under `loss_func` (default: `loss()`), NaN where the item is unlabelled."""
        return labelled_item_losses(loss_func or self.loss(), logits, targets, self.labelled(targets))

    def labelled(self, targets: torch.Tensor) -> torch.Tensor:
        """Bool [N]: which items have a label."""
        return targets >= 0

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities: softmax over classes."""
        return logits.softmax(dim=-1)

    def decode(self, probs: torch.Tensor) -> torch.Tensor:
        """Predicted class index per item (long [N])."""
        return probs.argmax(dim=-1)

    def labels_of(self, decoded: torch.Tensor, vocab: Sequence[str]) -> str:
        """The class name of one decoded prediction."""
        return vocab[int(decoded)]

    def default_metrics(self) -> list[str]:
        return ["error_rate"]

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


@dataclass(frozen=True)
class MultiLabel:
    """Each image has any number of classes (none included): sigmoid, binary cross-entropy, threshold.

    Args:
        threshold: A class is predicted when its probability is at least this (fastai's default 0.5);
            a tuple gives each class its own (`tune_threshold(learn, per_class=True)` chooses them).

    Example:
        >>> task = MultiLabel(threshold=0.5)
        >>> task.encode([("cat", "dog"), ()], ["cat", "dog", "fox"]).tolist()
        [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
        >>> task.labels_of(torch.tensor([True, False, True]), ["cat", "dog", "fox"])
        ('cat', 'fox')
    """

    threshold: float | tuple[float, ...] = 0.5
    name: str = "multi_label"

    def __post_init__(self) -> None:
        if isinstance(self.threshold, (list, tuple)):
            object.__setattr__(self, "threshold", tuple(float(value) for value in self.threshold))  # hashable
        values = self.threshold if isinstance(self.threshold, tuple) else (self.threshold,)
        if not values or not all(0.0 < float(value) < 1.0 for value in values):
            raise ValueError(f"threshold must be between 0 and 1 (exclusive), or one such number per class, got "
                             f"{self.threshold!r}.")

    def cutoffs(self, probs: torch.Tensor) -> torch.Tensor:
        """The threshold as a tensor that broadcasts over `probs` [N, C] (a scalar, or one per class)."""
        return torch.as_tensor(self.threshold, dtype=probs.dtype, device=probs.device)

    def encode(self, labels: Sequence[Label], vocab: Sequence[str]) -> torch.Tensor:
        """Multi-hot float [N, C]; an unlabelled item (None) gets a row of NaN, which no loss counts."""
        lookup = {label: index for index, label in enumerate(vocab)}
        targets = torch.zeros(len(labels), len(vocab))
        for row, label in enumerate(labels):
            if label is None:
                targets[row] = math.nan
                continue
            for name in self.classes_of(label):
                if name in lookup:
                    targets[row, lookup[name]] = 1.0
        return targets

    def classes_of(self, label: Label) -> tuple[str, ...]:
        if label is None:
            return ()
        return (label,) if isinstance(label, str) else tuple(label)

    def named_threshold(self, vocab: Sequence[str]) -> float | dict[str, float]:
        """The threshold as reports show it: one number, or each class's by name (/health, evaluate --json).

        Example:
            >>> MultiLabel(threshold=(0.3, 0.7)).named_threshold(["haze", "road"])
            {'haze': 0.3, 'road': 0.7}
        """
        if isinstance(self.threshold, tuple):
            return {name: float(value) for name, value in zip(vocab, self.threshold, strict=True)}
        return float(self.threshold)

    def balanced_weights(self, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
        """Positive weight per class against imbalance: negatives / positives (as BCE's pos_weight).

        Example:
            >>> targets = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
            >>> MultiLabel().balanced_weights(targets, 2).tolist()
            [3.0, 1.0]
        """
        labelled = targets[self.labelled(targets)]
        positives = labelled.sum(dim=0)
        return (len(labelled) - positives) / positives.clamp(min=1)

    def item_weights(self, targets: torch.Tensor) -> torch.Tensor:
        """Sampling weight per item: the mean inverse frequency of its classes (1 for an item with none)."""
        labelled = self.labelled(targets)
        frequency = targets[labelled].sum(dim=0).clamp(min=1)
        safe = torch.nan_to_num(targets)
        per_item = (safe / frequency).sum(dim=-1) / safe.sum(dim=-1).clamp(min=1)
        return torch.where(labelled, torch.where(safe.sum(dim=-1) > 0, per_item, 1.0 / len(targets)), 0.0)

    def chance_loss(self, n_classes: int) -> float:
        """The loss of a model that knows nothing (probability 1/2 for every class): ln 2."""
        return math.log(2.0)

    def loss(self, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
        """Binary cross-entropy with logits; `class_weights` weigh each class's positives (pos_weight)."""
        if label_smoothing:
            raise ValueError("label_smoothing applies to single-label tasks; leave it at 0 for multi-label data.")
        return nn.BCEWithLogitsLoss(pos_weight=class_weights)

    def item_losses(self, logits: torch.Tensor, targets: torch.Tensor,
                    loss_func: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        """Unreduced loss per item (its classes' mean) under `loss_func` (default: `loss()`), NaN where unlabelled."""
        return labelled_item_losses(loss_func or self.loss(), logits, targets, self.labelled(targets))

    def labelled(self, targets: torch.Tensor) -> torch.Tensor:
        return ~targets.isnan().any(dim=-1)

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities: an independent sigmoid per class."""
        return logits.sigmoid()

    def decode(self, probs: torch.Tensor) -> torch.Tensor:
        """Bool [N, C]: the classes at or above the threshold."""
        return probs >= self.cutoffs(probs)

    def labels_of(self, decoded: torch.Tensor, vocab: Sequence[str]) -> tuple[str, ...]:
        """The class names of one decoded prediction (a possibly empty tuple)."""
        return tuple(vocab[index] for index in torch.nonzero(decoded).flatten().tolist())

    def default_metrics(self) -> list[str]:
        return ["accuracy_multi", "f1_multi"]

    def config(self) -> dict[str, Any]:
        threshold = list(self.threshold) if isinstance(self.threshold, tuple) else float(self.threshold)
        return {"name": self.name, "threshold": threshold}
