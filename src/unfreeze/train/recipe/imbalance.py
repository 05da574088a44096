"""imbalance="auto": detect a long tail from the training counts and train against it.

A classifier trained on a long tail learns the training prior: it calls rare classes seldom, so its
error on a balanced set (and its balanced accuracy on any set) suffers. Logit adjustment (Menon et al.
2021, "Long-tail learning via logit adjustment") trains with the log prior added to the logits,
`cross_entropy(logits + τ·log π, y)`: the model's own logits then estimate the balanced classifier, and
predictions need no change. It costs nothing, needs no resampling (which repeats the rare images until
they are memorised) and no weights (which scale the rare classes' gradients up to noise). The remedies
measured on long-tailed Fashion-MNIST are in benchmarks/results/hard_data.md.

The check looks at the training counts only: `IMBALANCED` is the ratio of the largest class to the
smallest from which the remedy is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["IMBALANCED", "ImbalanceCheck", "LogitAdjustedLoss", "balanced_scores",
           "check_imbalance"]

IMBALANCED = 3.0  # largest class / smallest class from which the remedy is on


@dataclass(frozen=True)
class ImbalanceCheck:
    """The training counts and the remedy chosen.

    Attributes:
        ratio: Images of the largest class / images of the smallest (classes with none left out).
        remedy: "logit_adjust" or "none".
        counts: Training images per class, in vocab order.
        requested: The Recipe's value ("auto", or the remedy the caller chose).
        evened_by: What already evens the classes (a balanced sampler, class weights), for which "auto"
            adds no remedy; None when nothing does.
    """

    ratio: float
    remedy: str
    counts: tuple[int, ...]
    requested: str = "auto"
    evened_by: str | None = None

    @property
    def imbalanced(self) -> bool:
        return self.ratio >= IMBALANCED

    def note(self) -> str:
        """One line for the log and the recorder's notes.

        Example:
            >>> print(ImbalanceCheck(50.0, "logit_adjust", (400, 8)).note())  # doctest: +NORMALIZE_WHITESPACE
            imbalance='auto': logit adjustment (the largest class has 50.0x the images of the smallest: 400
            vs 8); --imbalance none turns it off
        """
        spread = f"the largest class has {self.ratio:.1f}x the images of the smallest: {max(self.counts)} vs " \
                 f"{min(count for count in self.counts if count > 0)}"
        if self.remedy == "logit_adjust":
            verdict, hint = "logit adjustment", "; --imbalance none turns it off"
        elif self.evened_by is not None and self.requested == "auto":
            verdict, hint = "no remedy", f"; the {self.evened_by} already evens the classes"
        else:
            verdict, hint = "no remedy", "" if self.imbalanced else "; --imbalance logit_adjust turns one on"
        return f"imbalance={self.requested!r}: {verdict} ({spread}){hint}"

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "remedy": self.remedy, "ratio": round(self.ratio, 3),
                "counts": list(self.counts)}


def check_imbalance(targets: torch.Tensor, n_classes: int, requested: str = "auto",
                    evened_by: str | None = None) -> ImbalanceCheck | None:
    """The class counts of single-label `targets` and the remedy for them; None for multi-label targets.

    `evened_by` names what already evens the classes ("balanced sampler", "class weights"): "auto" then
    adds no logit adjustment, which would favour the rare classes a second time (the adjustment assumes
    the model learns the training counts' prior, which a balanced sampler or weighted loss removes).

    Example:
        >>> check_imbalance(torch.tensor([0] * 40 + [1] * 4), 2).remedy
        'logit_adjust'
    """
    if targets.ndim != 1:
        return None
    labelled = targets[targets >= 0].long().cpu()
    counts = torch.bincount(labelled, minlength=n_classes)[:n_classes]
    present = counts[counts > 0]
    ratio = float(present.max() / present.min()) if len(present) else 1.0
    remedy = requested if requested != "auto" else (
        "logit_adjust" if ratio >= IMBALANCED and evened_by is None else "none")
    return ImbalanceCheck(ratio=ratio, remedy=remedy, counts=tuple(int(count) for count in counts),
                          requested=requested, evened_by=evened_by)


class LogitAdjustedLoss(nn.Module):
    """Cross-entropy of `logits + tau · log(prior)` (Menon et al. 2021); the model's logits are used as they are.

    Args:
        counts: Training images per class (the prior, smoothed by one image per class).
        tau: Strength of the adjustment (1 is the paper's default and Bayes-consistent for balanced error).
        base: The loss whose logits are adjusted (default: cross-entropy); label smoothing stays its own.

    Example:
        >>> loss = LogitAdjustedLoss(torch.tensor([90, 10]))
        >>> float(loss(torch.zeros(1, 2), torch.tensor([1]))) > float(loss(torch.zeros(1, 2), torch.tensor([0])))
        True
    """

    def __init__(self, counts: torch.Tensor | list[int], tau: float = 1.0, base: nn.Module | None = None) -> None:
        super().__init__()
        counts = torch.as_tensor(counts, dtype=torch.float32) + 1.0
        self.register_buffer("adjustment", tau * torch.log(counts / counts.sum()))
        self.base = base if base is not None else nn.CrossEntropyLoss()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.base(logits + self.adjustment.to(logits), targets)


def balanced_scores(predicted: torch.Tensor, targets: torch.Tensor, n_classes: int) -> dict[str, float]:
    """Balanced accuracy (mean recall over the classes present) and macro F1 of class predictions.

    Example:
        >>> balanced_scores(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2)["balanced_accuracy"]
        0.75
    """
    keep = targets >= 0
    predicted, targets = predicted[keep].long().cpu(), targets[keep].long().cpu()
    true_positive = torch.bincount(targets[predicted == targets], minlength=n_classes).float()
    actual = torch.bincount(targets, minlength=n_classes).float()
    chosen = torch.bincount(predicted, minlength=n_classes).float()
    present = actual > 0
    recall = true_positive[present] / actual[present]
    f1 = 2 * true_positive / (actual + chosen).clamp(min=1)
    return {"balanced_accuracy": float(recall.mean()) if len(recall) else float("nan"),
            "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
            "error": float((predicted != targets).float().mean()) if len(targets) else float("nan")}

