"""Parity of fastai's wider names with their definitions: metric classes against scikit-learn, the
fit_flat_cos / fit_sgdr schedules against fastai's formulas, RandomSplitter against torch.randperm."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn import metrics as skm

from unfreeze.data.datablock import FuncSplitter, IndexSplitter, RandomSplitter
from unfreeze.train.metric_classes import (
    BalancedAccuracy,
    F1Score,
    Precision,
    R2Score,
    Recall,
    RocAuc,
    RocAucBinary,
)
from unfreeze.train.metrics import accuracy, accuracy_multi, error_rate, mae, mse, rmse
from unfreeze.train.schedules import FlatCosSchedule, SGDRSchedule, sgdr_epochs


def _data(n_classes: int, seed: int, n: int = 60):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, n_classes, generator=generator)
    targets = torch.randint(0, n_classes, (n,), generator=generator)
    # Some predictions agree with the targets, so no score is trivially 0 or 1.
    logits[: n // 3, :] -= 5
    logits[torch.arange(n // 3), targets[: n // 3]] += 10
    return logits, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_f1_precision_recall_match_scikit_learn_for_each_average(seed, average):
    logits, targets = _data(4, seed)
    predicted = logits.argmax(-1).numpy()
    for ours, theirs in ((F1Score, skm.f1_score), (Precision, skm.precision_score), (Recall, skm.recall_score)):
        expected = theirs(targets.numpy(), predicted, average=average, zero_division=0)
        assert ours(average=average)(logits, targets) == pytest.approx(expected, abs=1e-9)


def test_binary_is_fastais_default_and_scores_the_positive_class():
    logits, targets = _data(2, 5)
    predicted = logits.argmax(-1).numpy()
    assert F1Score()(logits, targets) == pytest.approx(skm.f1_score(targets.numpy(), predicted))
    assert Precision(pos_label=0)(logits, targets) == pytest.approx(
        skm.precision_score(targets.numpy(), predicted, pos_label=0))
    assert F1Score().__name__ == "f1_score" and Recall().__name__ == "recall_score"
    with pytest.raises(ValueError, match="average='macro'"):
        F1Score()(*_data(3, 0))


def test_metric_objects_carry_fastais_name():
    """fastai's metric objects have `.name`, scikit-learn's function name (fastai 2.8: `F1Score().name`
    is 'f1_score'); code that labels plots by it failed here with an AttributeError."""
    expected = {Precision(): "precision_score", Recall(): "recall_score", F1Score(average="macro"): "f1_score",
                RocAuc(): "roc_auc_score", RocAucBinary(): "roc_auc_score",
                BalancedAccuracy(): "balanced_accuracy_score", R2Score(): "r2_score"}
    for metric, name in expected.items():
        assert metric.name == name == metric.__name__


@pytest.mark.parametrize("adjusted", [False, True])
def test_balanced_accuracy_matches_scikit_learn(adjusted):
    logits, targets = _data(5, 3)
    expected = skm.balanced_accuracy_score(targets.numpy(), logits.argmax(-1).numpy(), adjusted=adjusted)
    assert BalancedAccuracy(adjusted=adjusted)(logits, targets) == pytest.approx(expected)


def test_adjusted_balanced_accuracy_with_one_class_present_says_so():
    """Chance is 1 with one class in the targets: the rescaling divides by zero (a ZeroDivisionError from
    inside fit; scikit-learn warns and gives -inf or nan). The plain score still works."""
    logits, targets = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 0.0, 0.0]]), torch.tensor([0, 0, 0])
    assert BalancedAccuracy()(logits, targets) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"adjusted=True.*one class \(index 0\).*adjusted=False"):
        BalancedAccuracy(adjusted=True)(logits, targets)


@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_roc_auc_matches_scikit_learn_one_vs_rest_on_softmax(average):
    logits, targets = _data(4, 7)
    logits = logits.round(decimals=1)  # ties in the scores, which the ranks must share
    probs = logits.softmax(-1).numpy()
    expected = skm.roc_auc_score(targets.numpy(), probs, multi_class="ovr", average=average)
    assert RocAuc(average=average)(logits, targets) == pytest.approx(expected)


def test_roc_auc_binary_scores_the_second_class():
    logits, targets = _data(2, 11)
    expected = skm.roc_auc_score(targets.numpy(), logits.softmax(-1)[:, 1].numpy())
    assert RocAucBinary()(logits, targets) == pytest.approx(expected)
    assert RocAuc()(logits, targets) == pytest.approx(expected)


def test_regression_metrics_match_scikit_learn_over_every_value():
    generator = torch.Generator().manual_seed(0)
    preds, targets = torch.randn(30, 2, generator=generator), torch.randn(30, 2, generator=generator)
    flat_p, flat_t = preds.reshape(-1).numpy(), targets.reshape(-1).numpy()
    assert mse(preds, targets) == pytest.approx(skm.mean_squared_error(flat_t, flat_p))
    assert mae(preds, targets) == pytest.approx(skm.mean_absolute_error(flat_t, flat_p))
    assert rmse(preds, targets) == pytest.approx(math.sqrt(skm.mean_squared_error(flat_t, flat_p)))
    assert R2Score()(preds, targets) == pytest.approx(skm.r2_score(flat_t, flat_p))


# ---------------------------------------------------------------------------- schedules (fastai's formulas)


def _sched_cos(start, end, pos):
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def _combine(pcts, scheds, pos):
    bounds = [0.0]
    for pct in pcts:
        bounds.append(bounds[-1] + pct)
    index = min(max(i for i, b in enumerate(bounds) if pos >= b), len(pcts) - 1)
    return scheds[index]((pos - bounds[index]) / (bounds[index + 1] - bounds[index]))


def test_fit_flat_cos_schedule_is_fastais_combined_cos():
    lr, total = 3e-3, 40
    schedule = FlatCosSchedule([lr / 10, lr], total)
    for step in range(total):
        pos = step / total
        expected = _combine([0.75, 0.25], [lambda p: _sched_cos(lr, lr, p), lambda p: _sched_cos(lr, lr / 1e5, p)], pos)
        assert schedule.lrs_at(step)[1] == pytest.approx(expected, rel=1e-12)
        assert schedule.lrs_at(step)[0] == pytest.approx(expected / 10, rel=1e-12)
        assert schedule.mom_at(step) == 0.9


@pytest.mark.parametrize(("n_cycles", "cycle_len", "cycle_mult"), [(3, 1, 2), (2, 2, 3), (3, 1, 1)])
def test_fit_sgdr_schedule_is_fastais_combined_cosines(n_cycles, cycle_len, cycle_mult):
    n_epoch = sgdr_epochs(n_cycles, cycle_len, cycle_mult)
    if cycle_mult > 1:
        assert n_epoch == cycle_len * (cycle_mult**n_cycles - 1) // (cycle_mult - 1)
    steps_per_epoch, lr_max = 5, 1e-2
    total = n_epoch * steps_per_epoch
    schedule = SGDRSchedule([lr_max], total, n_cycles, cycle_len, cycle_mult)
    pcts = [cycle_len * cycle_mult**i / n_epoch for i in range(n_cycles)]
    for step in range(total):
        expected = _combine(pcts, [lambda p: _sched_cos(lr_max, 0, p)] * n_cycles, step / total)
        assert schedule.lrs_at(step)[0] == pytest.approx(expected, rel=1e-9, abs=1e-15)
    # Every cycle starts again at lr_max (warm restarts).
    start = 0
    for index in range(n_cycles):
        assert schedule.lrs_at(start * steps_per_epoch)[0] == pytest.approx(lr_max)
        start += cycle_len * cycle_mult**index


# ---------------------------------------------------------------------------- splitters


@pytest.mark.parametrize(("n", "valid_pct", "seed"), [(10, 0.2, 42), (37, 0.25, 0), (100, 0.2, 7), (9, 0.2, 1)])
def test_random_splitter_picks_fastais_indices_for_a_seed(n, valid_pct, seed):
    torch.manual_seed(seed)  # fastai's published algorithm, on the global RNG
    permutation = torch.randperm(n).tolist()
    cut = int(valid_pct * n)
    state = torch.random.get_rng_state()
    train, valid = RandomSplitter(valid_pct, seed=seed)(list(range(n)))
    assert (train, valid) == (permutation[cut:], permutation[:cut])
    assert torch.equal(torch.random.get_rng_state(), state)  # unfreeze leaves the global RNG alone


def test_func_and_index_splitters():
    items = [f"{folder}/{index}.jpg" for folder in ("01", "13") for index in range(3)]
    assert FuncSplitter(lambda o: o.startswith("13"))(items) == ([0, 1, 2], [3, 4, 5])
    assert IndexSplitter([1, 4])(items) == ([0, 2, 3, 5], [1, 4])


# ---------------------------------------------------------------------------- fastai's plain metric functions


def test_accuracy_and_error_rate_flatten_targets_as_fastai():
    # fastai 2.8 flattens the arg-max and the targets (flatten_check) before comparing: with targets of
    # shape [N, 1] these predictions score 2/4 (fastai 2.8.12 gives accuracy 0.5, error_rate 0.5), not the
    # mean of a broadcast [N, N] table (0.3125).
    preds = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]])
    targets = torch.tensor([[0], [2], [2], [1]])
    assert accuracy(preds, targets) == pytest.approx(0.5)
    assert error_rate(preds, targets) == pytest.approx(0.5)
    # fastai's axis=: the classes along dim 0.
    assert accuracy(preds.T, targets.flatten(), axis=0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one target per prediction"):
        accuracy(preds, targets[:2])


def test_r2_score_of_constant_targets_is_scikit_learns():
    # fastai's R2Score() is sklearn.metrics.r2_score; with constant targets (no variance) it gives 1.0 for an
    # exact prediction and 0.0 otherwise (fastai 2.8.12: 1.0 and 0.0 on these tensors).
    targets = torch.ones(4)
    assert R2Score()(torch.ones(4), targets) == 1.0
    assert R2Score()(torch.tensor([1.0, 2.0, 1.0, 1.0]), targets) == 0.0
    assert R2Score()(torch.ones(4), targets) == skm.r2_score(targets.numpy(), torch.ones(4).numpy())


def test_accuracy_multi_predicts_strictly_above_the_threshold_as_fastai():
    # fastai 2.8.12: ((inp > thresh) == targ.bool()).float().mean(). Zero logits are probabilities of exactly
    # 0.5, "not predicted" at thresh=0.5: accuracy_multi(torch.zeros(2, 2), torch.zeros(2, 2)) is 1.0 there,
    # and 1.0 for probabilities equal to their threshold with sigmoid=False.
    assert accuracy_multi(torch.zeros(2, 2), torch.zeros(2, 2)) == 1.0
    assert accuracy_multi(torch.tensor([[0.5, 0.2]]), torch.zeros(1, 2), thresh=0.5, sigmoid=False) == 1.0
    assert accuracy_multi(torch.tensor([[0.2, 0.3]]), torch.tensor([[0.0, 1.0]]), thresh=0.2, sigmoid=False) == 1.0
