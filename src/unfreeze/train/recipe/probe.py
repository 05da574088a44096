"""`fit_linear_probe`: the head fitted on the frozen body's cached features, the first half of LP-FT.

With few images, a frozen phase of a few optimizer steps leaves the head near its random start, and
the unfrozen phase then moves the body with the gradients of a random head, which distorts the
pretrained features (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features"). A linear probe
first makes the head good for the frozen features; fine-tuning from there keeps them. The probe is
cheap: the body runs once per augmentation pass over the training images (`passes` passes, each with
the loader's own augmentation draws), and the head is then fitted on the cached features with
full-batch steps (standardised features, Adam, L2), which cost nothing next to a forward pass.

The probe is for heads whose only trainable layer is the last linear one (the recipe's "linear" head:
pooling, flatten, linear); other heads are left to the frozen epochs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unfreeze.models.batchnorm_folding import folded_batchnorm
from unfreeze.progress import AROUND_TRAINING_DELAY, StepProgress

__all__ = ["ProbeFit", "embed_training_images", "fit_linear_probe", "fit_probe_weights", "probe_head"]

_STEPS = 300
_LR = 1e-2
_L2 = 1e-3  # on standardised features: a mild prior that keeps few-image probes from saturating
_EPOCH_OFFSET = 1_000_000  # the probe's augmentation draws use epochs no fit reaches


@dataclass(frozen=True)
class ProbeFit:
    """What `fit_linear_probe` did.

    Attributes:
        n_items: Training images in the features.
        passes: Augmentation passes the body ran over them.
        train_loss: The probe's final loss on the cached features.
    """

    n_items: int
    passes: int
    train_loss: float

    def note(self) -> str:
        """One line for the log and the recorder's notes."""
        return (f"probe: the head fitted on the frozen body's features of {self.n_items} training images "
                f"({self.passes} augmentation passes; loss {self.train_loss:.3f})")


def probe_head(model: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    """(what comes before the head's last linear layer, that layer) when that layer is the head's only
    trainable one (the linear head); None for any other head."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Sequential) or not isinstance(head[-1], nn.Linear):
        return None
    before = head[:-1]
    if any(True for _ in before.parameters()):
        return None
    return before, head[-1]


def _features(learner: Any, before: nn.Module, passes: int, description: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled body features of every training batch, `passes` times with the loader's augmentation."""
    loader, model = learner.dls.train, learner.model
    features, targets = [], []
    epoch, repeats, was_training = loader.epoch, loader.passes, model.training
    loader.passes = 1  # one pass per draw here, whatever the fit's plan makes an epoch
    model.eval()
    progress = StepProgress(description, passes * len(loader.dataset), quiet=learner.quiet, unit="images",
                            delay=AROUND_TRAINING_DELAY)
    try:
        with torch.no_grad(), progress:
            for index in range(passes):
                loader.set_epoch(_EPOCH_OFFSET + index)
                for images, labels in loader:
                    with folded_batchnorm(model.body, images):
                        features.append(before(model.body(images)).float().flatten(1).cpu())
                    targets.append(labels.cpu())
                    progress.advance(len(labels))
    finally:
        loader.set_epoch(epoch)
        loader.passes = repeats
        model.train(was_training)
    return torch.cat(features), torch.cat(targets)


def fit_linear_probe(learner: Any, passes: int = 4, seed: int = 0, loss_func: nn.Module | None = None,
                     steps: int = _STEPS) -> ProbeFit | None:
    """Fit the learner's linear head on the frozen body's features (see the module's docstring).

    Args:
        learner: A learner with a linear head (`probe_head`), `dls`, `task` and `model.body`.
        passes: Augmentation passes over the training images (the features are computed once each).
        seed: Seed of the head's starting weights.
        loss_func: The loss to fit (the recipe's, e.g. logit-adjusted); None: the task's.
        steps: Full-batch optimizer steps.

    Returns:
        What was fitted, or None when the head is not a linear one (nothing changed then).

    Example:
        >>> fit_linear_probe(learn).note()  # doctest: +SKIP
        'probe: the head fitted on the frozen body's features of 100 training images (4 augmentation passes; ...'
    """
    parts = probe_head(learner.model)
    if parts is None or getattr(learner.model, "body", None) is None:
        return None
    before, linear = parts
    features, targets = _features(learner, before, passes, "linear probe")
    labelled = learner.task.labelled(targets)
    features, targets = features[labelled], targets[labelled]
    if len(targets) == 0:
        return None
    # A copy on the CPU: the learner's own loss (class weights on its device) stays where it is.
    loss_func = copy.deepcopy(loss_func if loss_func is not None else learner.task.loss()).cpu()
    mean, std, weight, bias, loss = fit_probe_weights(features, targets, loss_func, linear.out_features, seed, steps)
    with torch.no_grad():  # undo the standardisation inside the layer: W' = W / std, b' = b - W' · mean
        folded = weight / std
        linear.weight.copy_(folded.to(linear.weight))
        linear.bias.copy_((bias - folded @ mean).to(linear.bias))
    return ProbeFit(n_items=len(learner.dls.train.dataset), passes=passes, train_loss=loss)


def fit_probe_weights(features: torch.Tensor, targets: torch.Tensor, loss_func: nn.Module, n_out: int, seed: int = 0,
                      steps: int = _STEPS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """A linear layer fitted full-batch on standardised `features`: (mean, std, weight, bias, final loss).

    Example:
        >>> x, y = torch.randn(40, 8), torch.arange(40) % 2
        >>> fit_probe_weights(x, y, nn.CrossEntropyLoss(), 2)[2].shape
        torch.Size([2, 8])
    """
    mean, std = features.mean(0), features.std(0) + 1e-6
    standardised = (features - mean) / std
    generator = torch.Generator().manual_seed(seed)
    weight = torch.empty(n_out, features.shape[1]).normal_(0.0, 0.01, generator=generator).requires_grad_(True)
    bias = torch.zeros(n_out, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=_LR)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_func(standardised @ weight.T + bias, targets) + _L2 * weight.square().sum()
        loss.backward()
        optimizer.step()
    return mean, std, weight.detach(), bias.detach(), loss.item()


def embed_training_images(learner: Any, passes: int = 1, labelled_only: bool = True,
                          description: str = "probe features") -> tuple[torch.Tensor, torch.Tensor] | None:
    """The frozen body's pooled features of the training images (`passes` augmented passes, in the
    loader's order) and their targets (labelled items only, unless not `labelled_only`); None for a
    model without a linear head. A pass that takes a while shows progress as `description`."""
    parts = probe_head(learner.model)
    if parts is None or getattr(learner.model, "body", None) is None:
        return None
    features, targets = _features(learner, parts[0], passes, description)
    if not labelled_only:
        return features, targets
    labelled = learner.task.labelled(targets)
    return features[labelled], targets[labelled]
