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

import torch

from unfreeze.inference.predict import get_preds
from unfreeze.inference.thresholds import best_threshold, f1_at_thresholds
from unfreeze.tasks import MultiLabel

__all__ = ["ThresholdChoice", "tune_threshold"]


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold, its validation F1 and the F1 the previous threshold gave.

    Attributes:
        threshold: The F1-optimal threshold for every class.
        f1: Macro F1 on the validation set at `threshold`.
        previous: The task's threshold before tuning.
        previous_f1: Macro F1 at `previous`.
        task: A `MultiLabel` task deciding at `threshold`.
    """

    threshold: float
    f1: float
    previous: float
    previous_f1: float
    task: MultiLabel

    def describe(self) -> dict[str, Any]:
        """Plain values for summary.json."""
        return {"threshold": self.threshold, "chosen_by": "F1 on the validation set", "f1": self.f1,
                "previous": self.previous, "previous_f1": self.previous_f1}

    def sentence(self) -> str:
        """One line for the end of a run."""
        return (f"threshold {self.threshold:.2f} chosen on validation (F1 {self.f1:.4f}; "
                f"{self.previous:.2f} gave {self.previous_f1:.4f})")


def tune_threshold(learner: Any) -> ThresholdChoice:
    """Choose the multi-label threshold that maximizes macro F1 on `learner`'s validation set.

    Args:
        learner: A learner (any `Predictor`) with a `MultiLabel` task and labelled validation data.

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
    threshold, f1 = best_threshold(probs, targets)
    previous = float(task.threshold)
    previous_f1 = float(f1_at_thresholds(probs, targets, torch.tensor([previous]))[0][0])
    return ThresholdChoice(threshold, f1, previous, previous_f1, MultiLabel(threshold=threshold))
