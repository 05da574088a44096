"""What each subcommand does: the data and model steps they share, then one function per command."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from unfreeze import runs
from unfreeze.cli.options import DEFAULT_ARCH, DEMO, METRICS, UsageError

__all__ = ["build_learner", "command_demo", "command_export", "command_interpret", "command_lr_find",
           "command_predict", "command_train", "load_data"]


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

    if options["weights"] is not None and not options["pretrained"]:
        raise UsageError("--weights loads pretrained weights, --no-pretrained starts from random ones. Drop one")
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
    from unfreeze import load_learner

    return load_learner(path / "model.unfreeze" if path.is_dir() else path)


# ---------------------------------------------------------------------------- train and demo


def command_train(args: argparse.Namespace) -> int:
    """`unfreeze train`: fine_tune, then export, plot and summarise into a fresh run directory."""
    from unfreeze import CSVLogger, distributed
    from unfreeze.inference import ClassificationInterpretation

    started = time.perf_counter()
    options = _options(args)
    options.update(epochs=args.epochs, freeze_epochs=args.freeze_epochs, lr=args.lr)
    dls = load_data(options)
    _check_trainable(dls)
    learn = build_learner(options, dls, quiet=args.quiet)
    # Under torchrun every rank trains, but only rank 0 creates the run directory, writes and prints.
    main_process = distributed.is_main_process()
    quiet = args.quiet or not main_process
    requested = args.out or Path("runs") / f"{Path(options['data']).name}-{options['arch']}"
    run = _claim_run_dir(requested, args) if main_process else None
    run = Path(distributed.broadcast_object(None if run is None else str(run)))
    options["out"] = str(run)
    if main_process and run != Path(requested).expanduser():
        print(f"{requested} exists; this run goes to {run} (--overwrite reuses {requested}).")
    from unfreeze._version import __version__

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
    _fine_tune(learn, args, lr, logger, run / "history.csv")
    if learn.interrupted:
        return _after_interrupt(learn, args, run, lr, started) if main_process else 130
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


def _check_trainable(dls: Any) -> None:
    """Refuse data that cannot train before a run directory exists: fewer train images than one
    batch, or a validation set none of whose files decodes (it would train and report NaN)."""
    if len(dls.train) == 0:
        raise UsageError(f"the training set has {len(dls.train.dataset)} images, fewer than one batch of "
                         f"{dls.train.batch_size}. Pass a smaller --bs or add images")
    dls.valid.check_decodable()


def _claim_run_dir(requested: Path, args: argparse.Namespace) -> Path:
    """Create (or with --overwrite reuse) the run directory and hold its lock until the command ends."""
    run = runs.create_run_dir(requested, overwrite=args.overwrite)
    args.cleanup.enter_context(runs.run_lock(run))
    return run


def _fine_tune(learn: Any, args: argparse.Namespace, lr: float, callbacks: list[Any], history: Path) -> None:
    """`learn.fine_tune`; a full disk while CSVLogger appends a row is reported as that file's error."""
    from unfreeze._io import output_error

    try:
        learn.fine_tune(args.epochs, base_lr=lr, freeze_epochs=args.freeze_epochs, callbacks=callbacks)
    except OSError as error:
        converted = output_error(error, error.filename or history)
        if converted is None:
            raise
        raise converted from error


def _after_interrupt(learn: Any, args: argparse.Namespace, run: Path, lr: float, started: float) -> int:
    """After Ctrl-C in training: summary.json says so; the model is exported only with --save-on-interrupt.

    A half-trained model.unfreeze next to a complete-looking run would be mistaken for the result.
    """
    exported = None
    if args.save_on_interrupt:
        exported = learn.export(run / "model.unfreeze")
    runs.write_json(run / "summary.json", {
        "interrupted": True,
        "exported": None if exported is None else str(exported),
        "final": dict(learn.recorder.history[-1]) if learn.recorder.history else {},
        "history": learn.recorder.history,
        "lr": {"base_lr": lr},
        "notes": learn.recorder.notes,
        "wall_time_s": round(time.perf_counter() - started, 2),
    })
    saved = f"the model was saved to {exported}" if exported else "no model was exported (--save-on-interrupt keeps it)"
    print(f"unfreeze: interrupted; {saved}; summary in {run / 'summary.json'}.", file=sys.stderr)
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
    from unfreeze.cli import build_parser  # the parser refers to these commands: imported at call time

    train_args = build_parser().parse_args(argv)
    train_args.argv = ["demo", *args.argv[1:]]
    train_args.cleanup = args.cleanup
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
    options = _run_options(config_path)
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


def _run_options(config_path: Path) -> dict[str, Any]:
    """The data options in a run's config.json; RunConfigError if it is not JSON or lacks them."""
    options = runs.read_json(config_path, required=("options",))["options"]
    needed = ("data", "size", "bs", "valid_pct", "seed")
    missing = needed if not isinstance(options, dict) else [key for key in needed if key not in options]
    if missing:
        raise runs.RunConfigError(f"{config_path} lacks the options {', '.join(missing)}. Restore it, or train "
                                  "the run again")
    return options


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
