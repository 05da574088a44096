"""The F1-optimal decision threshold of a multi-label classifier, chosen on validation predictions.

A fixed 0.5 suits a calibrated model with balanced classes; a small or imbalanced multi-label run
often keeps every probability below it and predicts nothing. Scanning the thresholds on held-out
predictions and keeping the one with the best F1 (one for all classes, or one per class) recovers
most of what the model knows. These are pure functions of probabilities and targets.
"""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_CANDIDATES", "best_threshold", "best_thresholds", "f1_at_thresholds"]

# 0.01 .. 0.99: finer steps than the spread of probabilities a few hundred items can resolve.
DEFAULT_CANDIDATES = torch.linspace(0.01, 0.99, 99)


def _check(probs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError(f"Expected probabilities and multi-hot targets of the same shape [N, C]; got "
                         f"{tuple(probs.shape)} and {tuple(targets.shape)}.")
    if len(probs) == 0:
        raise ValueError("Choosing a threshold needs at least one labelled validation item; got none.")
    labelled = ~targets.isnan().any(dim=-1)  # NaN rows are unlabelled items
    return probs[labelled].float(), targets[labelled].float()


def f1_at_thresholds(probs: torch.Tensor, targets: torch.Tensor,
                     candidates: torch.Tensor = DEFAULT_CANDIDATES) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class F1 at every candidate threshold: `(macro F1 [T], per-class F1 [T, C])`.

    The macro F1 averages over the classes that are present or predicted at that threshold, as
    `f1_multi` does; a class neither present nor predicted has F1 0 in the per-class table.

    Example:
        >>> macro, per_class = f1_at_thresholds(torch.tensor([[0.3, 0.1]]), torch.tensor([[1.0, 0.0]]),
        ...                                     torch.tensor([0.2, 0.5]))
        >>> macro.tolist()
        [1.0, 0.0]
    """
    probs, targets = _check(probs, targets)
    decided = (probs.unsqueeze(0) >= candidates.view(-1, 1, 1).to(probs)).float()  # [T, N, C]
    true_positives = (decided * targets).sum(dim=1)
    predicted, actual = decided.sum(dim=1), targets.sum(dim=0).expand_as(true_positives)
    denominator = predicted + actual
    per_class = torch.where(denominator > 0, 2 * true_positives / denominator.clamp(min=1), torch.zeros(()))
    counted = denominator > 0
    macro = (per_class * counted).sum(dim=1) / counted.sum(dim=1).clamp(min=1)
    return macro, per_class


def best_threshold(probs: torch.Tensor, targets: torch.Tensor,
                   candidates: torch.Tensor = DEFAULT_CANDIDATES) -> tuple[float, float]:
    """The one threshold for all classes that maximizes macro F1: `(threshold, F1)`.

    Ties go to the threshold closest to 0.5, so a flat F1 curve keeps the usual value.

    Args:
        probs: Sigmoid probabilities [N, C] on validation data.
        targets: Multi-hot targets [N, C] (NaN rows, unlabelled items, are ignored).
        candidates: Thresholds to try, in (0, 1).

    Example:
        >>> probs = torch.tensor([[0.3, 0.1], [0.1, 0.35], [0.05, 0.02]])
        >>> targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
        >>> threshold, f1 = best_threshold(probs, targets)
        >>> 0.1 < threshold <= 0.3, f1
        (True, 1.0)
    """
    macro, _ = f1_at_thresholds(probs, targets, candidates)
    best = macro.max()
    ties = (macro >= best - 1e-9).nonzero().flatten()
    index = ties[(candidates[ties] - 0.5).abs().argmin()]
    return float(candidates[index]), float(best)


def best_thresholds(probs: torch.Tensor, targets: torch.Tensor,
                    candidates: torch.Tensor = DEFAULT_CANDIDATES) -> torch.Tensor:
    """One threshold per class, each maximizing that class's F1 on validation data: float [C].

    A class without a positive validation item cannot be tuned and keeps 0.5. Ties go to the
    threshold closest to 0.5. Per-class thresholds fit the validation set more closely than one
    global threshold; prefer `best_threshold` when classes have few positives.

    Example:
        >>> probs = torch.tensor([[0.3, 0.9], [0.1, 0.7], [0.05, 0.2]])
        >>> targets = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
        >>> thresholds = best_thresholds(probs, targets)
        >>> bool(0.1 < thresholds[0] <= 0.3), bool(0.2 < thresholds[1] <= 0.7)
        (True, True)
    """
    _, per_class = f1_at_thresholds(probs, targets, candidates)
    _, labelled_targets = _check(probs, targets)
    distance = (candidates - 0.5).abs()
    chosen = []
    for column in range(per_class.shape[1]):
        scores = per_class[:, column]
        if labelled_targets[:, column].sum() == 0:
            chosen.append(0.5)
            continue
        ties = (scores >= scores.max() - 1e-9).nonzero().flatten()
        chosen.append(float(candidates[ties[distance[ties].argmin()]]))
    return torch.tensor(chosen)
