"""What each subcommand does: the data and model steps they share, then one function per command."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from unfreeze import runs
from unfreeze._io import output_error, stream_path
from unfreeze.apps.report import write_report
from unfreeze.cli.guards import TrainGuards, check_input_size_and_upscale, train_command_after_lr_find
from unfreeze.cli.options import DEFAULT_ARCH, DEMO, METRICS, MULTI_LABEL_METRICS, UsageError, check_output_file
from unfreeze.cli.output import discard_output, printable
from unfreeze.cli.recipe_options import (
    RECIPE_FLAGS,
    check_recipe,
    logger_callbacks,
    recipe_from_options,
    recipe_options,
)
from unfreeze.cli.trust_options import (
    calibration_line,
    check_ood_folder,
    evaluate_trust,
    train_summary,
    trust_options,
)
from unfreeze.progress import StepProgress
from unfreeze.train.recipe_settings import Recipe

__all__ = ["build_learner", "command_demo", "command_evaluate", "command_export", "command_interpret",
           "command_lr_find", "command_predict", "command_train", "load_data", "load_run"]

# ---------------------------------------------------------------------------- shared steps

# The random split's algorithm, recorded in config.json: the data of a run can be rebuilt only by the same one.
SPLIT = "fastai-2.8"


def load_data(options: dict[str, Any]) -> Any:
    """`ImageDataLoaders` for the data options of a command line or a run's config.json.

    DATA/train + DATA/valid → `from_folder`; a folder of class folders → `from_folder(valid_pct=...)`;
    `label_re` → `from_name_re`; `csv` → `from_csv`.
    """
    from unfreeze import ImageDataLoaders

    data = Path(options["data"])
    folders = (data / "train").is_dir() and (data / "valid").is_dir() and not options.get("csv") \
        and not options.get("label_re")
    if options.get("split") is None and not folders:
        # A run from before the random split picked fastai 2.8's indices: rebuilding its data now would
        # give another validation set (some of its training images among them).
        raise UsageError("this run was split at random by an older unfreeze, whose split differs from this "
                         "version's (fastai 2.8's): its validation set cannot be rebuilt. Train it again with this "
                         "version, or use the unfreeze version it was trained with (config.json's unfreeze_version)")
    common = {"valid_pct": options["valid_pct"], "seed": options["seed"], "size": options["size"],
              "bs": options["bs"]}
    if options.get("multi_label") and not options.get("csv"):
        raise UsageError("--multi-label reads the classes of each image from a CSV. Add --csv FILE whose label "
                         "column lists them, e.g. 'haze primary'")
    if options.get("task") == "regression":
        return _regression_data(data, options, common)
    if options.get("label_re"):
        dls = ImageDataLoaders.from_name_re(data, None, options["label_re"], **common)
    elif options.get("csv"):
        table = Path(options["csv"])
        # A path that exists from here is used as given; otherwise it is relative to DATA (as in the API).
        name = str(table.resolve()) if table.is_file() else str(table)
        delim = options.get("label_delim", " ") if options.get("multi_label") else None
        _warn_unread_valid_column(data, table, options["valid_pct"])
        dls = ImageDataLoaders.from_csv(data, name, label_delim=delim, **common)
    else:
        if (data / "train").is_dir() and (data / "valid").is_dir():
            common["valid_pct"] = None
        dls = ImageDataLoaders.from_folder(data, **common)
    return dls.balance_classes() if options.get("sampler") == "balanced" else dls


def _warn_unread_valid_column(data: Path, table: Path, valid_pct: float) -> None:
    """Warn when the CSV has a validation column (fastai's is_valid) that `unfreeze train` does not read: the
    rows it marks would be trained on, and the validation set drawn at random, without a word."""
    from unfreeze.data import DataWarning
    from unfreeze.data.sources import csv_separator, read_csv_text

    path = table if table.is_file() or table.is_absolute() else data / table
    try:
        text = read_csv_text(path)
    except (OSError, ValueError):  # a missing or binary file: from_csv says so, in its own words
        return
    header = next(csv.reader(io.StringIO(text), delimiter=csv_separator(text)), [])
    marks = [name for name in header[2:] if name.strip().casefold() in ("is_valid", "valid", "is_validation")]
    if marks:
        warnings.warn(f"{path.name}'s column {marks[0]!r} is not read: unfreeze train holds out --valid-pct "
                      f"{valid_pct} of the images at random (seeded). To keep the rows it marks for validation, use "
                      "the Python API: ImageDataLoaders.from_csv(..., valid_col=" + repr(marks[0]) + ")",
                      DataWarning, stacklevel=2)


def _regression_data(data: Path, options: dict[str, Any], common: dict[str, Any]) -> Any:
    """`--task regression --csv FILE`: the file in column 1, one number to predict per further column."""
    from unfreeze import ImageDataLoaders, RegressionBlock
    from unfreeze.data.sources import csv_separator, read_csv_text

    if not options.get("csv") or options.get("multi_label") or options.get("label_re"):
        raise UsageError("--task regression reads the numbers from a CSV: pass --csv FILE with a header, the file "
                         "name in column 1 and a number in each further column (no --multi-label or --label-re). "
                         "For a folder and a label function use the Python API (RegressionBlock)")
    # Options about classes: the regression task would raise deep in the learner, or ignore them.
    for_classes = [flag for flag, given in (("--class-weights", options.get("class_weights")),
                                            ("--sampler balanced", options.get("sampler") == "balanced"),
                                            ("--label-smoothing", options.get("label_smoothing")),
                                            ("--imbalance logit_adjust", options.get("imbalance") == "logit_adjust"),
                                            (f"--noise {options.get('noise')}",
                                             options.get("noise") not in (None, "auto", "none"))) if given]
    if for_classes:
        raise UsageError(f"{', '.join(for_classes)} act on classes; --task regression predicts numbers and has "
                         "none. Drop them, or train a classification run")
    table = Path(options["csv"])
    path = table if table.is_absolute() else data / table
    if path.is_dir():
        raise UsageError(f"{path} is a folder. Expected a CSV file with file,value columns and a header: name the "
                         "file itself, e.g. --csv values.csv")
    if not path.is_file():
        raise UsageError(f"CSV file {path} does not exist. Expected file,value columns with a header")
    text = read_csv_text(path)
    header = next(csv.reader(io.StringIO(text), delimiter=csv_separator(text)), [])
    if len(header) < 2:
        raise UsageError(f"{path} has {len(header)} column(s); --task regression needs the file name and at least "
                         "one number per row")
    return ImageDataLoaders.from_csv(data, str(path), label_col=header[1:], y_block=RegressionBlock, **common)


def build_learner(options: dict[str, Any], dls: Any, quiet: bool) -> Any:
    """`vision_learner` with the model options; a missing --weights file is a user error."""
    from unfreeze import WeightsNotFoundError, vision_learner

    if options["weights"] is not None and not options["pretrained"]:
        raise UsageError("--weights loads pretrained weights, --no-pretrained starts from random ones. Drop one")
    try:
        metrics = (dls.task.default_metrics() if options.get("task") == "regression" else
                   MULTI_LABEL_METRICS if options.get("multi_label") else METRICS)
        return vision_learner(dls, options["arch"], metrics=metrics, pretrained=options["pretrained"],
                              weights=options["weights"],
                              train_bn=options["train_bn"], seed=options["seed"], quiet=quiet,
                              class_weights=options.get("class_weights"),
                              head=options.get("head", "fastai"))  # runs from before --head had fastai's
    except WeightsNotFoundError as error:
        first_line = str(error).splitlines()[0]
        raise UsageError(f"{first_line} Pass --weights FILE (.safetensors or .pth), or --no-pretrained to start "
                         "from random weights") from None
    except FileNotFoundError as error:
        raise UsageError(f"{error}. Check the --weights path") from None


def _options(args: argparse.Namespace, data_required: bool = True) -> dict[str, Any]:
    """The data and model options of a parsed command line, as plain JSON-able values."""
    return {
        "data": str(Path(args.data).expanduser().resolve()) if data_required or args.data else None,
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
        "multi_label": args.multi_label,
        "label_delim": args.label_delim,
        "task": getattr(args, "task", "classification"),
        "split": SPLIT,
        "class_weights": getattr(args, "class_weights", None),
        "sampler": getattr(args, "sampler", "shuffle"),
    }


def _load_model(path: Path) -> Any:
    from unfreeze import load_learner

    return load_learner(runs.model_file(path))


def load_run(run: runs.Run) -> tuple[Any, Any, dict[str, Any]]:
    """The run's model, its data rebuilt from config.json and the options: what interpret, clean and export use.

    The data gets the model's normalization and device, so its batches are what the model saw.

    Raises:
        RunConfigError: config.json lacks the data options.
        UsageError: The data folder is gone, or its classes are no longer the model's (files moved or
            renamed since).

    Example:
        >>> learn, dls, options = load_run(runs.Run.open("runs/pets"))  # doctest: +SKIP
        >>> list(dls.vocab) == list(learn.dls.vocab)  # doctest: +SKIP
        True
    """
    options = run.options(("data", "size", "bs", "valid_pct", "seed"))
    if not Path(options["data"]).is_dir():  # moved or deleted since training: say so, not "no training images"
        raise UsageError(f"{options['data']} (config.json's data) no longer exists: the run's images were moved or "
                         f"deleted since training. Put it back there, or score the model on the images where they "
                         f"are now: unfreeze evaluate {run.folder} FOLDER")
    learn = _load_model(run.folder)
    dls = load_data(options)
    if list(dls.vocab) != list(learn.dls.vocab):
        raise UsageError(f"the data at {options['data']} now has the classes {dls.vocab}, the model was trained on "
                         f"{learn.dls.vocab}. Restore the data or train a new run")
    dls.set_normalization(learn.dls.valid.mean, learn.dls.valid.std)
    dls.to(learn.device)
    return learn, dls, options


def _write_run_report(run: runs.Run) -> None:
    """The report hook of a training run: report.html from the files the run has written so far."""
    write_report(run.folder)


# ---------------------------------------------------------------------------- train and demo


def command_train(args: argparse.Namespace) -> int:
    """`unfreeze train`: the recommended recipe (fit_recipe), then export, plot and summarise into a fresh run
    directory.

    A checkpoint is written into the run directory after every epoch; `--resume RUN_DIR` rebuilds the
    same data and model from its config.json and continues from that checkpoint exactly.
    """
    from unfreeze import distributed
    from unfreeze.inference import ClassificationInterpretation
    from unfreeze.inference.regression import regression_report
    from unfreeze.plots import plot_predicted_vs_true
    from unfreeze.train.recipe.noise import disagreements

    started = time.perf_counter()
    run, options, saved = _resume_plan(args) if args.resume is not None else (None, _new_run_options(args), None)
    dls = load_data(options)
    _check_trainable(dls, options)
    learn = build_learner(options, dls, quiet=args.quiet)
    # Issue 17 section 3's small-image check and upscale go before this line (the recipe times an epoch
    # at the size the data finally has).
    check_recipe(options, learn)  # conflicting options fail here, before a run directory exists
    loggers = logger_callbacks(options)
    # Under torchrun every rank trains, but only rank 0 creates the run directory, writes and prints
    # (the process group exists once the learner is built).
    main_process = distributed.is_main_process()
    quiet = args.quiet or not main_process
    options, input_size = check_input_size_and_upscale(learn, options, load_data, quiet)
    dls = learn.dls  # upscaled loaders, if the plan raised the size
    if run is None:
        run = _claim_run(args, options, main_process)
    elif main_process:
        args.cleanup.enter_context(run.lock())
        run.rewrite_history(saved.state["recorder"]["history"])
        recorded = run.options()
        if recorded["data"] != options["data"]:  # DATA moved, with the same files (_moved_data checked them)
            run.update_options({**recorded, "data": options["data"], "csv": options.get("csv")})
            if not quiet:
                print(f"DATA moved: {recorded['data']} → {options['data']}, the same {options['data_files']['files']} "
                      "files; config.json records the new place.")
    if main_process:
        args.interrupted_run = run  # a Ctrl-C outside the epochs (lr_find, export, plots) names it
    # Every summary this run writes (finished, interrupted or resumed) is followed by its report.html.
    run.add_report_hook(_write_run_report)
    if not quiet:
        resumed = f", resuming after epoch {len(saved.state['recorder']['history'])}" if saved is not None else ""
        print(f"{dls}; {options['arch']} on {learn.device}; run directory {run.folder}{resumed}")
    lr, lr_find = options["lr"], None
    if saved is not None:
        # A resume runs at the LR the interrupted fit ran at: --lr as given, the one --lr auto chose, or
        # what a divergence retry lowered it to (a --lr given again was checked against config.json).
        lr = (saved.progress.get("recipe") or {}).get("base_lr", lr)
    if lr == "auto" and saved is None:
        lr_find = learn.lr_find(plot=run.file("lr_find.png"))
        lr = lr_find.valley
        if not quiet:
            print(f"--lr auto: using the valley suggestion, {lr:.2e}")
    logger = [run.history_logger(), *loggers] if main_process else []
    guards = TrainGuards.run(learn, lambda attempt_lr, guard_callbacks: _train(
        learn, options, attempt_lr, [*logger, *guard_callbacks], run, resume=saved), lr, options.get("keep", "best"),
        run.file("best.safetensors"), retry=saved is None)
    if guards.retried_because is not None and main_process:
        run.rewrite_history(learn.recorder.history)  # the rolled-back attempt's rows are gone
    lr = learn.progress.recipe.get("base_lr", lr)  # the LR that ran (a divergence retry lowers it)
    if learn.interrupted:
        # Every rank exports (export synchronises the ranks); rank 0 alone writes the summary.
        exported = _export(learn, run) if args.save_on_interrupt else None
        return _after_interrupt(learn, run, lr, started, exported) if main_process else 130
    guards.choose_threshold(learn, options.get("thresholds", "global"))  # runs from before --thresholds: global
    _export(learn, run)
    regression = options.get("task") == "regression"
    # Both gather over ranks: every rank calls them.
    interpretation = None if regression else ClassificationInterpretation.from_learner(learn)
    predictions = learn.get_preds() if regression else None
    # the training images whose label the model finds least likely (gathers over ranks too)
    disagreeing = None if regression else disagreements(learn)
    if not main_process:
        return 0
    single_label = not options.get("multi_label") and not regression
    balanced = _balanced(interpretation, dls) if single_label else None
    plots = [run.file("lr_find.png")] if lr_find is not None else []
    if regression:
        plots += [learn.recorder.plot_loss(run.file("loss.png")), learn.recorder.plot_sched(run.file("sched.png")),
                  plot_predicted_vs_true(*predictions, list(dls.vocab), run.file("predicted_vs_true.png"))]
    else:
        plots += run.write_plots(learn.recorder, interpretation, single_label)
    final = guards.kept_row(learn.recorder.history)
    summary = {
        "final": final,
        **guards.summary(),
        "input_size": input_size,
        "history": learn.recorder.history,
        "lr": {"base_lr": lr, "chosen_by": "lr_find valley" if options["lr"] == "auto" else "--lr",
               "suggestions": lr_find.suggestions if lr_find is not None else None},
        "data": {"train": len(dls.train.dataset), "valid": len(dls.valid.dataset), "classes": list(dls.vocab)},
        "task": learn.task.config(),
        "recipe": learn.progress.recipe,  # what ran, with the epochs a --time-budget planned
        "most_confused": interpretation.most_confused(min_val=2)[:10] if single_label else None,
        "confusion_matrix": interpretation.confusion_matrix().tolist() if single_label else None,
        "phases": phases_summary(learn.recorder.phases, len(learn.recorder.history)),
        "report": regression_report(*predictions, list(dls.vocab)) if regression else interpretation.report(),
        "balanced": balanced,  # balanced accuracy and macro F1 on validation, when the classes are imbalanced
        "disagreements": disagreeing,
        "interrupted": learn.interrupted,
        "resumed_after_epoch": None if saved is None else len(saved.state["recorder"]["history"]),
        "notes": learn.recorder.notes,
        "calibration": train_summary(learn),  # temperature, ECE/NLL/Brier before → after, the unknown threshold
        "wall_time_s": round(time.perf_counter() - started, 2),
        **runs.environment(learn.device),
    }
    run.write_summary(summary)
    if summary["calibration"] and run.file("reliability.png").is_file():  # the report draws it from these bins
        plots.append(run.file("reliability.png"))
    if args.quiet:
        print(run.folder)
        return 0
    metrics = ", ".join(f"{name} {final[name]:.4f}" for name in learn.metric_names if name in final)
    if balanced is not None:
        metrics += f", balanced accuracy {balanced['balanced_accuracy']:.4f}, macro F1 {balanced['macro_f1']:.4f}"
    print(f"Final: {metrics} on {len(dls.valid.dataset)} validation images ({guards.sentence()}); "
          f"{summary['wall_time_s']:.0f} s in all.")
    calibrated = calibration_line(summary["calibration"])
    if calibrated:
        print(calibrated)
    print(f"Run directory: {run.folder}/ (config.json, history.csv, {runs.CHECKPOINT}, model.unfreeze, summary.json, "
          "report.html)")
    print(f"Plots: {', '.join(str(path) for path in plots)}")
    return 0


def _report_line(name: str, values: dict[str, float]) -> str:
    """One output's row of a regression report: counts as whole numbers, measures to 4 decimals."""
    shown = (f"{key} {int(value)}" if key == "count" and float(value).is_integer() else f"{key} {value:.4f}"
             for key, value in values.items())
    return f"{name:>12}  " + "  ".join(shown)


def _balanced(interpretation: Any, dls: Any) -> dict[str, float] | None:
    """Balanced accuracy and macro F1 of the validation predictions when the training classes are imbalanced."""
    return _balanced_on(interpretation, dls.train.dataset.targets, dls.n_classes)


def _balanced_on(interpretation: Any, counted: Any, n_classes: int) -> dict[str, float] | None:
    """Balanced accuracy and macro F1 of `interpretation`'s predictions when the classes of `counted`
    (targets) are imbalanced (`check_imbalance`); None when they are not."""
    from unfreeze.train.recipe.imbalance import balanced_scores, check_imbalance

    check = check_imbalance(counted, n_classes)
    if check is None or not check.imbalanced:
        return None
    scores = balanced_scores(interpretation.preds, interpretation.targets, n_classes)
    return {"balanced_accuracy": round(scores["balanced_accuracy"], 4), "macro_f1": round(scores["macro_f1"], 4)}


def _new_run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a new run: the command line's data and model options, epochs and LR."""
    if args.data is None:
        raise UsageError("DATA is missing. Pass the folder of images to train on, or --resume RUN_DIR to "
                         "continue an interrupted run")
    given = {token.split("=")[0] for token in args.argv if token.startswith("--")}
    # Multi-label options on another task were accepted and ignored: the run was not the one asked for. Their
    # defaults stay harmless (a run's rerun line in config.json spells every option out).
    unused = [flag for flag, value, default in (("--label-delim", args.label_delim, " "),
                                                ("--thresholds", args.thresholds, "auto"))
              if flag in given and value != default]
    if unused and not args.multi_label:
        raise UsageError(f"{' and '.join(unused)} {'go' if len(unused) > 1 else 'goes'} with --multi-label (the "
                         "classes of a CSV cell, split at --label-delim, and their decision thresholds); this run is "
                         f"{'a regression' if getattr(args, 'task', None) == 'regression' else 'single-label'}. Add "
                         f"--multi-label, or drop {' and '.join(unused)}")
    return {**_options(args), **recipe_options(args), "lr": args.lr, "keep": args.keep, "upscale": args.upscale,
            **trust_options(args), "thresholds": args.thresholds}


def _claim_run(args: argparse.Namespace, options: dict[str, Any], main_process: bool) -> runs.Run:
    """Create (or with --overwrite reuse) the run directory on rank 0, hold its lock until the command
    ends and write its config; every rank learns the folder, or the error that stopped rank 0."""
    from unfreeze import distributed

    requested = args.out or Path("runs") / f"{Path(options['data']).name}-{options['arch']}"
    claimed: str | Exception | None = None
    if main_process:
        try:
            run = runs.Run.create(requested, overwrite=args.overwrite)
            args.cleanup.enter_context(run.lock())
            claimed = str(run.folder)
        except (runs.RunDirError, UsageError) as error:
            claimed = error  # the other ranks raise it too, instead of waiting for a folder forever
    claimed = distributed.broadcast_object(claimed)
    if isinstance(claimed, Exception):
        raise claimed
    run = runs.Run(Path(str(claimed)))
    options["out"] = str(run.folder)
    if main_process and run.folder != Path(requested).expanduser():
        # --overwrite reuses a folder only (create_run_dir): for a file the hint would be false.
        hint = f" (--overwrite reuses {requested})" if Path(requested).expanduser().is_dir() else ""
        print(f"{requested} exists; this run goes to {run.folder}{hint}.")
    if main_process:
        # What DATA holds, so that a resume can accept the same files moved elsewhere (_moved_data).
        options["data_files"] = runs.data_files(options["data"], skip=run.folder)
        run.write_config(options, args.argv)
    return run


# Options a resumed run takes from config.json: one given again on the command line must agree.
_RESUMED = ("arch", "size", "bs", "valid_pct", "seed", "label_re", "csv", "weights", "pretrained", "train_bn",
            "multi_label", "label_delim", "task", "class_weights", "sampler", "epochs", "freeze_epochs", "lr",
            *RECIPE_FLAGS, "keep", "upscale", "thresholds")


def _resume_plan(args: argparse.Namespace) -> tuple[runs.Run, dict[str, Any], Any]:
    """The run, its options and its checkpoint, for `--resume RUN_DIR`.

    Options come from the run's config.json. One that the command line also gives must have the same
    value: a resumed run with other epochs, LR or data would not be the run that was interrupted.
    """
    run = runs.Run.open(args.resume, "--resume takes a run directory written by 'unfreeze train'")
    options = run.options(("data", "arch", "epochs", "freeze_epochs", "lr"), "it cannot be resumed")
    given = {token.split("=")[0] for token in args.argv if token.startswith("--")}
    current = {**_options(args, data_required=False), "epochs": args.epochs, "freeze_epochs": args.freeze_epochs,
               "lr": args.lr, "keep": args.keep, "upscale": args.upscale, "thresholds": args.thresholds,
               **{key: getattr(args, key) for key in RECIPE_FLAGS}}
    flags = {key: f"--{key.replace('_', '-')}" for key in _RESUMED}
    flags.update(pretrained="--no-pretrained", multi_label="--multi-label", upscale="--no-upscale", **RECIPE_FLAGS)
    if "--no-flip" in given:
        flags["flip"] = "--no-flip"
    differing = [f"{flags[key]} {current[key]!r} (the run used {options.get(key)!r})" for key in _RESUMED
                 if key in current and (flags[key] in given or (key == "train_bn" and "--no-train-bn" in given))
                 and current[key] != options.get(key)]
    if differing:
        raise UsageError(f"--resume continues {run.folder} as it was started; this command line changes "
                         f"{'; '.join(differing)}. Drop those options, or start a new run")
    saved = run.resume_checkpoint()  # first: a finished run is refused as such, wherever its data went
    data = None if args.data is None else str(Path(args.data).expanduser().resolve())
    if data is not None and data != options["data"]:
        options = _moved_data(run, options, data)
    elif not Path(options["data"]).is_dir():
        raise UsageError(f"{options['data']}, the DATA {run.folder} trained on, is not a directory any more. If it "
                         f"moved, pass its new place: unfreeze train NEWPATH --resume {run.folder}")
    return run, options, saved


def _moved_data(run: runs.Run, options: dict[str, Any], data: str) -> dict[str, Any]:
    """The run's options with DATA at `data`, when that folder holds the files the run recorded (relative
    paths and sizes: the same images, moved or renamed); a UsageError when it holds others or the run
    recorded none (an older unfreeze). A --csv inside the old DATA moves with it."""
    recorded, found = options.get("data_files"), runs.data_files(data)
    old = options["data"]
    if recorded is None:
        raise UsageError(f"--resume continues {run.folder} on {old}, and its config.json does not record which files "
                         f"that held (an older unfreeze wrote it), so {data} cannot be checked to hold the same. "
                         f"Put the data back at {old}, or start a new run")
    if found != recorded:
        raise UsageError(f"{data} does not hold the files {run.folder} trained on: {recorded['files']} files of "
                         f"{recorded['bytes']} bytes under {old}, {found['files']} files of {found['bytes']} bytes "
                         "here (or other names or sizes). Pass the folder the run started with, or start a new run")
    moved = {**options, "data": data}
    if options.get("csv") and Path(options["csv"]).is_relative_to(old):
        moved["csv"] = str(Path(data) / Path(options["csv"]).relative_to(old))
    return moved


def _check_trainable(dls: Any, options: dict[str, Any]) -> None:
    """Refuse data that cannot train before a run directory exists: fewer train images than one
    batch, a validation set that is empty or none of whose files decodes (it would train, report NaN
    and end as diverged), or a class none of whose training files decodes (it would train without it)."""
    if len(dls.train) == 0:
        raise UsageError(f"the training set has {len(dls.train.dataset)} images, fewer than one batch of "
                         f"{dls.train.batch_size}. Pass a smaller --bs or add images")
    if len(dls.valid.dataset) == 0:
        data = Path(options["data"])
        if (data / "train").is_dir() and (data / "valid").is_dir() and not options.get("csv") \
                and not options.get("label_re"):
            raise UsageError(f"found no validation image under {data / 'valid'}. Expected images in "
                             f"{data / 'valid'}/<class>/ (as in train/): add some, or remove the empty valid "
                             "folder to hold out --valid-pct of train/ at random")
        n_images, valid_pct = len(dls.train.dataset), options["valid_pct"]
        drawn = int(valid_pct * n_images)
        if drawn == 0:
            raise UsageError(f"the split left no validation image: --valid-pct {valid_pct} of the {n_images} "
                             "images rounds down to 0. Expected at least one validation image: pass a larger "
                             "--valid-pct or add images")
        # split_items hands a class's only image back to training, so it can empty the validation set.
        raise UsageError(f"the split left no validation image: --valid-pct {valid_pct} drew {drawn} of the "
                         f"{n_images} images, but each was the only image of its class and stayed in training. "
                         "Expected classes of 2 or more images: add images, or hold some out in a valid/ folder")
    dls.valid.check_decodable()
    dls.train.check_decodable(every_class=True)


def _train(learn: Any, options: dict[str, Any], lr: float | str, callbacks: list[Any], run: runs.Run,
           resume: Any) -> None:
    """`learn.fit_recipe` with the run's recipe and a checkpoint in the run directory after every epoch
    (and from it, on resume).

    A run started before the recipe options existed (its config.json has no lr_mult) resumes with
    fine_tune, as it began. A full disk while CSVLogger appends a row is reported as that file's error.
    """
    from unfreeze._io import output_error

    # Issue 17 section 3 (keep the best epoch, --keep) adds its callback to `callbacks` in command_train.
    try:
        # Regression runs fastai's fine_tune: the recipe's label smoothing, mixup and flip probe are for classes.
        if "lr_mult" not in options or options.get("task") == "regression":
            learn.fine_tune(options["epochs"], base_lr=lr, freeze_epochs=options["freeze_epochs"],
                            callbacks=callbacks, checkpoint=run.checkpoint_file, resume=resume)
        else:
            learn.fit_recipe(recipe=recipe_from_options(options, lr), callbacks=callbacks,
                             checkpoint=run.checkpoint_file, resume=resume, calibrate=options.get("calibrate", True),
                             unknown_rate=options.get("unknown_rate", 0.05))
    except OSError as error:
        converted = output_error(error, error.filename or run.history_file)
        if converted is None:
            raise
        raise converted from error


def _export(learn: Any, run: runs.Run) -> Path:
    """The run's model.unfreeze, after checking that the model predicts finite values."""
    from unfreeze.train.divergence import check_finite_predictions

    check_finite_predictions(learn)
    return learn.export(run.export_file)


def phases_summary(phases: list[dict[str, int]], n_epochs: int) -> list[dict[str, Any]]:
    """summary.json's "phases": each fit's name, epochs and the groups it trained (report.html marks them).

    Example:
        >>> phases_summary([{"start_step": 0, "start_epoch": 0, "frozen_to": 2, "n_groups": 3}], 1)
        [{'name': 'frozen (head only)', 'start_epoch': 0, 'end_epoch': 0, 'frozen_to': 2, 'n_groups': 3, \
'trained_groups': [2]}]
    """
    from unfreeze.plots import phase_name

    described = []
    for index, phase in enumerate(phases):
        end = phases[index + 1]["start_epoch"] - 1 if index + 1 < len(phases) else n_epochs - 1
        described.append({"name": phase_name(phase), "start_epoch": phase["start_epoch"], "end_epoch": end,
                          "frozen_to": phase["frozen_to"], "n_groups": phase["n_groups"],
                          "trained_groups": list(range(phase["frozen_to"], phase["n_groups"]))})
    return described


def _after_interrupt(learn: Any, run: runs.Run, lr: float, started: float, exported: Path | None) -> int:
    """After Ctrl-C in training: summary.json says so; the model is exported only with --save-on-interrupt.

    A half-trained model.unfreeze next to a complete-looking run would be mistaken for the result.
    """
    run.write_summary({
        "interrupted": True,
        "exported": None if exported is None else str(exported),
        "final": dict(learn.recorder.history[-1]) if learn.recorder.history else {},
        "history": learn.recorder.history,
        "lr": {"base_lr": lr},
        "notes": learn.recorder.notes,
        "calibration": train_summary(learn),  # temperature, ECE/NLL/Brier before → after, the unknown threshold
        "wall_time_s": round(time.perf_counter() - started, 2),
    })
    saved = f"the model was saved to {exported}" if exported else "no model was exported (--save-on-interrupt keeps it)"
    report = f" and {run.file('report.html')}" if run.file("report.html").is_file() else ""
    print(f"unfreeze: interrupted; {saved}; summary in {run.summary_file}{report}.", file=sys.stderr)
    return 130


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
    train_args = args.parser.parse_args(argv)
    train_args.argv = ["demo", *args.argv[1:]]
    train_args.cleanup = args.cleanup
    return command_train(train_args)


# ---------------------------------------------------------------------------- lr-find


def command_lr_find(args: argparse.Namespace) -> int:
    """`unfreeze lr-find`: the range test on the frozen model (as fine_tune's first phase trains)."""
    from matplotlib.figure import Figure

    check_output_file(args.plot, "--plot")
    # Checked now: matplotlib would refuse the suffix only after the whole range test.
    formats = Figure().canvas.get_supported_filetypes()
    if args.plot.suffix and args.plot.suffix.lower().lstrip(".") not in formats:
        raise UsageError(f"--plot {args.plot}: matplotlib cannot write {args.plot.suffix} files. Expected one of "
                         f"{', '.join('.' + name for name in sorted(formats))}, such as lr_find.png")
    options = {**_options(args), "head": Recipe().head}  # the learner `unfreeze train` would build
    learn = build_learner(options, load_data(options), quiet=args.quiet)
    result = learn.lr_find(num_it=args.num_it, plot=args.plot)
    suggestions = "  ".join(f"{name} {lr:.2e}" for name, lr in result.suggestions.items())
    print(f"Suggestions (head LR): {suggestions}")
    print(f"Plot: {result.plot_path}")
    print(f"Train with: {train_command_after_lr_find(args.argv, result.valley)}")
    return 0


# ---------------------------------------------------------------------------- predict


def _image_sources(paths: Sequence[Path]) -> Iterator[Path]:
    from unfreeze.inference import iter_image_files

    for path in paths:
        if path.is_dir():
            yield from iter_image_files(path)
        else:
            yield path


def _cell(value: Any, digits: int = 6) -> str:
    """One table cell: lists (multi-label classes, top-k entries) joined with ';', floats rounded."""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return ";".join(f"{item['label']}:{_cell(item['probability'], digits)}" if isinstance(item, dict) else
                        _cell(item, digits) for item in value)
    return "" if value is None else str(value)


_UNKNOWN_MARK = " (unknown)"  # after the label of a prediction the model flags as unlike its training images
# A multi-label table's classes column is at most this wide: a row with more classes pushes its path right.
_MAX_CLASSES_WIDTH = 60


def _write_records(records: Iterable[dict[str, Any]], output_format: str, stream: TextIO, label_width: int,
                   top_k: int = 1, layout: str = "label") -> int:
    """Stream prediction records (inference/records.py) to `stream`; returns how many carried an error.

    json: {"schema_version": N, "predictions": [record, ...]}; csv: the record's columns; table: for people, by
    `layout`: "label" (probability, label, path), "classes" (a multi-label model's: each predicted class with
    its probability, or "(none)", then the path) or "values" (a regression model's: values and path, with no
    probability or alternatives).
    """
    from unfreeze.inference import CSV_COLUMNS, SCHEMA_VERSION, csv_row

    failed = 0
    writer = csv.writer(stream) if output_format == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    elif output_format == "table":
        print(f"{layout:<{label_width}}  path" if layout != "label" else f"{'prob':>6}  {'label':<{label_width}}  path",
              file=stream)
    else:
        stream.write(f'{{"schema_version": {SCHEMA_VERSION}, "predictions": [')
    for number, record in enumerate(records):
        failed += record["error"] is not None
        if writer is not None:  # read on terminals too (`cat`, `less -r`): control characters escaped as in the table
            writer.writerow([printable(cell) for cell in csv_row(record)])
        elif output_format == "table":  # for a terminal: control characters in names are escaped
            path = printable(record["file"])
            if record["error"]:
                no_prob = "" if layout != "label" else f"{'-':>6}  "
                print(f"{no_prob}{'(error)':<{label_width}}  {path}  ({printable(record['error'])})", file=stream)
            elif layout == "values":
                print(f"{printable(record['label']):<{label_width}}  {path}", file=stream)
            elif layout == "classes":
                classes = ", ".join(f"{name} {probability:.3f}"
                                    for name, probability in zip(record["label"], record["probability"], strict=True))
                classes = printable(classes) or "(none)"
                classes = f"{classes}{_UNKNOWN_MARK}" if record.get("unknown") else classes
                alternatives = f"  top {top_k}: {printable(_cell(record['top_k'], 3))}" if top_k > 1 else ""
                print(f"{classes:<{label_width}}  {path}{alternatives}", file=stream)
            else:
                probability = record["probability"]
                prob = probability if isinstance(probability, float) else max(probability or [], default=float("nan"))
                label = printable(_cell(record["label"])) or "(none)"
                label = f"{label}{_UNKNOWN_MARK}" if record.get("unknown") else label  # unlike the training images
                alternatives = f"  top {top_k}: {printable(_cell(record['top_k'], 3))}" if top_k > 1 else ""
                print(f"{prob:6.3f}  {label:<{label_width}}  {path}{alternatives}", file=stream)
        else:
            stream.write(("," if number else "") + "\n  " + json.dumps(record))
    if output_format == "json":
        stream.write("\n]}\n")
    stream.flush()
    return failed


def _counted(rows: Iterable[dict[str, Any]], progress: StepProgress) -> Iterator[dict[str, Any]]:
    for row in rows:
        progress.advance()
        yield row


def command_predict(args: argparse.Namespace) -> int:
    """`unfreeze predict`: stream prediction records (predict_batch, or tta with --tta) to stdout."""
    missing = [str(path) for path in args.images if not path.exists()]
    if missing:
        raise UsageError(f"{', '.join(missing)} not found. Pass existing image files or folders")
    learn = _load_model(args.model)
    sources = _image_sources(args.images)
    first = next(sources, None)
    if first is None:
        raise UsageError(f"no image files in {', '.join(map(str, args.images))}. Pass images or folders holding "
                         "images (.jpg, .png, ...)")
    paths = [first, *sources]  # counted first, for the progress
    from unfreeze.inference import predict_batch, prediction_record
    from unfreeze.inference.runtime import runtime_predictor
    from unfreeze.tasks import MultiLabel, Regression

    try:
        # Default: the fastest installed runtime on a CPU; a GPU's PyTorch beats them both.
        runtime = args.runtime or ("torch" if learn.device.type != "cpu" else None)
        with warnings.catch_warnings():
            if args.quiet:  # a runtime passed over for the next one is news, not a problem
                warnings.simplefilter("ignore")
            predictor = runtime_predictor(learn, runs.model_file(args.model), runtime)
    except ImportError as error:  # the chosen --runtime is not installed: the message has the pip line
        raise UsageError(str(error)) from None
    # At least 2 alternatives per row: every record's top_k comes from them (cut to --top-k).
    rows = predict_batch(predictor, iter(paths), bs=args.bs, top_k=max(args.top_k, 2), with_tta=args.tta)
    # A label the model flags as unknown is printed with " (unknown)" after it: the column leaves room for it.
    flagged = len(_UNKNOWN_MARK) if learn.trust.has_score else 0
    label_width = max(len("(error)"), *(len(printable(name)) + flagged for name in [*learn.dls.vocab, "(none)"]))
    layout = "values" if isinstance(learn.task, Regression) else "classes" if isinstance(learn.task, MultiLabel) \
        else "label"
    if layout == "values":  # "name=value, ...": prediction_row's 4 significant digits take at most 10 characters
        label_width = max(len("(error)"), len(", ".join(f"{printable(name)}=" + "0" * 10 for name in learn.dls.vocab)))
    if layout == "classes":  # "name 0.123, ...": room for every class, up to a line's worth
        every = len(", ".join(f"{printable(name)} 0.000" for name in learn.dls.vocab)) + flagged
        label_width = max(label_width, min(every, _MAX_CLASSES_WIDTH))
    # On a terminal the rows themselves show the progress; written to a file or a pipe, stderr shows it.
    quiet = args.quiet or getattr(sys.stdout, "isatty", lambda: False)()
    try:
        with StepProgress("predict", len(paths), quiet=quiet, stream=sys.stderr, unit="images") as progress:
            records = (prediction_record(row, args.top_k) for row in _counted(rows, progress))
            failed = _write_records(records, args.format, sys.stdout, label_width, args.top_k, layout)
    except OSError as error:  # stdout redirected to a full disk (`> predictions.csv`)
        converted = output_error(error, stream_path(sys.stdout))
        if converted is None:
            raise
        discard_output(sys.stdout)
        raise converted from None
    if failed:
        print(f"unfreeze: {failed} image(s) could not be predicted; their rows carry the reason.", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------------------- interpret and export


def command_interpret(args: argparse.Namespace) -> int:
    """`unfreeze interpret`: rebuild the run's validation set, redraw its plots and print the report."""
    from unfreeze.inference import ClassificationInterpretation

    run = runs.Run.open(args.run_dir)
    learn, dls, options = load_run(run)
    if options.get("task") == "regression":  # a predicted-vs-true plot and a report per output, as train draws
        from unfreeze.inference.regression import regression_report
        from unfreeze.plots import plot_predicted_vs_true

        predictions = learn.get_preds(dl=dls.valid)
        plot = plot_predicted_vs_true(*predictions, list(dls.vocab), run.file("predicted_vs_true.png"))
        for name, values in regression_report(*predictions, list(dls.vocab)).items():
            print(printable(_report_line(name, values)))
        print(f"Plots: {plot}")
        return 0
    interpretation = ClassificationInterpretation.from_learner(learn, dl=dls.valid)
    single_label = not options.get("multi_label")
    plots = [interpretation.plot_confusion_matrix(run.file("confusion_matrix.png"))] if single_label else []
    plots.append(interpretation.plot_top_losses(9, path=run.file("top_losses.png")))
    _print_report(interpretation, single_label)
    print(f"Plots: {', '.join(str(path) for path in plots)}")
    return 0


def _print_report(interpretation: Any, single_label: bool) -> None:
    """The per-class report and the most confused pairs; class names come from a file, so escaped."""
    print(printable(interpretation.report(as_text=True), keep_newlines=True))
    confused = interpretation.most_confused(min_val=1)[:10] if single_label else []
    if confused:
        print("Most confused (actual → predicted, count): " + printable(
            "; ".join(f"{actual} → {predicted} {count}" for actual, predicted, count in confused)))


def command_export(args: argparse.Namespace) -> int:
    """`unfreeze export`: load the export (which checks it); with --onnx write ONNX next to it."""
    from unfreeze.inference import read_export_metadata

    model_path = runs.model_file(args.run_dir)
    learn = _load_model(model_path)
    metadata = read_export_metadata(model_path)
    from unfreeze.tasks import Regression

    size_mib = model_path.stat().st_size / 2**20
    names = metadata["vocab"]
    # A regression model's vocab names its outputs (numbers), not classes.
    what = (f"{len(names)} output{'s' * (len(names) != 1)} ({', '.join(map(str, names))})"
            if isinstance(learn.task, Regression)
            else f"{len(names)} classes")
    print(printable(f"{model_path}: {metadata['model']['arch']}, {what}, {metadata['size']} px, {size_mib:.1f} MiB, "
                    f"format {metadata['format_version']} (unfreeze {metadata['library_version']})"))
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


# ---------------------------------------------------------------------------- evaluate


def _labelled_items(args: argparse.Namespace, multi_label: bool) -> list[tuple[Path, Any]]:
    """(path, label) of every image of a labelled test set: class folders, --label-re or --csv."""
    from unfreeze.data import BadFileReport
    from unfreeze.data.sources import check_root, csv_items, folder_items, name_re_items

    skipped = BadFileReport()
    root = check_root(args.data, "a folder of class folders, or of images with --label-re or --csv")
    if args.csv:
        table = Path(args.csv)
        items, _ = csv_items(root, str(table.resolve()) if table.is_file() else str(table), 0, 1, None, skipped,
                             empty_is_label=multi_label)
        if multi_label:
            delim = _label_delim(args)
            items = [(path, tuple(name for name in str(label).split(delim) if name.strip())) for path, label in items]
    elif args.label_re:
        items = name_re_items(root, None, args.label_re, skipped)
    else:
        items = folder_items(root, skipped, [])
    skipped.warn()
    if not items:
        raise UsageError(f"no labelled images found in {root}. Expected DATA/<class>/*.jpg, or --csv / --label-re")
    return items


def _label_delim(args: argparse.Namespace) -> str:
    """evaluate's --label-delim as given, else the one the run trained with (its config.json), else a space: a
    model trained on 'cat;dog' cells is scored on the same kind of CSV without being told again."""
    if args.label_delim == "":  # str.split("") raises; train refuses it too
        raise UsageError("--label-delim must be a non-empty text such as ' ' or ';', got ''. Leave it out to split "
                         "the cells as the run trained")
    if args.label_delim is not None:
        return args.label_delim
    try:
        trained_with = runs.Run.open(runs.model_file(args.model).parent).options().get("label_delim")
    except (OSError, ValueError, AttributeError):  # a bare model file (RunDirError), a damaged config.json
        trained_with = None
    return trained_with if isinstance(trained_with, str) and trained_with else " "


def _refuse_training_layout(root: Path, labels: set[Any], vocab: list[str]) -> None:
    """UsageError when DATA's class folders are a dataset's splits (train/, valid/, test/) the model has no
    class of: DATA is the dataset root, and the split to score is one level down."""
    splits = [name for name in ("train", "valid", "test") if name in labels and name not in vocab]
    if splits:
        suggested = root / ("test" if "test" in splits else "valid" if "valid" in splits else splits[0])
        raise UsageError(f"{root} holds {' and '.join(f'{name}/' for name in splits)}, a dataset's splits, where "
                         f"evaluate expects DATA/<class>/ folders of the model's classes ({', '.join(vocab[:10])}). "
                         f"Pass {suggested} (held-out images, not the ones it trained on)")


def evaluation_document(args: argparse.Namespace, interpretation: Any, scores: dict[str, float],
                        n_scored: int, dropped: dict[int, str], items: list[Any], single_label: bool,
                        flags: list[tuple[bool | None, float | None]] | None = None) -> dict[str, Any]:
    """evaluate's JSON: scores and report, per_class, confusion_matrix, most_confused and the per-image records.

    Example:
        >>> evaluation_document(args, interpretation, scores, 12, {}, items, True)["schema_version"]  # doctest: +SKIP
        1
    """
    from unfreeze.inference import SCHEMA_VERSION, evaluation_records

    report = interpretation.report()
    averages = ("accuracy", "macro avg", "weighted avg", "micro avg", "samples avg")
    matrix = {"classes": list(interpretation.vocab), "actual_rows": True,
              "counts": interpretation.confusion_matrix().tolist()} if single_label else None
    confused = interpretation.most_confused(min_val=1) if single_label else []
    return {
        "schema_version": SCHEMA_VERSION, "model": str(args.model), "data": str(args.data), "images": n_scored,
        "unreadable": {str(items[index][0]): reason for index, reason in dropped.items()},
        "scores": scores, "report": report,
        # The probability a class's scores were decided at (the run's tuned threshold): None for single-label.
        "decision_threshold": None if single_label else interpretation.task.named_threshold(interpretation.vocab),
        "per_class": {name: row for name, row in report.items() if name not in averages},
        "confusion_matrix": matrix,
        "most_confused": [{"actual": actual, "predicted": predicted, "count": count}
                          for actual, predicted, count in confused],
        "predictions": evaluation_records(interpretation, args.top_k, flags),
    }


def regression_document(args: argparse.Namespace, learn: Any, loader: Any, predictions: tuple[Any, ...],
                        report: dict[str, Any], scores: dict[str, float], n_scored: int,
                        items: list[Any]) -> dict[str, Any]:
    """evaluate's JSON for a regression model: scores, the report per output, and a record per image."""
    from unfreeze.inference import SCHEMA_VERSION, regression_records

    dropped = loader.dataset.dropped
    return {
        "schema_version": SCHEMA_VERSION, "model": str(args.model), "data": str(args.data), "images": n_scored,
        "unreadable": {str(items[index][0]): reason for index, reason in dropped.items()},
        "scores": scores, "report": report, "per_class": report, "confusion_matrix": None, "most_confused": [],
        "predictions": regression_records(loader.dataset, predictions[0], learn.task, list(learn.dls.vocab)),
    }


def _unknown_flags(learn: Any, loader: Any) -> list[tuple[bool | None, float | None]] | None:
    """Each readable image's (unknown, ood_score) for evaluate's records; None without a fitted score."""
    from unfreeze.inference.predict import collect_outputs, trust_of

    trust = trust_of(learn)
    if not trust.has_score:
        return None
    _, _, ood_scores = collect_outputs(learn, loader)
    if ood_scores is None:
        return None
    flags = trust.unknown(ood_scores)
    return [(bool(flag), float(score)) for flag, score in zip(flags.tolist(), ood_scores.tolist(), strict=True)]


def _regression_items(args: argparse.Namespace, learn: Any) -> list[tuple[Path, Any]]:
    """(path, numbers) of a regression test set: --csv with the model's outputs as columns after the file."""
    from unfreeze.data import BadFileReport
    from unfreeze.data.regression import numbers_from
    from unfreeze.data.sources import check_root, csv_items

    root = check_root(args.data, "a folder of images with a --csv of their numbers")
    if not args.csv:
        raise UsageError(f"this model predicts numbers ({', '.join(learn.dls.vocab)}): pass --csv FILE with the file "
                         "name in column 1 and those columns")
    table = Path(args.csv)
    items, _ = csv_items(root, str(table.resolve()) if table.is_file() else str(table), 0, list(learn.dls.vocab),
                         None, BadFileReport())
    return [(path, numbers_from(label, path)) for path, label in items]


def command_evaluate(args: argparse.Namespace) -> int:
    """`unfreeze evaluate`: loss, the task's metrics and a per-class report on a labelled test set
    (for a regression model: per output, the mean absolute error, RMSE and R2)."""
    from unfreeze.inference import ClassificationInterpretation
    from unfreeze.inference.regression import regression_report
    from unfreeze.tasks import MultiLabel, Regression
    from unfreeze.train.metrics import resolve_metrics

    if args.json is not None:
        check_output_file(args.json, "--json")
    learn = _load_model(args.model)
    multi_label = isinstance(learn.task, MultiLabel)
    regression = isinstance(learn.task, Regression)
    if args.label_delim is not None and not multi_label:  # ignored, it would score 'a;b' cells as one class
        kind = "a regression model" if regression else "single-label (one class per image)"
        raise UsageError(f"--label-delim splits multi-label cells; this model is {kind}. Drop --label-delim")
    if regression and getattr(args, "ood", None) is not None:
        raise UsageError("--ood needs a classifier's unknown score; a regression model has none")
    if not regression:
        check_ood_folder(learn, getattr(args, "ood", None))  # a mistake is found before the images are scored
    items = _regression_items(args, learn) if regression else _labelled_items(args, multi_label)
    if not regression and not args.csv and not args.label_re:
        _refuse_training_layout(Path(args.data).expanduser(), {label for _, label in items}, learn.dls.vocab)
    loader = learn.dls.test_dl([path for path, _ in items], batch_size=args.bs, labels=[label for _, label in items])
    learn.metrics = resolve_metrics(learn.task.default_metrics(), learn.task)
    # Two passes over the images (the scores, then the per-class report), counted as the loader yields
    # batches; on stderr, so that stdout holds the report alone.
    interpretation, predictions = None, None
    with StepProgress("evaluate", 2 * len(loader.dataset), quiet=args.quiet, stream=sys.stderr,
                      unit="images (2 passes)") as progress:
        def count(images: Any, targets: Any) -> tuple[Any, Any]:
            progress.advance(len(images))
            return images, targets

        loader.add_batch_transform(count)
        try:
            scores = learn.validate(loader)
            if regression:
                predictions = learn.get_preds(dl=loader)
                report = regression_report(*predictions, list(learn.dls.vocab))
            else:
                interpretation = ClassificationInterpretation.from_learner(learn, dl=loader)
                report = interpretation.report()
        finally:
            loader.remove_batch_transform(count)
    n_scored = len(items) - len(loader.dataset.dropped)
    # With --format csv or json, stdout carries the data only; the summary goes to stderr.
    out = sys.stdout if args.format == "text" else sys.stderr
    print(f"{args.model}: {n_scored} labelled images in {args.data}"
          + (f" ({len(loader.dataset.dropped)} could not be read)" if loader.dataset.dropped else ""), file=out)
    balanced = None if multi_label or regression else _balanced_on(interpretation, loader.dataset.targets,
                                                                   len(learn.dls.vocab))
    scores = {**scores, **(balanced or {})}  # beside the error, when the evaluated classes are imbalanced
    print("  ".join(f"{name} {value:.4f}" for name, value in scores.items()), file=out)
    if regression:
        for name, values in report.items():
            print(_report_line(name, values), file=out)
    elif args.format == "text":
        _print_report(interpretation, not multi_label)
    with contextlib.redirect_stdout(out):  # its summary lines too: stdout carries only the data then
        trust = {} if regression else evaluate_trust(learn, loader, getattr(args, "ood", None))
    document = None
    if args.json is not None or args.format != "text":
        if regression:
            document = regression_document(args, learn, loader, predictions, report, scores, n_scored, items)
        else:
            document = {**evaluation_document(args, interpretation, scores, n_scored, loader.dataset.dropped, items,
                                              not multi_label, _unknown_flags(learn, loader)), **trust}
    if args.format == "json":
        json.dump(runs.json_safe(document), sys.stdout, indent=1)
        print()
    elif args.format == "csv":
        from unfreeze.inference import CSV_COLUMNS, csv_row

        columns = (*CSV_COLUMNS, "actual", "correct")
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for record in document["predictions"]:
            writer.writerow([printable(cell) for cell in csv_row(record, columns)])
    if args.json is not None:
        runs.write_json(args.json, document)
        print(f"Report: {args.json}", file=out)
    return 0
