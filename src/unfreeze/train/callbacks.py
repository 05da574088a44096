"""The callback events of the training loop, and the built-in callbacks.

The loop (`unfreeze.train.loop.run_fit`) calls these events, in this order, and no others:

    before_fit(learner)
      before_epoch(epoch)
        before_batch(step)  after_batch(step, logs)      # once per training batch
        before_validate(epoch)  after_validate(epoch, logs)
      after_epoch(epoch, logs)                            # after validation
    after_fit(logs)

This is the one place the event list is written. The order holds on every device. `logs` is a plain
dict of floats. A callback reads the learner it was given in `before_fit` through the `LearnerView`
protocol (public members only) and never sets the learner's fields. Two kinds write into the model's
weights, on purpose, each restoring what the user asked for: `SaveBestModel` (and fastai's
`SaveModelCallback`) loads the best epoch's weights at `after_fit`; `EMA` swaps the averaged weights in
for validation and back, and puts the average in at `after_fit`. To stop training a callback
returns `True` from `after_batch`, `after_validate` or `after_epoch`, or sets `self.stop_training =
True`; the loop checks both. A callback with state worth resuming (a best value, a counter) returns it
from `state_dict()` and takes it back in `load_state_dict()`: checkpoints carry it.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unfreeze.fastai_names import fastai_attribute_error

if TYPE_CHECKING:
    from unfreeze.train.protocols import LearnerView

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "ProgressCallback",
    "Recorder",
    "SaveBestModel",
    "callback_list",
    "monitor_mode",
]


class Callback:
    """Base class: override only the events you need. Every event is a no-op by default."""

    stop_training: bool = False

    def before_fit(self, learner: LearnerView) -> None:
        """Called once before the first epoch."""

    def before_epoch(self, epoch: int) -> None:
        """Called at the start of each epoch (0-based)."""

    def before_batch(self, step: int) -> None:
        """Called before each training batch; `step` counts batches across the whole fit."""

    def after_batch(self, step: int, logs: dict[str, float]) -> bool | None:
        """Called after each optimizer step with `loss`, `smooth_loss`, `lr` (head group)."""

    def before_validate(self, epoch: int) -> None:
        """Called after the epoch's last batch, before the validation pass."""

    def after_validate(self, epoch: int, logs: dict[str, float]) -> bool | None:
        """Called after the validation pass with `valid_loss` and the metrics."""

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> bool | None:
        """Called after validation with `train_loss`, `valid_loss`, the metrics and `time`."""

    def after_fit(self, logs: dict[str, float]) -> None:
        """Called once at the end, also after an interruption or a stop."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed fit needs to continue this callback exactly (plain values); {} by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what `state_dict` returned (called after `before_fit` of a resumed fit)."""


class Recorder(Callback):
    """Keeps the history of a learner: every step's loss, LRs and momentum, and every epoch's row.

    The learner owns one Recorder for its whole life, so the history of `fine_tune`'s two phases is
    one continuous record. `train_loss` in a row is the debiased EMA of the loss (beta 0.98) at the end
    of the epoch, as fastai prints it.

    Attributes:
        history: One dict per epoch: epoch, train_loss, valid_loss, metrics..., time.
        losses: Raw training loss per step.
        smooth_losses: Debiased EMA of the loss per step.
        lrs: Per-step list of each parameter group's LR.
        moms: Per-step momentum (Adam beta1).
        notes: Free-form events such as an auto-chosen LR or an interruption.
        phases: One dict per fit: start_step, start_epoch, frozen_to (groups `[:frozen_to]` did not train)
            and n_groups, so that plots and report.html can mark the phases and draw trained groups only.
        lr_find_result: The last `LRFindResult` of the learner's `lr_find` (handed over by the learner,
            which owns this recorder), for `plot_lr_find`; None before the first range test.
    """

    _watches_batches_only = True  # it only records or displays: the loop may read losses a step late

    def __init__(self, beta: float = 0.98) -> None:
        self.beta = beta
        self.history: list[dict[str, Any]] = []
        self.losses: list[float] = []
        self.smooth_losses: list[float] = []
        self.lrs: list[list[float]] = []
        self.moms: list[float] = []
        self.notes: list[str] = []
        self.phase_starts: list[int] = []
        self.phases: list[dict[str, int]] = []
        self.lr_find_result: Any = None
        self._average = 0.0
        self._count = 0

    def __getattr__(self, name: str) -> Any:
        # fastai's recorder attributes (final_record, log, ...) name their unfreeze spelling in the error.
        raise fastai_attribute_error(self, name)

    def reset_smoothing(self) -> None:
        """Restart the loss EMA, as fastai does at the start of every fit."""
        self._average, self._count = 0.0, 0

    def record_step(self, loss: float, lrs: list[float], mom: float) -> float:
        """Store one step and return the smoothed loss."""
        self._count += 1
        self._average = self.beta * self._average + (1 - self.beta) * loss
        smooth = self._average / (1 - self.beta**self._count)
        self.losses.append(loss)
        self.smooth_losses.append(smooth)
        self.lrs.append(list(lrs))
        self.moms.append(mom)
        return smooth

    def start_phase(self, frozen_to: int, n_groups: int) -> None:
        """Mark the start of a fit at the current step and epoch, with the groups it leaves frozen."""
        self.phase_starts.append(len(self.losses))
        self.phases.append({"start_step": len(self.losses), "start_epoch": len(self.history),
                            "frozen_to": int(frozen_to), "n_groups": int(n_groups)})

    def add_note(self, note: str) -> None:
        """Record an event (auto LR, interruption, NaN) in the history."""
        self.notes.append(note)

    @property
    def metric_names(self) -> list[str]:
        """fastai's column names: epoch, train_loss, valid_loss, the metrics, time (of the last row).

        Example:
            >>> learn.recorder.metric_names  # doctest: +SKIP
            ['epoch', 'train_loss', 'valid_loss', 'error_rate', 'time']
        """
        return list(self.history[-1]) if self.history else ["epoch", "train_loss", "valid_loss", "time"]

    @property
    def values(self) -> list[list[float]]:
        """fastai's `recorder.values`: per epoch [train_loss, valid_loss, *metrics] (`history` has names).

        Example:
            >>> learn.recorder.values[-1]  # doctest: +SKIP
            [0.41, 0.37, 0.12]
        """
        return [[value for key, value in row.items() if key not in ("epoch", "time")] for row in self.history]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the record (plain lists and numbers)."""
        return {
            "history": self.history,
            "losses": self.losses,
            "smooth_losses": self.smooth_losses,
            "lrs": self.lrs,
            "moms": self.moms,
            "notes": self.notes,
            "phase_starts": self.phase_starts,
            "phases": self.phases,
            "ema": [self._average, self._count],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a record saved by `state_dict`."""
        self.history = list(state["history"])
        self.losses = list(state["losses"])
        self.smooth_losses = list(state["smooth_losses"])
        self.lrs = [list(x) for x in state["lrs"]]
        self.moms = list(state["moms"])
        self.notes = list(state["notes"])
        self.phase_starts = list(state["phase_starts"])
        self.phases = [dict(phase) for phase in state.get("phases", [])]  # absent in older checkpoints
        self._average, self._count = float(state["ema"][0]), int(state["ema"][1])

    def plot_loss(self, path: str | Path | None = None, skip_start: int = 5, with_valid: bool = True) -> Any:
        """The training loss per step (and validation loss per epoch).

        With `path`, saved there (PNG) and the path returned; without, shown inline in a notebook, or
        in a script saved as loss.png with its location printed (see `unfreeze.plots`).

        Example:
            >>> learn.recorder.plot_loss("loss.png")  # doctest: +SKIP
        """
        from unfreeze import plots

        return plots.plot_loss(self, path, skip_start=skip_start, with_valid=with_valid)

    def plot_sched(self, path: str | Path | None = None) -> Any:
        """Each group's LR and the momentum per step; `path` as in `plot_loss` (default file sched.png).

        Example:
            >>> learn.recorder.plot_sched("sched.png")  # doctest: +SKIP
        """
        from unfreeze import plots

        return plots.plot_sched(self, path)

    def plot_lr_find(self, path: str | Path | None = None, skip_end: int = 5) -> Any:
        """The curve of the learner's last `lr_find`, suggestions marked; `path` as in `plot_loss`.

        Raises:
            ValueError: No range test has run on this learner yet.

        Example:
            >>> learn.lr_find(); learn.recorder.plot_lr_find()  # doctest: +SKIP
        """
        from unfreeze import plots

        if self.lr_find_result is None:
            raise ValueError("No LR range test to plot: this learner has not run lr_find yet. "
                             "Call learn.lr_find() first.")
        return plots.plot_lr_find(self.lr_find_result, path, skip_end=skip_end)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6f}" if math.isfinite(value) else str(value)
    return str(value)


def _format_time(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


class ProgressCallback(Callback):
    """Prints the results table, one row per epoch; live bars only on a terminal.

    In a pipe or a log file it prints exactly one line per epoch and nothing per batch, so logs stay
    readable (fastai's bars flood them). `quiet=True` prints nothing at all.
    """

    _watches_batches_only = True  # it only records or displays: the loop may read losses a step late

    def __init__(self, quiet: bool = False, stream: Any = None) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stdout
        self._columns: list[str] = []
        self._progress: Any = None
        self._task: Any = None
        self._learner: LearnerView | None = None

    def _is_tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def _print(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line, highlight=False, markup=False)
        else:
            print(line, file=self.stream, flush=True)

    def before_fit(self, learner: LearnerView) -> None:
        self._learner = learner
        if self.quiet:
            return
        self._columns = ["epoch", "train_loss", "valid_loss", *learner.metric_names, "time"]
        if self._is_tty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[loss]}"),
                console=Console(file=self.stream),
                transient=True,
            )
            self._progress.start()
        self._print("  ".join(f"{c:>10}" for c in self._columns))

    def before_epoch(self, epoch: int) -> None:
        if self._progress is not None and self._learner is not None:
            total = len(self._learner.dls.train)
            # Label the bar with the row number the table will print (continuous across fits).
            row = len(self._learner.recorder.history)
            self._task = self._progress.add_task(f"epoch {row}", total=total, loss="")

    def after_batch(self, step: int, logs: dict[str, float]) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, loss=f"loss {logs['smooth_loss']:.4f}")

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        if self.quiet:
            return
        cells = []
        for column in self._columns:
            value = logs.get(column, "")
            cells.append(_format_time(value) if column == "time" else _format_value(value))
        self._print("  ".join(f"{c:>10}" for c in cells))

    def after_fit(self, logs: dict[str, float]) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return math.isfinite(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta


def monitor_mode(monitor: str) -> str:
    """mode="auto" for a logged value: "max" when larger is better (accuracy, F1, scores), else "min" (losses,
    error rates, mae, rmse). The report picks a run's best epoch by the same rule as training kept it.

    Example:
        >>> monitor_mode("accuracy"), monitor_mode("r2_score"), monitor_mode("mae")
        ('max', 'max', 'min')
    """
    return "max" if any(w in monitor for w in ("accuracy", "f1", "score")) else "min"


def _mode_for(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}.")
    return monitor_mode(monitor) if mode == "auto" else mode


class _Monitor(Callback):
    """Shared bookkeeping for callbacks that watch one logged value."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        self.monitor = monitor
        self.mode = _mode_for(monitor, mode)
        self.min_delta = min_delta
        self.best: float | None = None

    def _read(self, logs: dict[str, float]) -> float:
        if self.monitor not in logs:
            raise KeyError(
                f"{type(self).__name__} monitors {self.monitor!r}, but the epoch logs hold "
                f"{sorted(logs)}. Pass monitor= one of those."
            )
        return float(logs[self.monitor])


class EarlyStopping(_Monitor):
    """Stop training when `monitor` has not improved for `patience` epochs.

    Example:
        >>> learn.fit_one_cycle(20, 1e-3, callbacks=[EarlyStopping("valid_loss", patience=3)])  # doctest: +SKIP
    """

    def __init__(self, monitor: str = "valid_loss", patience: int = 1, min_delta: float = 0.0, mode: str = "auto"):
        super().__init__(monitor, mode, min_delta)
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}.")
        self.patience = patience
        self.wait = 0

    def before_fit(self, learner: LearnerView) -> None:
        self.best, self.wait, self.stop_training = None, 0, False

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> bool:
        value = self._read(logs)
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
            return False
        self.wait += 1
        return self.wait > self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], int(state["wait"])


class SaveBestModel(_Monitor):
    """Save the model's weights (safetensors) whenever `monitor` improves; reload the best at the end.

    Example:
        >>> best = SaveBestModel("error_rate", path="best.safetensors")
        >>> learn.fit_one_cycle(5, 1e-3, callbacks=[best])  # doctest: +SKIP
    """

    def __init__(
        self,
        monitor: str = "valid_loss",
        path: str | Path = "best.safetensors",
        mode: str = "auto",
        restore_best: bool = True,
    ) -> None:
        super().__init__(monitor, mode, 0.0)
        self.path = Path(path)
        self.restore_best = restore_best
        self.best_epoch: int | None = None
        self._learner: LearnerView | None = None

    def before_fit(self, learner: LearnerView) -> None:
        self._learner, self.best, self.best_epoch = learner, None, None

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        value = self._read(logs)
        if self._learner is not None and _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch = value, epoch
            self._save(self._learner)

    def _save(self, learner: LearnerView) -> None:
        learner.save_weights(self.path)

    def after_fit(self, logs: dict[str, float]) -> None:
        if self.restore_best and self._learner is not None and self.best_epoch is not None:
            self._learner.load_weights(self.path)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file (header written once).

    A relative path is taken under the learner's `path` (fastai's `learn.path`: the data's folder unless
    set), as fastai's `CSVLogger(fname="history.csv")` writes; an absolute path is used as it is.

    Example:
        >>> learn.fit(3, 1e-3, callbacks=[CSVLogger()])  # learn.path / "history.csv"  # doctest: +SKIP
    """

    def __init__(self, path: str | Path | None = None, append: bool = False, *, fname: str | None = None) -> None:
        if path is not None and fname is not None:
            raise ValueError(f"Pass path= or fname= (fastai's spelling), not both; got {path!r} and {fname!r}.")
        self.fname = Path(path if path is not None else fname if fname is not None else "history.csv")
        self.path = self.fname
        self.append = append
        self._start = 0.0

    def before_fit(self, learner: LearnerView) -> None:
        self.path = self.fname if self.fname.is_absolute() else Path(learner.path) / self.fname
        if not self.append and self.path.exists():
            self.path.unlink()
        self._start = time.time()

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        new_file = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(logs))
            if new_file:
                writer.writeheader()
            writer.writerow(logs)


def callback_list(callbacks: Any, name: str) -> list[Callback]:
    """A callback or a sequence of them (fastai accepts both) as a list, each checked."""
    if callbacks is None:
        return []
    single = isinstance(callbacks, Callback) or not isinstance(callbacks, Iterable)
    items = [callbacks] if single else list(callbacks)
    wrong = [item for item in items if not isinstance(item, Callback)]
    if wrong:
        hint = " (a class: add () to create an instance)" if isinstance(wrong[0], type) else ""
        raise TypeError(f"{name} takes unfreeze Callback instances, got {wrong[0]!r}{hint}. "
                        "Subclass unfreeze.Callback, or use SaveBestModel, EarlyStopping, CSVLogger, ...")
    return items
