"""fastai's loss classes against their formulas: label smoothing as fastai writes it, flattening as torch's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unfreeze.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropy

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [-0.5, 1.5, 0.0], [1.0, 1.0, 1.0]])
TARGETS = torch.tensor([0, 2, 1, 2])


def fastai_formula(logits, targets, eps, weight=None, reduction="mean"):
    """fastai's LabelSmoothingCrossEntropy written out: eps/C times the sum of -log p, plus (1 - eps) NLL."""
    log_probs = logits.log_softmax(dim=-1)
    smoothing = -log_probs.sum(dim=-1)
    smoothing = {"mean": smoothing.mean(), "sum": smoothing.sum(), "none": smoothing}[reduction]
    nll = F.nll_loss(log_probs, targets, weight=weight, reduction=reduction)
    return smoothing * eps / logits.shape[-1] + (1 - eps) * nll


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_label_smoothing_follows_fastais_formula(reduction):
    weight = torch.tensor([1.0, 2.0, 0.5])
    loss = LabelSmoothingCrossEntropy(eps=0.2, weight=weight, reduction=reduction)
    assert torch.allclose(loss(LOGITS, TARGETS), fastai_formula(LOGITS, TARGETS, 0.2, weight, reduction))


def test_label_smoothing_without_weights_equals_torchs():
    expected = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(LOGITS, TARGETS)
    assert torch.allclose(LabelSmoothingCrossEntropy()(LOGITS, TARGETS), expected)
    # With weights torch also weighs the smoothing term, fastai does not: the two differ.
    weight = torch.tensor([1.0, 4.0, 0.25])
    torchs = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)(LOGITS, TARGETS)
    assert not torch.allclose(LabelSmoothingCrossEntropy(weight=weight)(LOGITS, TARGETS), torchs)


def test_label_smoothing_weight_moves_with_the_module_and_bad_settings_are_refused():
    loss = LabelSmoothingCrossEntropy(weight=torch.ones(3)).to(torch.float64)
    assert "weight" in dict(loss.named_buffers()) and loss.weight.dtype == torch.float64
    with pytest.raises(ValueError, match=r"eps must be in \[0, 1\)"):
        LabelSmoothingCrossEntropy(eps=1.5)
    with pytest.raises(ValueError, match="reduction must be one of"):
        LabelSmoothingCrossEntropy(reduction="avg")


def test_cross_entropy_loss_flat_flattens_every_axis_but_the_classes():
    assert torch.allclose(CrossEntropyLossFlat()(LOGITS, TARGETS), F.cross_entropy(LOGITS, TARGETS))
    maps = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (2, 4, 5), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(CrossEntropyLossFlat(axis=1)(maps, labels), F.cross_entropy(maps, labels))
    weighted = CrossEntropyLossFlat(weight=torch.tensor([1.0, 2.0, 3.0]), reduction="sum")
    assert torch.allclose(weighted(LOGITS, TARGETS),
                          F.cross_entropy(LOGITS, TARGETS, weight=torch.tensor([1.0, 2.0, 3.0]), reduction="sum"))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_both_losses_take_mixed_class_probabilities(reduction):
    one_hot = F.one_hot(TARGETS, 3).float()
    flat, smooth = CrossEntropyLossFlat(reduction=reduction), LabelSmoothingCrossEntropy(eps=0.1, reduction=reduction)
    assert torch.allclose(flat(LOGITS, one_hot), flat(LOGITS, TARGETS))
    assert torch.allclose(smooth(LOGITS, one_hot), smooth(LOGITS, TARGETS))
    mixed = 0.7 * one_hot + 0.3 * one_hot.flip(0)  # what MixUp makes of a batch: the loss mixes the same way
    expected = 0.7 * smooth(LOGITS, TARGETS) + 0.3 * smooth(LOGITS, TARGETS.flip(0))
    assert torch.allclose(smooth(LOGITS, mixed), expected, atol=1e-6)
    assert torch.allclose(flat(LOGITS, mixed), 0.7 * flat(LOGITS, TARGETS) + 0.3 * flat(LOGITS, TARGETS.flip(0)))
