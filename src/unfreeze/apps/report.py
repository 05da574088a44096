"""report.html: one self-contained page (images embedded, no script, no network) describing a run.

Built from the template pages/report.html with autoescaping (apps/templates.py); the run's files are
read as untrusted input (apps/run_files.py).

It reads only what `unfreeze train` left in the run directory (config.json, summary.json, history.csv
and the PNG plots), so it can be written again at any time, also for an old run, without the data or
the model: `unfreeze report RUN`.

Sections (each an element with this id): outcome, history, curves (loss, schedule, lr_find),
confusion-matrix, top-losses, per-class, config, rerun.
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
from unfreeze.apps.templates import render, report_policy, stylesheet
from unfreeze.apps.trust_sections import calibration_section

__all__ = ["REPORT_FILE", "SECTIONS", "best_epoch", "write_report"]

REPORT_FILE = "report.html"
SECTIONS = ("outcome", "history", "curves", "confusion-matrix", "top-losses", "per-class", "config", "rerun")
_LOWER_IS_BETTER = ("loss", "error")
_PLOTS = {"loss": ("loss.png", "training and validation loss"),
          "sched": ("sched.png", "learning rate and momentum schedule"),
          "lr_find": ("lr_find.png", "LR range test"),
          "confusion": ("confusion_matrix.png", "confusion matrix"),
          "top_losses": ("top_losses.png", "top losses, titled actual → predicted (probability)")}


def _plots(run: Path) -> dict[str, tuple[str, str]]:
    """The plots of this run: a regression run has a predicted-vs-true plot where a classifier's confusion
    matrix would be."""
    if (run / "predicted_vs_true.png").exists():
        return {**_PLOTS, "confusion": ("predicted_vs_true.png", "predicted vs true values")}
    return _PLOTS


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def best_epoch(history: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The monitored metric and the history row where it was best, or None without history.

    The metric is the first column after the losses (error_rate in a default run; valid_loss if the
    run had no metric); lower is better for losses and error rates, higher for the others.

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
    lower = any(word in metric for word in _LOWER_IS_BETTER)
    choose = min if lower else max
    return metric, choose(scored, key=lambda row: _number(row[metric]) or 0.0)


def _plot(run: Path, name: str, alt: str) -> dict[str, str]:
    data, reason = read_plot(run, name)
    return {"alt": alt, "data": "" if data is None else base64.b64encode(data).decode("ascii"), "reason": reason}


def _format(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "" if value is None else str(value)
    # Counts (epochs, support) stay whole; metrics always show 4 decimals, so that 1.0 reads as a rate.
    whole = isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    return str(int(number)) if whole else f"{number:.4f}"


def _table(rows: list[dict[str, Any]], columns: list[str], first: str | None = None) -> dict[str, Any]:
    """Column names and formatted cells for the template's table (which escapes every one)."""
    cells = [([str(row.get("", ""))] if first else []) + [_format(row.get(column)) for column in columns]
             for row in rows]
    return {"columns": ([first] if first else []) + columns, "rows": cells}


def _outcome(summary: RunFile, history: list[dict[str, Any]]) -> list[Markup]:
    # Markup.format escapes every value it is given: only the words written here are markup.
    facts = []
    best = best_epoch(history)
    if best is not None:
        metric, row = best
        facts.append(Markup("best {} <strong>{}</strong> at epoch {}").format(metric, _format(row[metric]),
                                                                             _format(row.get("epoch"))))
    final = summary.section("final").numbers()
    if final:
        facts.append(Markup("final {}").format(", ".join(f"{key} {_format(value)}" for key, value in final.items()
                                                         if key not in ("epoch", "time"))))
    facts += _guard_facts(summary)
    if summary.number("wall_time_s") is not None:
        facts.append(Markup("{} s in all on {}").format(_format(summary.number("wall_time_s")),
                                                         summary.text("device", "?")))
    data = summary.section("data")
    if data.content:
        facts.append(Markup("{} training and {} validation images, {} classes").format(
            data.text("train", "?"), data.text("valid", "?"), len(data.texts("classes"))))
    if summary.flag("interrupted"):
        facts.append(Markup("<strong>interrupted</strong> before the planned epochs ended"))
    return facts


def _guard_facts(summary: RunFile) -> list[Markup]:
    """What the training guards decided: the epoch exported and why, an LR retry, the threshold, upscaling."""
    facts = []
    kept = summary.section("kept")
    if kept.number("best_epoch") is not None:
        monitor = kept.text("monitor")
        if kept.text("kept") == "last":
            facts.append(Markup("exported the <strong>last</strong> epoch ({}, --keep last); the best by {} was "
                                "epoch {}").format(_format(kept.number("last_epoch")), monitor,
                                                   _format(kept.number("best_epoch"))))
        else:
            facts.append(Markup("exported epoch <strong>{}</strong>, the best by {} ({})").format(
                _format(kept.number("best_epoch")), monitor, _format(kept.number("best_value"))))
    if summary.text("lr_retry"):
        facts.append(Markup("retried once at a lower LR: {}").format(summary.text("lr_retry")))
    threshold = summary.section("threshold")
    if threshold.content:
        facts.append(Markup("decision threshold {}, chosen by F1 on the validation set").format(
            threshold.text("threshold")))
    size = summary.section("input_size")
    if size.flag("upscaled"):
        facts.append(Markup("upscaled: trained at {} px instead of {}").format(_format(size.number("size")),
                                                                              _format(size.number("requested"))))
    return facts


def _per_class(summary: RunFile) -> tuple[dict[str, Any], str | None]:
    report = summary.section("report")
    rows = [{"": name, **report.section(name).numbers()} for name in report.content if name != "accuracy"]
    if rows and "mae" in rows[0]:  # a regression run: per output
        return _table(rows, ["mae", "rmse", "r2", "count"], first="output"), None
    accuracy = report.section("accuracy").number("accuracy") if "accuracy" in report.content else None
    return _table(rows, ["precision", "recall", "f1", "support"], first="class"), \
        None if accuracy is None else _format(accuracy)


def write_report(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write `run_dir/report.html` (or `path`) from the files of a run directory; return its path.

    Written atomically. Missing plots (a multi-label run has no confusion matrix; lr_find.png exists only
    with --lr auto) are named as such in their section.

    Every value read from the run directory is untrusted: the template escapes it, the page allows no
    script (Content-Security-Policy), and only regular PNG files inside the run directory are embedded.

    Raises:
        AppError: `run_dir` is not a run directory (no config.json) or has no summary.json yet.
        RunFileError: config.json, summary.json or history.csv is damaged (not UTF-8, not JSON, a field
            of the wrong type, a row longer than the header); the one-line message names the file.

    Example:
        >>> write_report("runs/pets")  # doctest: +SKIP
        PosixPath('runs/pets/report.html')
    """
    run = Path(run_dir).expanduser()
    if not (run / "config.json").is_file():
        raise AppError(f"{run} is not a run directory (no config.json). Pass a folder written by 'unfreeze train'")
    if not (run / "summary.json").is_file():
        raise AppError(f"{run} has no summary.json: the run has not finished. Wait for it, or resume it with "
                       f"'unfreeze train --resume {run}'")
    config = RunFile.read(run / "config.json")
    summary = RunFile.read(run / "summary.json")
    history: list[dict[str, Any]] = read_history(run / "history.csv") or summary.rows("history")
    columns = list(history[0]) if history else []
    options = config.section("options")
    per_class, accuracy = _per_class(summary)
    style = stylesheet()
    page = render(
        "report.html",
        policy=report_policy(style),
        title=run.name,
        style=style,
        arch=options.text("arch", "?"),
        data=options.text("data", "?"),
        facts=_outcome(summary, history),
        history=_table(history, columns),
        plots={key: _plot(run, name, alt) for key, (name, alt) in _plots(run).items()},
        per_class=per_class,
        accuracy=accuracy,
        config=json.dumps(options.content, indent=2),
        rerun=config.text("rerun"),
        version=summary.section("versions").text("unfreeze") or config.text("unfreeze_version"),
        calibration=calibration_section(run, summary),
    )
    target = Path(path) if path is not None else run / REPORT_FILE
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target
