"""Guards against wrong labels (Recipe.noise), and the training images the model disagrees with.

Every folder of images found on the web or labelled by hand holds some wrong labels, and a network
fine-tuned long enough memorises them. Measured on 2,000 Fashion-MNIST images with 10%, 25% and 40% of
the labels moved to another class (benchmarks/results/hard_data.md), against the plain loss with the
best epoch kept (`KeepBest`, on in `unfreeze train`): label smoothing, small-loss filtering before the
fit (`check_noise`: a linear probe on the frozen body's features, 2-fold cross-validated with balanced
class weights, flags the images whose label it gives a probability under `FLAG_BELOW`, at most half of
any class), trimming each batch's largest losses during it (`TrimmedCrossEntropy`, at the share the
check estimates wrong), the generalised cross-entropy of Zhang & Sabuncu 2018
(`GeneralizedCrossEntropy`) and mixup. None did better than the plain loss, so noise="auto" keeps it,
except with few images (the plan's linear probe), where label smoothing lowered the error (few5, few10,
few20); smoothing is not the default elsewhere because no temperature calibrates a smoothed model's
probabilities afterwards (benchmarks/results/trust_label_smoothing.md). Each guard stays one setting
away. The check flags 9-12% of clean and long-tailed sets (hard images, not wrong ones: the probe is a
weak classifier), 19% with 10% wrong labels, 30% with 25%, 39% with 40%.

`disagreements` lists the training images whose label the final model finds least likely: the
candidates for a look in the cleaning page (`unfreeze clean`), which sorts by the same loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unfreeze import distributed
from unfreeze.inference import get_preds
from unfreeze.progress import AROUND_TRAINING_DELAY, StepProgress
from unfreeze.train.recipe.probe import embed_training_images, fit_probe_weights

__all__ = ["CLEAN_FLAGGED", "FILTER_FROM", "FLAG_BELOW", "GeneralizedCrossEntropy", "NoiseCheck", "TrimmedCrossEntropy",
           "check_noise", "disagreements", "unchecked_note"]

FLAG_BELOW = 0.02  # an image is flagged when a cross-validated probe gives its label less than this probability
FILTER_FROM = 0.15  # check_noise marks its flags for leaving out when at least this share is flagged
MIN_PER_CLASS = 50  # the check runs with at least this many training images a class on average
# The share the probe flags on sets with right labels (9-12% on the clean and long-tailed sets of
# hard_data.md): hard images, not wrong ones. `NoiseCheck.estimated_noise` subtracts it.
CLEAN_FLAGGED = 0.09
MAX_TRIM = 0.5  # TrimmedCrossEntropy never leaves out more than half of a batch


@dataclass(frozen=True)
class NoiseCheck:
    """What `check_noise` measured: the flagged training images and whether they are left out.

    Attributes:
        flagged: Indices (into the training dataset) of the images whose label the probe finds unlikely.
        n_items: Training images looked at.
        filtered: The flagged images are left out of the fit (small-loss filtering).
    """

    flagged: tuple[int, ...]
    n_items: int
    filtered: bool

    @property
    def fraction(self) -> float:
        return len(self.flagged) / max(self.n_items, 1)

    @property
    def estimated_noise(self) -> float:
        """The share of wrong labels the flags suggest: the flagged share beyond what right labels give
        (`CLEAN_FLAGGED`), as a share of the rest; 0 on a clean set."""
        return min(MAX_TRIM, max(0.0, (self.fraction - CLEAN_FLAGGED) / (1.0 - CLEAN_FLAGGED)))

    def note(self) -> str:
        """One line for the log and the recorder's notes."""
        verdict = "left out of training" if self.filtered else "kept"
        hint = "; --noise none keeps them" if self.filtered else ""
        return (f"noise='auto': {len(self.flagged)} of {self.n_items} training images ({self.fraction:.0%}) have a "
                f"label a cross-validated linear probe finds unlikely (p < {FLAG_BELOW}): {verdict}{hint}")


def check_noise(learner: Any, seed: int = 0, filter_from: float = FILTER_FROM) -> NoiseCheck | None:
    """Flag the training images whose label a 2-fold cross-validated linear probe on the frozen body's
    features gives a probability under `FLAG_BELOW`; filter them when they are `filter_from` of the set.

    Returns None for multi-label data or a head the probe cannot fit (`probe.probe_head`).

    Example:
        >>> check_noise(learn).fraction  # doctest: +SKIP
        0.3
    """
    loader = learner.dls.train
    n_out = learner.dls.n_classes
    if loader.dataset.targets.ndim != 1 or len(loader.dataset) < MIN_PER_CLASS * n_out:
        return None  # multi-label, or too few images a class for a cross-validated probe to judge labels
    with _in_order(loader):  # item i's features at row i
        embedded = embed_training_images(learner, passes=1, labelled_only=False, description="noise check")
    if embedded is None:
        return None
    features, targets = embedded
    labelled = targets >= 0
    fold = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed)) % 2 == 0
    p_label = torch.ones(len(targets))
    # Balanced class weights: a rare class's images must not look unlikely merely for being rare.
    counts = torch.bincount(targets[labelled].long(), minlength=n_out).float()
    balanced = nn.CrossEntropyLoss(weight=counts.sum() / (n_out * counts.clamp(min=1)))
    for held in (fold, ~fold):
        train = ~held & labelled
        mean, std, weight, bias, _ = fit_probe_weights(features[train], targets[train], balanced, n_out, seed)
        scored = held & labelled
        probs = torch.softmax(((features[scored] - mean) / std) @ weight.T + bias, dim=1)
        p_label[scored] = probs.gather(1, targets[scored].long().unsqueeze(1)).squeeze(1)
    flagged = []
    for cls in range(n_out):  # at most half of a class: the rest of it stays, whatever the probe thinks
        members = torch.nonzero((targets == cls) & (p_label < FLAG_BELOW)).flatten()
        members = members[torch.argsort(p_label[members])][: int(counts[cls]) // 2]
        flagged += members.tolist()
    flagged = tuple(sorted(flagged))
    n_items = int(labelled.sum())
    return NoiseCheck(flagged=flagged, n_items=n_items, filtered=len(flagged) / max(n_items, 1) >= filter_from)


def unchecked_note(asked: str, n_items: int, n_classes: int) -> str:
    """The line for noise="filter" / "trim" when `check_noise` returned None: asked for, yet no image is left
    out and no loss trimmed, which the user must hear rather than read a recipe that claims the guard.

    Example:
        >>> unchecked_note("trim", 16, 2)[:60]
        "noise='trim': nothing is left out: the check of the labels n"
    """
    if n_items < MIN_PER_CLASS * n_classes:
        why = (f"the check of the labels needs {MIN_PER_CLASS} training images a class on average for its "
               f"cross-validated linear probe, and this set has {n_items} training images for {n_classes} classes")
    else:
        why = "the check's linear probe cannot be fitted to this model's head"
    return f"noise={asked!r}: nothing is left out: {why}"


@contextlib.contextmanager
def _in_order(loader: Any) -> Iterator[None]:
    """The loader yields every item once, in order, for the block."""
    before = loader.shuffle, loader.drop_last
    loader.shuffle, loader.drop_last = False, False
    try:
        yield
    finally:
        loader.shuffle, loader.drop_last = before


class GeneralizedCrossEntropy(nn.Module):
    """`(1 - p_y^q) / q` (Zhang & Sabuncu 2018): cross-entropy as q → 0, mean absolute error at q = 1.

    Example:
        >>> loss = GeneralizedCrossEntropy(0.7)
        >>> round(float(loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))), 3)
        0.549
    """

    def __init__(self, q: float = 0.7) -> None:
        super().__init__()
        self.q = q

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.float(), dim=-1).gather(1, targets.long().unsqueeze(1)).squeeze(1)
        return ((1 - probs.clamp(min=1e-6) ** self.q) / self.q).mean()


class TrimmedCrossEntropy(nn.Module):
    """Cross-entropy over the small-loss part of each training batch: the `rate` share of images with
    the largest loss is left out of the step (small-loss selection, as in Co-teaching, Han et al. 2018).

    Wrong labels have large losses once the network has learnt the easy patterns, so they stop pulling
    the weights; the share grows linearly from 0 over the first `ramp_steps` steps, while the losses
    do not yet tell wrong labels from hard images. Without gradients (validation) it is the plain mean.

    Args:
        rate: The share of each batch to leave out once ramped up (the estimated share of wrong labels).
        ramp_steps: Optimizer steps over which the share grows from 0 to `rate`.
        label_smoothing: ε of label-smoothed cross-entropy.
        weight: Class weights, or None.

    Example:
        >>> loss = TrimmedCrossEntropy(0.5, ramp_steps=0)
        >>> logits, labels = torch.tensor([[4.0, 0.0], [4.0, 0.0]]), torch.tensor([0, 1])
        >>> round(float(loss(logits, labels)), 4)  # the wrong label's loss is left out
        0.0181
    """

    def __init__(self, rate: float, ramp_steps: int, label_smoothing: float = 0.0,
                 weight: torch.Tensor | None = None) -> None:
        super().__init__()
        if not 0.0 <= rate <= MAX_TRIM:
            raise ValueError(f"rate must be in [0, {MAX_TRIM}], got {rate!r}.")
        self.rate = float(rate)
        self.ramp_steps = int(ramp_steps)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("weight", weight)
        self.steps = 0

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if targets.ndim == 2:  # soft targets (mixup / cutmix): their cross-entropy per image
            losses = -(targets * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
        else:
            losses = nn.functional.cross_entropy(logits, targets.long(), weight=self.weight, reduction="none",
                                                 label_smoothing=self.label_smoothing)
        if not torch.is_grad_enabled() or len(losses) < 2:
            return losses.mean()
        self.steps += 1
        rate = self.rate * min(1.0, self.steps / self.ramp_steps) if self.ramp_steps > 0 else self.rate
        keep = max(1, round(len(losses) * (1.0 - rate)))
        return losses.topk(keep, largest=False).values.mean()


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
    with StepProgress("disagreements", len(items), quiet=learner.quiet or not distributed.is_main_process(),
                      unit="training images", delay=AROUND_TRAINING_DELAY) as progress:
        # get_preds reads a training loader in order, unaugmented, from the images training decoded
        # already; every rank calls it under DDP.
        probs, targets = get_preds(learner, dl=learner.dls.train, progress=progress)
    dropped = getattr(dataset, "dropped", {}) or {}  # undecodable files have no prediction
    kept = [index for index in range(len(items)) if index not in dropped]
    items, labels = [items[index] for index in kept], [labels[index] for index in kept]
    n_items = min(len(items), len(probs))  # a DDP gather may pad the last rank's share
    probs, targets = probs[:n_items], targets[:n_items]
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
