"""fastai's metric classes (`F1Score`, `Precision`, `Recall`, `RocAuc`, `RocAucBinary`, `BalancedAccuracy`)
and the regression metrics (`mse`, `mae`, `rmse`, `R2Score`), computed over the whole validation set.

fastai builds these from scikit-learn's functions; here each is an object that takes the learner's
logits `[N, C]` and targets `[N]` of the whole set (the learner gathers them first, as for every
metric) and computes the score from the confusion counts or ranks, with scikit-learn's definitions and
fastai's defaults (`average="binary"`, `pos_label=1`; tests compare each with scikit-learn). A class
with no predicted or no actual item scores 0 where scikit-learn would warn and give 0. The column name
is scikit-learn's function name, as in fastai's table: `F1Score()` shows as "f1_score".

Example:
    >>> f1 = F1Score(average="macro")
    >>> f1(torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]), torch.tensor([0, 1, 1]))
    0.6666666666666666
"""

from __future__ import annotations

from typing import Any

import torch

from unfreeze.train.metrics import MetricValue, mae, mse, r2_score, rmse

__all__ = ["BalancedAccuracy", "F1Score", "Precision", "R2Score", "Recall", "RocAuc", "RocAucBinary", "mae", "mse",
           "r2_score", "rmse"]

_AVERAGES = ("binary", "macro", "micro", "weighted")


def _column_name(metric: Any) -> str:
    """The metric's column name, scikit-learn's function name (`__name__`, which the learner reads)."""
    return str(metric.__name__)


# fastai's metric objects carry their column name as `.name` (`F1Score().name == "f1_score"`); user code
# that labels plots or logs by it reads the same string the learner's table shows.
_NAME = property(_column_name, doc="The column name, as fastai's `metric.name`: `F1Score().name == 'f1_score'`.")


class _CountMetric:
    """A single-label score from the per-class counts of hits, predictions and actual items."""

    __name__ = "metric"
    name = _NAME

    def __init__(self, average: str = "binary", pos_label: int = 1, labels: Any = None,
                 sample_weight: Any = None, axis: int = -1) -> None:
        if average not in _AVERAGES:
            none = " (None gives one score per class; a metric's column holds one number)" if average is None else ""
            raise ValueError(f"{type(self).__name__}: average must be one of {_AVERAGES}, got {average!r}{none}.")
        if sample_weight is not None or labels is not None or axis != -1:
            raise ValueError(f"{type(self).__name__}: labels=, sample_weight= and axis= are not supported by unfreeze; "
                             "leave them out (every class and item counts once).")
        self.average, self.pos_label = average, pos_label

    def _counts(self, preds: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n_classes = preds.shape[-1]
        predicted_class = preds.argmax(dim=-1)
        targets = targets.long()
        if self.average == "binary" and n_classes != 2:
            raise ValueError(f"{type(self).__name__}(average='binary') scores two classes; the data has {n_classes}. "
                             "Pass average='macro', 'micro' or 'weighted', as scikit-learn and fastai ask.")
        hits = torch.bincount(targets[predicted_class == targets], minlength=n_classes).double()
        predicted = torch.bincount(predicted_class, minlength=n_classes).double()
        actual = torch.bincount(targets, minlength=n_classes).double()
        return hits, predicted, actual

    def _score(self, hits: torch.Tensor, predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, preds: torch.Tensor, targets: torch.Tensor) -> MetricValue:
        hits, predicted, actual = self._counts(preds, targets)
        if self.average == "micro":
            hits, predicted, actual = (counts.sum(0, keepdim=True) for counts in (hits, predicted, actual))
        per_class = self._score(hits, predicted, actual)
        if self.average == "binary":
            return MetricValue(per_class[self.pos_label].item())
        # scikit-learn averages over the labels present in the targets or the predictions.
        present = (predicted + actual) > 0 if self.average != "micro" else torch.ones_like(actual, dtype=torch.bool)
        if self.average == "weighted":
            return MetricValue(float((per_class * actual).sum() / actual.sum().clamp(min=1)))
        return MetricValue(per_class[present].mean().item() if present.any() else 0.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(average={self.average!r})"


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-12), torch.zeros_like(numerator))


class Precision(_CountMetric):
    """fastai's `Precision(average="binary", pos_label=1)`: hits / predicted, per class then averaged."""

    __name__ = "precision_score"

    def _score(self, hits: torch.Tensor, predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
        return _ratio(hits, predicted)


class Recall(_CountMetric):
    """fastai's `Recall(average="binary", pos_label=1)`: hits / actual, per class then averaged."""

    __name__ = "recall_score"

    def _score(self, hits: torch.Tensor, predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
        return _ratio(hits, actual)


class F1Score(_CountMetric):
    """fastai's `F1Score(average="binary", pos_label=1)`: 2 hits / (predicted + actual), then averaged.

    Example:
        >>> learn = vision_learner(dls, "resnet18", metrics=[F1Score(average="macro")])  # doctest: +SKIP
    """

    __name__ = "f1_score"

    def _score(self, hits: torch.Tensor, predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
        return _ratio(2 * hits, predicted + actual)


class BalancedAccuracy:
    """fastai's `BalancedAccuracy(adjusted=False)`: the mean recall over the classes present in the targets.

    With `adjusted=True`, rescaled so that chance scores 0 and perfect 1 (scikit-learn's definition); a
    ValueError when the targets hold fewer than two classes (chance is 1 there).
    """

    __name__ = "balanced_accuracy_score"
    name = _NAME

    def __init__(self, axis: int = -1, sample_weight: Any = None, adjusted: bool = False) -> None:
        if sample_weight is not None or axis != -1:
            raise ValueError("BalancedAccuracy: sample_weight= and axis= are not supported by unfreeze; leave them "
                             "out.")
        self.adjusted = adjusted

    def __call__(self, preds: torch.Tensor, targets: torch.Tensor) -> MetricValue:
        n_classes = preds.shape[-1]
        targets = targets.long()
        predicted_class = preds.argmax(dim=-1)
        actual = torch.bincount(targets, minlength=n_classes).double()
        hits = torch.bincount(targets[predicted_class == targets], minlength=n_classes).double()
        present = actual > 0
        score = (hits[present] / actual[present]).mean().item() if present.any() else 0.0
        if self.adjusted:
            if int(present.sum()) < 2:  # chance is 1: the rescaling below would divide by zero
                found = "no class" if not present.any() else f"one class (index {int(present.nonzero()[0])})"
                raise ValueError("BalancedAccuracy(adjusted=True) rescales the score by the chance level, 1 / the "
                                 f"classes in the targets; these validation targets hold {found}, where it is "
                                 "undefined. Add validation images of another class, or use adjusted=False.")
            chance = 1.0 / int(present.sum())
            score = (score - chance) / (1.0 - chance)
        return MetricValue(score)


def _binary_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counting half
    (the Mann-Whitney statistic from average ranks), which equals the trapezoidal ROC area."""
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    if n_positive == 0 or n_negative == 0:
        raise ValueError("RocAuc needs at least one positive and one negative item for every class it scores; "
                         "the validation set has only one kind for a class. Add validation images of each class.")
    order = scores.double().argsort()
    sorted_scores = scores.double()[order]
    ranks = torch.empty_like(sorted_scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # Tied scores share their average rank.
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average_rank = ends - (counts.double() - 1) / 2
    ranks[order] = average_rank[inverse]
    rank_sum = ranks[positive].sum().item()
    return (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


class RocAuc:
    """fastai's `RocAuc(average="macro", multi_class="ovr")`: one-vs-rest ROC AUC on the softmax
    probabilities, averaged over the classes ("macro") or weighted by their counts ("weighted").

    With two classes it is the AUC of the second class's probability (scikit-learn's binary case).
    """

    __name__ = "roc_auc_score"
    name = _NAME

    def __init__(self, axis: int = -1, average: str = "macro", sample_weight: Any = None, max_fpr: Any = None,
                 multi_class: str = "ovr") -> None:
        if multi_class not in ("ovr", "ovo"):
            raise ValueError(f"RocAuc: multi_class must be 'ovr' or 'ovo' (fastai's choices), got {multi_class!r}.")
        if multi_class == "ovo" or max_fpr is not None or sample_weight is not None or axis != -1:
            raise ValueError("RocAuc: unfreeze computes one-vs-rest AUC only; multi_class='ovo', max_fpr=, "
                             "sample_weight= and axis= are not supported. Leave them out.")
        if average not in ("macro", "weighted"):
            raise ValueError(f"RocAuc: average must be 'macro' or 'weighted', got {average!r}.")
        self.average = average

    def __call__(self, preds: torch.Tensor, targets: torch.Tensor) -> MetricValue:
        probs, targets = preds.float().softmax(dim=-1), targets.long()
        if probs.shape[-1] == 2:
            return MetricValue(_binary_auc(probs[:, 1], targets == 1))
        aucs = torch.tensor([_binary_auc(probs[:, c], targets == c) for c in range(probs.shape[-1])],
                            dtype=torch.float64)
        if self.average == "weighted":
            counts = torch.bincount(targets, minlength=probs.shape[-1]).double()
            return MetricValue(float((aucs * counts).sum() / counts.sum()))
        return MetricValue(aucs.mean().item())


class RocAucBinary(RocAuc):
    """fastai's `RocAucBinary()`: the ROC AUC of the second class's softmax probability (two classes)."""

    def __init__(self, axis: int = -1, average: str = "macro", sample_weight: Any = None, max_fpr: Any = None,
                 multi_class: str = "raise") -> None:
        super().__init__(axis, average, sample_weight, max_fpr, "ovr")

    def __call__(self, preds: torch.Tensor, targets: torch.Tensor) -> MetricValue:
        if preds.shape[-1] != 2:
            raise ValueError(f"RocAucBinary scores two classes; the data has {preds.shape[-1]}. Use RocAuc().")
        return super().__call__(preds, targets)


class R2Score:
    """fastai's `R2Score()`: `r2_score` as a metric object (column "r2_score")."""

    __name__ = "r2_score"
    name = _NAME

    def __init__(self, sample_weight: Any = None) -> None:
        if sample_weight is not None:
            raise ValueError("R2Score: sample_weight= is not supported by unfreeze; leave it out.")

    def __call__(self, preds: torch.Tensor, targets: torch.Tensor) -> MetricValue:
        return r2_score(preds, targets)
