"""Learning-rate specifications and the one-cycle schedule.

An LR spec is what users pass as `lr` or `lr_max`: a float (one LR for every parameter group),
`slice(hi)`, `slice(lo, hi)` or a list with one value per group. `resolve_lrs` turns any of them into
one float per group, with fastai's spacing rules:

- `slice(hi)`     -> `[hi / 10] * (n - 1) + [hi]`
- `slice(lo, hi)` -> `lo * (hi / lo) ** (i / (n - 1))` for group `i`, geometric from input to head.

The one-cycle curves follow fastai's `fit_one_cycle` exactly: over the first `pct_start` of all steps
the LR rises from `lr_max / div` to `lr_max` along a half cosine, then anneals along a half cosine to
`lr_max / div_final`. Adam's beta1 (the "momentum") moves the opposite way through `moms`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ConstantSchedule", "FlatCosSchedule", "LRSpec", "OneCycleSchedule", "SGDRSchedule", "cosine_anneal",
           "resolve_lrs", "sgdr_epochs"]

LRSpec = float | slice | Sequence[float]


def _check_lr(value: float, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{what} must be a positive, finite learning rate, got {value!r}. "
            "Typical values are 1e-4 to 1e-2; run learn.lr_find() to pick one."
        )
    return value


def resolve_lrs(lr: LRSpec, n_groups: int) -> list[float]:
    """Turn an LR spec into one learning rate per parameter group.

    Args:
        lr: A float, `slice(hi)`, `slice(lo, hi)`, or a sequence with exactly one value per group.
        n_groups: The number of parameter groups, input to head.

    Returns:
        A list of `n_groups` positive floats, the head's LR last.

    Raises:
        ValueError: If an LR is not a positive finite number, a slice is malformed, or the list
            length does not match `n_groups`.

    Example:
        >>> resolve_lrs(slice(1e-5, 1e-3), 3)
        [1e-05, 0.0001, 0.001]
        >>> resolve_lrs(slice(1e-3), 3)
        [0.0001, 0.0001, 0.001]
    """
    if isinstance(lr, slice):
        if lr.step is not None or lr.stop is None:
            raise ValueError(
                f"An LR slice must be slice(hi) or slice(lo, hi), got {lr!r}. "
                "Example: slice(1e-6, 1e-4) spreads LRs geometrically from the input to the head."
            )
        hi = _check_lr(lr.stop, "The slice's upper LR")
        if lr.start is None:
            return [hi / 10] * (n_groups - 1) + [hi]
        lo = _check_lr(lr.start, "The slice's lower LR")
        if n_groups == 1:
            return [hi]
        return [lo * (hi / lo) ** (i / (n_groups - 1)) for i in range(n_groups)]
    if isinstance(lr, (list, tuple)):
        if len(lr) != n_groups:
            raise ValueError(
                f"Got {len(lr)} learning rates for {n_groups} parameter groups. Pass one LR per group, "
                f"a single float, or a slice such as slice(1e-5, 1e-3)."
            )
        return [_check_lr(v, f"LR {i}") for i, v in enumerate(lr)]
    return [_check_lr(lr, "The learning rate")] * n_groups  # type: ignore[arg-type]


def cosine_anneal(start: float, end: float, pct: float) -> float:
    """Half-cosine interpolation from `start` (pct=0) to `end` (pct=1), as fastai's SchedCos."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


@dataclass
class ConstantSchedule:
    """Keep each group's LR fixed; momentum stays at beta1. Used by plain `fit`."""

    lrs: list[float]
    mom: float = 0.9

    def lrs_at(self, step: int) -> list[float]:
        """Per-group LRs for a global step (the same at every step)."""
        return list(self.lrs)

    def mom_at(self, step: int) -> float:
        """Momentum (Adam beta1) for a global step."""
        return self.mom

    def config(self) -> dict[str, object]:
        """What defines this schedule, as plain values (a resumed fit must have the same)."""
        return {"kind": "constant", "lrs": list(self.lrs), "mom": self.mom}


@dataclass
class OneCycleSchedule:
    """fastai's one-cycle LR and momentum curves, per step, for every parameter group.

    Step `i` of `total_steps` sits at position `pos = i / total_steps`, like fastai's scheduler, so the
    last step is just short of the final value.

    Example:
        >>> sched = OneCycleSchedule([1e-3], total_steps=100)
        >>> round(sched.lrs_at(0)[0], 8), round(sched.lrs_at(25)[0], 8)
        (4e-05, 0.001)
    """

    lr_max: list[float]
    total_steps: int
    div: float = 25.0
    div_final: float = 1e5
    pct_start: float = 0.25
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)

    def __post_init__(self) -> None:
        if not 0.0 <= self.pct_start <= 1.0:
            raise ValueError(f"pct_start must be in [0, 1], got {self.pct_start}.")
        if self.div <= 0 or self.div_final <= 0:
            raise ValueError(f"div and div_final must be positive, got {self.div} and {self.div_final}.")
        if len(self.moms) != 3:
            raise ValueError(f"moms must hold 3 values (start, middle, end), got {self.moms!r}.")

    def _phase(self, step: int) -> tuple[bool, float]:
        pos = step / max(self.total_steps, 1)
        if pos < self.pct_start:
            return True, pos / self.pct_start
        return False, (pos - self.pct_start) / max(1.0 - self.pct_start, 1e-12)

    def lrs_at(self, step: int) -> list[float]:
        """Per-group LRs at a global step."""
        warming, pct = self._phase(step)
        if warming:
            return [cosine_anneal(hi / self.div, hi, pct) for hi in self.lr_max]
        return [cosine_anneal(hi, hi / self.div_final, pct) for hi in self.lr_max]

    def config(self) -> dict[str, object]:
        """What defines this schedule, as plain values (a resumed fit must have the same)."""
        return {"kind": "one_cycle", "lr_max": list(self.lr_max), "total_steps": self.total_steps, "div": self.div,
                "div_final": self.div_final, "pct_start": self.pct_start, "moms": list(self.moms)}

    def mom_at(self, step: int) -> float:
        """Momentum (Adam beta1 / SGD momentum) at a global step."""
        warming, pct = self._phase(step)
        start, middle, end = self.moms
        return cosine_anneal(start, middle, pct) if warming else cosine_anneal(middle, end, pct)


@dataclass
class FlatCosSchedule:
    """fastai's `fit_flat_cos` curve: each group's LR held for the first `pct_start` of the steps, then a
    half cosine down to `lr / div_final`; the momentum stays at `mom`.

    Example:
        >>> sched = FlatCosSchedule([1e-3], total_steps=100)
        >>> sched.lrs_at(50)[0], round(sched.lrs_at(99)[0], 7)
        (0.001, 4e-06)
    """

    lrs: list[float]
    total_steps: int
    div_final: float = 1e5
    pct_start: float = 0.75
    mom: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.pct_start <= 1.0 or self.div_final <= 0:
            raise ValueError(f"fit_flat_cos needs pct_start in [0, 1] and div_final > 0, got {self.pct_start} and "
                             f"{self.div_final}.")

    def lrs_at(self, step: int) -> list[float]:
        """Per-group LRs at a step of the fit."""
        pos = step / max(self.total_steps, 1)
        if pos < self.pct_start:
            return list(self.lrs)
        pct = (pos - self.pct_start) / max(1.0 - self.pct_start, 1e-12)
        return [cosine_anneal(lr, lr / self.div_final, pct) for lr in self.lrs]

    def mom_at(self, step: int) -> float:
        return self.mom

    def config(self) -> dict[str, object]:
        return {"kind": "flat_cos", "lrs": list(self.lrs), "total_steps": self.total_steps,
                "div_final": self.div_final, "pct_start": self.pct_start, "mom": self.mom}


def sgdr_epochs(n_cycles: int, cycle_len: int, cycle_mult: int) -> int:
    """Epochs of `fit_sgdr`: cycle i lasts `cycle_len * cycle_mult**i` epochs.

    Example:
        >>> sgdr_epochs(3, 1, 2)
        7
    """
    if cycle_mult == 1:
        return n_cycles * cycle_len
    return cycle_len * (cycle_mult**n_cycles - 1) // (cycle_mult - 1)


@dataclass
class SGDRSchedule:
    """fastai's `fit_sgdr` curve: `n_cycles` half cosines from each group's `lr_max` to 0 (warm restarts),
    cycle i taking `cycle_len * cycle_mult**i / n_epoch` of the steps; the momentum stays at `mom`.

    Example:
        >>> sched = SGDRSchedule([1e-3], total_steps=70, n_cycles=3, cycle_len=1, cycle_mult=2)
        >>> sched.lrs_at(0)[0], sched.lrs_at(10)[0], sched.lrs_at(30)[0]
        (0.001, 0.001, 0.001)
    """

    lr_max: list[float]
    total_steps: int
    n_cycles: int
    cycle_len: int
    cycle_mult: int = 2
    mom: float = 0.9

    def _bounds(self) -> list[float]:
        n_epoch = sgdr_epochs(self.n_cycles, self.cycle_len, self.cycle_mult)
        bounds = [0.0]
        for index in range(self.n_cycles):
            bounds.append(bounds[-1] + self.cycle_len * self.cycle_mult**index / n_epoch)
        return bounds

    def lrs_at(self, step: int) -> list[float]:
        """Per-group LRs at a step of the fit."""
        pos = step / max(self.total_steps, 1)
        bounds = self._bounds()
        cycle = min(max(index for index, start in enumerate(bounds) if pos >= start), self.n_cycles - 1)
        pct = (pos - bounds[cycle]) / (bounds[cycle + 1] - bounds[cycle])
        return [cosine_anneal(lr, 0.0, pct) for lr in self.lr_max]

    def mom_at(self, step: int) -> float:
        return self.mom

    def config(self) -> dict[str, object]:
        return {"kind": "sgdr", "lr_max": list(self.lr_max), "total_steps": self.total_steps,
                "n_cycles": self.n_cycles, "cycle_len": self.cycle_len, "cycle_mult": self.cycle_mult, "mom": self.mom}
