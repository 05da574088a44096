"""Metrics over the whole set, checked against hand-computed values and scikit-style definitions."""

import functools

import pytest
import torch

from unfreeze.train.metrics import (
    MetricValue,
    accuracy,
    accuracy_multi,
    error_rate,
    f1_multi,
    f1_score,
    metric_name,
    resolve_metrics,
    top_k_accuracy,
)

PREDS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
TARGETS = torch.tensor([0, 1, 1, 1, 2])


def test_accuracy_and_error_rate():
    assert accuracy(PREDS, TARGETS) == pytest.approx(3 / 5)
    assert error_rate(PREDS, TARGETS) == pytest.approx(2 / 5)


def test_top_k():
    assert top_k_accuracy(PREDS, TARGETS, k=2) == pytest.approx(4 / 5)
    assert top_k_accuracy(PREDS, TARGETS, k=10) == 1.0


def test_macro_f1_by_hand():
    # class 0: tp1 fp1 fn0 -> f1 2/3; class 1: tp1 fp0 fn2 -> 0.5; class 2: tp1 fp1 fn0 -> 2/3
    assert f1_score(PREDS, TARGETS) == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3, rel=1e-5)


def test_whole_set_differs_from_batch_average():
    """F1 over the whole set is not the mean of per-batch F1s: the learner must gather first."""
    whole = f1_score(PREDS, TARGETS)
    batches = [f1_score(PREDS[:3], TARGETS[:3]), f1_score(PREDS[3:], TARGETS[3:])]
    assert whole != pytest.approx(sum(batches) / 2)


def test_resolve_by_name_and_unknown_name():
    assert resolve_metrics("error_rate") == [error_rate]
    with pytest.raises(ValueError, match="Did you mean: error_rate"):
        resolve_metrics(["eror_rate"])
    with pytest.raises(TypeError):
        resolve_metrics([42])


@pytest.mark.parametrize("n_classes", [2, 5, 11])
def test_macro_f1_matches_torchmetrics(n_classes):
    """Parity with torchmetrics' macro F1 (the reference the library used to call), absent classes included."""
    reference = pytest.importorskip("torchmetrics.functional.classification")
    generator = torch.Generator().manual_seed(n_classes)
    preds = torch.rand(300, n_classes, generator=generator)
    targets = torch.randint(0, n_classes, (300,), generator=generator)
    targets[targets == n_classes - 1] = 0  # a class that never occurs (it may still be predicted)
    preds[:, 1] -= 2  # and one that is never predicted
    expected = reference.multiclass_f1_score(preds, targets, num_classes=n_classes, average="macro").item()
    assert f1_score(preds, targets) == pytest.approx(expected, abs=1e-6)


def test_metric_values_answer_item_like_fastais_tensors():
    value = accuracy(PREDS, TARGETS)
    assert isinstance(value, MetricValue) and value.item() == pytest.approx(3 / 5)
    assert type(value.item()) is float and error_rate(PREDS, TARGETS).item() == pytest.approx(2 / 5)


MULTI_PREDS = torch.tensor([[2.0, -2.0, 0.1], [-1.0, 1.0, -0.1]])
MULTI_TARGETS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])


def test_thresh_is_fastais_spelling_of_threshold():
    probabilities = MULTI_PREDS.sigmoid()  # 0.88, 0.12, 0.52 / 0.27, 0.73, 0.48
    assert accuracy_multi(MULTI_PREDS, MULTI_TARGETS, thresh=0.5) == pytest.approx(4 / 6)
    assert accuracy_multi(MULTI_PREDS, MULTI_TARGETS, thresh=0.45) == pytest.approx(5 / 6)
    assert accuracy_multi(probabilities, MULTI_TARGETS, thresh=0.6, sigmoid=False) == pytest.approx(5 / 6)
    assert f1_multi(MULTI_PREDS, MULTI_TARGETS, thresh=0.6) == f1_multi(MULTI_PREDS, MULTI_TARGETS, threshold=0.6)
    with pytest.raises(TypeError, match=r"both threshold=0\.3 and thresh=0\.6"):
        accuracy_multi(MULTI_PREDS, MULTI_TARGETS, threshold=0.3, thresh=0.6)


def test_a_partial_is_named_after_its_function_and_checked_when_resolved():
    metric = functools.partial(accuracy_multi, thresh=0.2)
    assert [metric_name(m) for m in resolve_metrics([metric, "accuracy"])] == ["accuracy_multi", "accuracy"]
    named = functools.partial(accuracy_multi, thresh=0.2)
    named.__name__ = "acc_02"  # a name the user gave wins
    assert metric_name(named) == "acc_02"
    with pytest.raises(TypeError, match=r"partial\(accuracy_multi, thres=0.2\).*threshold, sigmoid, thresh"):
        resolve_metrics(functools.partial(accuracy_multi, thres=0.2))
    with pytest.raises(TypeError, match="multiple values for argument 'threshold'"):
        resolve_metrics(functools.partial(accuracy_multi, 0.1, 0.2, True, threshold=0.3))


def _per_item(preds, targets):
    return (preds.argmax(dim=1) == targets).float()


def _nothing(preds, targets):
    return None


@pytest.mark.parametrize(("metric", "found"), [(_per_item, r"a tensor of shape \(32,\)"), (_nothing, "None")])
def test_a_metric_that_returns_no_single_number_is_named_with_what_it_returned(tiny_learner, metric, found):
    # Used to stop with float()'s own "only one element tensors can be converted to Python scalars" (or
    # "float() argument must be a string or a real number, not 'NoneType'"), naming no metric.
    learn = tiny_learner(metrics=[metric])
    with pytest.raises(TypeError, match=rf"metric {metric.__name__!r} returned {found}.*one number"):
        learn.validate()



def test_a_metric_that_is_neither_a_name_nor_a_callable_says_so():
    # metrics=3 used to fail with "'int' object is not iterable".
    with pytest.raises(TypeError, match=r"name or a callable.*got 3"):
        resolve_metrics(3)
