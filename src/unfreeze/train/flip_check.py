"""`flip="auto"`: decide from the training images whether horizontal flips are a safe augmentation.

Mirroring is harmless for photos of pets or products, which are seen from either side, and wrong for
digits, text or arrows, whose mirror images are no member of their class. What tells them apart is
handedness: in handed data the mirror image of an item looks unlike every item of its class. Before
training, `check_flips` embeds a random sample of the training images and of their mirror images with
the frozen pretrained body (global average pooling), fits a linear probe on the images with 2-fold
cross-validation, and scores it on the held-out images and on their mirrors. Flips are turned off when
the mirrors' error exceeds both `RATIO` times the images' own error and that error plus `MARGIN`
(benchmarks/results/recipe_choice.md has the measured values: digits far above, Fashion-MNIST below).

The check costs two forward passes of the body over at most `max_items` images (decoded once and
cached for training anyway) and a few hundred full-batch steps of a linear layer. Only training images
are looked at: the validation set stays unseen by every choice the recipe makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from unfreeze.data.sources import DataError
from unfreeze.data.transforms import resize_batch
from unfreeze.inference import channels_last
from unfreeze.models.batchnorm_folding import folded_batchnorm
from unfreeze.progress import AROUND_TRAINING_DELAY, StepProgress

__all__ = ["MARGIN", "RATIO", "FlipCheck", "check_flips"]

RATIO = 2.0  # mirrors misclassified more than twice as often as the images...
MARGIN = 0.1  # ...and by 10 points more: a probe on a few hundred images is noisy at small errors
MIN_PER_CLASS = 20  # a class takes part with at least this many images (10 a fold); two such classes at least
_PROBE_STEPS = 150
_PROBE_LR = 1e-2


@dataclass(frozen=True)
class FlipCheck:
    """What `check_flips` measured and decided.

    Attributes:
        flips: The decision: True keeps horizontal flips in the augmentation.
        error: Held-out error of the linear probe on the images as they are.
        error_mirrored: The same probe's error on the mirror images of those held-out images.
        n_items: Training images the probes saw (both folds).
    """

    flips: bool
    error: float
    error_mirrored: float
    n_items: int

    def note(self) -> str:
        """One line for the log, the recorder's notes and the report.

        Example:
            >>> print(FlipCheck(False, 0.117, 0.571, 1000).note())  # doctest: +NORMALIZE_WHITESPACE
            flip='auto': flips off: the images are handed (a linear probe's error is 0.117 on 1000
            training images and 0.571 on their mirror images); --flip turns them on
        """
        verdict = "flips off: the images are handed" if not self.flips else "flips on"
        hint = "; --flip turns them on" if not self.flips else ""
        return (f"flip='auto': {verdict} (a linear probe's error is {self.error:.3f} on {self.n_items} training "
                f"images and {self.error_mirrored:.3f} on their mirror images){hint}")


def check_flips(learner: Any, max_items: int = 500, seed: int = 0) -> FlipCheck | None:
    """Decide whether horizontal flips suit `learner`'s training data (see the module's docstring).

    Args:
        learner: A learner whose model has a `body` (every `vision_learner` model), with `dls`, `task`
            and `device`.
        max_items: The most training images sampled (at random, seeded) for the probes.
        seed: Seed of the sample, the folds and the probes' initial weights.

    The sample is balanced: each class with at least `MIN_PER_CLASS` images gives the same number (at
    most max_items / classes), so that a long tail's large classes cannot make the probe a prior
    that mirrors happen to break, and classes too small to cross-validate are left out.

    Returns:
        The measurements and the decision, or None when the check cannot run (a model without a
        `body`, loaders that are not unfreeze's, or fewer than two classes with `MIN_PER_CLASS`
        labelled training images: too few to tell handedness from chance); the caller keeps flips then.

    Example:
        >>> check = check_flips(learn)  # doctest: +SKIP
        >>> check.flips, round(check.error, 2), round(check.error_mirrored, 2)  # digits  # doctest: +SKIP
        (False, 0.17, 0.62)
    """
    body, loader = getattr(learner.model, "body", None), learner.dls.train
    readable = all(hasattr(loader, name) for name in ("size", "mean", "std", "batch_size")) and \
        hasattr(getattr(loader, "dataset", None), "targets")
    if not isinstance(body, nn.Module) or not readable:  # not unfreeze's loaders: nothing to sample
        return None
    features, mirrored, targets = _embed(learner, body, max_items, seed)
    if targets is None or len(targets) < MIN_PER_CLASS:
        return None
    generator = torch.Generator().manual_seed(seed)
    fold = torch.randperm(len(targets), generator=generator) % 2 == 0
    error = error_mirrored = 0.0
    for held_out in (fold, ~fold):
        probe = _fit_probe(learner.task, features[~held_out], targets[~held_out], generator)
        weight = float(held_out.sum()) / len(targets)
        error += weight * _error(learner.task, probe, features[held_out], targets[held_out])
        error_mirrored += weight * _error(learner.task, probe, mirrored[held_out], targets[held_out])
    handed = error_mirrored > max(RATIO * error, error + MARGIN)
    return FlipCheck(flips=not handed, error=error, error_mirrored=error_mirrored, n_items=len(targets))


def _embed(learner: Any, body: nn.Module, max_items: int, seed: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Pooled body features of a random sample of training images and of their mirrors, with targets."""
    loader = learner.dls.train
    dataset = loader.dataset
    order = _balanced_sample(dataset.targets, max_items, seed)
    mean = torch.tensor(loader.mean, device=learner.device).view(1, 3, 1, 1)
    std = torch.tensor(loader.std, device=learner.device).view(1, 3, 1, 1)
    features, mirrored, targets = [], [], []
    was_training = learner.model.training
    learner.model.eval()
    progress = StepProgress("flip check", len(order), quiet=learner.quiet, unit="images",
                            delay=AROUND_TRAINING_DELAY)
    try:
        with torch.no_grad(), progress:
            for start in range(0, len(order), loader.batch_size):
                images, kept = [], []
                for index in order[start : start + loader.batch_size].tolist():
                    try:
                        images.append(dataset[index][0])
                    except DataError:  # an undecodable file: the loaders leave it out too
                        continue
                    kept.append(index)
                if not images:
                    continue
                batch = resize_batch(torch.stack(images).to(learner.device).float(), loader.size)
                batch = channels_last((batch / 255.0 - mean) / std)
                with folded_batchnorm(body, batch):
                    features.append(_pooled(body(batch)))
                    mirrored.append(_pooled(body(channels_last(batch.flip(-1)))))
                targets.append(dataset.targets[torch.as_tensor(kept)])
                progress.advance(len(kept))
    finally:
        learner.model.train(was_training)
    if not targets:
        return torch.empty(0), torch.empty(0), None
    return torch.cat(features).cpu(), torch.cat(mirrored).cpu(), torch.cat(targets).cpu()


def _balanced_sample(targets: torch.Tensor, max_items: int, seed: int) -> np.ndarray:
    """Training indices: the same number from each single-label class with `MIN_PER_CLASS` images or more
    (none when fewer than two such classes); multi-label data: a random sample of the labelled items."""
    rng = np.random.default_rng(seed)
    labelled = _labelled(targets)
    if targets.ndim != 1:
        return rng.permutation(labelled)[:max_items]
    labels = targets.cpu().numpy()[labelled]
    classes = [labelled[labels == cls] for cls in np.unique(labels)]
    classes = [members for members in classes if len(members) >= MIN_PER_CLASS]
    if len(classes) < 2:
        return np.empty(0, dtype=np.int64)
    each = max(1, min(max_items // len(classes), min(len(members) for members in classes)))
    chosen = [rng.permutation(members)[:each] for members in classes]
    return rng.permutation(np.concatenate(chosen))


def _labelled(targets: torch.Tensor) -> np.ndarray:
    """Indices of items with a label (single-label: -1 is unlabelled; multi-label: a NaN row is)."""
    if targets.ndim == 1:
        return np.flatnonzero(targets.cpu().numpy() >= 0)
    return np.flatnonzero(~targets.isnan().any(dim=-1).cpu().numpy())


def _pooled(features: torch.Tensor) -> torch.Tensor:
    return features.float().mean(dim=(2, 3)) if features.ndim == 4 else features.float().flatten(1)


def _fit_probe(task: Any, features: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> nn.Module:
    """A standardising linear probe fitted full-batch with Adam and the task's own loss."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    n_out = targets.shape[1] if targets.ndim == 2 else int(targets.max()) + 1
    linear = nn.Linear(features.shape[1], n_out)
    with torch.no_grad():
        linear.weight.normal_(0.0, 0.01, generator=generator)
        linear.bias.zero_()
    probe = nn.Sequential(_Standardise(mean, std), linear)
    loss_func = task.loss()
    optimizer = torch.optim.Adam(linear.parameters(), lr=_PROBE_LR, weight_decay=1e-4)
    for _ in range(_PROBE_STEPS):
        optimizer.zero_grad()
        loss = loss_func(probe(features), targets)
        loss.backward()
        optimizer.step()
    return probe.eval()


def _error(task: Any, probe: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> float:
    """Error rate (single-label) or per-label error (multi-label) of the probe."""
    with torch.no_grad():
        decoded = task.decode(task.activation(probe(features)))
    if targets.ndim == 2:
        return float((decoded.float() != targets.float()).float().mean())
    return float((decoded != targets).float().mean())


class _Standardise(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std
