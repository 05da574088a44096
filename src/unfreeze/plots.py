"""Every matplotlib figure of unfreeze, one function per plot, drawn headless (Agg, no pyplot state).

Figures are built with `matplotlib.figure.Figure` directly rather than pyplot, so plotting never opens
a window, never touches pyplot's global figure list and works in threads and on servers.

Where a figure goes: with a `path`, it is saved there and the path returned. Without one, in a
notebook (an IPython kernel) it is shown inline and the `Figure` returned (end the line with `;` if
the notebook would show the returned figure a second time); in a script it is saved under a default
name in the working directory, which is printed and returned.
"""

from __future__ import annotations

import io
import math
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from unfreeze._io import atomic_path

__all__ = [
    "compare_figure",
    "confident_examples_figure",
    "confusion_pair_figure",
    "figure_png",
    "history_figure",
    "image_grid_figure",
    "in_notebook",
    "lr_find_figure",
    "phase_name",
    "plot_confident_examples",
    "plot_confusion_matrix",
    "plot_image_grid",
    "plot_loss",
    "plot_lr_find",
    "plot_reliability",
    "plot_sched",
    "sched_figure",
    "top_loss_title",
]


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # attaches the Agg canvas; no GUI backend is ever selected
    return figure


def _save_figure(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write `figure` to `path` (format from the suffix, PNG by default), creating parent folders."""
    path = Path(path)
    # Atomic, so a full disk leaves the previous plot intact and raises OutputWriteError naming the file.
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for a page that embeds it rather than a file).

    Example:
        >>> figure_png(history_figure([{"epoch": 0, "train_loss": 1.0, "valid_loss": 0.9}])).startswith(b"\\x89PNG")
        True
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    return buffer.getvalue()


def in_notebook() -> bool:
    """True inside a Jupyter/IPython kernel, where figures can be shown inline.

    Example:
        >>> in_notebook()
        False
    """
    ipython = sys.modules.get("IPython")  # a kernel has imported it; a script that never did is no notebook
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return getattr(shell, "kernel", None) is not None


def _show_or_save(figure: Figure, path: str | Path | None, default_name: str, what: str,
                  dpi: int = 100) -> Path | Figure:
    if path is not None:
        return _save_figure(figure, path, dpi)
    if in_notebook():
        from IPython.display import Image, display

        # PNG bytes from the Agg canvas: shown the same whatever matplotlib backend the kernel selected.
        buffer = io.BytesIO()
        figure.savefig(buffer, dpi=dpi, format="png")
        display(Image(data=buffer.getvalue()))
        return figure
    saved = _save_figure(figure, default_name, dpi)
    print(f"Saved {what} to {saved.resolve()}")
    return saved


def _grid_shape(n_images: int, nrows: int | None, ncols: int | None) -> tuple[int, int]:
    for name, value in (("nrows", nrows), ("ncols", ncols)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}.")
    if nrows and ncols:
        return nrows, ncols
    if nrows:
        return nrows, math.ceil(n_images / nrows)
    if ncols:
        return math.ceil(n_images / ncols), ncols
    columns = math.ceil(math.sqrt(n_images))
    return math.ceil(n_images / columns), columns


def top_loss_title(actual: str | Sequence[str], predicted: str | Sequence[str], probability: float | Sequence[float],
                   loss: float) -> str:
    r"""The caption of one top-loss image: "actual → predicted (probability)", then the loss.

    Multi-label items pass the class lists (empty: no class) and one probability per predicted class.

    Example:
        >>> top_loss_title("cat", "dog", 0.81, 1.93)
        'cat → dog (0.81)\nloss 1.93'
        >>> top_loss_title(["haze", "water"], ["haze"], [0.9], 0.42)
        'haze, water → haze (0.90)\nloss 0.42'
    """
    if isinstance(predicted, str):
        guess = f"{predicted} ({float(probability):.2f})"  # type: ignore[arg-type]
        truth = actual if isinstance(actual, str) else ", ".join(actual)
    else:
        probabilities = list(probability)  # type: ignore[arg-type]
        guess = ", ".join(f"{name} ({prob:.2f})" for name, prob in zip(predicted, probabilities, strict=True))
        truth = ", ".join(actual) or "(none)"
        guess = guess or "(none)"
    return f"{truth} → {guess}\nloss {loss:.2f}"


def _wrap_title(title: str, width_inches: float, fontsize: float) -> str:
    """`title` with each line wrapped to fit `width_inches`, so neighbouring captions never overlap."""
    # An average character of the default font is about 0.6 em wide; 72 points per inch.
    characters = max(8, int(width_inches * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, characters, break_on_hyphens=False) for line in title.splitlines())


def plot_image_grid(images: Sequence[np.ndarray], titles: Sequence[str], path: str | Path | None = None, *,
                    nrows: int | None = None, ncols: int | None = None,
                    figsize: tuple[float, float] | None = None, default_name: str = "images.png",
                    points: Sequence[np.ndarray | None] | None = None) -> Path | Figure:
    """Images (uint8 HWC arrays) in a grid, each with its title, as one figure.

    Args:
        images, titles: The pictures and their captions.
        path: Where to save it; None shows it in a notebook, else saves `default_name` (see the module).
        nrows, ncols: The grid (fastai's `show_batch(nrows=, ncols=)`); default square-ish. Images that
            do not fit are left out.
        figsize: Inches (width, height); default 2.2 × 2.4 per image.
        default_name: The file a script saves to when `path` is None.
        points: Per image, (x, y) pixel points [n, 2] to mark on it (regression of points), or None.

    Example:
        >>> plot_image_grid([np.zeros((32, 32, 3), np.uint8)], ["black"], "grid.png")
        PosixPath('grid.png')
    """
    figure = image_grid_figure(images, titles, nrows=nrows, ncols=ncols, figsize=figsize)
    for axis, marks in zip(figure.axes, points or [], strict=False):
        if marks is not None and len(marks):
            axis.scatter(marks[:, 0], marks[:, 1], s=24, c="red", marker="x")
    return _show_or_save(figure, path, default_name, "the images")


def image_grid_figure(images: Sequence[np.ndarray], titles: Sequence[str], *, nrows: int | None = None,
                      ncols: int | None = None, figsize: tuple[float, float] | None = None) -> Figure:
    """The figure behind `plot_image_grid`: captions wrapped to their image's width, rows tall enough for them.

    Example:
        >>> image_grid_figure([np.zeros((8, 8, 3), np.uint8)], ["a → b (0.90)"]).axes[0].get_title()
        'a → b (0.90)'
    """
    rows, columns = _grid_shape(max(1, len(images)), nrows, ncols)
    fontsize = 10
    width = (figsize[0] if figsize else 2.2 * columns) / columns
    wrapped = [_wrap_title(title, width, fontsize) for title in titles]
    # Room for the longest caption: each line of text needs about 1.3 font sizes of height.
    lines = max((title.count("\n") + 1 for title in wrapped), default=1)
    figure = _new_figure(*(figsize or (2.2 * columns, (2.0 + 0.2 * lines) * rows)))
    axes = figure.subplots(rows, columns, squeeze=False)
    for slot, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if slot < len(images):
            axis.imshow(np.asarray(images[slot]), interpolation="nearest" if images[slot].shape[0] < 64 else None)
            axis.set_title(wrapped[slot] if slot < len(wrapped) else "", fontsize=fontsize)
    return figure


def plot_reliability(calibration: dict[str, Any], path: str | Path | None = None, dpi: int = 100) -> Path | Figure:
    """The reliability diagram of a calibration report (`unfreeze.trust.calibration_report`): accuracy
    against confidence per bin, before (raw softmax or sigmoid) and after temperature scaling, with the diagonal a
    perfectly calibrated model would follow and the bins' share of images underneath.

    Example:
        >>> bins = [{"low": 0.8, "high": 0.9, "confidence": 0.85, "accuracy": 0.7, "count": 10}]
        >>> plot_reliability({"temperature": 1.5, "before": {"ece": 0.15, "bins": bins},
        ...                   "after": {"ece": 0.05, "bins": bins}}, "reliability.png")
        PosixPath('reliability.png')
    """
    figure = _new_figure(5.5, 5.0)
    axis, counts = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for key, style, name in (("before", "o-", "no temperature"), ("after", "s-", "temperature")):
        bins = (calibration.get(key) or {}).get("bins") or []
        if not bins:
            continue
        label = f"{name} (ECE {calibration[key]['ece']:.3f})"
        if key == "after":
            label = f"T = {calibration.get('temperature', 1.0):.2f} (ECE {calibration[key]['ece']:.3f})"
        axis.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], style, label=label, markersize=4)
        total = sum(b["count"] for b in bins)
        counts.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["count"] / total for b in bins],
                   width=(bins[0]["high"] - bins[0]["low"]) * (0.45 if key == "before" else 0.9), alpha=0.5,
                   label=name)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_ylabel("accuracy")
    axis.set_title("Reliability on the validation images")
    axis.legend(loc="upper left", fontsize=8)
    counts.set_xlabel("confidence (probability of the predicted class)")
    counts.set_ylabel("share")
    return _show_or_save(figure, path, "reliability.png", "the reliability diagram", dpi)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str | Path | None = None,
                          normalize: bool = False, *, figsize: tuple[float, float] | None = None,
                          dpi: int = 100, title: str = "Confusion matrix", cmap: str = "Blues", norm_dec: int = 2,
                          plot_txt: bool = True) -> Path | Figure:
    """A confusion matrix (rows: actual, columns: predicted) with class names on both axes.

    `normalize=True` shows each row as fractions of its actual class (recall on the diagonal), with
    `norm_dec` decimals. `path` None shows it in a notebook or saves confusion_matrix.png (see the
    module); `figsize` (inches), `dpi`, `cmap` (a matplotlib colormap name) and `plot_txt` (False: no
    number in the cells) as in fastai's `plot_confusion_matrix`.

    Example:
        >>> plot_confusion_matrix(np.array([[5, 1], [2, 7]]), ["cat", "dog"], "cm.png")
        PosixPath('cm.png')
    """
    counts = np.asarray(matrix, dtype=np.float64)
    if normalize:
        # A class absent from the data has an all-zero row; show zeros there, not NaN.
        counts = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    n_classes = len(class_names)
    side = max(4.0, 0.55 * n_classes + 2.0)
    figure = _new_figure(*(figsize or (side, side)))
    axis = figure.subplots()
    image = axis.imshow(counts, cmap=cmap, vmin=0.0)
    figure.colorbar(image, ax=axis, shrink=0.8)
    ticks = np.arange(n_classes)
    axis.set_xticks(ticks, labels=list(class_names), rotation=90)
    axis.set_yticks(ticks, labels=list(class_names))
    axis.set_xlabel("Predicted")
    axis.set_ylabel("Actual")
    axis.set_title(title + (" (normalized by row)" if normalize else ""))
    threshold = counts.max(initial=0.0) / 2.0
    for row, column in np.ndindex(counts.shape if plot_txt else (0, 0)):
        value = counts[row, column]
        axis.text(column, row, f"{value:.{norm_dec}f}" if normalize else f"{int(value)}", ha="center",
                  va="center", fontsize=8, color="white" if value > threshold else "black")
    return _show_or_save(figure, path, "confusion_matrix.png", "the confusion matrix", dpi)


def plot_loss(recorder: Any, path: str | Path | None = None, skip_start: int = 5,
              with_valid: bool = True) -> Path | Figure:
    """Training loss per step (raw and smoothed) and validation loss per epoch.

    Example:
        >>> plot_loss(learn.recorder, "loss.png")  # doctest: +SKIP
    """
    figure = _new_figure(7, 4.5)
    ax = figure.subplots()
    steps = list(range(skip_start, len(recorder.losses)))
    ax.plot(steps, recorder.losses[skip_start:], alpha=0.3, label="train (raw)")
    ax.plot(steps, recorder.smooth_losses[skip_start:], label="train (smoothed)")
    if with_valid and recorder.history:
        per_epoch = max(len(recorder.losses) // max(len(recorder.history), 1), 1)
        xs = [per_epoch * (i + 1) for i in range(len(recorder.history))]
        ax.plot(xs, [row["valid_loss"] for row in recorder.history], "o-", label="valid")
    phases = getattr(recorder, "phases", [])
    for index, phase in enumerate(phases):
        if index:
            ax.axvline(phase["start_step"], color="grey", linestyle=":", linewidth=1)
        ax.annotate(phase_name(phase), (phase["start_step"], 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", fontsize=8, color="dimgrey")
    if not phases:
        for start in recorder.phase_starts[1:]:
            ax.axvline(start, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title("Loss")
    return _show_or_save(figure, path, "loss.png", "the loss plot")


def plot_sched(recorder: Any, path: str | Path | None = None) -> Path | Figure:
    """Each parameter group's LR (log scale) and the momentum, per step.

    Example:
        >>> plot_sched(learn.recorder, "sched.png")  # doctest: +SKIP
    """
    return _show_or_save(sched_figure(recorder), path, "sched.png", "the schedule plot")


def sched_figure(recorder: Any) -> Figure:
    """The figure behind `plot_sched`: a group frozen during a phase has no curve there (it did not train).

    Example:
        >>> sched_figure(learn.recorder).axes[0].get_legend()  # doctest: +SKIP
    """
    figure = _new_figure(11, 4)
    ax_lr, ax_mom = figure.subplots(1, 2)
    if recorder.lrs:
        n_groups = len(recorder.lrs[0])
        frozen = _frozen_per_step(getattr(recorder, "phases", []), len(recorder.lrs))
        for group in range(n_groups):
            # A frozen group's LR is set but unused: draw a group only at the steps where it trained.
            curve = [math.nan if group < frozen[step] else lrs[group] for step, lrs in enumerate(recorder.lrs)]
            if all(math.isnan(value) for value in curve):
                continue
            label = "head" if group == n_groups - 1 else f"group {group}"
            ax_lr.plot(curve, label=label)
        for phase in getattr(recorder, "phases", [])[1:]:
            ax_lr.axvline(phase["start_step"], color="grey", linestyle=":", linewidth=1)
        ax_lr.set_yscale("log")
        ax_lr.legend()
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_mom.plot(recorder.moms)
    ax_mom.set_xlabel("step")
    ax_mom.set_ylabel("momentum (beta1)")
    figure.suptitle("Schedule")
    return figure


def _frozen_per_step(phases: Sequence[dict[str, int]], n_steps: int) -> list[int]:
    """How many groups were frozen at each step (0 everywhere when the phases are unknown)."""
    frozen = [0] * n_steps
    for index, phase in enumerate(phases):
        end = phases[index + 1]["start_step"] if index + 1 < len(phases) else n_steps
        for step in range(max(0, phase["start_step"]), min(end, n_steps)):
            frozen[step] = phase["frozen_to"]
    return frozen


def phase_name(phase: dict[str, Any]) -> str:
    """A phase's name: "frozen (head only)", "unfrozen (groups 1-2 + head)" or "unfrozen (all groups)".

    Example:
        >>> phase_name({"frozen_to": 2, "n_groups": 3}), phase_name({"frozen_to": 1, "n_groups": 4})
        ('frozen (head only)', 'unfrozen (groups 1-2 + head)')
    """
    frozen_to, n_groups = int(phase.get("frozen_to", 0)), int(phase.get("n_groups", 1))
    if frozen_to <= 0:
        return "unfrozen (all groups)" if n_groups > 1 else "training"
    if frozen_to >= n_groups - 1:
        return "frozen (head only)"
    body = f"group {frozen_to}" if frozen_to == n_groups - 2 else f"groups {frozen_to}-{n_groups - 2}"
    return f"unfrozen ({body} + head)"


def _mark_epoch_phases(axis: Any, phases: Sequence[dict[str, Any]], last_epoch: float) -> None:
    """Shade every other phase and name each one at the top of `axis` (x axis: epochs)."""
    for index, phase in enumerate(phases):
        start = float(phase.get("start_epoch", 0)) - 0.5
        end = float(phases[index + 1].get("start_epoch", 0)) - 0.5 if index + 1 < len(phases) else last_epoch + 0.5
        if index % 2 == 0:
            axis.axvspan(start, end, color="tab:blue", alpha=0.06, linewidth=0)
        if index:
            axis.axvline(start, color="grey", linestyle=":", linewidth=1)
        axis.annotate(phase_name(phase), (start, 1.0), xycoords=("data", "axes fraction"),
                      xytext=(3, -12), textcoords="offset points", fontsize=8, color="dimgrey")


def _plain(text: str) -> str:
    """`text` shown as written: a "$" would otherwise start matplotlib's math mode (and an odd one fails)."""
    return str(text).replace("$", r"\$")


_MAX_DRAWN = 1e100  # no loss, metric or epoch; beyond it an axis's span can overflow and matplotlib fails


def _column(history: Sequence[dict[str, Any]], name: str) -> list[float]:
    """A history column as numbers; text, infinities and numbers too large to draw are gaps (NaN)."""
    values = []
    for row in history:
        try:
            value = float(row.get(name))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = math.nan
        values.append(value if abs(value) <= _MAX_DRAWN else math.nan)
    return values


def history_figure(history: Sequence[dict[str, Any]], phases: Sequence[dict[str, Any]] = ()) -> Figure:
    """The losses per epoch beside the metrics per epoch, with the training phases shaded and named.

    `history` is the run's rows (epoch, train_loss, valid_loss, metrics..., time; numbers or their text);
    `phases` what the Recorder records (start_epoch, frozen_to, n_groups), optionally with a `name`.

    Example:
        >>> history_figure([{"epoch": 0, "train_loss": 1.0, "valid_loss": 0.9, "accuracy": 0.5}]).axes[1].get_title()
        'Metrics'
    """
    figure = _new_figure(11, 4)
    ax_loss, ax_metrics = figure.subplots(1, 2)
    epochs = _column(history, "epoch")
    epochs = epochs if history and not any(math.isnan(value) for value in epochs) else list(range(len(history)))
    metrics = [name for name in (history[0] if history else {}) if name not in ("epoch", "train_loss", "valid_loss",
                                                                               "time")]
    for name in ("train_loss", "valid_loss"):
        if history and name in history[0]:
            ax_loss.plot(epochs, _column(history, name), "o-", label=name.replace("_", " "))
    for name in metrics:
        ax_metrics.plot(epochs, _column(history, name), "o-", label=_plain(name))
    last = max(epochs, default=0.0)
    for axis, title in ((ax_loss, "Loss"), (ax_metrics, "Metrics")):
        axis.margins(y=0.15)  # room at the top for the phase names
        _mark_epoch_phases(axis, phases, last)
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.xaxis.get_major_locator().set_params(integer=True)
        if axis.lines:
            # Below the plot: inside it the legend would cover the phase names or the curves.
            axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4, fontsize=8, frameon=False)
    ax_loss.set_ylabel("loss")
    return figure


def compare_figure(histories: dict[str, Sequence[dict[str, Any]]]) -> Figure:
    """Several runs' validation loss beside their first metric, per epoch, one colour per run.

    Example:
        >>> compare_figure({"a": [{"epoch": 0, "valid_loss": 0.9, "accuracy": 0.5}]}).axes[1].get_title()
        'accuracy'
    """
    figure = _new_figure(11, 4)
    ax_loss, ax_metric = figure.subplots(1, 2)
    metric_names = []
    for name, history in histories.items():
        if not history:
            continue
        epochs = list(range(len(history)))
        ax_loss.plot(epochs, _column(history, "valid_loss"), "o-", label=_plain(name))
        metrics = [key for key in history[0] if key not in ("epoch", "train_loss", "valid_loss", "time")]
        if metrics:
            metric_names.append(metrics[0])
            ax_metric.plot(epochs, _column(history, metrics[0]), "o-", label=_plain(f"{name}: {metrics[0]}"))
    ax_loss.set_title("valid loss")
    ax_metric.set_title(_plain(" / ".join(dict.fromkeys(metric_names)) or "metric"))
    for axis in (ax_loss, ax_metric):
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        if axis.lines:
            axis.legend(fontsize=8)
    return figure


def confusion_pair_figure(matrix: np.ndarray, class_names: Sequence[str]) -> Figure:
    """The confusion matrix as counts beside the same normalised by row (each actual class sums to 1).

    Example:
        >>> len(confusion_pair_figure(np.array([[5, 1], [2, 7]]), ["cat", "dog"]).axes)
        4
    """
    counts = np.asarray(matrix, dtype=np.float64)
    n_classes = len(class_names)
    side = max(4.0, 0.5 * n_classes + 2.0)
    figure = _new_figure(2 * side + 1, side)
    for axis, normalize in zip(figure.subplots(1, 2), (False, True), strict=True):
        shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0) if normalize else counts
        image = axis.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
        figure.colorbar(image, ax=axis, shrink=0.8)
        ticks = np.arange(n_classes)
        axis.set_xticks(ticks, labels=[_plain(name) for name in class_names], rotation=90)
        axis.set_yticks(ticks, labels=[_plain(name) for name in class_names])
        axis.set_xlabel("Predicted")
        axis.set_ylabel("Actual")
        axis.set_title("normalised by row (recall on the diagonal)" if normalize else "counts")
        threshold = (1.0 if normalize else shown.max(initial=0.0)) / 2.0
        if n_classes <= 30:  # beyond that the numbers would overlap; the colours still read
            for row, column in np.ndindex(shown.shape):
                value = shown[row, column]
                axis.text(column, row, f"{value:.2f}" if normalize else f"{int(value)}", ha="center", va="center",
                          fontsize=7, color="white" if value > threshold else "black")
    return figure


def confident_examples_figure(right: Sequence[tuple[np.ndarray, str]], wrong: Sequence[tuple[np.ndarray, str]],
                              columns: int = 6) -> Figure:
    """Two rows of captioned images: the most confident right predictions, then the most confident wrong ones.

    Example:
        >>> picture = np.zeros((8, 8, 3), np.uint8)
        >>> confident_examples_figure([(picture, "cat (0.99)")], []).axes[0].get_title()
        'right: cat (0.99)'
    """
    columns = max(1, min(columns, max(len(right), len(wrong))))
    images = [image for image, _ in right[:columns]] + [None] * (columns - len(right[:columns]))
    images += [image for image, _ in wrong[:columns]] + [None] * (columns - len(wrong[:columns]))
    titles = [f"right: {title}" for _, title in right[:columns]] + [""] * (columns - len(right[:columns]))
    titles += [f"wrong: {title}" for _, title in wrong[:columns]] + [""] * (columns - len(wrong[:columns]))
    wrapped = [_wrap_title(title, 2.0, 9) for title in titles]
    lines = max((title.count("\n") + 1 for title in wrapped), default=1)
    figure = _new_figure(2.0 * columns, 2 * (2.0 + 0.2 * lines))
    for slot, axis in enumerate(figure.subplots(2, columns, squeeze=False).flat):
        axis.set_axis_off()
        image = images[slot]
        if image is not None:
            axis.imshow(np.asarray(image), interpolation="nearest" if image.shape[0] < 64 else None)
            axis.set_title(wrapped[slot], fontsize=9, color="darkgreen" if slot < columns else "darkred")
    return figure


def plot_confident_examples(right: Sequence[tuple[np.ndarray, str]], wrong: Sequence[tuple[np.ndarray, str]],
                            path: str | Path | None = None, columns: int = 6) -> Path | Figure:
    """`confident_examples_figure` saved to `path` (None: shown in a notebook, else saved as examples.png).

    Example:
        >>> plot_confident_examples([(np.zeros((8, 8, 3), np.uint8), "cat (0.99)")], [], "examples.png")
        PosixPath('examples.png')
    """
    figure = confident_examples_figure(right, wrong, columns)
    return _show_or_save(figure, path, "examples.png", "the most confident right and wrong predictions")


def plot_lr_find(result: Any, path: str | Path | None = None, skip_end: int = 5) -> Path | Figure:
    """Save the smoothed loss against the head LR (log x axis) with every suggestion marked and labelled.

    Args:
        result: What `lr_find` returned.
        path: Where to write the PNG (folders are created); None shows it in a notebook, else saves
            lr_find.png.
        skip_end: Leave out the last points, where the loss shoots up, as fastai does.

    Example:
        >>> plot_lr_find(learn.lr_find(), "lr_find.png")  # doctest: +SKIP
    """
    return _show_or_save(lr_find_figure(result, skip_end), path, "lr_find.png", "the LR finder plot")


def lr_find_figure(result: Any, skip_end: int = 5) -> Figure:
    """The figure behind `plot_lr_find`, for callers that embed or inspect it."""
    keep = len(result.lrs) - skip_end if len(result.lrs) > 2 * skip_end else len(result.lrs)
    lrs, losses = np.asarray(result.lrs[:keep]), np.asarray(result.losses[:keep])
    figure = _new_figure(7, 4.5)
    axis = figure.add_subplot()
    axis.plot(lrs, losses, color="C0", label="smoothed loss")
    finite = np.isfinite(losses)
    # Distinct colours, shapes and sizes, so that suggestions at the same LR stay visible.
    styles = {"valley": ("C1", "o", 12), "slide": ("C2", "s", 9), "minimum": ("C3", "^", 8), "steep": ("C4", "D", 5)}
    for name, lr in result.suggestions.items():
        if not math.isfinite(lr) or not finite.any():
            continue
        loss = float(np.interp(np.log10(lr), np.log10(lrs[finite]), losses[finite]))
        color, marker, size = styles[name]
        axis.axvline(lr, color=color, alpha=0.3, linestyle="--")
        axis.plot(lr, loss, marker, color=color, markersize=size, label=f"{name}: {lr:.2e}")
    axis.set_xscale("log")
    axis.set_xlabel("Learning rate (head group)")
    axis.set_ylabel("Loss (smoothed)")
    axis.set_title(f"LR range test, {len(result.lrs)} iterations")
    axis.legend(loc="best")
    return figure


def plot_predicted_vs_true(preds: Any, targets: Any, names: Sequence[str], path: str | Path | None = None, *,
                           figsize: tuple[float, float] | None = None) -> Path | Figure:
    """A regression model's predictions against the true values, one panel per output, with the diagonal.

    Example:
        >>> plot_predicted_vs_true(np.array([[1.0], [2.1]]), np.array([[1.0], [2.0]]), ["age"], "pvt.png")
        PosixPath('pvt.png')
    """
    preds, targets = np.asarray(preds, dtype=float), np.asarray(targets, dtype=float)
    preds, targets = preds.reshape(len(preds), -1), targets.reshape(len(targets), -1)
    columns = max(1, len(names))
    figure = _new_figure(*(figsize or (3.2 * columns, 3.2)))
    axes = figure.subplots(1, columns, squeeze=False)[0]
    for column, (axis, name) in enumerate(zip(axes, names, strict=False)):
        actual, predicted = targets[:, column], preds[:, column]
        keep = np.isfinite(actual) & np.isfinite(predicted)
        axis.scatter(actual[keep], predicted[keep], s=12, alpha=0.7)
        if keep.any():
            low, high = min(actual[keep].min(), predicted[keep].min()), max(actual[keep].max(), predicted[keep].max())
            axis.plot([low, high], [low, high], color="grey", linewidth=1)
        axis.set_xlabel(f"true {name}")
        axis.set_ylabel(f"predicted {name}")
    return _show_or_save(figure, path, "predicted_vs_true.png", "the predicted vs true plot")
