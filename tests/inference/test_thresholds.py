"""F1-optimal thresholds: agreement with f1_multi at every candidate, the global and per-class optimum on
data with a known answer, ties toward 0.5, unlabelled rows, and bad shapes."""

from __future__ import annotations

import pytest
import torch

from unfreeze.inference.thresholds import best_threshold, best_thresholds, f1_at_thresholds
from unfreeze.train.metrics import f1_multi


def random_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    targets = (torch.rand(200, 5, generator=generator) < 0.3).float()
    # Informative but shifted low: positives around 0.3, negatives around 0.1, so 0.5 predicts little.
    probs = (0.1 + 0.2 * targets + 0.08 * torch.randn(200, 5, generator=generator)).clamp(0.001, 0.999)
    return probs, targets


def test_macro_f1_at_each_candidate_equals_f1_multi():
    probs, targets = random_case()
    candidates = torch.tensor([0.05, 0.2, 0.5, 0.9])
    macro, per_class = f1_at_thresholds(probs, targets, candidates)
    expected = [f1_multi(probs, targets, float(threshold), sigmoid=False) for threshold in candidates]
    assert macro.tolist() == pytest.approx(expected, abs=1e-6)
    assert per_class.shape == (4, 5)


def test_the_global_threshold_beats_half_and_is_the_best_candidate():
    probs, targets = random_case()
    threshold, f1 = best_threshold(probs, targets)
    assert 0.1 < threshold < 0.35
    assert f1 == pytest.approx(f1_multi(probs, targets, threshold, sigmoid=False), abs=1e-6)
    assert f1 > f1_multi(probs, targets, 0.5, sigmoid=False) + 0.3
    for other in torch.linspace(0.01, 0.99, 99):
        assert f1 >= f1_multi(probs, targets, float(other), sigmoid=False) - 1e-6


def test_per_class_thresholds_follow_each_class_scale():
    generator = torch.Generator().manual_seed(1)
    targets = (torch.rand(300, 2, generator=generator) < 0.4).float()
    # class 0 separates at 0.2, class 1 at 0.7
    probs = torch.stack([0.1 + 0.2 * targets[:, 0], 0.6 + 0.2 * targets[:, 1]], dim=1)
    thresholds = best_thresholds(probs, targets)
    assert 0.1 < thresholds[0] <= 0.3 and 0.6 < thresholds[1] <= 0.8
    assert f1_multi(probs, targets, thresholds, sigmoid=False) == pytest.approx(1.0)


def test_ties_go_to_the_candidate_nearest_half_and_untunable_classes_keep_half():
    probs = torch.tensor([[0.9, 0.3], [0.05, 0.2]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    threshold, f1 = best_threshold(probs, targets)
    assert f1 == 1.0 and threshold == pytest.approx(0.5)  # every t in (0.3, 0.9] separates perfectly
    assert best_thresholds(probs, targets).tolist() == pytest.approx([0.5, 0.5])  # class 1 has no positive


def test_unlabelled_rows_are_ignored():
    probs, targets = random_case()
    padded_probs = torch.cat([probs, torch.full((3, 5), 0.99)])
    padded_targets = torch.cat([targets, torch.full((3, 5), float("nan"))])
    assert best_threshold(padded_probs, padded_targets) == best_threshold(probs, targets)
    assert torch.equal(best_thresholds(padded_probs, padded_targets), best_thresholds(probs, targets))


@pytest.mark.parametrize("probs, targets, message", [
    (torch.rand(4, 3), torch.zeros(4, 2), "same shape"),
    (torch.rand(4), torch.zeros(4), r"\[N, C\]"),
    (torch.rand(0, 3), torch.zeros(0, 3), "at least one labelled"),
])
def test_bad_input_says_what_is_expected(probs, targets, message):
    with pytest.raises(ValueError, match=message):
        best_threshold(probs, targets)
