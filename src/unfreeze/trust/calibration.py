"""Temperature scaling (Guo et al. 2017): one number T that divides the logits before the activation.

A network trained with cross-entropy is usually overconfident on images it did not train on; dividing
its logits by a T > 1 fitted on the validation predictions (by likelihood) makes a probability of 0.8
right about 80% of the time, without changing which class wins (softmax) or the sign of any logit
(sigmoid). Multi-label models get the same single T on their sigmoid logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional

from unfreeze.trust.metrics import calibration_metrics

__all__ = ["MAX_TEMPERATURE", "MIN_TEMPERATURE", "ROUGH_TEMPERATURE", "apply_temperature", "calibration_report",
           "fit_temperature", "rough_fit", "temperature_standard_error"]

# A fitted T outside these bounds means a degenerate validation set (all right with huge margins, or
# labels that have nothing to do with the images); the bound keeps the probabilities usable.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
# A fitted temperature whose standard error exceeds this share of it is a rough fit (train says so).
ROUGH_TEMPERATURE = 0.05


def apply_temperature(logits: torch.Tensor, temperature: float, multi_label: bool) -> torch.Tensor:
    """The calibrated probabilities: softmax (or a sigmoid per class) of `logits / temperature`.

    Example:
        >>> apply_temperature(torch.tensor([[2.0, 0.0]]), 2.0, False).round(decimals=3)
        tensor([[0.7310, 0.2690]])
    """
    scaled = logits.float() / temperature
    return torch.sigmoid(scaled) if multi_label else torch.softmax(scaled, dim=1)


def _loss(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return functional.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
    return functional.cross_entropy(logits, targets.long())


def _labelled(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 logits and the targets of the labelled items (class -1 or a NaN row is unlabelled)."""
    logits, targets = logits.detach().double().cpu(), targets.detach().cpu()
    keep = ~torch.isnan(targets.double()).any(dim=1) if multi_label else targets >= 0
    return logits[keep], targets[keep]


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool = False) -> float:
    """The temperature that minimises the negative log-likelihood of `targets` under `logits / T`.

    Fitted on log T (so T stays positive) with L-BFGS in float64; unlabelled items are left out. With
    no labelled item it returns 1 (nothing to fit).

    Args:
        logits: float [N, C], the model's raw outputs on the validation images.
        targets: long [N] class indices (-1 unlabelled) or multi-hot float [N, C] (NaN rows unlabelled).
        multi_label: The logits are per-class sigmoid logits.

    Example:
        >>> logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
        >>> fit_temperature(logits, torch.tensor([0, 1, 1, 0])) > 1  # overconfident: one in four is wrong
        True
    """
    logits, targets = _labelled(logits, targets, multi_label)
    if len(logits) == 0:
        return 1.0
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _loss(logits / log_t.exp(), targets, multi_label)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature):
        return 1.0
    return min(max(temperature, MIN_TEMPERATURE), MAX_TEMPERATURE)


def temperature_standard_error(logits: torch.Tensor, targets: torch.Tensor, temperature: float,
                               multi_label: bool = False) -> float | None:
    """How precisely these items pin down the temperature `fit_temperature` fitted on them: one standard error.

    The fitted log T is an M-estimate, so its variance is the sandwich (robust) estimate, the mean squared
    per-item gradient of the loss over the squared mean curvature, divided by the number of items; the
    delta method carries it to T. It is about what a different draw of as many validation images would move
    the temperature by (one standard deviation; benchmarks/trust_study.py compares it with refits).

    Args:
        logits: float [N, C], the raw outputs the temperature was fitted on.
        targets: As in `fit_temperature`.
        temperature: The fitted temperature.
        multi_label: The logits are per-class sigmoid logits.

    Returns:
        The standard error of T; None with fewer than two labelled items, a temperature at a bound, or a
        likelihood with no curvature there (nothing to say).

    Example:
        >>> logits = torch.randn(400, 5, generator=torch.Generator().manual_seed(0)) * 3
        >>> targets = torch.distributions.Categorical(logits=logits / 1.5).sample()
        >>> error = temperature_standard_error(logits, targets, fit_temperature(logits, targets))
        >>> 0 < error < 0.5
        True
    """
    logits, targets = _labelled(logits, targets, multi_label)
    if len(logits) < 2 or not MIN_TEMPERATURE < temperature < MAX_TEMPERATURE:
        return None

    # One copy of log T per item: item i's loss depends on its copy alone, so one backward pass gives every
    # item's gradient, and a second one every item's curvature.
    log_t = torch.full((len(logits),), math.log(temperature), dtype=torch.float64, requires_grad=True)
    scaled = logits / log_t.exp().unsqueeze(1)
    if multi_label:
        losses = functional.binary_cross_entropy_with_logits(scaled, targets.double(), reduction="none").sum(dim=1)
    else:
        losses = functional.cross_entropy(scaled, targets.long(), reduction="none")
    (gradients,) = torch.autograd.grad(losses.sum(), log_t, create_graph=True)
    (curvatures,) = torch.autograd.grad(gradients.sum(), log_t)
    curvature = float(curvatures.mean())
    if not curvature > 0:
        return None
    error = temperature * math.sqrt(float(gradients.detach().pow(2).mean()) / len(logits)) / curvature
    return error if math.isfinite(error) else None


def rough_fit(temperature: float | None, standard_error: float | None) -> bool:
    """Whether a fitted temperature is a rough fit: its standard error over `ROUGH_TEMPERATURE` of it.

    Example:
        >>> rough_fit(1.2, 0.13), rough_fit(1.2, 0.03), rough_fit(1.2, None)
        (True, False, False)
    """
    return bool(temperature) and standard_error is not None and standard_error > ROUGH_TEMPERATURE * temperature


def calibration_report(logits: torch.Tensor, targets: torch.Tensor, temperature: float,
                       multi_label: bool = False) -> dict[str, Any]:
    """ECE, NLL, Brier and reliability bins before (T = 1) and after scaling by `temperature`.

    Example:
        >>> report = calibration_report(torch.tensor([[3.0, 0.0]]), torch.tensor([0]), 1.5)
        >>> sorted(report), report["temperature"]
        (['after', 'before', 'temperature'], 1.5)
    """
    logits, targets = logits.detach().cpu(), targets.detach().cpu()
    return {"temperature": temperature,
            "before": calibration_metrics(apply_temperature(logits, 1.0, multi_label), targets, multi_label),
            "after": calibration_metrics(apply_temperature(logits, temperature, multi_label), targets, multi_label)}
