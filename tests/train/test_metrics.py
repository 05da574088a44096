"""Metrics over the whole set, checked against hand-computed values and scikit-style definitions."""

import pytest
import torch

from unfreeze.train.metrics import accuracy, error_rate, f1_score, resolve_metrics, top_k_accuracy

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
