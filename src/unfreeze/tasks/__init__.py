"""Tasks: what a label is and how the network's outputs become predictions.

A task owns everything that differs between single-label and multi-label classification and
regression, so the rest of the library asks it instead of assuming softmax and arg-max:
`SingleLabel` and `MultiLabel` (classification.py), `Regression` (regression.py; numbers or points).
Data encodes labels with it (`encode`), the loop computes the loss with it, prediction, interpretation
and export decode with it. A task is plain data (`config()` / `task_from_config`), so an export can
carry it as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from unfreeze.tasks.classification import Label, MultiLabel, SingleLabel
from unfreeze.tasks.regression import Regression, point_names

__all__ = ["Label", "MultiLabel", "Regression", "SingleLabel", "Task", "class_weights_tensor", "is_classification",
           "point_names", "task_from_config"]

Task = SingleLabel | MultiLabel | Regression


def is_classification(task: Task | None) -> bool:
    """Whether `task` predicts classes (single- or multi-label), as opposed to numbers."""
    return not isinstance(task, Regression)


def task_from_config(config: dict[str, Any] | None) -> Task:
    """Rebuild a task from its `config()`; None (an export from before tasks existed) is single-label.

    Example:
        >>> task_from_config({"name": "multi_label", "threshold": 0.3})
        MultiLabel(threshold=0.3, name='multi_label')
    """
    if config is None or config.get("name") == "single_label":
        return SingleLabel()
    if config.get("name") == "multi_label":
        threshold = config.get("threshold", 0.5)
        return MultiLabel(threshold=tuple(threshold) if isinstance(threshold, list) else float(threshold))
    if config.get("name") == "regression":
        return Regression(points=bool(config.get("points", False)), loss_name=str(config.get("loss", "mse")))
    raise ValueError(f"Unknown task {config.get('name')!r}; this version knows 'single_label', 'multi_label' and "
                     "'regression'.")


def class_weights_tensor(task: Task, spec: str | Sequence[float] | None, targets: torch.Tensor,
                         vocab: Sequence[str]) -> torch.Tensor | None:
    """The per-class loss weights that `class_weights=` asks for: "auto", one weight per class, or None.

    "auto" is the task's `balanced_weights` over the training targets.

    Raises:
        ValueError: `spec` is another string, or not one positive finite number per class.

    Example:
        >>> class_weights_tensor(SingleLabel(), [1.0, 3.0], torch.tensor([0, 1]), ["a", "b"])
        tensor([1., 3.])
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != "auto":
            raise ValueError(f"class_weights must be 'auto', one weight per class or None, got {spec!r}.")
        return task.balanced_weights(targets, len(vocab))
    weights = torch.as_tensor([float(value) for value in spec], dtype=torch.float32)
    if len(weights) != len(vocab) or not torch.isfinite(weights).all() or (weights <= 0).any():
        raise ValueError(f"class_weights needs {len(vocab)} positive numbers (one per class in "
                         f"{list(vocab)}), got {list(spec)!r}. Or pass 'auto'.")
    return weights
