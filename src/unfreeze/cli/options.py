"""The command line's vocabulary: argument types, shared options, defaults and help examples."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["DEMO", "UsageError", "check_output_file"]

DEFAULT_ARCH = "efficientnet_lite0"
# unfreeze.data.transforms.MAX_SIZE, written out: that module loads torch, which --help must not wait for
# (tests/cli/test_startup.py checks the two agree).
MAX_SIZE = 16_384
METRICS = ["error_rate", "accuracy"]
MULTI_LABEL_METRICS = ["accuracy_multi", "f1_multi"]
# The demo: the 400 / 200 image sample, 1 frozen + 4 unfrozen epochs. With so few images a small batch
# (more steps an epoch) helps; the size and LR were picked by the runs in benchmarks/results/demo.md.
DEMO = {"size": 128, "bs": 16, "lr": 2e-3, "epochs": 4, "freeze_epochs": 1, "out": "runs/demo"}


class UsageError(Exception):
    """A mistake the user can fix; printed as one line and exit code 2."""


def check_output_file(path: Path, option: str, name: str | None = None) -> None:
    """Create the folder of the file `option` names; refuse a path onto a folder or under a file.

    Called before a command's work: the file is written at its end, where such a path ended in a traceback.
    `name` is the file the message suggests inside a folder (default: any file in it).

    Raises:
        UsageError: `path` is a folder, or its folder cannot be created (a file is in the way, no permission).
    """
    if path.is_dir():
        example = f"such as {option} {path / name}" if name else "such as a file in that folder"
        raise UsageError(f"{path} is a folder, not a file. Choose another {option}, {example}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {path.parent} ({error.strerror}). Choose another {option}") from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr like every other user error.

    Abbreviated options (`--epoch` for `--epochs`) are refused: `train --resume` compares the options
    given again with the run's, by their full names.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._given: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._given = [str(arg) for arg in (sys.argv[1:] if args is None else args)]  # for `error`'s hint
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> Any:
        # A file named -photo.png is read as an unknown option; argparse's message does not say so.
        dashed = next((arg for arg in self._given if arg.startswith("-") and len(arg) > 1 and os.path.lexists(arg)),
                      None)
        if dashed is not None:
            message += (f" ({dashed!r} is a file whose name starts with '-', which reads as an option: write it "
                        f"./{dashed}, or put -- before the file names)")
        self.exit(2, f"unfreeze: error: {message}. Run '{self.prog} --help' for usage and examples.\n")


# ---------------------------------------------------------------------------- argument types


def _lr(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lr must be 'auto' or a number such as 1e-3, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):  # NaN fails `> 0`; inf would train to NaN at once
        raise argparse.ArgumentTypeError(f"--lr must be a positive finite number such as 1e-3, got {text!r}")
    return value


_MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit; torch takes more, but a run seeds both


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be a whole number, got {text!r}") from None
    if not 0 <= value <= _MAX_SEED:
        raise argparse.ArgumentTypeError(f"--seed must be between 0 and {_MAX_SEED}, got {text!r}")
    return value


def _whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum` (and <= `maximum`), with a one-line message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected a whole number from {minimum} to {maximum}, got {text!r}")
        return value

    return parse


_positive = _whole_number(1)
_image_size = _whole_number(1, MAX_SIZE)  # pixels per side; a typo like 50000 would exhaust the memory
_count = _whole_number(0)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {text!r}")
    return value


# ---------------------------------------------------------------------------- the parser

_TRAIN_EXAMPLES = """\
examples:
  unfreeze train data/fashion                          # DATA/train/<class>/ and DATA/valid/<class>/
  unfreeze train photos --valid-pct 0.2                # photos/<class>/*.jpg, split at random
  unfreeze train pets/images --label-re '^(.+)_\\d+\\.jpg$'   # label = group 1 of the file name
  unfreeze train planes --csv labels.csv               # columns: file (relative to DATA), label
  unfreeze train data/fashion --arch resnet34 --weights resnet34.safetensors --lr auto
  unfreeze train data/fashion --arch test_resnet --no-pretrained --epochs 1 --size 32
  unfreeze train planet --csv train.csv --multi-label      # label cell "haze primary water"
  unfreeze train faces --task regression --csv ages.csv   # columns: file, then one number per output
  unfreeze train defects --valid-pct 0.2 --class-weights auto   # rare classes weigh more
  unfreeze train --resume runs/fashion-efficientnet_lite0       # after a crash, Ctrl-C or kill
  unfreeze train digits --size 64 --no-flip --augment light   # the mirror of a 2 is no digit
  unfreeze train data/fashion --mixup 0.2 --label-smoothing 0.1 --ema --patience 2
  unfreeze train data/fashion --time-budget 10m --tensorboard runs/tb   # epochs planned to fit 10 minutes
  unfreeze train data/fashion --pct-start 0.3 --div 5  # fastai's warmup when the body unfreezes
  unfreeze train data/fashion --head fastai --lr 2e-3 --lr-mult 100 --frozen-groups 0 --pct-start 0.3 \\
      --div 5 --flip --epochs 4                        # fastai's fine_tune(4) exactly

Training runs the recommended recipe (learn.fit_recipe): fine_tune's frozen then unfrozen phases
with the recipe's LR spread, weight decay and augmentation; the options above change it.

A run directory (default runs/<DATA name>-<arch>, never overwritten without --overwrite) receives
config.json, history.csv, checkpoint.pt (after every epoch), model.unfreeze, summary.json, report.html
and the plots loss.png, sched.png, lr_find.png (with --lr auto), confusion_matrix.png and examples.png
(single-label: the most confident right and wrong predictions), top_losses.png and reliability.png
(classification; --task regression: predicted_vs_true.png).
"""

_EVALUATE_EXAMPLES = """\
examples:
  unfreeze evaluate runs/fashion-efficientnet_lite0 data/fashion-test    # DATA/<class>/*.png
  unfreeze evaluate model.unfreeze photos --csv labels.csv --json report.json
  unfreeze evaluate runs/pets data/pets-test --format csv > per-image.csv   # one record per image

Scores an exported model on a labelled test set it never saw: loss, the task's metrics and a
per-class precision / recall / F1 report. The classes must be ones the model knows.
"""

_LR_FIND_EXAMPLES = """\
examples:
  unfreeze lr-find data/fashion                       # writes lr_find.png, prints the suggestions
  unfreeze lr-find data/fashion --size 64 --bs 32 --plot runs/fashion-lr.png
  unfreeze train data/fashion --lr 3e-3               # then train with the LR you picked
"""

_PREDICT_EXAMPLES = """\
examples:
  unfreeze predict runs/fashion-efficientnet_lite0 new/shoe.png
  unfreeze predict model.unfreeze photos/ --format csv > predictions.csv
  unfreeze predict model.unfreeze a.jpg b.jpg --tta --format json
  unfreeze predict model.unfreeze photos/ --top-k 3          # the 3 most likely classes per image

MODEL is a .unfreeze export or a run directory holding model.unfreeze. Folders are searched
recursively. Images that cannot be read get a row with their error, and the exit code is 1.
"""

_INTERPRET_EXAMPLES = """\
examples:
  unfreeze interpret runs/fashion-efficientnet_lite0

Rebuilds the validation set from the run's config.json (same data, split and seed), redraws
confusion_matrix.png and top_losses.png in RUN_DIR and prints the per-class report.
"""

_EXPORT_EXAMPLES = """\
examples:
  unfreeze export runs/fashion-efficientnet_lite0            # check the export, print its details
  unfreeze export runs/fashion-efficientnet_lite0 --onnx     # also write RUN_DIR/model.onnx
  unfreeze export model.unfreeze --onnx --to deploy/classifier.onnx
"""

_DEMO_EXAMPLES = f"""\
examples:
  unfreeze demo                       # about 1-2 minutes on 2 CPU cores, offline
  unfreeze demo --epochs 1 --out /tmp/demo

Fine-tunes the bundled efficientnet_lite0 (ImageNet weights, no download) on the bundled
Fashion-MNIST sample (400 train / 200 valid images) at {DEMO["size"]} px, shows the results table and
saves a run directory (default {DEMO["out"]}) with the plots.
"""


def _add_data_options(parser: argparse.ArgumentParser, data_optional: bool = False) -> None:
    parser.add_argument("data", metavar="DATA", type=Path, nargs="?" if data_optional else None,
                        help="a folder with train/ and valid/ class folders, a folder of class folders, or "
                             "of images (with --label-re or --csv)")
    parser.add_argument("--arch", default=DEFAULT_ARCH,
                        help=f"timm architecture name (default: {DEFAULT_ARCH}, weights bundled)")
    parser.add_argument("--size", type=_image_size, default=128,
                        help=f"image side in pixels, at most {MAX_SIZE} (default: 128)")
    parser.add_argument("--bs", type=_positive, default=64,
                        help="batch size (default: 64; train plans its training batches from the number of images "
                             "unless --bs is given)")
    parser.add_argument("--valid-pct", type=_fraction, default=0.2,
                        help="validation fraction when DATA has no valid/ folder (default: 0.2)")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the split, the head and training (default: 0)")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--label-re", metavar="REGEX",
                        help="label each image file in DATA by group 1 of REGEX searched in its name")
    labels.add_argument("--csv", metavar="FILE",
                        help="a CSV with a header: file name (relative to DATA) in column 1, label in column 2")
    parser.add_argument("--multi-label", action="store_true",
                        help="each image may have several classes (or none): with --csv, the label column lists "
                             "them separated by --label-delim; trains with sigmoid + binary cross-entropy")
    parser.add_argument("--label-delim", default=" ", metavar="TEXT",
                        help="separator of the classes in a --multi-label CSV cell (default: a space)")
    parser.add_argument("--task", choices=("classification", "regression"), default="classification",
                        help="regression: predict numbers; with --csv, every column after the file name is one "
                             "number to predict (mean squared error, no activation)")
    parser.add_argument("--weights", metavar="FILE", type=Path,
                        help="pretrained weights file (.safetensors, .pth, .bin) for --arch, used offline")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                        help="start from random weights (for tests and tiny experiments)")
    parser.add_argument("--train-bn", action=argparse.BooleanOptionalAction, default=None,
                        help="train the norm layers of frozen groups (fastai) or keep the body's in inference "
                             "mode (Keras); default: Keras for pretrained bodies, fastai from scratch")
    parser.add_argument("--quiet", action="store_true", help="print no training output")


def _add_training_options(parser: argparse.ArgumentParser, default_lr: float) -> None:
    parser.add_argument("--epochs", type=_positive,
                        help="epochs with the body training, one pass each (default: planned from the number of "
                             "images: 6 of at least ~30 steps; with --time-budget, the most to plan)")
    parser.add_argument("--freeze-epochs", type=_count,
                        help="epochs training only the head first (default: the recipe's 1; 0 skips them)")
    parser.add_argument("--lr", type=_lr, default=default_lr,
                        help=f"the head's LR, or 'auto' to run lr_find and use its valley (default: {default_lr:g})")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/<DATA name>-<arch>)")
    parser.add_argument("--overwrite", action="store_true", help="reuse --out if it is an existing run directory")
    parser.add_argument("--class-weights", choices=("auto",),
                        help="weigh the loss against class imbalance: 'auto' = inverse class frequency")
    parser.add_argument("--sampler", choices=("shuffle", "balanced"), default="shuffle",
                        help="'balanced' draws training images so every class is seen about equally often")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue an interrupted run from its checkpoint (RUN_DIR/checkpoint.pt), with the "
                             "options in its config.json; DATA and other options may be left out")
    parser.add_argument("--save-on-interrupt", action="store_true",
                        help="after Ctrl-C, still export the partly trained model (default: export nothing)")
