"""report.html: one self-contained page (images embedded, no script, no network) describing a run.

It reads only what `unfreeze train` left in the run directory (config.json, summary.json, history.csv
and the PNG plots), so it can be written again at any time, also for an old run, without the data or
the model: `unfreeze report RUN`.

Sections (each an element with this id): outcome, history, curves (loss, schedule, lr_find),
confusion-matrix, top-losses, per-class, config, rerun.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import string
from pathlib import Path
from typing import Any

from unfreeze._io import atomic_path
from unfreeze.apps.errors import AppError
from unfreeze.runs import RunConfigError, read_json

__all__ = ["REPORT_FILE", "SECTIONS", "best_epoch", "write_report"]

REPORT_FILE = "report.html"
SECTIONS = ("outcome", "history", "curves", "confusion-matrix", "top-losses", "per-class", "config", "rerun")
_PAGES = Path(__file__).parent / "pages"
_LOWER_IS_BETTER = ("loss", "error")


def _read_history(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


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


def _image(path: Path, alt: str) -> str:
    if not path.is_file():
        return f'<p class="muted">{html.escape(path.name)} was not drawn for this run.</p>'
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _format(value: Any) -> str:
    number = _number(value)
    if number is None:
        return html.escape("" if value is None else str(value))
    # Counts (epochs, support) stay whole; metrics always show 4 decimals, so that 1.0 reads as a rate.
    whole = isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    return str(int(number)) if whole else f"{number:.4f}"


def _table(rows: list[dict[str, Any]], columns: list[str], first: str | None = None) -> str:
    if not rows:
        return '<p class="muted">none recorded.</p>'
    head = "".join(f"<th>{html.escape(column)}</th>" for column in ([first] if first else []) + columns)
    body = []
    for row in rows:
        cells = [f"<td>{html.escape(str(row.get('', '')))}</td>"] if first else []
        cells += [f"<td>{_format(row.get(column))}</td>" for column in columns]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _outcome(summary: dict[str, Any], history: list[dict[str, Any]]) -> str:
    facts = []
    best = best_epoch(history)
    if best is not None:
        metric, row = best
        facts.append(f"best {html.escape(metric)} <strong>{_format(row[metric])}</strong> at epoch "
                     f"{_format(row.get('epoch'))}")
    final = summary.get("final") or {}
    if final:
        facts.append("final " + ", ".join(f"{html.escape(key)} {_format(value)}" for key, value in final.items()
                                           if key not in ("epoch", "time")))
    facts += _guard_facts(summary)
    if summary.get("wall_time_s") is not None:
        facts.append(f"{_format(summary['wall_time_s'])} s in all on {html.escape(str(summary.get('device', '?')))}")
    data = summary.get("data") or {}
    if data:
        facts.append(f"{data.get('train', '?')} training and {data.get('valid', '?')} validation images, "
                     f"{len(data.get('classes', []))} classes")
    if summary.get("interrupted"):
        facts.append("<strong>interrupted</strong> before the planned epochs ended")
    return "<ul>" + "".join(f"<li>{fact}</li>" for fact in facts) + "</ul>" if facts else "<p>no summary.</p>"


def _guard_facts(summary: dict[str, Any]) -> list[str]:
    """What the training guards decided: the epoch exported and why, an LR retry, the threshold, upscaling."""
    facts = []
    kept = summary.get("kept") or {}
    if kept.get("best_epoch") is not None:
        monitor = html.escape(str(kept.get("monitor")))
        if kept.get("kept") == "last":
            facts.append(f"exported the <strong>last</strong> epoch ({_format(kept.get('last_epoch'))}, --keep last); "
                         f"the best by {monitor} was epoch {_format(kept['best_epoch'])}")
        else:
            facts.append(f"exported epoch <strong>{_format(kept['best_epoch'])}</strong>, the best by {monitor} "
                         f"({_format(kept.get('best_value'))})")
    if summary.get("lr_retry"):
        facts.append(f"retried once at a lower LR: {html.escape(str(summary['lr_retry']))}")
    threshold = summary.get("threshold") or {}
    if threshold:
        facts.append(f"decision threshold {html.escape(str(threshold.get('threshold')))}, chosen by F1 on the "
                     "validation set")
    size = summary.get("input_size") or {}
    if size.get("upscaled"):
        facts.append(f"upscaled: trained at {_format(size.get('size'))} px instead of {_format(size.get('requested'))}")
    # The recipe's plan and its decisions from the data (fit_recipe's notes: plan, flip, imbalance, probe).
    facts += [html.escape(note) for note in summary.get("notes") or []
              if isinstance(note, str) and note.startswith(("plan:", "flip=", "imbalance=", "probe:"))]
    balanced = summary.get("balanced") or {}
    if balanced:
        facts.append(f"imbalanced classes: balanced accuracy <strong>{_format(balanced.get('balanced_accuracy'))}"
                     f"</strong>, macro F1 {_format(balanced.get('macro_f1'))}")
    disagreeing = [row for row in summary.get("disagreements") or [] if isinstance(row, dict)][:10]
    if disagreeing:
        listed = ", ".join(
            f"{html.escape(Path(str(row.get('path'))).name)} ({html.escape(str(row.get('label')))}"
            + (f" → {html.escape(str(row['predicted']))}" if row.get("predicted") is not None else "") + ")"
            for row in disagreeing)
        facts.append(f"training images the model most disagrees with (check them with <code>unfreeze clean</code>, "
                     f"which sorts by the same loss): {listed}")
    return facts


def _per_class(report: dict[str, Any]) -> str:
    rows = [{"": name, **values} for name, values in report.items() if name != "accuracy"]
    table = _table(rows, ["precision", "recall", "f1", "support"], first="class")
    accuracy = (report.get("accuracy") or {}).get("accuracy")
    return table + (f"<p>accuracy {_format(accuracy)}</p>" if accuracy is not None else "")


def write_report(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write `run_dir/report.html` (or `path`) from the files of a run directory; return its path.

    Written atomically. Missing plots (a multi-label run has no confusion matrix; lr_find.png exists only
    with --lr auto) are named as such in their section.

    Raises:
        AppError: `run_dir` is not a run directory (no config.json) or has no summary.json yet.
        RunConfigError: config.json or summary.json is not valid JSON.

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
    config = read_json(run / "config.json")
    summary = read_json(run / "summary.json")
    history: list[dict[str, Any]] = _read_history(run / "history.csv") or list(summary.get("history") or [])
    columns = list(history[0]) if history else []
    options = config.get("options", {})
    if not isinstance(options, dict):
        raise RunConfigError(f"{run / 'config.json'} has options that are not an object. Train the run again")
    template = string.Template((_PAGES / "report.html").read_text(encoding="utf-8"))
    page = template.substitute(
        title=html.escape(run.name),
        style=(_PAGES / "style.css").read_text(encoding="utf-8"),
        arch=html.escape(str(options.get("arch", "?"))),
        data=html.escape(str(options.get("data", "?"))),
        outcome=_outcome(summary, history),
        history=_table(history, columns),
        loss=_image(run / "loss.png", "training and validation loss"),
        sched=_image(run / "sched.png", "learning rate and momentum schedule"),
        lr_find=_image(run / "lr_find.png", "LR range test"),
        confusion=_image(run / "confusion_matrix.png", "confusion matrix"),
        top_losses=_image(run / "top_losses.png", "top losses, titled actual → predicted (probability)"),
        per_class=_per_class(summary.get("report") or {}),
        config=html.escape(json.dumps(options, indent=2)),
        rerun=html.escape(str(config.get("rerun", ""))),
        version=html.escape(str((summary.get("versions") or {}).get("unfreeze", config.get("unfreeze_version", "")))),
    )
    target = Path(path) if path is not None else run / REPORT_FILE
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target
