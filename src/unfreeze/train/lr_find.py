"""The LR range test (Leslie Smith's, as fastai runs it), its suggestions, and its plot.

`lr_find` trains for up to `num_it` batches while the LR rises exponentially,
`lr_i = start_lr * (end_lr / start_lr) ** (i / num_it)`, smooths the loss with a debiased EMA
(beta 0.98) and stops once the smoothed loss exceeds 4x the best one. It then puts the learner back
exactly as it found it: weights, optimizer state, norm statistics, gradients, RNG states, freeze state,
train/eval modes, step counter, recorder and the loader's epoch. The snapshot lives in memory, so two
runs in parallel processes never share a file (fastai's temporary files collide between runs).

Each step is the learner's `train_step` (`Stepper.train_step`), the same step `fit` takes. The
groups keep their LR ratios when `lr_ratios` is given (fastai, Lightning and torch-lr-finder all
flatten them to one LR); the curve and every suggestion are the head group's LR.

The four suggestions follow fastai 2.8 (`fastai.callback.schedule`) exactly, on the smoothed losses of
points `[num_it // 10 : -5]`, cut at the first non-finite one:

- valley: the longest decreasing subsequence of the losses (fastai's O(n^2) DP); with `max_end` its
  last index and `max_start = max_end - length`, the pick is `max_start + int(s) + int(s / 2)` where
  `s = (max_end - max_start) / 3`.
- slide: fastai's interval slide rule on `np.gradient(losses)` (lr_diff=15, thresh=0.005).
- minimum: the LR at the lowest loss, divided by 10.
- steep: the LR where the loss falls fastest per unit of log LR.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from unfreeze import distributed
from unfreeze.progress import StepProgress
from unfreeze.tasks import Regression
from unfreeze.train.input_size import check_one_image_batches, check_output_width
from unfreeze.train.schedules import LRSpec, resolve_lrs

if TYPE_CHECKING:

    from unfreeze.train.protocols import RangeTestTarget

__all__ = [
    "LRFindError",
    "LRFindResult",
    "LRFindWarning",
    "SuggestedLRs",
    "curve_flags",
    "lr_find",
    "minimum",
    "slide",
    "steep",
    "suggestion_window",
    "valley",
]

_DIVERGE = 4.0  # stop once the smoothed loss exceeds this multiple of the best one
_MOMENTUM = 0.9  # Adam beta1 / SGD momentum during the test, the optimizer's default
_FALLBACK_LR = 1e-3  # a conservative LR when the curve gives no usable valley
_DISAGREEMENT = 100.0  # warn when suggestions spread over more than this factor (2 orders)


class LRFindError(RuntimeError):
    """The range test could not produce a curve (for example the very first loss is NaN)."""


class LRFindWarning(UserWarning):
    """The curve was unusual: no valley, a fallback LR, or suggestions that disagree."""


# ---------------------------------------------------------------------------- suggestions


def suggestion_window(lrs: Sequence[float], losses: Sequence[float], num_it: int) -> tuple[np.ndarray, np.ndarray]:
    """The points the suggestions look at: `[num_it // 10 : -5]`, cut at the first non-finite loss.

    Example:
        >>> lrs, losses = suggestion_window(list(range(1, 21)), [1.0] * 9 + [float("nan")] * 11, 20)
        >>> lrs.tolist()
        [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    """
    lr_array = np.asarray(lrs, dtype=np.float64)[num_it // 10 : -5]
    loss_array = np.asarray(losses, dtype=np.float64)[num_it // 10 : -5]
    bad = np.flatnonzero(~np.isfinite(loss_array))
    if len(bad):
        lr_array, loss_array = lr_array[: bad[0]], loss_array[: bad[0]]
    return lr_array, loss_array


def valley(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """fastai's valley: about half way down the longest decreasing stretch of the curve.

    Returns None when no loss is lower than an earlier one (there is no valley).

    Example:
        >>> f"{valley(np.logspace(-6, 2, 9), np.array([3, 2.8, 2.5, 2, 1.5, 1, 3, 4, 5])):.0e}"
        '1e-04'
    """
    n = len(losses)
    longest = [1] * n  # longest decreasing subsequence ending at i
    max_start, max_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[max_end] < longest[i]:
                max_end = i
                max_start = max_end - longest[max_end]
    if max_end == 0:
        return None
    sections = (max_end - max_start) / 3
    # fastai's max_start is one before the stretch, so a stretch from index 0 gives -1; clamp to 0.
    index = max(max_start + int(sections) + int(sections / 2), 0)
    return float(lrs[index])


def slide(
    lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005, adjust_value: float = 1.0
) -> float | None:
    """fastai's slide rule: walk left until the loss gradients `lr_diff` points apart agree within `thresh`.

    Returns None when the curve has no more than `lr_diff` points.

    Example:
        >>> f"{slide(np.logspace(-6, 0, 20), np.linspace(3, 1, 20)):.2e}"  # straight line: lrs[-16]
        '1.83e-05'
    """
    if len(losses) <= lr_diff:
        return None
    gradient = np.gradient(np.asarray(losses, dtype=np.float64))
    right, left = -1, -1 - lr_diff
    local_min_lr = lrs[left]
    while left >= -len(losses) and abs(gradient[right] - gradient[left]) > thresh:
        local_min_lr = lrs[left]
        right -= 1
        left -= 1
    return float(local_min_lr) * adjust_value


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """One tenth of the LR at the lowest loss (None for an empty curve).

    Example:
        >>> minimum(np.array([1e-4, 1e-3, 1e-2]), np.array([2.0, 1.0, 3.0]))
        0.0001
    """
    if len(losses) == 0:
        return None
    return float(lrs[int(np.argmin(losses))]) / 10


def steep(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """The LR where the loss drops fastest against log LR (left end of the steepest segment).

    Returns None for fewer than 2 points.

    Example:
        >>> steep(np.array([1e-4, 1e-3, 1e-2, 1e-1]), np.array([3.0, 2.5, 1.0, 0.9]))
        0.001
    """
    if len(losses) < 2:
        return None
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(slopes))])


# ---------------------------------------------------------------------------- result


class SuggestedLRs(tuple):  # a tuple, so `lr_min, lr_steep = ...` unpacks; the names live in _fields
    """Suggested LRs by rule name, as fastai's lr_find returns them: unpack it or read a field.

    Example:
        >>> lr_min, lr_steep = SuggestedLRs(minimum=1.2e-3, steep=3.3e-4)
        >>> SuggestedLRs(minimum=1.2e-3, steep=3.3e-4)
        SuggestedLRs(minimum=1.2e-03, steep=3.3e-04)
        >>> SuggestedLRs(valley=1e-3).valley
        0.001
    """

    _fields: tuple[str, ...]

    def __new__(cls, **lrs: float) -> SuggestedLRs:
        suggested = super().__new__(cls, (float(lr) for lr in lrs.values()))
        suggested._fields = tuple(lrs)
        return suggested

    def __getattr__(self, name: str) -> float:
        fields = self.__dict__.get("_fields", ())
        if name in fields:
            return self[fields.index(name)]
        raise AttributeError(f"SuggestedLRs has no {name!r}; it has {', '.join(fields) or 'no fields'}.")

    def __getnewargs_ex__(self) -> tuple[tuple[()], dict[str, float]]:  # copy and pickle keep the names
        return (), self._asdict()

    def _asdict(self) -> dict[str, float]:
        return dict(zip(self._fields, self, strict=True))

    def __repr__(self) -> str:
        return f"SuggestedLRs({', '.join(f'{name}={lr:.1e}' for name, lr in self._asdict().items())})"


@dataclass(repr=False)  # the curve's hundreds of points would make a notebook echo kilobytes
class LRFindResult:
    """The curve and the suggested LRs of one range test. Every LR is the head group's.

    It shows, indexes and unpacks as fastai's result does, `SuggestedLRs(valley=1.6e-03)`; the curve
    stays in its fields.

    Attributes:
        lrs: Head LR at each iteration.
        losses: Smoothed (debiased EMA) loss at each iteration, the curve the suggestions read.
        raw_losses: The loss of each batch.
        valley, slide, minimum, steep: Suggested head LRs (NaN where a rule is undefined; valley falls
            back to a conservative LR with a warning instead).
        lr_ratios: Each group's LR as a multiple of the head's during the test (all 1.0 by default).
        warnings: Anything unusual about the curve, in words.
        num_it: The requested number of iterations (`len(lrs)` is smaller after an early stop).
        diverged: True when the test stopped because the loss exceeded 4x its best.
        seconds: Wall time of the test.
        plot_path: Where the plot was saved, if it was.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    valley: float
    slide: float
    minimum: float
    steep: float
    lr_ratios: list[float]
    warnings: list[str] = field(default_factory=list)
    num_it: int = 100
    diverged: bool = False
    seconds: float = 0.0
    plot_path: Path | None = None

    def __repr__(self) -> str:
        """fastai's short form, `SuggestedLRs(valley=...)`, rather than every point of the curve.

        Example:
            >>> LRFindResult([1e-4] * 100, [1.0] * 100, [1.0] * 100, 1.6e-3, 0, 0, 0, [1.0])
            SuggestedLRs(valley=1.6e-03)
        """
        return repr(SuggestedLRs(valley=self.valley))

    # It also indexes and unpacks as that tuple does: `learn.lr_find()[0]`, `lr, = learn.lr_find()`.
    def __getitem__(self, index: int) -> float:
        return SuggestedLRs(valley=self.valley)[index]

    def __iter__(self) -> Iterator[float]:
        return iter(SuggestedLRs(valley=self.valley))

    def __len__(self) -> int:
        return 1

    @property
    def suggestion(self) -> float:
        """The default suggestion: valley."""
        return self.valley

    @property
    def head_lr(self) -> float:
        """The head group's suggested LR (valley); the other groups follow `lr_ratios`."""
        return self.valley

    @property
    def suggestions(self) -> dict[str, float]:
        """All four suggestions by name."""
        return {"valley": self.valley, "slide": self.slide, "minimum": self.minimum, "steep": self.steep}

    def suggest(self, *funcs: Callable[[np.ndarray, np.ndarray], float | None]) -> SuggestedLRs:
        """fastai's `suggest_funcs`: the LRs of the given rules, by name (default: valley).

        The built-in rules (`valley`, `slide`, `minimum`, `steep`) give the values stored here (valley
        with its fallback); another function is called as `func(lrs, losses)` on the same window of
        the curve and may return None (NaN).

        Example:
            >>> lr_min, lr_steep = result.suggest(minimum, steep)  # doctest: +SKIP
        """
        stored = {"valley": valley, "slide": slide, "minimum": minimum, "steep": steep}
        window = suggestion_window(self.lrs, self.losses, self.num_it)
        values = {}
        for func in funcs or (valley,):
            name = getattr(func, "__name__", type(func).__name__)
            if not callable(func):
                raise TypeError(f"suggest takes rules such as minimum, steep, valley, slide; got {func!r}.")
            lr = getattr(self, name) if stored.get(name) is func else func(*window)
            values[name] = math.nan if lr is None else float(lr)
        return SuggestedLRs(**values)

    def group_lrs(self, lr: float | None = None) -> list[float]:
        """Each group's LR for head LR `lr` (default: valley), keeping the tested ratios.

        Example:
            >>> LRFindResult([], [], [], 1e-3, 0, 0, 0, [0.01, 0.1, 1.0]).group_lrs()
            [1e-05, 0.0001, 0.001]
        """
        head = self.valley if lr is None else float(lr)
        return [head * ratio for ratio in self.lr_ratios]

    def slice(self, lr: float | None = None) -> slice:
        """`slice(lo, hi)` for `fit_one_cycle`: hi is the head LR, lo the first group's at the tested ratio.

        Exact for the ratios of `slice(lo, hi)` (geometric) and of equal LRs; for other lists use
        `group_lrs`.

        Example:
            >>> LRFindResult([], [], [], 1e-3, 0, 0, 0, [0.01, 0.1, 1.0]).slice()
            slice(1e-05, 0.001, None)
        """
        lrs = self.group_lrs(lr)
        return slice(lrs[0], lrs[-1])


# ---------------------------------------------------------------------------- the test


def _check_args(start_lr: Any, end_lr: Any, num_it: Any) -> None:
    problems = []
    if not isinstance(start_lr, (int, float)) or not math.isfinite(start_lr) or start_lr <= 0:
        problems.append(f"start_lr must be a positive number, got {start_lr!r}")
    if not isinstance(end_lr, (int, float)) or not math.isfinite(end_lr) or end_lr <= 0:
        problems.append(f"end_lr must be a positive number, got {end_lr!r}")
    elif not problems and end_lr <= start_lr:
        problems.append(f"end_lr ({end_lr}) must be larger than start_lr ({start_lr})")
    if isinstance(num_it, bool) or not isinstance(num_it, int) or num_it < 6:
        problems.append(f"num_it must be a whole number >= 6, got {num_it!r}")
    if problems:
        raise ValueError("; ".join(problems) + ". Defaults: start_lr=1e-7, end_lr=10, num_it=100.")


def _ratios(learner: RangeTestTarget, lr_ratios: LRSpec | None) -> list[float]:
    if lr_ratios is None:
        return [1.0] * learner.n_groups
    lrs = resolve_lrs(lr_ratios, learner.n_groups)
    return [lr / lrs[-1] for lr in lrs]


def _batches(loader: Any, first_epoch: int, skip_single: bool) -> Any:
    """Yield batches forever, starting a new epoch (new order, new augmentations) when one runs out;
    with `skip_single`, without the batches that broken files shrank to one image (as fit leaves them out)."""
    epoch = first_epoch
    while True:
        loader.set_epoch(epoch)
        yield from (batch for batch in loader if not (skip_single and len(batch[1]) == 1))
        epoch += 1


def _run(
    learner: RangeTestTarget, lrs: list[float], ratios: list[float], stop_div: bool, progress: Any = None
) -> tuple[list[float], list[float], bool]:
    """Train one batch per LR in `lrs`; return the raw and smoothed losses and whether it diverged.

    `progress`, a text stream, gets one line per tenth of the test (a pipe or a log shows it is alive).
    """
    loader = learner.dls.train
    check_output_width(learner.model, loader, learner.dls.vocab, isinstance(learner.task, Regression))
    learner.set_train_mode()
    # Batch size 1 for a model whose batch norm cannot train on one image stops here, as fit does.
    batches = _batches(loader, learner.epochs_done, check_one_image_batches(learner.model, loader))
    # The recorder smooths the loss exactly as during training; the snapshot restores it afterwards.
    learner.recorder.reset_smoothing()
    raw: list[float] = []
    smooth: list[float] = []
    best = math.inf
    # Shown only in a pipe or a log (`progress` is None on a terminal: the curve is printed at the end).
    with StepProgress("lr_find", len(lrs), quiet=progress is None, stream=progress, unit="iterations") as shown:
        for i, lr in enumerate(lrs):
            images, labels = next(batches)
            group_lrs = [lr * r for r in ratios]
            learner.set_hyper(group_lrs, _MOMENTUM)
            # train_step returns the loss averaged over ranks, so every rank sees the same curve.
            loss = learner.train_step(images, labels).item()
            if i == 0 and not math.isfinite(loss):
                raise LRFindError(
                    f"The loss is {loss} on the very first batch, at LR {lr:.1e}. Lower start_lr (e.g. "
                    f"lr_find(start_lr={lr / 100:.0e})), or check the inputs, labels and loss function."
                )
            raw.append(loss)
            smooth.append(learner.recorder.record_step(loss, group_lrs, _MOMENTUM))
            best = min(best, smooth[-1])
            shown.update(i + 1, f"LR {lr:.1e}, smoothed loss {smooth[-1]:.4f}")
            # A NaN smoothed loss never recovers (the EMA keeps it), so it counts as divergence too.
            if stop_div and not smooth[-1] <= _DIVERGE * best:
                return raw, smooth, True
    return raw, smooth, False


def _suggest(lrs: list[float], losses: list[float], num_it: int) -> tuple[dict[str, float], list[str]]:
    window_lrs, window_losses = suggestion_window(lrs, losses, num_it)
    rules = {"valley": valley, "slide": slide, "minimum": minimum, "steep": steep}
    found = {name: rule(window_lrs, window_losses) for name, rule in rules.items()}
    notes = []
    if found["valley"] is None:
        finite = [lr for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss)] or lrs
        fallback = min(max(_FALLBACK_LR, min(finite)), max(finite))
        span = (
            f"between {window_lrs[0]:.1e} and {window_lrs[-1]:.1e}"
            if len(window_lrs) > 1  # one point spans nothing ("between 1.0e-07 and 1.0e-07")
            else f"in the {len(window_lrs)} point(s) it could use (the test stopped after {len(lrs)} of {num_it})"
        )
        notes.append(
            f"The smoothed loss never decreased {span}, so there is no valley; using {fallback:.1e} instead. "
            "Check the curve: start_lr may already be too high (try a lower start_lr), or the model may "
            "already be trained (lower end_lr, more num_it)."
        )
        found["valley"] = fallback
    # Check the suggestion we use (valley) against minimum and steep. slide is left out: on short or
    # small curves it often sits at the far left and would make the warning fire on sound curves.
    defined = {name: found[name] for name in ("valley", "minimum", "steep") if found[name] is not None}
    low, high = min(defined.values()), max(defined.values())
    if high / low > _DISAGREEMENT:
        named = ", ".join(f"{name} {lr:.1e}" for name, lr in defined.items())
        notes.append(
            f"The suggestions disagree by {high / low:.0f}x ({named}). The curve is probably noisy (a small "
            "dataset or batch); look at the plot, or rerun with more num_it or a larger batch size."
        )
    notes += curve_flags(window_lrs, window_losses, found["valley"])
    return {name: math.nan if lr is None else lr for name, lr in found.items()}, notes


def curve_flags(lrs: np.ndarray, losses: np.ndarray, valley_lr: float | None) -> list[str]:
    """What makes a curve's valley untrustworthy: its minimum at the start, or a valley not on a descent.

    A minimum in the first tenth of the window means the loss never fell as the LR rose (start_lr
    already too high, or a model that cannot learn this data at this size); a valley where the loss is
    not descending (a local peak of a noisy curve) points at an LR where training is not improving.

    Example:
        >>> lrs = np.logspace(-6, 0, 30)
        >>> curve_flags(lrs, np.linspace(1, 3, 30), float(lrs[5]))[0][:40]
        'The loss is lowest at the start of the c'
    """
    flags: list[str] = []
    if len(losses) < 5:
        return flags
    lowest = int(np.argmin(losses))
    if lowest < max(len(losses) // 10, 1):
        flags.append(
            f"The loss is lowest at the start of the curve (LR {lrs[lowest]:.1e}): it never fell as the LR rose, so "
            "no suggestion is reliable. Try a lower start_lr, more num_it, or check that the model can learn this "
            "data (image size, labels)."
        )
    if valley_lr is not None:
        index = int(np.argmin(np.abs(np.log(lrs) - math.log(valley_lr))))
        around = losses[max(index - 2, 0): index + 3]
        if len(around) >= 2 and np.polyfit(np.arange(len(around)), around, 1)[0] >= 0:
            flags.append(
                f"The valley ({valley_lr:.1e}) does not sit on a descending stretch of the curve (the loss is "
                "flat or rising there): look at the plot and pick an LR where the loss still falls steeply."
            )
    return flags


def _progress_stream(quiet: bool) -> Any:
    """stdout when it is not a terminal (a pipe, a log) and the test may print; else None."""
    if quiet or not distributed.is_main_process() or sys.stdout is None:
        return None
    return None if getattr(sys.stdout, "isatty", lambda: False)() else sys.stdout


def lr_find(
    learner: RangeTestTarget,
    start_lr: float = 1e-7,
    end_lr: float = 10,
    num_it: int = 100,
    stop_div: bool = True,
    plot: str | Path | None = None,
    lr_ratios: LRSpec | None = None,
    quiet: bool = False,
) -> LRFindResult:
    """Run the LR range test on `learner` and suggest LRs; the learner is left exactly as it was.

    Args:
        learner: The `Learner`, frozen or not; only its trainable parameters move during the test.
        start_lr: Head LR of the first batch.
        end_lr: Head LR the exponential ramp aims at (reached after `num_it` batches).
        num_it: Number of batches; the training set is cycled, epoch after epoch, when it has fewer.
        stop_div: Stop once the smoothed loss exceeds 4x its best (or becomes NaN).
        plot: Save the curve with every suggestion marked as a PNG here; None saves nothing.
        lr_ratios: Keep discriminative LRs: any LR spec (`slice(1e-5, 1e-3)`, a list per group); each
            group's LR is the head's times its ratio in this spec. None gives every group the same LR,
            as fastai.
        quiet: Print nothing (also when the learner is quiet).

    Returns:
        An `LRFindResult`: `valley` (the one to use), `slide`, `minimum`, `steep`, the curve (`lrs`,
        `losses`) and `slice()` for `fit_one_cycle`.

    Raises:
        ValueError: For invalid arguments or an empty training set.
        LRFindError: If the very first loss is not finite.

    Example:
        >>> result = learn.lr_find(plot="lr_find.png")  # doctest: +SKIP
        >>> learn.fit_one_cycle(3, result.valley)  # doctest: +SKIP
        >>> result = learn.lr_find(lr_ratios=slice(1e-5, 1e-3))  # doctest: +SKIP
        >>> learn.fit_one_cycle(3, result.slice())  # doctest: +SKIP
    """
    _check_args(start_lr, end_lr, num_it)
    if len(learner.dls.train) == 0:
        raise ValueError(
            f"The training set has {len(learner.dls.train.dataset)} items, fewer than one batch of "
            f"{learner.dls.train.batch_size}; lr_find needs at least one batch. Use a smaller bs or add images."
        )
    ratios = _ratios(learner, lr_ratios)
    lrs = [start_lr * (end_lr / start_lr) ** (i / num_it) for i in range(num_it)]
    started = time.perf_counter()
    saved = learner.state_dict(grads=True)  # in memory: parallel runs never share files
    try:
        if learner.seed is not None:
            torch.manual_seed(learner.seed)  # the global RNG is restored below
        raw, smooth, diverged = _run(learner, lrs, ratios, stop_div, _progress_stream(quiet or learner.quiet))
    finally:
        learner.load_state_dict(saved)
    lrs = lrs[: len(smooth)]
    found, notes = _suggest(lrs, smooth, num_it)
    result = LRFindResult(
        lrs=lrs,
        losses=smooth,
        raw_losses=raw,
        lr_ratios=ratios,
        warnings=notes,
        num_it=num_it,
        diverged=diverged,
        seconds=time.perf_counter() - started,
        **found,
    )
    if notes:
        warnings.warn(" ".join(notes), LRFindWarning, stacklevel=3)
    main = distributed.is_main_process()
    if plot is not None and main:
        from unfreeze.plots import plot_lr_find

        result.plot_path = plot_lr_find(result, plot)
    if not (quiet or learner.quiet) and main:
        named = ", ".join(f"{name} {lr:.2e}" for name, lr in result.suggestions.items())
        print(f"lr_find: {len(lrs)} iterations in {result.seconds:.1f} s; {named}")
    return result


# ---------------------------------------------------------------------------- plot
