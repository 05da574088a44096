"""The guards of `unfreeze train` and `unfreeze lr-find`: their options and the steps around training.

Before training: the backbone's final feature map at --size is checked, and small images are upscaled
to a size it can use (`--no-upscale` keeps --size). Training runs with `KeepBest` (the model ends on
the best epoch by the first metric; `--keep last` opts out) and a divergence guard (roll back and
retry once at a ten times lower LR, else one line of error). Before the export, a multi-label run's
threshold is chosen on validation, and a model that predicts NaN is refused. lr-find's suggested
`unfreeze train` line repeats every option it was given.
"""

from __future__ import annotations

import argparse
import shlex
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from unfreeze.cli.options import UsageError

__all__ = ["GUARD_OPTIONS", "TrainGuards", "add_guard_options", "check_input_size_and_upscale",
           "train_command_after_lr_find"]

# config.json keys of the guard options (a resumed run takes them from there; rerun lines repeat them).
GUARD_OPTIONS = ("keep", "upscale", "thresholds")


def add_guard_options(parser: argparse.ArgumentParser) -> None:
    """--keep and --no-upscale on the train command."""
    parser.add_argument("--keep", choices=("best", "last"), default="best",
                        help="the model to export: the best epoch by the first metric (default) or the last one")
    parser.add_argument("--no-upscale", dest="upscale", action="store_false",
                        help="keep --size even when the backbone's final feature map is under 2x2 there (by default "
                             "small images are upscaled to a size it can use)")
    parser.add_argument("--thresholds", choices=("auto", "per-class", "global"), default="auto",
                        help="--multi-label decision thresholds chosen on validation and stored in the export: one "
                             "per class, one for all, or auto = per class when every class has 10 positive "
                             "validation images (default)")


def check_input_size_and_upscale(learn: Any, options: dict[str, Any], load_data: Callable[[dict[str, Any]], Any],
                                 quiet: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Warn about a feature map under 2×2 at --size; upscale small images (new loaders) unless --no-upscale.

    Returns the run's options with the size it trains at (config.json holds it, so interpret, clean and
    --resume rebuild the same data; `upscaled_from` keeps the size asked for) and the size plan as plain
    values for summary.json.
    """
    from unfreeze.train.input_size import plan_input_size

    body = getattr(learn.model, "body", None)
    if body is None:
        return options, {}
    plan = plan_input_size(body, options["size"], learn.dls.train.dataset.sources, options.get("upscale", True))
    message = plan.message(options["arch"])
    if message:
        warnings.warn(message, stacklevel=2)
    if plan.upscaled:
        options = {**options, "size": plan.size, "upscaled_from": plan.requested}
        learn.dls = load_data(options)
        if not quiet:
            print(f"Upscaled: training at {plan.size} px (the images are {plan.native} px).")
    requested = options.get("upscaled_from", plan.requested)  # a resumed run's config holds the trained size
    return options, {"requested": requested, "size": plan.size, "native": plan.native,
                     "feature_map": list(plan.feature_map) if plan.feature_map else None,
                     "upscaled": plan.size != requested}


@dataclass
class TrainGuards:
    """What the guards of one training run found: the epoch kept, the LR that held, the threshold.

    Example:
        >>> guards = TrainGuards.run(learn, lambda lr, cbs: learn.fine_tune(3, lr, callbacks=cbs), 2e-3,
        ...                          "best", "best.safetensors", retry=True)  # doctest: +SKIP
    """

    keep_best: Any
    lr: float
    retried_because: str | None = None
    threshold: Any = None

    @classmethod
    def run(cls, learn: Any, fit: Callable[[float, list[Any]], Any], lr: float, keep: str, best_file: Any,
            retry: bool) -> TrainGuards:
        """`fit(lr, callbacks)` with KeepBest and a divergence guard; retried once at lr / 10 if `retry`."""
        from unfreeze.train.divergence import DivergenceGuard, TrainingDivergedError, retry_on_divergence
        from unfreeze.train.keep_best import KeepBest

        kept: list[Any] = []

        def attempt(attempt_lr: float, guard: DivergenceGuard) -> None:
            kept[:] = [KeepBest(keep=keep, path=best_file)]
            fit(attempt_lr, [*kept, guard])

        if retry:
            fitted = retry_on_divergence(learn, attempt, lr)
            return cls(kept[0], fitted.lr, fitted.retried_because)
        guard = DivergenceGuard()
        attempt(lr, guard)
        if guard.reason is not None:
            raise TrainingDivergedError(f"Training diverged ({guard.reason}). Start a new run with a lower --lr "
                                        "(try unfreeze lr-find).")
        return cls(kept[0], lr)

    def choose_threshold(self, learn: Any, thresholds: str = "global") -> None:
        """A multi-label learner's F1-optimal threshold(s) on validation, set on its task (stored in the
        export, used by predict and serve): `thresholds` is --thresholds (auto, per-class, global)."""
        from unfreeze.tasks import MultiLabel
        from unfreeze.train.threshold_tuning import tune_threshold

        if isinstance(learn.task, MultiLabel):
            self.threshold = tune_threshold(learn, per_class={"per-class": True, "global": False}.get(thresholds,
                                                                                                      "auto"))
            learn.task = self.threshold.task

    def summary(self) -> dict[str, Any]:
        """summary.json's keys: kept (epoch, monitor, value), lr_retry, threshold."""
        return {"kept": self.keep_best.describe(), "lr_retry": self.retried_because,
                "threshold": None if self.threshold is None else self.threshold.describe()}

    def sentence(self) -> str:
        """The final line's part: the epoch kept and the threshold chosen."""
        parts = [self.keep_best.sentence()]
        if self.threshold is not None:
            parts.append(self.threshold.sentence())
        return "; ".join(parts)

    def kept_row(self, history: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The history row of the epoch the model holds (the last row if unknown)."""
        epoch = self.keep_best.best_epoch if self.keep_best.kept == "best" else None
        rows = [row for row in history if epoch is not None and row.get("epoch") == epoch]
        return dict(rows[-1] if rows else (history[-1] if history else {}))


def train_command_after_lr_find(argv: Sequence[str], lr: float) -> str:
    """The `unfreeze train ...` line that repeats every option an `unfreeze lr-find` line gave, with --lr.

    Example:
        >>> train_command_after_lr_find(["lr-find", "data", "--size", "64", "--plot", "a.png"], 3e-3)
        'unfreeze train data --size 64 --lr 3.00e-03'
    """
    words = list(argv)
    if "lr-find" not in words:
        raise UsageError("expected an 'unfreeze lr-find ...' command line")
    words = words[words.index("lr-find") + 1:]
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        name = word.split("=")[0]
        if name in ("--plot", "--num-it"):  # lr-find's own options; train has none of them
            skip = "=" not in word
            continue
        kept.append(word)
    return " ".join(["unfreeze", "train", *(shlex.quote(word) for word in kept), "--lr", f"{lr:.2e}"])
