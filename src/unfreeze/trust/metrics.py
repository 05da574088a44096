"""The numbers that say how far predictions can be trusted: calibration (ECE, NLL, Brier, reliability
bins) and out-of-distribution separation (AUROC, FPR at 95% TPR, flagged shares).

Pure functions of tensors; nothing here knows a model. Conventions: `probs` are the probabilities that
leave the library; single-label `targets` are class indices (-1 unlabelled, left out), multi-label ones
multi-hot rows (a NaN row unlabelled, left out). For out-of-distribution scores, higher means less like
the training images and the out-of-distribution images are the positives.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["N_BINS", "auroc", "brier", "calibration_metrics", "expected_calibration_error", "flagged_share",
           "fpr_at_95_tpr", "nll", "ood_metrics", "reliability_bins"]

N_BINS = 15  # Guo et al. 2017's bin count, so ECE figures compare with the literature


def _labelled(probs: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> tuple[torch.Tensor, torch.Tensor]:
    keep = ~torch.isnan(targets.float()).any(dim=1) if multi_label else targets >= 0
    return probs[keep].double(), targets[keep]


def _confidence_and_correct(probs: torch.Tensor, targets: torch.Tensor,
                            multi_label: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-label: top-1 confidence and whether it was right. Multi-label: every (item, class) probability
    and whether the class is present (each class is a yes/no forecast)."""
    if multi_label:
        return probs.flatten(), targets.double().flatten()
    confidence, predicted = probs.max(dim=1)
    return confidence, (predicted == targets).double()


def reliability_bins(probs: torch.Tensor, targets: torch.Tensor, multi_label: bool = False,
                     n_bins: int = N_BINS) -> list[dict[str, float]]:
    """Equal-width confidence bins: each one's mean confidence, accuracy and item count (empty bins left out).

    Example:
        >>> bins = reliability_bins(torch.tensor([[0.9, 0.1], [0.6, 0.4]]), torch.tensor([0, 1]))
        >>> [(round(b["confidence"], 2), b["accuracy"], b["count"]) for b in bins]
        [(0.6, 0.0, 1), (0.9, 1.0, 1)]
    """
    probs, targets = _labelled(probs, targets, multi_label)
    confidence, correct = _confidence_and_correct(probs, targets, multi_label)
    index = (confidence * n_bins).long().clamp(0, n_bins - 1)
    bins = []
    for number in range(n_bins):
        members = index == number
        count = int(members.sum())
        if count:
            bins.append({"low": number / n_bins, "high": (number + 1) / n_bins,
                         "confidence": float(confidence[members].mean()), "accuracy": float(correct[members].mean()),
                         "count": count})
    return bins


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, multi_label: bool = False,
                               n_bins: int = N_BINS) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over `n_bins` equal-width bins (Guo et al. 2017).

    Example:
        >>> round(expected_calibration_error(torch.tensor([[0.9, 0.1], [0.6, 0.4]]), torch.tensor([0, 1])), 3)
        0.35
    """
    bins = reliability_bins(probs, targets, multi_label, n_bins)
    total = sum(entry["count"] for entry in bins)
    if not total:
        return float("nan")
    return sum(entry["count"] * abs(entry["accuracy"] - entry["confidence"]) for entry in bins) / total


def nll(probs: torch.Tensor, targets: torch.Tensor, multi_label: bool = False) -> float:
    """Mean negative log-likelihood of the true labels (multi-label: binary, per item and class).

    Example:
        >>> round(nll(torch.tensor([[0.5, 0.5]]), torch.tensor([0])), 4)
        0.6931
    """
    probs, targets = _labelled(probs, targets, multi_label)
    if len(probs) == 0:
        return float("nan")
    eps = 1e-12
    if multi_label:
        hits = targets.double()
        return float(-(hits * (probs + eps).log() + (1 - hits) * (1 - probs + eps).log()).mean())
    return float(-(probs.gather(1, targets.long().unsqueeze(1)) + eps).log().mean())


def brier(probs: torch.Tensor, targets: torch.Tensor, multi_label: bool = False) -> float:
    """Brier score: mean over items of the squared distance to the one-hot (multi-hot) truth, summed over
    classes for single-label data, averaged over classes for multi-label data.

    Example:
        >>> brier(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
        0.0
    """
    probs, targets = _labelled(probs, targets, multi_label)
    if len(probs) == 0:
        return float("nan")
    if multi_label:
        return float(((probs - targets.double()) ** 2).mean())
    truth = torch.nn.functional.one_hot(targets.long(), probs.shape[1]).double()
    return float(((probs - truth) ** 2).sum(dim=1).mean())


def calibration_metrics(probs: torch.Tensor, targets: torch.Tensor, multi_label: bool = False) -> dict[str, Any]:
    """ECE (15 bins), NLL and Brier score of `probs`, with the reliability bins and the item count.

    Example:
        >>> sorted(calibration_metrics(torch.tensor([[0.9, 0.1]]), torch.tensor([0])))
        ['bins', 'brier', 'ece', 'items', 'nll']
    """
    labelled, _ = _labelled(probs, targets, multi_label)
    return {"ece": expected_calibration_error(probs, targets, multi_label), "nll": nll(probs, targets, multi_label),
            "brier": brier(probs, targets, multi_label), "items": len(labelled),
            "bins": reliability_bins(probs, targets, multi_label)}


def auroc(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Area under the ROC curve of telling `out_scores` (positives) from `in_scores` by a higher score:
    the chance that a random outside image scores above a random inside one (ties count half).

    Example:
        >>> auroc(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.2]))
        0.875
    """
    inside, outside = in_scores.double().flatten(), out_scores.double().flatten()
    if len(inside) == 0 or len(outside) == 0:
        return float("nan")
    scores = torch.cat([inside, outside])
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # Tied scores share their average rank (Mann-Whitney U with ties).
    unique, inverse = torch.unique(scores, return_inverse=True)
    sums = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(ranks))
    ranks = (sums / counts)[inverse]
    n_out = len(outside)
    u = ranks[len(inside):].sum() - n_out * (n_out + 1) / 2
    return float(u / (len(inside) * n_out))


def fpr_at_95_tpr(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """The share of outside images accepted as inside when 95% of the inside images are accepted (the
    usual "FPR95" of the out-of-distribution literature; lower is better).

    Example:
        >>> fpr_at_95_tpr(torch.arange(100.0), torch.tensor([50.0, 200.0]))
        0.5
    """
    inside, outside = in_scores.double().flatten(), out_scores.double().flatten()
    if len(inside) == 0 or len(outside) == 0:
        return float("nan")
    threshold = torch.quantile(inside, 0.95)
    return float((outside <= threshold).double().mean())


def flagged_share(scores: torch.Tensor, threshold: float) -> float:
    """The share of `scores` above `threshold` (the images a model would call unknown).

    Example:
        >>> flagged_share(torch.tensor([0.1, 0.5, 0.9]), 0.4)
        0.6666666666666666
    """
    return float((scores.flatten() > threshold).double().mean()) if scores.numel() else float("nan")


def ood_metrics(in_scores: torch.Tensor, out_scores: torch.Tensor, threshold: float) -> dict[str, float]:
    """AUROC, FPR95 and the flagged shares of both sets at `threshold`.

    Example:
        >>> ood_metrics(torch.tensor([0.1, 0.2]), torch.tensor([0.9]), 0.5)["flagged_out"]
        1.0
    """
    return {"auroc": auroc(in_scores, out_scores), "fpr95": fpr_at_95_tpr(in_scores, out_scores),
            "flagged_in": flagged_share(in_scores, threshold), "flagged_out": flagged_share(out_scores, threshold),
            "n_in": int(in_scores.numel()), "n_out": int(out_scores.numel())}
