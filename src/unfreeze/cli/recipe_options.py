"""The recipe's command-line options: parsing, their config.json values, the resume check's flags, the
`Recipe` they make, the conflicts refused before training, and the experiment loggers.

`unfreeze train` runs `learn.fit_recipe(recipe=...)`. A run's config.json holds every recipe value
resolved (the defaults included), so its rerun line repeats the run even after the defaults change.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from unfreeze.cli.options import UsageError
from unfreeze.train.recipe_settings import NOISE_CHOICES, Recipe

__all__ = ["RECIPE_FLAGS", "add_recipe_options", "check_recipe", "logger_callbacks", "parse_duration",
           "recipe_from_options", "recipe_options"]

_DEFAULT = Recipe()

# config.json key → the flag that sets it (the resume check names the flag; the rerun line writes it).
RECIPE_FLAGS = {"augment": "--augment", "flip": "--flip", "frozen_groups": "--frozen-groups", "head": "--head",
                "mixup": "--mixup", "cutmix": "--cutmix",
                "label_smoothing": "--label-smoothing", "ema": "--ema", "wd": "--wd", "lr_mult": "--lr-mult",
                "pct_start": "--pct-start", "div": "--div",
                "patience": "--patience", "progressive": "--progressive", "time_budget": "--time-budget",
                "tensorboard": "--tensorboard", "mlflow": "--mlflow", "probe": "--probe", "imbalance": "--imbalance",
                "noise": "--noise"}

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds of a duration such as `90s`, `10m`, `1.5h` or `600` (seconds).

    Example:
        >>> parse_duration("10m"), parse_duration("90")
        (600.0, 90.0)
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else math.nan
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"--time-budget takes a duration such as 10m, 90s or 1.5h, got {text!r}")
    return seconds


def _bounded(name: str, lower: float = 0.0, upper: float | None = None) -> Any:
    """An argparse type for a finite number in [lower, upper) (no upper bound when upper is None)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= lower and (upper is None or value < upper)):
            bound = f"in [{lower:g}, {upper:g})" if upper is not None else f">= {lower:g}"
            raise argparse.ArgumentTypeError(f"{name} takes a number {bound}, got {text!r}")
        return value

    return parse


def _whole_number(name: str, lower: int) -> Any:
    """An argparse type for a whole number >= lower."""
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < lower:
            raise argparse.ArgumentTypeError(f"{name} takes a whole number >= {lower}, got {text!r}")
        return int(text)

    return parse


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The recipe's options of `unfreeze train` (defaults: `Recipe()`, the study's choice)."""
    group = parser.add_argument_group("recipe (defaults: the recommended recipe, see README)")
    group.add_argument("--augment", choices=("none", "light", "default", "strong"),
                       help=f"augmentation preset (default: {_DEFAULT.augment}; strong = TrivialAugment + "
                            "random erasing)")
    group.add_argument("--no-flip", dest="flip", action="store_const", const=False, default=None,
                       help="no horizontal flips (digits, text, anything whose mirror is no member of its class); "
                            "by default the images decide (handed images such as digits get none)")
    group.add_argument("--flip", dest="flip", action="store_const", const=True,
                       help="horizontal flips even when the images look handed")
    group.add_argument("--head", choices=("linear", "fastai"),
                       help=f"the new head (default: {_DEFAULT.head}; fastai: concat pooling, BatchNorm, dropout, "
                            "two linear layers)")
    group.add_argument("--frozen-groups", type=_whole_number("--frozen-groups", 0), metavar="N",
                       help=f"body groups that stay frozen when the body trains (default: {_DEFAULT.frozen_groups}; "
                            "0 trains them all, as fine_tune)")
    group.add_argument("--mixup", type=_bounded("--mixup"), metavar="A", help="mixup with Beta(A, A), e.g. 0.2")
    group.add_argument("--cutmix", type=_bounded("--cutmix"), metavar="A", help="cutmix with Beta(A, A), e.g. 1.0")
    group.add_argument("--label-smoothing", type=_bounded("--label-smoothing", 0.0, 1.0), metavar="E",
                       help="label-smoothed cross-entropy, e.g. 0.1 (single-label data)")
    group.add_argument("--ema", action="store_true", default=None,
                       help="validate and keep an exponential moving average of the weights")
    group.add_argument("--wd", type=_bounded("--wd"), help=f"weight decay (default: {_DEFAULT.weight_decay})")
    group.add_argument("--lr-mult", type=_bounded("--lr-mult", 1.0),
                       help=f"head LR / first body group's LR when unfrozen (default: {_DEFAULT.lr_mult:g})")
    group.add_argument("--pct-start", type=_bounded("--pct-start", 0.0, 1.0), metavar="F",
                       help=f"fraction of the unfrozen phase warming up (default: {_DEFAULT.pct_start:g}; fastai 0.3)")
    group.add_argument("--div", type=_bounded("--div", 1.0), metavar="D",
                       help=f"the unfrozen phase starts at its peak LR / D (default: {_DEFAULT.div:g}; fastai 5)")
    group.add_argument("--patience", type=_whole_number("--patience", 1), metavar="N",
                       help="stop early after N epochs without a lower validation loss")
    group.add_argument("--progressive", action="store_true", default=None,
                       help="progressive resizing: the frozen epochs at 3/4 of --size, then the full size")
    group.add_argument("--time-budget", type=parse_duration, metavar="DURATION",
                       help="plan the epochs to fit this wall time (10m, 90s, 1.5h) and stop within it; "
                            "--epochs is then the most")
    group.add_argument("--probe", dest="probe", action="store_const", const=True, default=None,
                       help="fit the head on the frozen body's cached features before fine-tuning (LP-FT; with "
                            "--noise auto, label smoothing too); off by default: without it the error measured "
                            "lower on every small set")
    group.add_argument("--no-probe", dest="probe", action="store_const", const=False,
                       help="no linear probe: the frozen epochs train the head")
    group.add_argument("--imbalance", choices=("auto", "logit_adjust", "none"),
                       help="remedy against a long tail of classes (default: auto = logit adjustment when the largest "
                            "class has 3x the images of the smallest)")
    group.add_argument("--noise", choices=NOISE_CHOICES,
                       help="guard against wrong labels (default: auto, see `Recipe.noise`; filter = leave out "
                            "the images a cross-validated probe doubts, trim = leave each batch's largest losses out, "
                            "gce = generalised cross-entropy)")
    group.add_argument("--tensorboard", metavar="DIR", help="log the curves to TensorBoard in DIR")
    group.add_argument("--mlflow", metavar="NAME", help="log the run to the MLflow experiment NAME")


def recipe_options(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe options of a new run, every one resolved (config.json stores what ran)."""
    given = {key: getattr(args, key, None) for key in RECIPE_FLAGS}
    time_budget = given["time_budget"]
    epochs = args.epochs if args.epochs is not None else None if time_budget is not None else _DEFAULT.epochs
    flags = {token.split("=")[0] for token in getattr(args, "argv", None) or ()}
    return {
        # The plan chooses the batch size unless --bs is given (the loaders are built with --bs either way).
        "batch_size": args.bs if "--bs" in flags else _DEFAULT.batch_size,
        "probe": _DEFAULT.probe if given["probe"] is None else given["probe"],
        "imbalance": given["imbalance"] or _DEFAULT.imbalance,
        "noise": given["noise"] or _DEFAULT.noise,
        "epochs": epochs,
        "freeze_epochs": args.freeze_epochs if args.freeze_epochs is not None else _DEFAULT.freeze_epochs,
        "augment": given["augment"] or _DEFAULT.augment,
        "flip": _DEFAULT.flip if given["flip"] is None else given["flip"],
        "frozen_groups": _DEFAULT.frozen_groups if given["frozen_groups"] is None else given["frozen_groups"],
        "head": given["head"] or _DEFAULT.head,
        "mixup": _DEFAULT.mixup if given["mixup"] is None else given["mixup"],
        "cutmix": _DEFAULT.cutmix if given["cutmix"] is None else given["cutmix"],
        "label_smoothing": _DEFAULT.label_smoothing if given["label_smoothing"] is None else given["label_smoothing"],
        "ema": bool(given["ema"]) or _DEFAULT.ema,
        "wd": _DEFAULT.weight_decay if given["wd"] is None else given["wd"],
        "lr_mult": _DEFAULT.lr_mult if given["lr_mult"] is None else given["lr_mult"],
        "pct_start": _DEFAULT.pct_start if given["pct_start"] is None else given["pct_start"],
        "div": _DEFAULT.div if given["div"] is None else given["div"],
        "patience": given["patience"],
        "progressive": bool(given["progressive"]) or _DEFAULT.progressive,
        "time_budget": time_budget,
        "tensorboard": given["tensorboard"],
        "mlflow": given["mlflow"],
    }


def recipe_from_options(options: dict[str, Any], lr: float | str) -> Recipe:
    """The `Recipe` of a run's options (a command line's, or config.json's on --resume).

    Example:
        >>> recipe_from_options({**config["options"]}, 4e-3).lr_mult  # doctest: +SKIP
        10.0
    """
    return Recipe(epochs=options["epochs"], freeze_epochs=options["freeze_epochs"], base_lr=lr,
                  lr_mult=options["lr_mult"], pct_start=options["pct_start"], div=options["div"],
                  weight_decay=options["wd"], label_smoothing=options["label_smoothing"], mixup=options["mixup"],
                  cutmix=options["cutmix"], ema=options["ema"], augment=options["augment"], flip=options["flip"],
                  # Runs from before these options trained every group, with fastai's head.
                  frozen_groups=options.get("frozen_groups", 0), head=options.get("head", "fastai"),
                  # The command line planned the size (and warned) when it built the loaders.
                  upscale=False,
                  patience=options["patience"], progressive=options["progressive"], time_budget=options["time_budget"],
                  # Runs from before the plan and the decisions used the loader's batches and none of them.
                  batch_size=options.get("batch_size"), probe=options.get("probe", False),
                  imbalance=options.get("imbalance", "none"), noise=options.get("noise", "none"))


def check_recipe(options: dict[str, Any], learn: Any) -> None:
    """Refuse, before any training, options that conflict with each other, the data or the machine."""
    from unfreeze import RecipeError
    from unfreeze.train.recommended import check_time_budget

    if options.get("multi_label") and options.get("label_smoothing"):
        raise UsageError("--label-smoothing smooths single-label targets; this run is --multi-label. Drop "
                         "--label-smoothing (--mixup and --cutmix work with multi-label data)")
    if options.get("time_budget") is not None:
        try:
            check_time_budget(learn, options["time_budget"])
        except RecipeError as error:
            raise UsageError(f"--time-budget {str(error).removeprefix('the time budget ')}") from None


def logger_callbacks(options: dict[str, Any]) -> list[Any]:
    """TensorBoard / MLflow loggers for --tensorboard / --mlflow; a missing package is a user error."""
    from unfreeze import MLflowLogger, TensorBoardLogger

    loggers: list[Any] = []
    try:
        if options.get("tensorboard"):
            loggers.append(TensorBoardLogger(options["tensorboard"], log_hparams=True))
            # Created now, before the run directory: the writer would make it only as the first fit begins.
            folder = Path(options["tensorboard"])
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UsageError(f"cannot create {folder} ({error.strerror}). Choose another --tensorboard") from None
        if options.get("mlflow"):
            loggers.append(MLflowLogger(options["mlflow"]))
    except ImportError as error:
        raise UsageError(str(error)) from None
    return loggers
