"""ECE / NLL / Brier and AUROC / FPR95 against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from unfreeze.trust import auroc, calibration_metrics, expected_calibration_error, fpr_at_95_tpr, reliability_bins
from unfreeze.trust.metrics import brier, flagged_share, nll


def test_ece_by_hand() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    targets = torch.tensor([0, 1, 0, 1])
    # Bins: 0.9 (two items, one right) |0.5 - 0.9| = 0.4; 0.6 (right) 0.4; 0.7 (right) 0.3.
    expected = (2 * 0.4 + 0.4 + 0.3) / 4
    assert expected_calibration_error(probs, targets) == pytest.approx(expected)
    bins = reliability_bins(probs, targets)
    assert sum(entry["count"] for entry in bins) == 4 and len(bins) == 3


def test_unlabelled_items_are_left_out() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    assert expected_calibration_error(probs, torch.tensor([0, -1])) == pytest.approx(0.1)
    assert calibration_metrics(probs, torch.tensor([0, -1]))["items"] == 1


def test_nll_and_brier_by_hand() -> None:
    probs = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    targets = torch.tensor([0, 0])
    assert nll(probs, targets) == pytest.approx(-(math.log(0.8) + math.log(0.4)) / 2)
    assert brier(probs, targets) == pytest.approx(((0.2**2 + 0.2**2) + (0.6**2 + 0.6**2)) / 2)


def test_multi_label_metrics_count_each_class() -> None:
    probs = torch.tensor([[0.9, 0.2], [0.1, 0.7]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert brier(probs, targets, multi_label=True) == pytest.approx((0.01 + 0.04 + 0.01 + 0.09) / 4)
    assert calibration_metrics(probs, targets, multi_label=True)["items"] == 2


def test_auroc_matches_the_pairwise_definition() -> None:
    generator = torch.Generator().manual_seed(0)
    inside = torch.randn(60, generator=generator)
    outside = torch.randn(40, generator=generator) + 1.0
    inside[:5] = outside[:5]  # ties count half
    pairs = (outside.unsqueeze(1) > inside.unsqueeze(0)).double() + 0.5 * (outside.unsqueeze(1) == inside).double()
    assert auroc(inside, outside) == pytest.approx(float(pairs.mean()))
    assert auroc(inside, inside + 100) == 1.0


def test_fpr95_and_flagged_shares() -> None:
    inside = torch.arange(100.0)
    assert fpr_at_95_tpr(inside, torch.tensor([0.0, 1000.0, 2000.0, 3000.0])) == pytest.approx(0.25)
    assert flagged_share(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2.5) == 0.5
