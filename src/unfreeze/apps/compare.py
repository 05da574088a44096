"""The comparison page: two or more runs side by side (`unfreeze report RUN_A RUN_B ...`).

One self-contained HTML file like report.html (same template rules, same Content-Security-Policy, no
script at all): a table with one column per run (model, data, best and final metrics, time, automatic
decisions, versions, the rerun command) and the runs' validation loss and first metric per epoch
drawn together. Each run directory is read as untrusted input, as for its report.

Example:
    >>> write_comparison(["runs/pets", "runs/pets-2"], "compare.html")  # doctest: +SKIP
    PosixPath('compare.html')
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from markupsafe import Markup

from unfreeze._io import atomic_path
from unfreeze.apps.errors import AppError
from unfreeze.apps.report import (
    best_epoch,
    class_count,
    format_seconds,
    format_value,
    history_of,
    read_run,
    run_decisions,
)
from unfreeze.apps.run_files import RunFile
from unfreeze.apps.templates import render, report_policy, stylesheet

__all__ = ["COMPARISON_FILE", "write_comparison"]

COMPARISON_FILE = "comparison.html"


def _names(runs: list[Path]) -> list[str]:
    """Each run's folder name, with as many of its parents as tell the runs apart; a run given twice is
    numbered. The names head the columns and key the curves, so they must differ.

    Example:
        >>> _names([Path("a/runs/pets"), Path("b/runs/pets"), Path("a/runs/cats")])
        ['a/runs/pets', 'b/runs/pets', 'cats']
    """
    parts = [run.resolve().parts for run in runs]
    names = [run.name for run in runs]
    for depth in range(2, max(map(len, parts)) + 1):
        clashing = {name for name in names if names.count(name) > 1}
        if not clashing:
            return names
        names = [Path(*part[-depth:]).as_posix() if name in clashing else name for name, part in zip(names, parts,
                                                                                                   strict=True)]
    # The same directory more than once: the resolved paths are equal, so only a number tells them apart.
    return [f"{run.name} ({names[:index].count(name) + 1})" if names.count(name) > 1 else name
            for index, (run, name) in enumerate(zip(runs, names, strict=True))]


def _column(config: RunFile, summary: RunFile, history: list[dict[str, Any]]) -> dict[str, Any]:
    options = config.section("options")
    best = best_epoch(history)
    final = summary.section("final").numbers()
    data = summary.section("data")
    versions = summary.section("versions")
    return {
        "model": options.text("arch", "?"),
        "data": f"{Path(options.text('data', '?')).name}: {data.text('train', '?')} train, "
                f"{data.text('valid', '?')} valid, {class_count(summary)}",
        "best": "" if best is None else
        f"{best[0]} {format_value(best[1][best[0]])} at epoch {format_value(best[1].get('epoch'))}",
        "final": ", ".join(f"{key} {format_value(value)}" for key, value in final.items()
                           if key not in ("epoch", "time")),
        "epochs": str(len(history)),
        "time": f"{format_seconds(summary.number('wall_time_s'))} on {summary.text('device', '?')}",
        "decisions": [Markup("{}: {}").format(decision["name"], decision["text"]) for decision in run_decisions(summary)
                      if decision["text"]],
        "versions": ", ".join(f"{name} {versions.text(name)}" for name in versions.content),
        "rerun": config.text("rerun"),
    }


_ROWS = (("model", "model"), ("data", "data"), ("best", "best"), ("final", "final"), ("epochs", "epochs"),
         ("time", "time"), ("decisions", "automatic decisions"), ("versions", "versions"), ("rerun", "rerun"))


def write_comparison(run_dirs: list[str | Path], path: str | Path | None = None) -> Path:
    """Write a page comparing the run directories side by side; return its path.

    `path` defaults to comparison.html beside the first run directory. Written atomically.

    Raises:
        AppError: fewer than two runs, or one is not a finished run directory.
        OutputWriteError: The page's path is a folder or lies under a file, or the disk is full.
        RunFileError: one of their files is damaged (the message names it).

    Example:
        >>> write_comparison(["runs/a", "runs/b"])  # doctest: +SKIP
        PosixPath('runs/comparison.html')
    """
    from unfreeze.plots import compare_figure, figure_png

    if len(run_dirs) < 2:
        raise AppError(f"a comparison needs two or more run directories, got {len(run_dirs)}. "
                       "Pass them all, e.g. 'unfreeze report runs/a runs/b'")
    loaded = [read_run(run_dir) for run_dir in run_dirs]
    runs = [run for run, _, _ in loaded]
    target = Path(path) if path is not None else runs[0].parent / COMPARISON_FILE
    names = _names(runs)
    histories = {name: history_of(run, summary) for name, (run, _, summary) in zip(names, loaded, strict=True)}
    columns = [_column(config, summary, histories[name]) for name, (_, config, summary) in
               zip(names, loaded, strict=True)]
    style = stylesheet()
    curves = base64.b64encode(figure_png(compare_figure(histories))).decode("ascii")
    page = render("compare.html", policy=report_policy(style), style=style, names=names, columns=columns,
                  rows=_ROWS, curves=curves)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target
