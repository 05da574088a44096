"""Classification metrics computed over a whole validation set.

Every metric takes the full tensors of logits (or probabilities) `[N, C]` and integer targets `[N]`
and returns a float. The learner gathers the predictions of the whole set first, so a metric is never
an average of per-batch values (which is wrong for F1 and for a last, smaller batch).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import torch
from torchmetrics.functional.classification import multiclass_f1_score

__all__ = ["Metric", "accuracy", "error_rate", "f1_score", "resolve_metrics", "top_k_accuracy"]

Metric = Callable[[torch.Tensor, torch.Tensor], float]


def accuracy(preds: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of items whose arg-max prediction equals the target.

    Example:
        >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        0.5
    """
    return (preds.argmax(dim=-1) == targets).float().mean().item()


def error_rate(preds: torch.Tensor, targets: torch.Tensor) -> float:
    """1 - accuracy, fastai's default metric.

    Example:
        >>> error_rate(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        0.5
    """
    return 1.0 - accuracy(preds, targets)


def top_k_accuracy(preds: torch.Tensor, targets: torch.Tensor, k: int = 5) -> float:
    """Fraction of items whose target is among the `k` highest predictions.

    With fewer than `k` classes every item counts as correct, as in fastai.

    Example:
        >>> top_k_accuracy(torch.tensor([[0.5, 0.3, 0.2]]), torch.tensor([1]), k=2)
        1.0
    """
    k = min(k, preds.shape[-1])
    top = preds.topk(k, dim=-1).indices
    return (top == targets.unsqueeze(-1)).any(dim=-1).float().mean().item()


def f1_score(preds: torch.Tensor, targets: torch.Tensor) -> float:
    """Macro-averaged F1 over all classes (torchmetrics).

    Example:
        >>> f1_score(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 1]))
        1.0
    """
    return multiclass_f1_score(preds, targets, num_classes=preds.shape[-1], average="macro").item()


_BUILTIN: dict[str, Metric] = {
    "accuracy": accuracy,
    "error_rate": error_rate,
    "top_k_accuracy": top_k_accuracy,
    "f1_score": f1_score,
}


def metric_name(metric: Metric) -> str:
    """The column name of a metric in logs and tables."""
    return getattr(metric, "__name__", type(metric).__name__)


def resolve_metrics(metrics: Metric | str | Sequence[Metric | str] | None) -> list[Metric]:
    """Turn the user's `metrics=` argument into a list of callables.

    Accepts a callable, a built-in metric name, or a list of either.

    Raises:
        ValueError: For an unknown metric name, with the closest built-in names.
        TypeError: For something that is neither a name nor a callable.

    Example:
        >>> [metric_name(m) for m in resolve_metrics(["error_rate", accuracy])]
        ['error_rate', 'accuracy']
    """
    if metrics is None:
        return []
    if callable(metrics) or isinstance(metrics, str):
        metrics = [metrics]
    resolved: list[Metric] = []
    for metric in metrics:
        if isinstance(metric, str):
            if metric not in _BUILTIN:
                close = difflib.get_close_matches(metric, list(_BUILTIN), n=3, cutoff=0.4)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                raise ValueError(
                    f"Unknown metric {metric!r}.{hint} Built-in metrics: {', '.join(sorted(_BUILTIN))}; "
                    "or pass any callable f(preds, targets) -> float."
                )
            resolved.append(_BUILTIN[metric])
        elif callable(metric):
            resolved.append(metric)
        else:
            raise TypeError(
                f"A metric must be a name or a callable f(preds, targets) -> float, got {metric!r}."
            )
    return resolved
