"""noise="auto": guard against wrong labels, and name the training images the model disagrees with.

Every folder of images found on the web or labelled by hand holds some wrong labels, and a network
fine-tuned long enough memorises them. The guards the study measured (benchmarks/results/hard_data.md,
2,000 Fashion-MNIST images with 10-40% of the labels moved to another class) are label smoothing,
keeping the best epoch (`KeepBest`, on in `unfreeze train` and with the probe), and the generalised
cross-entropy of Zhang & Sabuncu 2018 (`GeneralizedCrossEntropy`), which bounds what one confidently
wrong label can cost. The one that is on by default is the one measured no worse on clean labels.

`disagreements` lists the training images whose label the final model finds least likely: the
candidates for a look in the cleaning page (`unfreeze clean`), which sorts by the same loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["GeneralizedCrossEntropy", "disagreements"]


class GeneralizedCrossEntropy(nn.Module):
    """`(1 - p_y^q) / q` (Zhang & Sabuncu 2018): cross-entropy as q → 0, mean absolute error at q = 1.

    Example:
        >>> loss = GeneralizedCrossEntropy(0.7)
        >>> round(float(loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))), 3)
        0.548
    """

    def __init__(self, q: float = 0.7) -> None:
        super().__init__()
        self.q = q

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.float(), dim=-1).gather(1, targets.long().unsqueeze(1)).squeeze(1)
        return ((1 - probs.clamp(min=1e-6) ** self.q) / self.q).mean()


def disagreements(learner: Any, top: int = 20) -> list[dict[str, Any]]:
    """The `top` training images with the highest loss under the model (validation transforms, no
    augmentation): path, label, the model's class and its probability, the loss.

    Example:
        >>> disagreements(learn, top=3)[0]["predicted"]  # doctest: +SKIP
        'Shirt'
    """
    dataset = learner.dls.train.dataset
    items = [path for path, _ in dataset.items]
    labels = [label for _, label in dataset.items]
    loader = learner.dls.test_dl(items, labels=labels)
    probs, targets = learner.get_preds(dl=loader)
    task, vocab = learner.task, learner.dls.vocab
    if targets.ndim != 1:  # multi-label: the loss over the classes
        losses = nn.functional.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), targets.float(),
                                                    reduction="none").sum(1)
    else:
        losses = -torch.log(probs.gather(1, targets.clamp(min=0).long().unsqueeze(1)).squeeze(1).clamp(min=1e-9))
    losses = torch.where(task.labelled(targets), losses, torch.full_like(losses, -1.0))
    rows = []
    for index in torch.argsort(losses, descending=True)[:top].tolist():
        if losses[index] < 0:
            break
        row: dict[str, Any] = {"path": str(items[index]), "label": labels[index],
                               "loss": round(float(losses[index]), 4)}
        if targets.ndim == 1:
            best = int(probs[index].argmax())
            row.update(predicted=vocab[best], probability=round(float(probs[index, best]), 4))
        rows.append(row)
    return rows
