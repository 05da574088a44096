"""The `unfreeze` command (also `python -m unfreeze`): the Python API, one subcommand per workflow step.

    unfreeze train DATA ...          fine-tune (the recommended recipe) and save a run directory
    unfreeze lr-find DATA ...        the LR range test and its plot
    unfreeze predict MODEL IMAGE...  predictions as a table, CSV or JSON
    unfreeze interpret RUN_DIR       confusion matrix, top losses, per-class report
    unfreeze evaluate MODEL DATA     loss, metrics and per-class report on a labelled test set
    unfreeze export RUN_DIR --onnx   ONNX next to the .unfreeze export
    unfreeze demo                    the bundled backbone on the bundled Fashion-MNIST sample, offline
    unfreeze convert-fastai W.pth    fastai vision_learner weights to a .unfreeze export
    unfreeze serve MODEL             an upload page and a JSON API over a model
    unfreeze report RUN_DIR          the run's self-contained report.html
    unfreeze clean RUN_DIR           a page to relabel or remove images, worst loss first (--undo)

Every subcommand maps its arguments onto the functions users call from Python (`ImageDataLoaders`,
`vision_learner`, `Learner.fine_tune`, `load_learner`, ...). A user mistake prints one line,
`unfreeze: error: <what is wrong>. <how to fix>`, and exits with code 2; it never shows a traceback.
Only the library's user-error types count as user mistakes: any other exception is a bug and shows its
traceback. `unfreeze --debug COMMAND ...` shows the traceback of user errors too. Ctrl-C prints one line
and exits with code 130; SIGTERM does the same with code 143 (see `unfreeze.cli.signals`).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from unfreeze import runs
from unfreeze.cli.app_commands import add_app_commands
from unfreeze.cli.commands import (
    command_demo,
    command_evaluate,
    command_export,
    command_interpret,
    command_lr_find,
    command_predict,
    command_train,
)
from unfreeze.cli.convert import add_convert_fastai
from unfreeze.cli.guards import add_guard_options
from unfreeze.cli.options import (
    _DEMO_EXAMPLES,
    _EVALUATE_EXAMPLES,
    _EXPORT_EXAMPLES,
    _INTERPRET_EXAMPLES,
    _LR_FIND_EXAMPLES,
    _PREDICT_EXAMPLES,
    _TRAIN_EXAMPLES,
    DEMO,
    UsageError,
    _add_data_options,
    _add_training_options,
    _Parser,
    _positive,
    _whole_number,
)
from unfreeze.cli.output import discard_output, printable
from unfreeze.cli.process_exit import leave
from unfreeze.cli.recipe_options import add_recipe_options
from unfreeze.cli.signals import StopSignals, ignore_stop_signals
from unfreeze.cli.trust_options import add_evaluate_trust_options, add_train_trust_options
from unfreeze.train.recipe_settings import Recipe

__all__ = ["DEMO", "UsageError", "build_parser", "main"]


def _kept_run(run: runs.Run | None) -> str:
    """After a Ctrl-C outside train's epochs: where its run directory is, and how to go on from it."""
    if run is None:
        return ""
    if run.finished():  # stopped while its report was written: --resume would refuse a finished run
        return f"; {run.folder} finished; write its report with 'unfreeze report {run.folder}'"
    if run.file(runs.CHECKPOINT).is_file():
        return f"; {run.folder} is kept: finish it with 'unfreeze train --resume {run.folder}'"
    return f"; {run.folder} has no checkpoint yet: train again with '--out {run.folder} --overwrite'"


def build_parser() -> argparse.ArgumentParser:
    """The `unfreeze` argument parser, with one subparser per command."""
    parser = _Parser(prog="unfreeze", description="Transfer learning for image classifiers, fastai-style.",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="Run 'unfreeze COMMAND --help' for each command's options and examples.\n"
                            "Start with: unfreeze demo")
    from unfreeze._version import __version__

    parser.add_argument("--version", action="version", version=f"unfreeze {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of user errors too (put it before COMMAND)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    def command(name: str, help_text: str, epilog: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    train = command("train", "fine-tune a pretrained backbone on DATA and save a run directory", _TRAIN_EXAMPLES)
    _add_data_options(train, data_optional=True)
    _add_training_options(train, Recipe().base_lr)  # `unfreeze train` runs the recipe
    add_recipe_options(train)
    add_guard_options(train)
    add_train_trust_options(train)
    train.set_defaults(handler=command_train)

    lr_find = command("lr-find", "run the LR range test on DATA, plot it and suggest an LR", _LR_FIND_EXAMPLES)
    _add_data_options(lr_find)
    lr_find.add_argument("--plot", type=Path, default=Path("lr_find.png"), help="PNG to write (default: lr_find.png)")
    # 6: lr_find's least (train/lr_find.py), checked here so that fewer is a one-line error, not a traceback.
    lr_find.add_argument("--num-it", type=_whole_number(6), default=100, help="iterations, 6 or more (default: 100)")
    lr_find.set_defaults(handler=command_lr_find)

    predict = command("predict", "label images or folders with a trained model (a run directory or .unfreeze file)",
                      _PREDICT_EXAMPLES)
    predict.add_argument("model", metavar="MODEL", type=Path, help="a .unfreeze file or a run directory")
    predict.add_argument("images", metavar="IMAGE_OR_FOLDER", type=Path, nargs="+", help="images or folders")
    predict.add_argument("--tta", action="store_true", help="average 4 augmented passes with the plain one")
    predict.add_argument("--format", choices=("table", "csv", "json"), default="table",
                         help="output format (default: table)")
    predict.add_argument("--bs", type=_positive, default=64, help="images per batch (default: 64)")
    predict.add_argument("--top-k", type=_positive, default=1, metavar="K",
                         help="also list the K most likely classes of each image (default: 1)")
    predict.add_argument("--runtime", choices=("torch", "onnx", "openvino"),
                         help="run the model in eager PyTorch, ONNX Runtime or OpenVINO (converted once, cached "
                              "beside the export, checked against PyTorch); default: torch on a GPU, else the fastest "
                              "installed")
    predict.add_argument("--quiet", action="store_true",
                         help="no progress on stderr (shown when the rows go to a file or a pipe)")
    predict.set_defaults(handler=command_predict)

    evaluate = command("evaluate", "score a trained model on a labelled test set: metrics, per-class report, "
                                   "confusion matrix, per-image predictions", _EVALUATE_EXAMPLES)
    evaluate.add_argument("model", metavar="MODEL", type=Path, help="a .unfreeze file or a run directory")
    evaluate.add_argument("data", metavar="DATA", type=Path,
                          help="a folder of class folders, or of images with --label-re or --csv")
    evaluate_labels = evaluate.add_mutually_exclusive_group()
    evaluate_labels.add_argument("--label-re", metavar="REGEX", help="label = group 1 of REGEX in the file name")
    evaluate_labels.add_argument("--csv", metavar="FILE", help="a CSV with a header: file name, label")
    evaluate.add_argument("--label-delim", default=None, metavar="TEXT",
                          help="separator of the classes in a CSV cell, for a multi-label model (default: the one "
                               "the run trained with, else a space)")
    evaluate.add_argument("--bs", type=_positive, default=64, help="images per batch (default: 64)")
    evaluate.add_argument("--json", type=Path, metavar="FILE",
                          help="also write the report as JSON here (scores, per_class, confusion_matrix, "
                               "most_confused, predictions: one record per image)")
    evaluate.add_argument("--format", choices=("text", "csv", "json"), default="text",
                          help="stdout: the report as text, the per-image records as CSV, or the JSON report "
                               "(default: text)")
    evaluate.add_argument("--top-k", type=_positive, default=3, metavar="K",
                          help="classes listed per image in the records (default: 3)")
    add_evaluate_trust_options(evaluate)
    evaluate.add_argument("--quiet", action="store_true", help="no progress on stderr")
    evaluate.set_defaults(handler=command_evaluate)

    interpret = command("interpret", "confusion matrix, top losses and per-class report of a run (regression: "
                                     "predicted vs true and a report per output)",
                        _INTERPRET_EXAMPLES)
    interpret.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory written by train")
    interpret.set_defaults(handler=command_interpret)

    export = command("export", "write deployment files (--format onnx|torchscript|openvino) and a model card; "
                              "without --format, check the run's model.unfreeze", _EXPORT_EXAMPLES)
    export.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory or a .unfreeze file")
    export.add_argument("--onnx", action="store_true", help="write model.onnx (needs: pip install 'unfreeze[onnx]')")
    export.add_argument("--to", type=Path, help="where to write the ONNX file (default: RUN_DIR/model.onnx)")
    export.add_argument("--quiet", action="store_true", help="no progress of the check and the int8 calibration")
    export.set_defaults(handler=command_export)

    demo = command("demo", "fine-tune the bundled efficientnet_lite0 on the bundled Fashion-MNIST sample",
                   _DEMO_EXAMPLES)
    demo.add_argument("--epochs", type=_positive, default=DEMO["epochs"],
                      help=f"unfrozen epochs (default: {DEMO['epochs']})")
    demo.add_argument("--out", type=Path, default=Path(DEMO["out"]), help=f"run directory (default: {DEMO['out']})")
    demo.add_argument("--overwrite", action="store_true", help="reuse --out if it exists")
    demo.add_argument("--quiet", action="store_true", help="print no training output")
    demo.set_defaults(handler=command_demo)

    add_convert_fastai(command)
    add_app_commands(command, export)
    return parser


# ---------------------------------------------------------------------------- main


def _user_errors() -> tuple[type[BaseException], ...]:
    from unfreeze import DataError, NonFiniteLossError, RecipeError, UnknownArchitectureError
    from unfreeze._io import OutputWriteError
    from unfreeze.apps import AppError
    from unfreeze.inference import ExportError, FastaiConversionError
    from unfreeze.models import WeightsFileError, WeightsMismatchError
    from unfreeze.train.checkpoint import CheckpointError
    from unfreeze.train.lr_find import LRFindError

    # Only the types that describe a user's mistake: a plain ValueError or TypeError from deep inside
    # is a bug, and its traceback is what a bug report needs.
    return (UsageError, runs.RunDirError, runs.RunConfigError, DataError, ExportError, UnknownArchitectureError,
            WeightsFileError, WeightsMismatchError, NonFiniteLossError, LRFindError, OutputWriteError, CheckpointError,
            FastaiConversionError, AppError, RecipeError, re.error)


def _output_error(error: OSError) -> OSError | None:
    """A disk-full or permission error on a file written deep inside (history.csv, ...) as a user error."""
    from unfreeze._io import output_error

    return output_error(error, error.filename) if error.filename else None


def _report(error: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(error)
    print(f"unfreeze: error: {printable(_one_line(error))}", file=sys.stderr)
    return 2


def _one_line(error: BaseException) -> str:
    if isinstance(error, re.error):
        return f"--label-re is not a valid regular expression ({error}). Fix the pattern, e.g. '^(.+)_\\d+\\.jpg$'."
    message = " ".join(str(error).split()).rstrip()
    return message if message.endswith((".", "?", ")")) else f"{message}."


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    print(f"unfreeze: warning: {printable(' '.join(str(message).split()))}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `unfreeze` command; returns the exit code (0 ok, 1 some images failed, 2 user error,
    130 Ctrl-C, 143 SIGTERM).

    Example:
        >>> main(["train", "data/fashion", "--epochs", "2"])  # doctest: +SKIP
        0
    """
    if argv is None:  # this process's own command line (`unfreeze ...`, `python -m unfreeze ...`)
        try:
            code = main(sys.argv[1:])
        finally:
            ignore_stop_signals()  # done: a late Ctrl-C must not replace the exit code by a death by signal
        if sys.getprofile() is None and sys.gettrace() is None:  # cProfile and coverage write their files at exit
            leave(code)  # without the interpreter's second of teardown (an exception above still gets it)
        return code
    argv = list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse's own errors (one line, code 2)
        return exit_.code if isinstance(exit_.code, int) else 0
    args.argv = argv
    args.parser = parser  # for a command that runs another one (demo runs train), without importing this module
    # Commands register what must be undone however they end (the run directory's lock) on args.cleanup;
    # the stop signals are handled until that cleanup is done.
    with StopSignals() as stop, warnings.catch_warnings(), contextlib.ExitStack() as args.cleanup:
        warnings.showwarning = _show_warning  # one readable line per warning, not file:line source dumps
        try:
            code = int(args.handler(args))
            return stop.exit_code if code == 130 else code  # a training run stopped by a signal returns 130
        except BrokenPipeError:
            # The reader of our output went away (`unfreeze predict ... | head`): not an error of ours.
            discard_output(sys.stdout)
            return 0
        except KeyboardInterrupt:
            if args.debug:
                traceback.print_exc()
            print(f"unfreeze: interrupted ({stop.name}){_kept_run(getattr(args, 'interrupted_run', None))}.",
                  file=sys.stderr)
            return stop.exit_code
        except _user_errors() as error:
            return _report(error, args.debug)
        except OSError as error:
            converted = _output_error(error)
            if converted is None:
                raise
            return _report(converted, args.debug)
