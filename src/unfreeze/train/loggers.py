"""Experiment trackers as callbacks: TensorBoard and MLflow (optional extras).

Both log the same names: per step `step/loss`, `step/smooth_loss`, `step/lr` (the head group's LR) at
the learner's step count, and per epoch `epoch/train_loss`, `epoch/valid_loss`, `epoch/<metric>` and
`epoch/time` at the epoch's row number in the history. Both numbers run on across fits, so
`fine_tune`'s two phases make one continuous curve.

The packages are imported when a logger is constructed, never by `import unfreeze`.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unfreeze.train.callbacks import Callback

if TYPE_CHECKING:
    from unfreeze.train.protocols import LearnerView

__all__ = ["MLflowLogger", "TensorBoardLogger"]


def _require(module: str, extra: str, user: str) -> Any:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{user} needs the {extra} package, which is not installed here ({error}). "
            f"Install it with: pip install 'unfreeze[{extra}]'"
        ) from error


def _check_log_every(log_every: int | None) -> int | None:
    if log_every is not None and (isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1):
        raise ValueError(f"log_every must be a whole number of steps >= 1, or None for none; got {log_every!r}.")
    return log_every


def _learner_params(learner: LearnerView) -> dict[str, str | int | float | bool]:
    """The learner's settings as flat scalars, read from its public attributes."""
    model = learner.model
    return {
        "arch": str(getattr(model, "arch", type(model).__name__)),
        "n_classes": int(learner.dls.n_classes),
        "n_groups": learner.n_groups,
        "frozen_to": learner.frozen_to,
        "batch_size": int(learner.dls.train.batch_size),
        "n_train": len(learner.dls.train.dataset),
        "n_valid": len(learner.dls.valid.dataset),
        "optimizer": learner.stepper.optimizer_name,
        "weight_decay": float(learner.weight_decay),
        "train_bn": bool(learner.train_bn),
        "grad_accum": int(learner.stepper.grad_accum),
        "seed": str(learner.seed),  # "None" when unseeded
        "metrics": ",".join(learner.metric_names),
        "device": str(learner.device),
    }


def _step_scalars(logs: dict[str, float]) -> dict[str, float]:
    return {f"step/{key}": float(logs[key]) for key in ("loss", "smooth_loss", "lr") if key in logs}


def _epoch_scalars(logs: dict[str, float]) -> dict[str, float]:
    # "epoch" is the x-axis, not a value.
    return {f"epoch/{key}": float(value) for key, value in logs.items() if key != "epoch"}


class TensorBoardLogger(Callback):
    """Write the training curves to TensorBoard event files (needs `unfreeze[tensorboard]`).

    Args:
        log_dir: The run's folder; several fits with one logger add to the same run.
        log_every: Write the per-step scalars every this many steps; None writes only epochs.
        log_hparams: At the end of each fit, also write the learner's settings (arch, groups, batch
            size, ...) with the last epoch's scores to TensorBoard's HParams tab (in the `hparams`
            subfolder of `log_dir`).

    Example:
        >>> learn.fine_tune(3, callbacks=[TensorBoardLogger("runs/pets")])  # doctest: +SKIP
        >>> # then: tensorboard --logdir runs
    """

    _watches_batches_only = True  # it only records: the loop may read losses a step late

    def __init__(self, log_dir: str | Path = "runs/tb", log_every: int | None = 1, log_hparams: bool = False) -> None:
        _require("tensorboard", "tensorboard", "TensorBoardLogger")
        self._summary = _require("torch.utils.tensorboard", "tensorboard", "TensorBoardLogger")
        self.log_dir = Path(log_dir)
        self.log_every = _check_log_every(log_every)
        self.log_hparams = log_hparams
        self._writer: Any = None
        self._params: dict[str, str | int | float | bool] = {}
        self._last_epoch: dict[str, float] = {}

    def before_fit(self, learner: LearnerView) -> None:
        self._params = _learner_params(learner)
        self._writer = self._summary.SummaryWriter(log_dir=str(self.log_dir))

    def after_batch(self, step: int, logs: dict[str, float]) -> None:
        if self._writer is not None and self.log_every is not None and step % self.log_every == 0:
            for tag, value in _step_scalars(logs).items():
                self._writer.add_scalar(tag, value, global_step=step)

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        if self._writer is None:
            return
        self._last_epoch = _epoch_scalars(logs)
        for tag, value in self._last_epoch.items():
            self._writer.add_scalar(tag, value, global_step=int(logs["epoch"]))
        self._writer.flush()  # a crash later in the run keeps the epochs done so far

    def after_fit(self, logs: dict[str, float]) -> None:
        if self._writer is None:
            return
        if self.log_hparams and self._last_epoch:
            scores = {f"hparam/{tag.removeprefix('epoch/')}": value for tag, value in self._last_epoch.items()}
            self._writer.add_hparams(self._params, scores, run_name="hparams")
        self._writer.close()
        self._writer = None


class MLflowLogger(Callback):
    """Log the learner's settings and the training curves to MLflow (needs `unfreeze[mlflow]`).

    The first fit creates a run in `experiment` and logs the learner's settings (arch, groups, batch
    size, ...) as its parameters, as they were at the start of the run; later fits with the same logger, such as
    `fine_tune`'s second phase, log to the same run. Each fit ends by marking the run FINISHED
    (KILLED after Ctrl-C). If an MLflow run is active (`with mlflow.start_run():`), the logger logs
    into that one and leaves it open.

    Args:
        experiment: The experiment's name; created if it does not exist.
        run_name: The run's name; None lets MLflow choose one.
        tracking_uri: Where to log; None uses MLflow's default (the `MLFLOW_TRACKING_URI`
            variable, else `sqlite:///mlflow.db` in the working directory on MLflow 3, which needs
            nothing but this machine). `pip install mlflow` adds the `mlflow ui` browser.
        log_every: Also log the per-step scalars every this many steps, sent once per epoch in one
            batch. Off by default: a tracking server stores every point, and per-epoch curves
            are what runs are compared by.

    Example:
        >>> learn.fine_tune(3, callbacks=[MLflowLogger("pets", run_name="lite0")])  # doctest: +SKIP
    """

    _watches_batches_only = True  # it only records: the loop may read losses a step late

    def __init__(
        self,
        experiment: str = "unfreeze",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        log_every: int | None = None,
    ) -> None:
        self._mlflow = _require("mlflow", "mlflow", "MLflowLogger")
        self.experiment = experiment
        self.run_name = run_name
        self.tracking_uri = tracking_uri
        self.log_every = _check_log_every(log_every)
        self.run_id: str | None = None
        self._client: Any = None
        self._owns_run = True
        self._learner: LearnerView | None = None
        self._buffer: list[Any] = []  # per-step metrics waiting for the end of the epoch

    def before_fit(self, learner: LearnerView) -> None:
        self._learner = learner
        if self.run_id is not None:  # a later fit of the same run
            if self._owns_run:
                self._client.update_run(self.run_id, status="RUNNING")
            return
        active = self._mlflow.active_run()
        if active is not None:
            self._client = self._mlflow.MlflowClient()
            self.run_id, self._owns_run = active.info.run_id, False
        else:
            self._client = self._mlflow.MlflowClient(tracking_uri=self.tracking_uri)
            found = self._client.get_experiment_by_name(self.experiment)
            experiment_id = found.experiment_id if found else self._client.create_experiment(self.experiment)
            self.run_id = self._client.create_run(experiment_id, run_name=self.run_name).info.run_id
        params = [self._mlflow.entities.Param(key, str(value)) for key, value in _learner_params(learner).items()]
        self._client.log_batch(self.run_id, params=params)

    def _metrics(self, values: dict[str, float], step: int) -> list[Any]:
        timestamp = int(time.time() * 1000)
        return [self._mlflow.entities.Metric(key, value, timestamp, step) for key, value in values.items()]

    def after_batch(self, step: int, logs: dict[str, float]) -> None:
        if self.run_id is not None and self.log_every is not None and step % self.log_every == 0:
            self._buffer += self._metrics(_step_scalars(logs), step)

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        self._flush(self._metrics(_epoch_scalars(logs), int(logs["epoch"])))

    def after_fit(self, logs: dict[str, float]) -> None:
        if self.run_id is None:
            return
        self._flush([])
        if self._owns_run:
            interrupted = self._learner is not None and self._learner.interrupted
            self._client.set_terminated(self.run_id, status="KILLED" if interrupted else "FINISHED")

    def _flush(self, metrics: list[Any]) -> None:
        metrics, self._buffer = self._buffer + metrics, []
        # MLflow takes at most 1,000 metrics per batch call.
        for start in range(0, len(metrics), 1000):
            self._client.log_batch(self.run_id, metrics=metrics[start : start + 1000])
