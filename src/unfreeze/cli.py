"""The `unfreeze` command (also `python -m unfreeze`): the Python API, one subcommand per workflow step.

    unfreeze train DATA ...          fine-tune and save a run directory (see unfreeze.runs)
    unfreeze lr-find DATA ...        the LR range test and its plot
    unfreeze predict MODEL IMAGE...  predictions as a table, CSV or JSON
    unfreeze interpret RUN_DIR       confusion matrix, top losses, per-class report
    unfreeze export RUN_DIR --onnx   ONNX next to the .unfreeze export
    unfreeze demo                    the bundled backbone on the bundled Fashion-MNIST sample, offline

Every subcommand maps its arguments onto the functions users call from Python (`ImageDataLoaders`,
`vision_learner`, `Learner.fine_tune`, `load_learner`, ...). A user mistake prints one line,
`unfreeze: error: <what is wrong>. <how to fix>`, and exits with code 2; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from unfreeze import runs

__all__ = ["UsageError", "build_parser", "main"]

DEFAULT_ARCH = "efficientnet_lite0"
DEFAULT_LR = 2e-3  # fine_tune's default, as fastai's
METRICS = ["error_rate", "accuracy"]
# The demo: 400 train / 200 valid 28 px images, 1 frozen + 4 unfrozen epochs, about 35 s on 2 quiet CPU
# cores. With so few images bs 16 (25 steps an epoch) helps. With the Keras BN default, fine_tune's own
# base_lr 2e-3 beat 4e-3 and 1e-2 (at 64 px: 75.5%, 74%, 58%); 8 unfrozen epochs did no better.
# 128 px (77.5%) learned more steadily than 64 px (71%), at 34 s instead of 19 s.
DEMO = {"size": 128, "bs": 16, "lr": 2e-3, "epochs": 4, "freeze_epochs": 1, "out": "runs/demo"}


class UsageError(Exception):
    """A mistake the user can fix; printed as one line and exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr like every other user error."""

    def error(self, message: str) -> Any:
        self.exit(2, f"unfreeze: error: {message}. Run '{self.prog} --help' for usage and examples.\n")


# ---------------------------------------------------------------------------- argument types


def _lr(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lr must be 'auto' or a number such as 1e-3, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--lr must be positive, got {text!r}")
    return value


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum`, with a message argparse prints as one line."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    return parse


_positive = _whole_number(1)
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

A run directory (default runs/<DATA name>-<arch>, never overwritten without --overwrite) receives
config.json, history.csv, model.unfreeze, summary.json and the plots loss.png, sched.png,
lr_find.png (with --lr auto), confusion_matrix.png and top_losses.png.
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


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", type=Path,
                        help="a folder with train/ and valid/ class folders, a folder of class folders, or "
                             "of images (with --label-re or --csv)")
    parser.add_argument("--arch", default=DEFAULT_ARCH,
                        help=f"timm architecture name (default: {DEFAULT_ARCH}, weights bundled)")
    parser.add_argument("--size", type=_positive, default=128, help="image side in pixels (default: 128)")
    parser.add_argument("--bs", type=_positive, default=64, help="batch size (default: 64)")
    parser.add_argument("--valid-pct", type=_fraction, default=0.2,
                        help="validation fraction when DATA has no valid/ folder (default: 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the head and training (default: 0)")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--label-re", metavar="REGEX",
                        help="label each image file in DATA by group 1 of REGEX searched in its name")
    labels.add_argument("--csv", metavar="FILE",
                        help="a CSV with a header: file name (relative to DATA) in column 1, label in column 2")
    parser.add_argument("--weights", metavar="FILE", type=Path,
                        help="pretrained weights file (.safetensors, .pth, .bin) for --arch, used offline")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                        help="start from random weights (for tests and tiny experiments)")
    parser.add_argument("--train-bn", action=argparse.BooleanOptionalAction, default=None,
                        help="train the norm layers of frozen groups (fastai) or keep the body's in inference "
                             "mode (Keras); default: Keras for pretrained bodies, fastai from scratch")
    parser.add_argument("--quiet", action="store_true", help="print no training output")


def build_parser() -> argparse.ArgumentParser:
    """The `unfreeze` argument parser, with one subparser per command."""
    parser = _Parser(prog="unfreeze", description="Transfer learning for image classifiers, fastai-style.",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="Run 'unfreeze COMMAND --help' for each command's options and examples.\n"
                            "Start with: unfreeze demo")
    from unfreeze import __version__

    parser.add_argument("--version", action="version", version=f"unfreeze {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    def command(name: str, help_text: str, epilog: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    train = command("train", "fine-tune a pretrained backbone on DATA and save a run directory", _TRAIN_EXAMPLES)
    _add_data_options(train)
    _add_training_options(train, DEFAULT_LR)
    train.set_defaults(handler=command_train)

    lr_find = command("lr-find", "run the LR range test on DATA, plot it and suggest an LR", _LR_FIND_EXAMPLES)
    _add_data_options(lr_find)
    lr_find.add_argument("--plot", type=Path, default=Path("lr_find.png"), help="PNG to write (default: lr_find.png)")
    lr_find.add_argument("--num-it", type=_positive, default=100, help="iterations (default: 100)")
    lr_find.set_defaults(handler=command_lr_find)

    predict = command("predict", "predict images with an exported model", _PREDICT_EXAMPLES)
    predict.add_argument("model", metavar="MODEL", type=Path, help="a .unfreeze file or a run directory")
    predict.add_argument("images", metavar="IMAGE_OR_FOLDER", type=Path, nargs="+", help="images or folders")
    predict.add_argument("--tta", action="store_true", help="average 4 augmented passes with the plain one")
    predict.add_argument("--format", choices=("table", "csv", "json"), default="table",
                         help="output format (default: table)")
    predict.add_argument("--bs", type=_positive, default=64, help="images per batch (default: 64)")
    predict.set_defaults(handler=command_predict)

    interpret = command("interpret", "confusion matrix, top losses and per-class report of a run",
                        _INTERPRET_EXAMPLES)
    interpret.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory written by train")
    interpret.set_defaults(handler=command_interpret)

    export = command("export", "check a run's export; with --onnx also write ONNX", _EXPORT_EXAMPLES)
    export.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory or a .unfreeze file")
    export.add_argument("--onnx", action="store_true", help="write model.onnx (needs: pip install 'unfreeze[onnx]')")
    export.add_argument("--to", type=Path, help="where to write the ONNX file (default: RUN_DIR/model.onnx)")
    export.set_defaults(handler=command_export)

    demo = command("demo", "fine-tune the bundled efficientnet_lite0 on the bundled Fashion-MNIST sample",
                   _DEMO_EXAMPLES)
    demo.add_argument("--epochs", type=_positive, default=DEMO["epochs"],
                      help=f"unfrozen epochs (default: {DEMO['epochs']})")
    demo.add_argument("--out", type=Path, default=Path(DEMO["out"]), help=f"run directory (default: {DEMO['out']})")
    demo.add_argument("--overwrite", action="store_true", help="reuse --out if it exists")
    demo.add_argument("--quiet", action="store_true", help="print no training output")
    demo.set_defaults(handler=command_demo)
    return parser


def _add_training_options(parser: argparse.ArgumentParser, default_lr: float) -> None:
    parser.add_argument("--epochs", type=_positive, default=3, help="epochs with every layer training (default: 3)")
    parser.add_argument("--freeze-epochs", type=_count, default=1,
                        help="epochs training only the head first (default: 1; 0 skips them)")
    parser.add_argument("--lr", type=_lr, default=default_lr,
                        help=f"the head's LR, or 'auto' to run lr_find and use its valley (default: {default_lr:g})")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/<DATA name>-<arch>)")
    parser.add_argument("--overwrite", action="store_true", help="reuse --out if it is an existing run directory")


# ---------------------------------------------------------------------------- shared steps


def load_data(options: dict[str, Any]) -> Any:
    """`ImageDataLoaders` for the data options of a command line or a run's config.json.

    DATA/train + DATA/valid → `from_folder`; a folder of class folders → `from_folder(valid_pct=...)`;
    `label_re` → `from_name_re`; `csv` → `from_csv`.
    """
    from unfreeze import ImageDataLoaders

    data = Path(options["data"])
    common = {"valid_pct": options["valid_pct"], "seed": options["seed"], "size": options["size"],
              "bs": options["bs"]}
    if options.get("label_re"):
        return ImageDataLoaders.from_name_re(data, None, options["label_re"], **common)
    if options.get("csv"):
        table = Path(options["csv"])
        # A path that exists from here is used as given; otherwise it is relative to DATA (as in the API).
        name = str(table.resolve()) if table.is_file() else str(table)
        return ImageDataLoaders.from_csv(data, name, **common)
    if (data / "train").is_dir() and (data / "valid").is_dir():
        common["valid_pct"] = None
    return ImageDataLoaders.from_folder(data, **common)


def build_learner(options: dict[str, Any], dls: Any, quiet: bool) -> Any:
    """`vision_learner` with the model options; a missing --weights file is a user error."""
    from unfreeze import WeightsNotFoundError, vision_learner

    try:
        return vision_learner(dls, options["arch"], metrics=METRICS, pretrained=options["pretrained"],
                              weights=options["weights"], train_bn=options["train_bn"], seed=options["seed"],
                              quiet=quiet)
    except WeightsNotFoundError as error:
        first_line = str(error).splitlines()[0]
        raise UsageError(f"{first_line} Pass --weights FILE (.safetensors or .pth), or --no-pretrained to start "
                         "from random weights") from None
    except FileNotFoundError as error:
        raise UsageError(f"{error}. Check the --weights path") from None


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The data and model options of a parsed command line, as plain JSON-able values."""
    return {
        "data": str(Path(args.data).expanduser().resolve()),
        "arch": args.arch,
        "size": args.size,
        "bs": args.bs,
        "valid_pct": args.valid_pct,
        "seed": args.seed,
        "label_re": args.label_re,
        "csv": None if args.csv is None else str(Path(args.csv).resolve() if Path(args.csv).is_file() else args.csv),
        "weights": None if args.weights is None else str(Path(args.weights).expanduser().resolve()),
        "pretrained": args.pretrained,
        "train_bn": args.train_bn,
    }


def _rerun_argv(options: dict[str, Any]) -> list[str]:
    """The `unfreeze train` command line that repeats a run described by its config options."""
    argv = ["train", options["data"]]
    for key in ("arch", "size", "bs", "valid_pct", "seed", "label_re", "csv", "weights", "epochs",
                "freeze_epochs", "lr", "out"):
        if options.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(options[key])]
    argv += [] if options["pretrained"] else ["--no-pretrained"]
    if options["train_bn"] is not None:
        argv += ["--train-bn" if options["train_bn"] else "--no-train-bn"]
    return argv


def _load_model(path: Path) -> Any:
    from unfreeze.inference import load_learner

    return load_learner(path / "model.unfreeze" if path.is_dir() else path)


# ---------------------------------------------------------------------------- train and demo


def command_train(args: argparse.Namespace) -> int:
    """`unfreeze train`: fine_tune, then export, plot and summarise into a fresh run directory."""
    from unfreeze import CSVLogger
    from unfreeze.inference import ClassificationInterpretation
    from unfreeze.train import distributed

    started = time.perf_counter()
    options = _options(args)
    options.update(epochs=args.epochs, freeze_epochs=args.freeze_epochs, lr=args.lr)
    dls = load_data(options)
    learn = build_learner(options, dls, quiet=args.quiet)
    # Under torchrun every rank trains, but only rank 0 creates the run directory, writes and prints.
    main_process = distributed.is_main_process()
    quiet = args.quiet or not main_process
    requested = args.out or Path("runs") / f"{Path(options['data']).name}-{options['arch']}"
    run = runs.create_run_dir(requested, overwrite=args.overwrite) if main_process else None
    run = Path(distributed.broadcast_object(None if run is None else str(run)))
    options["out"] = str(run)
    if main_process and run != Path(requested).expanduser():
        print(f"{requested} exists; this run goes to {run} (--overwrite reuses {requested}).")
    from unfreeze import __version__

    rerun = " ".join(_quote(word) for word in ["unfreeze", *_rerun_argv(options)])
    if main_process:
        runs.write_json(run / "config.json", {"command": "train", "options": options,
                                              "unfreeze_version": __version__, "rerun": rerun,
                                              "argv": list(args.argv)})
    if not quiet:
        print(f"{dls}; {options['arch']} on {learn.device}; run directory {run}")
    lr, lr_find = args.lr, None
    if lr == "auto":
        lr_find = learn.lr_find(plot=run / "lr_find.png")
        lr = lr_find.valley
        if not quiet:
            print(f"--lr auto: using the valley suggestion, {lr:.2e}")
    logger = [CSVLogger(run / "history.csv", append=True)] if main_process else []
    learn.fine_tune(args.epochs, base_lr=lr, freeze_epochs=args.freeze_epochs, callbacks=logger)
    learn.export(run / "model.unfreeze")
    interpretation = ClassificationInterpretation.from_learner(learn)  # gathers over ranks: all ranks call it
    if not main_process:
        return 0
    plots = [learn.recorder.plot_loss(run / "loss.png"), learn.recorder.plot_sched(run / "sched.png")]
    if lr_find is not None:
        plots.insert(0, run / "lr_find.png")
    plots += [interpretation.plot_confusion_matrix(run / "confusion_matrix.png"),
              interpretation.plot_top_losses(9, path=run / "top_losses.png")]
    final = dict(learn.recorder.history[-1]) if learn.recorder.history else {}
    summary = {
        "final": final,
        "history": learn.recorder.history,
        "lr": {"base_lr": lr, "chosen_by": "lr_find valley" if lr_find is not None else "--lr",
               "suggestions": lr_find.suggestions if lr_find is not None else None},
        "data": {"train": len(dls.train.dataset), "valid": len(dls.valid.dataset), "classes": list(dls.vocab)},
        "most_confused": interpretation.most_confused(min_val=2)[:10],
        "interrupted": learn.interrupted,
        "notes": learn.recorder.notes,
        "wall_time_s": round(time.perf_counter() - started, 2),
        **runs.environment(learn.device),
    }
    runs.write_json(run / "summary.json", summary)
    if args.quiet:
        print(run)
        return 0
    metrics = ", ".join(f"{name} {final[name]:.4f}" for name in learn.metric_names if name in final)
    print(f"Final: {metrics} on {len(dls.valid.dataset)} validation images; {summary['wall_time_s']:.0f} s in all.")
    print(f"Run directory: {run}/ (config.json, history.csv, model.unfreeze, summary.json)")
    print(f"Plots: {', '.join(str(path) for path in plots)}")
    return 0


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)


def command_demo(args: argparse.Namespace) -> int:
    """`unfreeze demo`: `unfreeze train` on the bundled sample with settings that fit 2 CPU cores."""
    from unfreeze import sample_path

    argv = ["train", str(sample_path()), "--arch", DEFAULT_ARCH, "--size", str(DEMO["size"]), "--bs", str(DEMO["bs"]),
            "--lr", str(DEMO["lr"]), "--epochs", str(args.epochs), "--freeze-epochs", str(DEMO["freeze_epochs"]),
            "--out", str(args.out)]
    argv += ["--overwrite"] * args.overwrite + ["--quiet"] * args.quiet
    if not args.quiet:
        print("unfreeze demo: efficientnet_lite0 (bundled ImageNet weights) on the Fashion-MNIST sample. Same as:\n"
              f"  unfreeze {' '.join(_quote(word) for word in argv)}")
    train_args = build_parser().parse_args(argv)
    train_args.argv = ["demo", *args.argv[1:]]
    return command_train(train_args)


# ---------------------------------------------------------------------------- lr-find


def command_lr_find(args: argparse.Namespace) -> int:
    """`unfreeze lr-find`: the range test on the frozen model (as fine_tune's first phase trains)."""
    options = _options(args)
    learn = build_learner(options, load_data(options), quiet=args.quiet)
    try:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {args.plot.parent} ({error.strerror}). Choose another --plot") from None
    result = learn.lr_find(num_it=args.num_it, plot=args.plot)
    suggestions = "  ".join(f"{name} {lr:.2e}" for name, lr in result.suggestions.items())
    print(f"Suggestions (head LR): {suggestions}")
    print(f"Plot: {result.plot_path}")
    print(f"Train with: unfreeze train {_quote(str(args.data))} --arch {options['arch']} --lr {result.valley:.2e}")
    return 0


# ---------------------------------------------------------------------------- predict


def _image_sources(paths: Sequence[Path]) -> Iterator[Path]:
    from unfreeze.inference import iter_image_files

    for path in paths:
        if path.is_dir():
            yield from iter_image_files(path)
        else:
            yield path


def _tta_rows(learn: Any, sources: Iterable[Path], bs: int) -> Iterator[dict[str, Any]]:
    """predict_batch's rows, with TTA probabilities; chunked so memory stays bounded."""
    chunk_size = 16 * bs
    iterator = iter(sources)
    while chunk := list(itertools.islice(iterator, chunk_size)):
        loader = learn.dls.test_dl(chunk, batch_size=bs)
        probs, _ = learn.tta(dl=loader)
        kept = [position for position in range(len(chunk)) if position not in loader.dataset.dropped]
        best, indices = probs.max(dim=1) if len(kept) else (probs[:0, 0], probs[:0, 0].long())
        found = dict(zip(kept, zip(best.tolist(), indices.tolist(), strict=True), strict=True))
        for position, source in enumerate(chunk):
            if position in found:
                prob, index = found[position]
                yield {"path": str(source), "label": learn.dls.vocab[index], "index": index, "prob": prob,
                       "error": None}
            else:
                yield {"path": str(source), "label": None, "index": -1, "prob": float("nan"),
                       "error": loader.dataset.dropped.get(position, "could not be read")}


def _write_rows(rows: Iterable[dict[str, Any]], output_format: str, stream: TextIO, label_width: int) -> int:
    """Stream rows to `stream`; returns how many rows carried an error."""
    failed = 0
    writer = csv.writer(stream) if output_format == "csv" else None
    if writer is not None:
        writer.writerow(["path", "label", "index", "prob", "error"])
    elif output_format == "table":
        print(f"{'prob':>6}  {'label':<{label_width}}  path", file=stream)
    else:
        stream.write("[")
    for number, row in enumerate(rows):
        failed += row["error"] is not None
        if writer is not None:
            prob = "" if row["error"] else f"{row['prob']:.6f}"
            writer.writerow([row["path"], row["label"] or "", row["index"], prob, row["error"] or ""])
        elif output_format == "table":
            if row["error"]:
                print(f"{'-':>6}  {'(error)':<{label_width}}  {row['path']}  ({row['error']})", file=stream)
            else:
                print(f"{row['prob']:6.3f}  {row['label']:<{label_width}}  {row['path']}", file=stream)
        else:
            clean = {**row, "prob": None if row["error"] else row["prob"]}
            stream.write(("," if number else "") + "\n  " + json.dumps(clean))
    if output_format == "json":
        stream.write("\n]\n")
    stream.flush()
    return failed


def command_predict(args: argparse.Namespace) -> int:
    """`unfreeze predict`: stream predictions (predict_batch, or tta with --tta) to stdout."""
    missing = [str(path) for path in args.images if not path.exists()]
    if missing:
        raise UsageError(f"{', '.join(missing)} not found. Pass existing image files or folders")
    learn = _load_model(args.model)
    sources = _image_sources(args.images)
    first = next(sources, None)
    if first is None:
        raise UsageError(f"no image files in {', '.join(map(str, args.images))}. Pass images or folders holding "
                         "images (.jpg, .png, ...)")
    sources = itertools.chain([first], sources)
    rows = _tta_rows(learn, sources, args.bs) if args.tta else learn.predict_batch(sources, bs=args.bs)
    label_width = max(len("(error)"), *(len(name) for name in learn.dls.vocab))
    failed = _write_rows(rows, args.format, sys.stdout, label_width)
    if failed:
        print(f"unfreeze: {failed} image(s) could not be predicted; their rows carry the reason.", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------------------- interpret and export


def command_interpret(args: argparse.Namespace) -> int:
    """`unfreeze interpret`: rebuild the run's validation set, redraw its plots and print the report."""
    from unfreeze.inference import ClassificationInterpretation

    run = args.run_dir
    config_path = run / "config.json"
    if not config_path.is_file():
        raise UsageError(f"{config_path} not found. Pass a run directory written by 'unfreeze train'")
    options = runs.read_json(config_path)["options"]
    learn = _load_model(run)
    dls = load_data(options)
    if list(dls.vocab) != list(learn.dls.vocab):
        raise UsageError(f"the data at {options['data']} now has the classes {dls.vocab}, the model was trained on "
                         f"{learn.dls.vocab}. Restore the data or train a new run")
    dls.set_normalization(learn.dls.valid.mean, learn.dls.valid.std)
    dls.to(learn.device)
    interpretation = ClassificationInterpretation.from_learner(learn, dl=dls.valid)
    plots = [interpretation.plot_confusion_matrix(run / "confusion_matrix.png"),
             interpretation.plot_top_losses(9, path=run / "top_losses.png")]
    print(interpretation.report(as_text=True))
    confused = interpretation.most_confused(min_val=1)[:10]
    if confused:
        print("Most confused (actual → predicted, count): "
              + "; ".join(f"{actual} → {predicted} {count}" for actual, predicted, count in confused))
    print(f"Plots: {', '.join(str(path) for path in plots)}")
    return 0


def command_export(args: argparse.Namespace) -> int:
    """`unfreeze export`: load the export (which checks it); with --onnx write ONNX next to it."""
    from unfreeze.inference import read_export_metadata

    model_path = args.run_dir / "model.unfreeze" if args.run_dir.is_dir() else args.run_dir
    learn = _load_model(model_path)
    metadata = read_export_metadata(model_path)
    size_mb = model_path.stat().st_size / 2**20
    print(f"{model_path}: {metadata['model']['arch']}, {len(metadata['vocab'])} classes, {metadata['size']} px, "
          f"{size_mb:.1f} MB, format {metadata['format_version']} (unfreeze {metadata['library_version']})")
    if not args.onnx:
        if args.to is not None:
            raise UsageError("--to names the ONNX file. Add --onnx")
        return 0
    target = args.to or model_path.with_name("model.onnx")
    try:
        written = learn.export_onnx(target)
    except ImportError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write {target} ({error.strerror}). Choose another --to") from None
    print(f"ONNX: {written} (input 'image': float [batch, 3, {metadata['size']}, {metadata['size']}] in [0, 1])")
    return 0


# ---------------------------------------------------------------------------- main


def _user_errors() -> tuple[type[BaseException], ...]:
    from unfreeze import DataError, NonFiniteLossError, UnknownArchitectureError
    from unfreeze.inference import ExportError
    from unfreeze.models import WeightsMismatchError
    from unfreeze.train.lr_find import LRFindError

    # ValueError: the library reports bad arguments and unusable data with it (DataError is one).
    return (UsageError, runs.RunDirError, DataError, ExportError, UnknownArchitectureError, WeightsMismatchError,
            NonFiniteLossError, LRFindError, re.error, ValueError)


def _one_line(error: BaseException) -> str:
    if isinstance(error, re.error):
        return f"--label-re is not a valid regular expression ({error}). Fix the pattern, e.g. '^(.+)_\\d+\\.jpg$'."
    message = " ".join(str(error).split()).rstrip()
    return message if message.endswith((".", "?", ")")) else f"{message}."


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    print(f"unfreeze: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `unfreeze` command; returns the exit code (0 ok, 1 some images failed, 2 user error).

    Example:
        >>> main(["train", "data/fashion", "--epochs", "2"])  # doctest: +SKIP
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse's own errors (one line, code 2)
        return exit_.code if isinstance(exit_.code, int) else 0
    args.argv = argv
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # one readable line per warning, not file:line source dumps
        try:
            return int(args.handler(args))
        except _user_errors() as error:
            print(f"unfreeze: error: {_one_line(error)}", file=sys.stderr)
            return 2
