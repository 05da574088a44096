"""The multi-label decision threshold, chosen on the validation set after training (F1-optimal).

A small multi-label run often keeps its probabilities below the fixed 0.5 and predicts nothing
(issue 17). `tune_threshold` scores every candidate threshold on the validation predictions with
`inference.thresholds` (macro F1, ties towards 0.5) and returns the choice with the task that carries
it: the caller sets `learn.task = choice.task`, and since the export stores the task's threshold,
`load_learner`, `unfreeze predict` and `unfreeze serve` decide with it after loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unfreeze.inference.predict import get_preds
from unfreeze.inference.thresholds import best_threshold, best_thresholds
from unfreeze.tasks import MultiLabel
from unfreeze.train.metrics import f1_multi

__all__ = ["ThresholdChoice", "tune_threshold"]


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold, its validation F1 and the F1 the previous threshold gave.

    Attributes:
        threshold: The F1-optimal threshold for every class, or one per class (a tuple).
        f1: Macro F1 on the validation set at `threshold`.
        previous: The task's threshold before tuning.
        previous_f1: Macro F1 at `previous`.
        task: A `MultiLabel` task deciding at `threshold`.
    """

    threshold: float | tuple[float, ...]
    f1: float
    previous: float | tuple[float, ...]
    previous_f1: float
    task: MultiLabel

    def describe(self) -> dict[str, Any]:
        """Plain values for summary.json."""
        return {"threshold": _plain(self.threshold), "chosen_by": "F1 on the validation set", "f1": self.f1,
                "previous": _plain(self.previous), "previous_f1": self.previous_f1}

    def sentence(self) -> str:
        """One line for the end of a run."""
        return (f"threshold {_shown(self.threshold)} chosen on validation (F1 {self.f1:.4f}; "
                f"{_shown(self.previous)} gave {self.previous_f1:.4f})")


def _plain(threshold: float | tuple[float, ...]) -> float | list[float]:
    return list(threshold) if isinstance(threshold, tuple) else threshold


def _shown(threshold: float | tuple[float, ...]) -> str:
    if isinstance(threshold, tuple):
        return "per class " + "/".join(f"{value:.2f}" for value in threshold)
    return f"{threshold:.2f}"


# per_class="auto": one threshold per class when every class has this many positives in validation.
MIN_POSITIVES = 10


def tune_threshold(learner: Any, per_class: bool | str = False) -> ThresholdChoice:
    """Choose the multi-label threshold that maximizes macro F1 on `learner`'s validation set.

    Args:
        learner: A learner (any `Predictor`) with a `MultiLabel` task and labelled validation data.
        per_class: One threshold per class, each maximizing that class's F1 (fits the validation set
            more closely: prefer the global one when classes have few positives); "auto": per class
            when every class has `MIN_POSITIVES` positive validation images, else one global threshold.

    Raises:
        ValueError: The task is not multi-label, or no validation item is labelled.

    Example:
        >>> choice = tune_threshold(learn)  # doctest: +SKIP
        >>> learn.task = choice.task; learn.export("model.unfreeze")  # doctest: +SKIP
    """
    task = learner.task
    if not isinstance(task, MultiLabel):
        raise ValueError(f"Choosing a decision threshold is for multi-label tasks; this learner's task is "
                         f"{task.config()['name']}, which takes the most probable class.")
    probs, targets = get_preds(learner)[:2]
    labelled = task.labelled(targets)
    probs, targets = probs[labelled], targets[labelled]
    if len(targets) == 0:
        raise ValueError("Choosing a threshold needs labelled validation images; the validation set has none.")
    if per_class == "auto":
        per_class = bool((targets > 0.5).sum(0).min() >= MIN_POSITIVES)
    chosen = MultiLabel(threshold=tuple(best_thresholds(probs, targets).tolist()) if per_class
                        else best_threshold(probs, targets)[0])

    def f1_at(candidate: MultiLabel) -> float:
        return float(f1_multi(probs, targets, threshold=candidate.cutoffs(probs), sigmoid=False))

    return ThresholdChoice(chosen.threshold, f1_at(chosen), task.threshold, f1_at(task), chosen)
