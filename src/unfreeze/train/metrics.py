"""Classification metrics computed over a whole validation set.

Every metric takes the full tensors of logits (or probabilities) `[N, C]` and the targets (class
indices `[N]`, or multi-hot `[N, C]` for multi-label data) and returns a float (a `MetricValue`, which
also answers fastai's `.item()`). The learner gathers the
predictions of the whole set first, so a metric is never an average of per-batch values (which is
wrong for F1 and for a last, smaller batch). F1 is computed from the confusion counts here rather than
with torchmetrics, whose import pulls matplotlib and scipy into `import unfreeze`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from unfreeze.tasks import MultiLabel, Task

__all__ = ["Metric", "MetricValue", "ValidationResults", "accuracy", "accuracy_multi", "error_rate", "f1_multi",
           "f1_score", "mae", "metric_value", "mse", "r2_score", "resolve_metrics", "rmse", "top_k_accuracy"]

Metric = Callable[[torch.Tensor, torch.Tensor], float]


class MetricValue(float):
    """A metric's value: a float that also has `.item()`, as fastai's tensor-valued metrics do, so
    `accuracy(preds, targs).item()` runs unchanged.

    Example:
        >>> MetricValue(0.25).item(), MetricValue(0.25) + 1
        (0.25, 1.25)
    """

    def item(self) -> float:
        """The value as a plain float (what `.item()` gives on a 0-dim tensor)."""
        return float(self)


def metric_value(metric: Metric, value: Any) -> MetricValue:
    """What `metric` returned, as a MetricValue; a TypeError naming the metric if it is not one number.

    Example:
        >>> metric_value(accuracy, torch.tensor(0.5))
        0.5
    """
    shape = getattr(value, "shape", None)
    if shape is not None and math.prod(shape) != 1:  # per-item values: float() would name no metric
        found = f"{'a tensor' if isinstance(value, torch.Tensor) else 'an array'} of shape {tuple(shape)}"
    else:
        try:
            return MetricValue(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError):
            found = repr(value)[:80]
    raise TypeError(
        f"The metric {metric_name(metric)!r} returned {found}; a metric returns one number for the whole "
        "validation set (a float or a 0-d tensor): reduce it, e.g. return values.float().mean()."
    )


def _value(tensor: torch.Tensor) -> MetricValue:
    return MetricValue(tensor.item())


def _predicted_and_targets(preds: torch.Tensor, targets: torch.Tensor, axis: int) -> tuple[torch.Tensor, ...]:
    """The arg-max classes and the targets, both flattened (fastai's `flatten_check`): targets of shape
    [N, 1] compare item by item instead of broadcasting to an [N, N] table."""
    predicted, targets = preds.argmax(dim=axis).reshape(-1), targets.reshape(-1)
    if predicted.numel() != targets.numel():
        raise ValueError(f"Expected one target per prediction: {predicted.numel()} predictions (preds "
                         f"{tuple(preds.shape)}, classes along axis {axis}) but {targets.numel()} targets "
                         f"{tuple(targets.shape)}.")
    return predicted, targets


def accuracy(preds: torch.Tensor, targets: torch.Tensor, axis: int = -1) -> MetricValue:
    """Fraction of items whose arg-max prediction (along `axis`, the classes) equals the target.

    Example:
        >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        0.5
    """
    predicted, targets = _predicted_and_targets(preds, targets, axis)
    return _value((predicted == targets).float().mean())


def error_rate(preds: torch.Tensor, targets: torch.Tensor, axis: int = -1) -> MetricValue:
    """1 - accuracy, fastai's default metric.

    Example:
        >>> error_rate(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        0.5
    """
    return MetricValue(1.0 - accuracy(preds, targets, axis))


def top_k_accuracy(preds: torch.Tensor, targets: torch.Tensor, k: int = 5) -> MetricValue:
    """Fraction of items whose target is among the `k` highest predictions.

    With fewer than `k` classes every item counts as correct (fastai's raises "selected index k out of
    range" there; the default k=5 would otherwise fail on any set of 2 to 4 classes).

    Example:
        >>> top_k_accuracy(torch.tensor([[0.5, 0.3, 0.2]]), torch.tensor([1]), k=2)
        1.0
    """
    k = min(k, preds.shape[-1])
    top = preds.topk(k, dim=-1).indices
    return _value((top == targets.unsqueeze(-1)).any(dim=-1).float().mean())


def _macro_f1(true_positives: torch.Tensor, predicted: torch.Tensor, actual: torch.Tensor) -> MetricValue:
    """Mean over classes of 2tp / (predicted + actual), over classes that occur in either."""
    present = (predicted + actual) > 0
    if not present.any():
        return MetricValue(0.0)
    f1 = 2 * true_positives[present] / (predicted[present] + actual[present])
    return _value(f1.mean())


def f1_score(preds: torch.Tensor, targets: torch.Tensor) -> MetricValue:
    """Macro-averaged F1 over the classes that are predicted or present (as torchmetrics' macro F1).

    Example:
        >>> f1_score(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 1]))
        1.0
    """
    n_classes = preds.shape[-1]
    predicted_class = preds.argmax(dim=-1)
    predicted = torch.bincount(predicted_class, minlength=n_classes).float()
    actual = torch.bincount(targets, minlength=n_classes).float()
    hits = torch.bincount(targets[predicted_class == targets], minlength=n_classes).float()
    return _macro_f1(hits, predicted, actual)


def _threshold(threshold: float, thresh: float | None, metric: str) -> float:
    # fastai spells the keyword `thresh`: `partial(accuracy_multi, thresh=0.2)` must mean the same.
    if thresh is None:
        return threshold
    if threshold != 0.5:
        raise TypeError(f"{metric} got both threshold={threshold} and thresh={thresh}; they are the same setting "
                        "(thresh is fastai's name). Pass one.")
    return thresh


def _at_or_above(probs: torch.Tensor, threshold: Any) -> torch.Tensor:
    """probs >= threshold, for one threshold or one per class (a tuned task's tuple)."""
    return probs >= torch.as_tensor(threshold, dtype=probs.dtype, device=probs.device)


def accuracy_multi(preds: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5, sigmoid: bool = True, *,
                   thresh: float | None = None) -> MetricValue:
    """Multi-label accuracy: the fraction of (item, class) decisions that are right, as fastai's.

    A class counts as predicted strictly above the threshold, as in fastai (a logit of exactly 0 is a
    probability of 0.5: "not predicted" at 0.5).

    Args:
        preds: Logits (or probabilities with `sigmoid=False`), [N, C].
        targets: Multi-hot [N, C].
        threshold: A class is predicted above this probability.
        sigmoid: Apply a sigmoid to `preds` first.
        thresh: fastai's name for `threshold` (`partial(accuracy_multi, thresh=0.2)`).

    Example:
        >>> accuracy_multi(torch.tensor([[3.0, -3.0], [3.0, 3.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        0.75
    """
    threshold = _threshold(threshold, thresh, "accuracy_multi")
    probs = preds.sigmoid() if sigmoid else preds
    decided = probs > torch.as_tensor(threshold, dtype=probs.dtype, device=probs.device)
    return _value((decided == targets.bool()).float().mean())


def f1_multi(preds: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5, sigmoid: bool = True, *,
             thresh: float | None = None) -> MetricValue:
    """Multi-label macro F1: per class over the items, averaged over the classes present or predicted.

    `thresh` is fastai's name for `threshold`.

    Example:
        >>> f1_multi(torch.tensor([[3.0, -3.0], [3.0, 3.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        1.0
    """
    threshold = _threshold(threshold, thresh, "f1_multi")
    probs = preds.sigmoid() if sigmoid else preds
    decided, actual = _at_or_above(probs, threshold).float(), targets.float()
    return _macro_f1((decided * actual).sum(dim=0), decided.sum(dim=0), actual.sum(dim=0))


# ------------------------------------------------------------------------ regression (over every value, as fastai's)


def _flat(preds: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    preds, targets = preds.double().reshape(-1), targets.double().reshape(-1)
    if preds.shape != targets.shape:
        raise ValueError(f"Expected as many predictions as targets, got {preds.numel()} and {targets.numel()}.")
    return preds, targets


def mse(preds: torch.Tensor, targets: torch.Tensor) -> MetricValue:
    """Mean squared error over every predicted value (fastai's `mse`).

    Example:
        >>> mse(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [3.0]]))
        0.5
    """
    preds, targets = _flat(preds, targets)
    return MetricValue(((preds - targets) ** 2).mean().item())


def mae(preds: torch.Tensor, targets: torch.Tensor) -> MetricValue:
    """Mean absolute error over every predicted value (fastai's `mae`).

    Example:
        >>> mae(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [3.0]]))
        0.5
    """
    preds, targets = _flat(preds, targets)
    return MetricValue((preds - targets).abs().mean().item())


def rmse(preds: torch.Tensor, targets: torch.Tensor) -> MetricValue:
    """Root mean squared error (fastai's `rmse`)."""
    return MetricValue(mse(preds, targets) ** 0.5)


def r2_score(preds: torch.Tensor, targets: torch.Tensor) -> MetricValue:
    """Coefficient of determination over the flattened values: 1 - SS_res / SS_tot (fastai's `R2Score()`).

    Constant targets (SS_tot = 0) score 1.0 when predicted exactly and 0.0 otherwise, as scikit-learn's
    `r2_score` (which fastai calls) does.

    Example:
        >>> r2_score(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
        1.0
    """
    preds, targets = _flat(preds, targets)
    total = ((targets - targets.mean()) ** 2).sum()
    residual = ((targets - preds) ** 2).sum()
    if total == 0:
        return MetricValue(1.0 if residual == 0 else 0.0)
    return MetricValue(1.0 - (residual / total).item())



class ValidationResults(dict):  # type: ignore[type-arg]
    """What `Learner.validate` returns: a dict by name that also indexes by position, like fastai's list.

    Position 0 is `valid_loss`, then the metrics in order; it compares equal to a plain dict.

    Example:
        >>> results = ValidationResults({"valid_loss": 0.4, "error_rate": 0.1})
        >>> results[1], results["error_rate"], results == {"valid_loss": 0.4, "error_rate": 0.1}
        (0.1, 0.1, True)
    """

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)) and not isinstance(key, bool):
            values = list(self.values())
            if isinstance(key, slice):
                return values[key]
            if not -len(values) <= key < len(values):
                raise IndexError(f"Position {key} is out of range: the results are {list(self)}, "
                                 f"positions 0 to {len(values) - 1}.")
            return values[key]
        return super().__getitem__(key)


_BUILTIN: dict[str, Metric] = {
    "accuracy": accuracy,
    "error_rate": error_rate,
    "top_k_accuracy": top_k_accuracy,
    "f1_score": f1_score,
    "accuracy_multi": accuracy_multi,
    "f1_multi": f1_multi,
    "mse": mse,
    "mae": mae,
    "rmse": rmse,
    "r2_score": r2_score,
}
_MULTI_LABEL = {"accuracy_multi", "f1_multi"}
_REGRESSION = {"mse", "mae", "rmse", "r2_score"}


def metric_name(metric: Metric) -> str:
    """The column name of a metric in logs and tables: a `functools.partial` is named after its function.

    Example:
        >>> metric_name(functools.partial(accuracy_multi, thresh=0.2))
        'accuracy_multi'
    """
    if isinstance(metric, functools.partial) and not hasattr(metric, "__name__"):
        return metric_name(metric.func)
    return getattr(metric, "__name__", type(metric).__name__)


def column_names(metrics: Sequence[Metric]) -> list[str]:
    """Each metric's column name; a repeated name gets `_2`, `_3`, ... so that every metric keeps its column
    (fastai shows two `partial(top_k_accuracy, k=...)` as two columns of one name).

    Example:
        >>> column_names([accuracy, accuracy, error_rate])
        ['accuracy', 'accuracy_2', 'error_rate']
    """
    names: list[str] = []
    for metric in metrics:
        name, count = metric_name(metric), 1
        while (name if count == 1 else f"{name}_{count}") in names:
            count += 1
        names.append(name if count == 1 else f"{name}_{count}")
    return names


def _check_partial(metric: functools.partial[Any]) -> None:
    """A partial's bound arguments must fit its function: a misspelt keyword fails here, not after an epoch."""
    try:
        signature = inspect.signature(metric.func)
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return
    try:
        # The partial's own arguments come first, then the (preds, targets) the learner passes.
        signature.bind(*metric.args, None, None, **metric.keywords)
    except TypeError as error:
        name = metric_name(metric)
        accepted = ", ".join(parameter for parameter in signature.parameters if parameter not in ("preds", "targets"))
        raise TypeError(f"The metric partial({name}, {_arguments(metric)}) does not fit {name}: {error}. {name} "
                        f"takes (preds, targets) and then {accepted or 'nothing else'}.") from None


def _arguments(metric: functools.partial[Any]) -> str:
    return ", ".join([*map(repr, metric.args), *(f"{key}={value!r}" for key, value in metric.keywords.items())])


def _family(name: str) -> str:
    """The task a built-in metric scores: "multi_label", "regression" or "single_label"."""
    return "multi_label" if name in _MULTI_LABEL else "regression" if name in _REGRESSION else "single_label"


def _check_family(name: str, task: Task | None) -> None:
    """Refuse a built-in metric of another task (error_rate on regression data, mse on classes)."""
    if task is not None and _family(name) != task.name:
        fitting = sorted(known for known in _BUILTIN if _family(known) == task.name)
        raise ValueError(f"{name!r} scores {_family(name).replace('_', '-')} predictions, but the data is "
                         f"{task.name.replace('_', '-')}. Use {', '.join(fitting)}.")


def _for_task(name: str, task: Task | None) -> Metric:
    """The built-in metric `name`, bound to a multi-label task's threshold; refused for the wrong task."""
    metric = _BUILTIN[name]
    _check_family(name, task)
    if isinstance(task, MultiLabel):
        bound: Any = functools.partial(metric, threshold=task.threshold)
        bound.__name__ = name
        bound.follows_task = True  # `follow_task` rebinds it when the learner's task (its threshold) changes
        return bound
    return metric


def follow_task(metrics: Sequence[Metric], task: Task | None) -> list[Metric]:
    """`metrics` with the built-in ones named by a string rebound to `task`'s threshold; the rest as they are.

    A learner whose task is replaced (`learn.task = tune_threshold(learn).task`) must score at the threshold
    its predictions use; a callable the user passed (`partial(accuracy_multi, thresh=0.2)`) keeps its own.

    Example:
        >>> metric = follow_task(resolve_metrics("f1_multi", MultiLabel()), MultiLabel(threshold=0.3))[0]
        >>> metric.keywords
        {'threshold': 0.3}
    """
    return [_for_task(metric_name(metric), task) if getattr(metric, "follows_task", False) else metric
            for metric in metrics]


def resolve_metrics(metrics: Metric | str | Sequence[Metric | str] | None, task: Task | None = None) -> list[Metric]:
    """Turn the user's `metrics=` argument into a list of callables.

    Accepts a callable, a built-in metric name, or a list of either. With a task, built-in names are
    checked against it, and multi-label metrics use its threshold.

    Raises:
        ValueError: For an unknown metric name, with the closest built-in names.
        TypeError: For something that is neither a name nor a callable.

    Example:
        >>> [metric_name(m) for m in resolve_metrics(["error_rate", accuracy])]
        ['error_rate', 'accuracy']
    """
    if metrics is None:
        return []
    if callable(metrics) or isinstance(metrics, str) or not isinstance(metrics, Iterable):
        metrics = [metrics]  # one metric; anything else than a name or a callable is refused below
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
            resolved.append(_for_task(metric, task))
        elif callable(metric):
            if isinstance(metric, functools.partial):
                _check_partial(metric)
            if _BUILTIN.get(metric_name(metric)) in (metric, getattr(metric, "func", None)):
                _check_family(metric_name(metric), task)
            resolved.append(metric)
        else:
            raise TypeError(
                f"A metric must be a name or a callable f(preds, targets) -> float, got {metric!r}."
            )
    return resolved
