"""report.html: one self-contained page (images embedded, no network) that explains a run.

Built from the template pages/report.html with autoescaping (apps/templates.py); the run's files are
read as untrusted input (apps/run_files.py). The page's one script is the rerun command's copy button
(pages/report.js, allowed by its hash in the page's Content-Security-Policy); without it the command is
still a plain block that one click selects.

It reads only what `unfreeze train` left in the run directory (config.json, summary.json, history.csv
and the PNG plots), so it can be written again at any time, also for an old run, without the data or
the model: `unfreeze report RUN`. The curves (losses beside metrics, phases marked) and the confusion
matrices (counts beside normalised) are drawn here from history and summary.json; a run written before
those fields existed shows its stored PNG instead.

Sections (each an element with this id): outcome, decisions, curves, history, confusion-matrix,
examples, top-losses, per-class, versions, config, rerun.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

from markupsafe import Markup

from unfreeze._io import atomic_path
from unfreeze.apps.errors import AppError
from unfreeze.apps.run_files import RunFile, read_history, read_plot
from unfreeze.apps.templates import render, report_policy, report_script, stylesheet
from unfreeze.apps.trust_sections import calibration_section
from unfreeze.train.callbacks import monitor_mode

__all__ = ["DECISION_KEYS", "REPORT_FILE", "SECTIONS", "best_epoch", "class_count", "format_seconds", "format_value",
           "history_of", "read_run", "run_decisions", "run_facts",
           "write_report"]

REPORT_FILE = "report.html"
SECTIONS = ("outcome", "decisions", "curves", "history", "confusion-matrix", "examples", "top-losses", "per-class",
            "versions", "config", "rerun")
# summary.json's sections of automatic decisions that other parts of the library add (a training plan, the
# handling of imbalance or noisy labels, calibration): shown generically, whatever fields they hold.
_DECISION_NAMES = {"disagreements": "training images the model most disagrees with (unfreeze clean sorts the "
                                    "images by the same loss: check them there)"}
DECISION_KEYS = ("decisions", "plan", "imbalance", "noise", "calibration", "ood", "disagreements")
_PLOTS = {"loss": ("loss.png", "training and validation loss per step"),
          "sched": ("sched.png", "learning rate (trained groups only) and momentum schedule"),
          "lr_find": ("lr_find.png", "LR range test"),
          "confusion": ("confusion_matrix.png", "confusion matrix"),
          "examples": ("examples.png", "the most confident right and wrong validation predictions"),
          "top_losses": ("top_losses.png", "top losses, titled actual → predicted (probability)")}
_MAX_DEPTH = 6  # a crafted summary.json nested deeper is cut there, not recursed into


def _plots(run: Path) -> dict[str, tuple[str, str]]:
    """The plots of this run: a regression run has a predicted-vs-true plot where a classifier's confusion
    matrix would be."""
    if (run / "predicted_vs_true.png").exists():
        return {**_PLOTS, "confusion": ("predicted_vs_true.png", "predicted vs true values")}
    return _PLOTS


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def best_epoch(history: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The monitored metric and the history row where it was best, or None without history.

    The metric is the first column after the losses (error_rate in a default run; valid_loss if the
    run had no metric); higher is better for accuracy, F1 and scores, lower for the others (losses, error
    rates, mae), as training's `monitor_mode` decides.

    Example:
        >>> best_epoch([{"epoch": 0, "valid_loss": 0.9, "error_rate": 0.3}, {"epoch": 1, "valid_loss": 0.7,
        ...             "error_rate": 0.2}])
        ('error_rate', {'epoch': 1, 'valid_loss': 0.7, 'error_rate': 0.2})
    """
    if not history:
        return None
    columns = [key for key in history[0] if key not in ("epoch", "train_loss", "valid_loss", "time")]
    metric = columns[0] if columns else "valid_loss"
    scored = [row for row in history if _number(row.get(metric)) is not None]
    if not scored:
        return None
    choose = max if monitor_mode(metric) == "max" else min  # training's rule: the epoch it kept is the best here
    return metric, choose(scored, key=lambda row: _number(row[metric]) or 0.0)


def format_seconds(value: Any) -> str:
    """A duration as people read it: "0.8 s", "51.6 s", "3 min 5 s", "2 h 4 min" ("" when not a number).

    Example:
        >>> format_seconds(51.64), format_seconds(185.2), format_seconds("7450")
        ('51.6 s', '3 min 5 s', '2 h 4 min')
    """
    seconds = _number(value)
    if seconds is None:
        return "" if value is None else str(value)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _png(data: bytes | None, alt: str, reason: str = "") -> dict[str, str]:
    return {"alt": alt, "data": "" if data is None else base64.b64encode(data).decode("ascii"), "reason": reason}


def _plot(run: Path, name: str, alt: str) -> dict[str, str]:
    data, reason = read_plot(run, name)
    return _png(data, alt, reason)


def format_value(value: Any, column: str = "") -> str:
    if column == "time":
        return format_seconds(value)
    number = _number(value)
    if number is None:
        return "" if value is None else str(value)
    # Counts (epochs, support) stay whole; metrics always show 4 decimals, so that 1.0 reads as a rate.
    whole = isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    return str(int(number)) if whole else f"{number:.4f}"


def _table(rows: list[dict[str, Any]], columns: list[str], first: str | None = None) -> dict[str, Any]:
    """Column names and formatted cells for the template's table (which escapes every one)."""
    cells = [([str(row.get("", ""))] if first else []) + [format_value(row.get(column), column) for column in columns]
             for row in rows]
    return {"columns": ([first] if first else []) + columns, "rows": cells}


def history_of(run: Path, summary: RunFile) -> list[dict[str, Any]]:
    """The run's rows per epoch: history.csv, or the copy summary.json keeps."""
    return read_history(run / "history.csv") or summary.rows("history")


def class_count(summary: RunFile) -> str:
    """"3 classes", "1 class", or for a regression run its outputs ("1 output"): summary.json's data classes.

    Example:
        >>> class_count(RunFile(Path("summary.json"), {"data": {"classes": ["v"]}, "task": {"name": "regression"}}))
        '1 output'
    """
    n = len(summary.section("data").texts("classes"))
    if summary.section("task").text("name") == "regression":
        return f"{n} output{'s' * (n != 1)}"
    return f"{n} class{'es' * (n != 1)}"


def run_facts(summary: RunFile, history: list[dict[str, Any]]) -> list[Markup]:
    """The outcome in a few sentences: best and final metrics, time, device, data, interruption."""
    # Markup.format escapes every value it is given: only the words written here are markup.
    facts = []
    best = best_epoch(history)
    if best is not None:
        metric, row = best
        facts.append(Markup("best {} <strong>{}</strong> at epoch {}").format(metric, format_value(row[metric]),
                                                                             format_value(row.get("epoch"))))
    final = summary.section("final").numbers()
    if final:
        facts.append(Markup("final {}").format(", ".join(f"{key} {format_value(value)}" for key, value in final.items()
                                                         if key not in ("epoch", "time"))))
    if summary.number("wall_time_s") is not None:  # a run interrupted in its first epoch names no device
        device = summary.text("device")
        facts.append(Markup("{} in all{}").format(format_seconds(summary.number("wall_time_s")),
                                                  f" on {device}" if device else ""))
    data = summary.section("data")
    if data.content:
        facts.append(Markup("{} training and {} validation images, {}").format(
            data.text("train", "?"), data.text("valid", "?"), class_count(summary)))
    most = summary.get("most_confused")
    if isinstance(most, list) and most:
        pairs = [f"{pair[0]} → {pair[1]} ({pair[2]})" for pair in most[:5] if isinstance(pair, list) and len(pair) == 3]
        if pairs:
            facts.append(Markup("most confused (actual → predicted): {}").format("; ".join(pairs)))
    balanced = summary.section("balanced")
    if balanced.content:  # imbalanced classes: the error alone hides the small classes
        facts.append(Markup("imbalanced classes: balanced accuracy <strong>{}</strong>, macro F1 {}").format(
            format_value(balanced.number("balanced_accuracy")), format_value(balanced.number("macro_f1"))))
    if summary.flag("interrupted"):
        facts.append(Markup("<strong>interrupted</strong> before the planned epochs ended"))
    return facts


def _tree(value: Any, depth: int = 0) -> dict[str, Any]:
    """Any JSON value as nested {text, children: [(key, tree)]} for the template's recursive list (escaped there)."""
    if isinstance(value, dict) and depth < _MAX_DEPTH:
        return {"text": "", "children": [(str(key), _tree(item, depth + 1)) for key, item in value.items()]}
    if isinstance(value, list) and depth < _MAX_DEPTH:
        if all(not isinstance(item, (dict, list)) for item in value):
            return {"text": ", ".join(_scalar(item) for item in value), "children": []}
        return {"text": "", "children": [(str(index), _tree(item, depth + 1)) for index, item in enumerate(value)]}
    if isinstance(value, (dict, list)):
        return {"text": "…", "children": []}
    return {"text": _scalar(value), "children": []}


def _scalar(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_decisions(summary: RunFile) -> list[dict[str, Any]]:
    """What the library chose on its own: the flip, the input size, the LR, the epoch kept, the threshold, and
    every decisions-like section of summary.json (DECISION_KEYS), each with its reason where one was recorded."""
    decisions: list[dict[str, Any]] = []

    def add(name: str, text: str | Markup, details: Any = None) -> None:
        decisions.append({"name": name, "text": text, "details": None if details is None else _tree(details)})

    recipe = summary.section("recipe")
    notes = summary.texts("notes")  # a list of text, as training writes it; anything else is named
    flip_notes = [note for note in notes if note.startswith("flip")]
    if recipe.get("flip") is not None:
        chosen = recipe.get("flip_chosen")
        state = "on" if chosen is True else "off" if chosen is False else _scalar(recipe.get("flip"))
        add("horizontal flip", f"{state} (asked: {_scalar(recipe.get('flip'))})" + (
            f": {flip_notes[0]}" if flip_notes else ""))
    elif flip_notes:  # no recipe section (a run interrupted in its first epoch): the note says it all
        add("horizontal flip", flip_notes[0])
    # The recipe's plan and its decisions from the data, as fit_recipe printed them (train/recipe/).
    for prefix, name in (("plan:", "training plan"), ("probe:", "linear probe"), ("imbalance", "class imbalance"),
                         ("noise", "wrong labels")):
        for note in notes:
            if note.startswith(prefix):
                add(name, note)
    size = summary.section("input_size")
    if size.content:
        if size.flag("upscaled"):
            text = (f"upscaled: trained at {format_value(size.number('size'))} px instead of "
                    f"{format_value(size.number('requested'))} px")
        else:
            text = f"kept {format_value(size.number('size'))} px"
        if size.number("native") is not None:
            text += f" (images' native size about {format_value(size.number('native'))} px)"
        add("input size", text)
    lr = summary.section("lr")
    if lr.number("base_lr") is not None:
        chosen_by = f", chosen by {lr.text('chosen_by')}" if lr.text("chosen_by") else ""
        add("learning rate", f"{lr.number('base_lr'):.2e}{chosen_by}",
            lr.get("suggestions") if isinstance(lr.get("suggestions"), dict) else None)
    kept = summary.section("kept")
    if kept.number("best_epoch") is not None:
        monitor = kept.text("monitor")
        if kept.text("kept") == "last":
            add("epoch exported", Markup("the <strong>last</strong> epoch ({}, --keep last); the best by {} was "
                                         "epoch {}").format(format_value(kept.number("last_epoch")), monitor,
                                                            format_value(kept.number("best_epoch"))))
        else:
            add("epoch exported", Markup("epoch <strong>{}</strong>, the best by {} ({})").format(
                format_value(kept.number("best_epoch")), monitor, format_value(kept.number("best_value"))))
    if summary.text("lr_retry"):
        add("divergence", f"retried once at a lower LR: {summary.text('lr_retry')}")
    threshold = summary.section("threshold")
    if threshold.content:
        chosen = threshold.get("threshold")
        per_class = isinstance(chosen, list)
        classes = summary.section("data").texts("classes")
        if per_class and len(classes) == len(chosen):  # the numbers alone leave the class order to a guess
            shown = "one per class: " + ", ".join(f"{name} {_scalar(value)}"
                                                  for name, value in zip(classes, chosen, strict=True))
        else:
            shown = "one per class" if per_class else _scalar(chosen)
        add("decision threshold" + ("s (per class)" if per_class else ""),
            shown + ", chosen by F1 on the validation set", threshold.content)
    calibration = summary.section("calibration")
    if "before" in calibration.content:  # the trust's calibration: its numbers have their own section
        before, after = calibration.section("before"), calibration.section("after")
        temperature, ece = calibration.number("temperature"), (before.number("ece"), after.number("ece"))
        add("calibration", "temperature " + (f"{temperature:.3f}" if temperature is not None else "?")
            + " fitted on the validation images" + (f"; ECE {ece[0]:.4f} → {ece[1]:.4f}" if None not in ece else "")
            + " (the reliability diagram is in the run report's Calibration section)")
    for key in DECISION_KEYS:
        if key == "calibration" and "before" in calibration.content:
            continue
        value = summary.get(key)
        if value not in (None, {}, []):
            add(_DECISION_NAMES.get(key, key), "" if isinstance(value, (dict, list)) else _scalar(value),
                value if isinstance(value, (dict, list)) else None)
    return decisions


def _phases(summary: RunFile) -> list[dict[str, Any]]:
    value = summary.get("phases")
    if not isinstance(value, list):
        return []
    phases = []
    for phase in value:
        if isinstance(phase, dict) and all(_number(phase.get(key)) is not None
                                           for key in ("start_epoch", "frozen_to", "n_groups")):
            end = _number(phase.get("end_epoch"))
            phases.append({"start_epoch": int(phase["start_epoch"]), "frozen_to": int(phase["frozen_to"]),
                           "n_groups": int(phase["n_groups"]), "end_epoch": None if end is None else int(end),
                           "name": phase["name"] if isinstance(phase.get("name"), str) else None})
    return phases


def _confusion_matrix(summary: RunFile, classes: list[str]) -> list[list[int]] | None:
    """summary.json's confusion matrix if it is a square list of counts over the run's classes, else None."""
    matrix = summary.get("confusion_matrix")
    if (not isinstance(matrix, list) or len(matrix) != len(classes) or not classes
            or not all(isinstance(row, list) and len(row) == len(classes) for row in matrix)
            or not all(isinstance(cell, int) and not isinstance(cell, bool) and cell >= 0
                       for row in matrix for cell in row)):
        return None
    return matrix


def _figures(run: Path, summary: RunFile, history: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The plots: stored PNGs, plus the curves and confusion matrices drawn here from the run's numbers."""
    from unfreeze.plots import confusion_pair_figure, figure_png, history_figure

    plots = {key: _plot(run, name, alt) for key, (name, alt) in _plots(run).items()}
    plots["curves"] = (_png(figure_png(history_figure(history, _phases(summary))),
                            "losses beside the metrics per epoch, phases marked") if history
                       else _png(None, "", "no history recorded."))
    classes = summary.section("data").texts("classes")
    matrix = _confusion_matrix(summary, classes)
    if summary.section("task").text("name") == "multi_label" and not plots["confusion"]["data"]:
        # An image may hold several classes or none: no one actual class per row, so no matrix is drawn.
        plots["confusion"] = _png(None, "", "A multi-label run has no confusion matrix (an image may hold several "
                                            "classes, or none): the per-class precision and recall below take its "
                                            "place.")
    if matrix is not None:
        plots["confusion"] = _png(figure_png(confusion_pair_figure(matrix, classes)),
                                  "confusion matrix: counts, and normalised by actual class")
    return plots


def _per_class(summary: RunFile) -> tuple[dict[str, Any], str | None]:
    report = summary.section("report")
    rows = [{"": name, **report.section(name).numbers()} for name in report.content if name != "accuracy"]
    if rows and "mae" in rows[0]:  # a regression run: per output
        return _table(rows, ["mae", "rmse", "r2", "count"], first="output"), None
    accuracy = report.section("accuracy").number("accuracy") if "accuracy" in report.content else None
    return _table(rows, ["precision", "recall", "f1", "support"], first="class"), \
        None if accuracy is None else format_value(accuracy)


def _versions(summary: RunFile, config: RunFile) -> dict[str, Any]:
    versions = summary.section("versions")
    rows = [{"": name, "version": versions.text(name)} for name in versions.content]
    for key in ("device", "device_name", "torch_threads"):
        if summary.get(key) is not None:
            rows.append({"": key, "version": summary.text(key)})
    if not versions.content and config.text("unfreeze_version"):
        rows.insert(0, {"": "unfreeze", "version": config.text("unfreeze_version")})
    return _table(rows, ["version"], first="package")


def read_run(run_dir: str | Path) -> tuple[Path, RunFile, RunFile]:
    run = Path(run_dir).expanduser()
    if not (run / "config.json").is_file():
        raise AppError(f"{run} is not a run directory (no config.json). Pass a folder written by 'unfreeze train'")
    if not (run / "summary.json").is_file():
        raise AppError(f"{run} has no summary.json: the run has not finished. Wait for it, or resume it with "
                       f"'unfreeze train --resume {run}'")
    return run, RunFile.read(run / "config.json"), RunFile.read(run / "summary.json")


def write_report(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write `run_dir/report.html` (or `path`) from the files of a run directory; return its path.

    Written atomically. Missing plots (a multi-label run has no confusion matrix; lr_find.png exists only
    with --lr auto) are named as such in their section.

    Every value read from the run directory is untrusted: the template escapes it, the page runs no
    script but its own copy button (Content-Security-Policy by hash), and only regular PNG files inside
    the run directory are embedded.

    Raises:
        AppError: `run_dir` is not a run directory (no config.json) or has no summary.json yet.
        OutputWriteError: The page's path is a folder or lies under a file, or the disk is full.
        RunFileError: config.json, summary.json or history.csv is damaged (not UTF-8, not JSON, a field
            of the wrong type, a row longer than the header); the one-line message names the file.

    Example:
        >>> write_report("runs/pets")  # doctest: +SKIP
        PosixPath('runs/pets/report.html')
    """
    run, config, summary = read_run(run_dir)
    target = Path(path) if path is not None else run / REPORT_FILE
    history = history_of(run, summary)
    columns = list(history[0]) if history else []
    options = config.section("options")
    per_class, accuracy = _per_class(summary)
    style, script = stylesheet(), report_script()
    page = render(
        "report.html",
        policy=report_policy(style, script),
        title=run.name,
        style=style,
        script=script,
        arch=options.text("arch", "?"),
        data=Path(options.text("data", "?")).name or options.text("data", "?"),
        facts=run_facts(summary, history),
        decisions=run_decisions(summary),
        phases=[{"name": phase["name"] or _phase_name(phase), "epochs": _epochs(phase, history)}
                for phase in _phases(summary)],
        history=_table(history, columns),
        plots=_figures(run, summary, history),
        regression=options.text("task") == "regression",  # its confusion-matrix section holds predicted vs true
        per_class=per_class,
        accuracy=accuracy,
        versions=_versions(summary, config),
        config=json.dumps(options.content, indent=2),
        rerun=config.text("rerun"),
        version=summary.section("versions").text("unfreeze") or config.text("unfreeze_version"),
        calibration=calibration_section(run, summary),
    )
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target


def _phase_name(phase: dict[str, Any]) -> str:
    from unfreeze.plots import phase_name

    return phase_name(phase)


def _epochs(phase: dict[str, Any], history: list[dict[str, Any]]) -> str:
    start, end = phase["start_epoch"], phase["end_epoch"]
    if end is None:
        return f"from epoch {start}"
    return "no epoch" if end < start else f"epoch {start}" if end == start else f"epochs {start}–{end}"
