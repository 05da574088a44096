"""The training loop: one function, `run_fit`, read top to bottom.

Per epoch: reseed, set the loader's epoch, then per batch set the LR and momentum from the schedule,
take one optimizer step (`Stepper.train_step`), read the loss, record it; then validate, log the
epoch's row, and hand over to the checkpoint writer the recipe passed in. Callbacks receive the events
listed in `unfreeze.train.callbacks` (the list is written there only), always complete and always in
that order, whatever the device. The loop owns the learner's `Position` (epoch, step, interrupted)
while a fit runs; it reads the rest of the learner through the `FitTarget` protocol.

Reading a loss on the host waits for the GPU. On CUDA, when every per-batch callback only watches
(the recorder, the progress bar, the loggers), the loss of step k is read after step k+1 has been
queued, so the GPU never idles between steps; those callbacks then get before_batch(k+1) and
after_batch(k) a step later in wall time but still in order. A callback that may act on a batch (stop,
or read the weights, like EMA) keeps the loop reading each loss at once, so it sees every step as it
happens and a stop takes effect after the very step it names.

A non-finite loss restores the weights from the start of the epoch and raises `NonFiniteLossError`;
Ctrl-C ends the fit cleanly with the weights and history kept.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from unfreeze import distributed
from unfreeze._device import cudnn_autotune
from unfreeze._io import stop_signals_held
from unfreeze.data import DataError, DataWarning
from unfreeze.tasks import Regression
from unfreeze.train.callbacks import Callback, ProgressCallback
from unfreeze.train.checkpoint import callback_key
from unfreeze.train.input_size import check_one_image_batches, check_output_width

if TYPE_CHECKING:
    from unfreeze.train.protocols import FitTarget

__all__ = ["CheckpointWriter", "NonFiniteLossError", "Position", "load_callback_states", "run_fit"]

# Called after every epoch with (epoch, finished, the fit's own callbacks): the recipes write the
# checkpoint file there, with what the fit is and how far it got.
CheckpointWriter = Callable[[int, bool, Sequence[Callback]], None]


@dataclass
class Position:
    """Where a learner's training stands; the loop writes it while a fit runs, the state saves it.

    Attributes:
        epoch: The epoch within the current (or last) fit.
        step: Optimizer steps over the learner's life.
        interrupted: Whether the last fit ended by Ctrl-C.
    """

    epoch: int = 0
    step: int = 0
    interrupted: bool = False


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite; the last good weights are restored."""


def _watches_only(callback: Callback) -> bool:
    """True for a callback that never acts on a batch: it only records or displays (built-ins mark it).

    The mark counts only on the class that defines the per-batch events itself: a subclass of the
    recorder that overrides after_batch (maybe to stop) is not taken for a watcher.
    """
    for klass in type(callback).__mro__:
        if klass is Callback:
            return True
        if "before_batch" in vars(klass) or "after_batch" in vars(klass):
            return bool(vars(klass).get("_watches_batches_only", False))
    return True


@dataclass
class _PendingLoss:
    """A step's loss on its way to the host, with what that step's after_batch reports."""

    value: torch.Tensor
    ready: Any  # a torch.cuda.Event once the copy to pinned host memory is queued; else None
    lrs: list[float]
    mom: float
    step: int

    @classmethod
    def queue(cls, loss: torch.Tensor, lrs: list[float], mom: float, step: int, overlap: bool) -> _PendingLoss:
        if overlap and loss.device.type == "cuda":
            # loss.item() would wait for everything queued on the stream, the next step included; a
            # copy to pinned memory plus an event waits for this step's loss alone.
            host = torch.empty((), dtype=loss.dtype, pin_memory=True)
            host.copy_(loss, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
            return cls(host, ready, lrs, mom, step)
        return cls(loss, None, lrs, mom, step)

    def read(self) -> float:
        if self.ready is not None:
            self.ready.synchronize()
        return float(self.value.item())


def emit(callbacks: Sequence[Callback], event: str, *args: Any) -> bool:
    """Call `event` on every callback in order; True if any returned True or set `stop_training`."""
    stop = False
    for callback in callbacks:
        stop = bool(getattr(callback, event)(*args)) or callback.stop_training or stop
    return stop


def _emit_to_all(callbacks: Sequence[Callback], event: str, *args: Any) -> tuple[bool, BaseException | None]:
    """`event` to every callback, also past one that raises; (whether any asked to stop, the first error)."""
    stop, error = False, None
    for callback in callbacks:
        try:
            stop = bool(getattr(callback, event)(*args)) or callback.stop_training or stop
        except BaseException as raised:  # a Ctrl-C too: the callbacks after it still get the event
            error = error or raised
    return stop, error


def _end_fit(callbacks: Sequence[Callback], logs: dict[str, Any]) -> None:
    """after_fit to every callback, also past one that raises: a later one may restore the best weights
    or stop a live progress bar. The first error is raised once all have run."""
    _, error = _emit_to_all(callbacks, "after_fit", logs)
    if error is not None:
        raise error


def _begin_fit(callbacks: Sequence[Callback], learner: FitTarget) -> None:
    """before_fit to every callback; when one raises, those already started get after_fit (the progress
    display stops and gives the terminal back) and the error goes on."""
    for index, callback in enumerate(callbacks):
        try:
            callback.before_fit(learner)
        except BaseException:
            _end_fit(callbacks[:index], {})
            raise


@contextlib.contextmanager
def _seeded(learner: FitTarget) -> Iterator[None]:
    # With a learner seed, the fit draws from the global torch RNG only inside a fork: the caller's
    # RNG state is the same afterwards.
    if learner.seed is None:
        yield
        return
    devices = [torch.cuda.current_device()] if learner.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def _reseed(learner: FitTarget) -> None:
    if learner.seed is not None:
        # Dropout draws depend only on (seed, epoch of the learner's life): resumable and repeatable.
        # Ranks draw different dropout masks, as they see different images.
        torch.manual_seed(learner.seed * 100_003 + learner.epochs_done * 1_009 + distributed.rank())


def _restore_epoch_start(learner: FitTarget, good_state: dict[str, torch.Tensor], bad_step: int, note: str) -> None:
    """Undo a non-finite step (and, on a GPU, the one queued after it): back to the epoch's start."""
    learner.load_state_dict({"model": good_state})
    learner.stepper.reset_optimizer()
    learner.position.step = bad_step - 1  # the steps taken before the bad one
    learner.recorder.add_note(note)


def _settle(learner: FitTarget, pending: _PendingLoss | None, good_state: dict[str, torch.Tensor] | None) -> None:
    """After an interruption: a step still unread may have been NaN; then restore the epoch start."""
    if pending is not None and good_state is not None:
        loss = pending.read()
        if not math.isfinite(loss):
            _restore_epoch_start(learner, good_state, pending.step, f"the last step's loss was {loss}; the "
                                 f"weights from the start of epoch {learner.position.epoch} were restored")


def _after_step(learner: FitTarget, done: _PendingLoss, good_state: dict[str, torch.Tensor],
                callbacks: Sequence[Callback]) -> bool:
    """Read one step's loss, record it and send after_batch; True if a callback asks to stop."""
    loss = done.read()
    if not math.isfinite(loss):
        epoch = learner.position.epoch
        message = (
            f"The training loss became {loss} at epoch {epoch}, step {done.step - 1}; the weights from the "
            f"start of epoch {epoch} were restored. Lower the LR (try learn.lr_find()) or check the data "
            "for corrupt labels."
        )
        _restore_epoch_start(learner, good_state, done.step, message)
        raise NonFiniteLossError(message)
    smooth = learner.recorder.record_step(loss, done.lrs, done.mom)
    return emit(callbacks, "after_batch", done.step, {"loss": loss, "smooth_loss": smooth, "lr": done.lrs[-1]})


def _train_epoch(learner: FitTarget, schedule: Any, step_in_fit: int, good_state: dict[str, torch.Tensor],
                 callbacks: Sequence[Callback], overlap: bool, skip_single: bool) -> tuple[int, bool]:
    """One pass over the training loader; returns the new step in the fit and whether to stop.

    With `skip_single`, a batch that broken files shrank to one image is left out: the model's batch
    norm cannot train on it (`check_one_image_batches`)."""
    pending: _PendingLoss | None = None  # overlap: the step whose loss (and after_batch) is on the way
    stop = False
    try:
        for images, labels in learner.dls.train:
            if skip_single and len(labels) == 1:
                warnings.warn("A training batch that undecodable files left with one image was left out: the "
                              "model's batch-norm layers cannot train on one image.", DataWarning, stacklevel=2)
                continue
            lrs, mom = schedule.lrs_at(step_in_fit), schedule.mom_at(step_in_fit)
            learner.stepper.set_hyper(lrs, mom)
            position = learner.position
            if not overlap:
                emit(callbacks, "before_batch", position.step)
            step_before = position.step
            loss = learner.stepper.train_step(images, labels, skip_non_finite=not overlap)
            step_in_fit += 1
            position.step += 1
            current = _PendingLoss.queue(loss, lrs, mom, position.step, overlap)
            if overlap:
                # The GPU already runs this step; meanwhile finish the previous one, then announce this one.
                done, pending = pending, current
                stop = done is not None and _after_step(learner, done, good_state, callbacks)
                emit(callbacks, "before_batch", step_before)
            else:
                stop = _after_step(learner, current, good_state, callbacks)
            if stop:
                break
        if pending is not None:
            # Cleared only once read: a Ctrl-C while waiting for it still checks it for NaN (_settle).
            stop = _after_step(learner, pending, good_state, callbacks) or stop
            pending = None
        return step_in_fit, stop
    except NonFiniteLossError:
        raise  # the weights are already restored
    except BaseException:
        _settle(learner, pending, good_state)
        raise


def load_callback_states(callbacks: Sequence[Callback], states: dict[str, Any] | None) -> None:
    """Give each of a fit's own callbacks (those after the recorder and the progress display) its state
    from a checkpoint's `states` (the keys `callback_key` wrote)."""
    for index, callback in enumerate(callbacks):
        saved = (states or {}).get(callback_key(index, callback))
        if saved:
            callback.load_state_dict(saved)


def run_fit(learner: FitTarget, n_epoch: int, schedule: Any, callbacks: Sequence[Callback], *,
            start_epoch: int = 0, overlap: bool = False, checkpoint: CheckpointWriter | None = None,
            callback_states: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train `learner` for epochs `start_epoch..n_epoch-1` along `schedule`; return the new history rows.

    Args:
        learner: The learner to train (its model, stepper, data, recorder and position).
        n_epoch: Epochs in this fit, counting those a resumed fit already did.
        schedule: Gives each group's LR and the momentum at every step of the fit (`lrs_at`, `mom_at`).
        callbacks: Extra callbacks; the learner's recorder and progress display come first.
        start_epoch: The first epoch to run (after a resume, the one after the checkpoint's).
        overlap: Read each loss one step late when every per-batch callback only watches (on CUDA the
            GPU then never idles between steps; `Stepper.overlap_steps` says whether it pays).
        checkpoint: Called on the main process after every epoch with (epoch, False, the fit's own
            callbacks), and once more with True after after_fit unless the fit was interrupted.
        callback_states: The callbacks' states from the checkpoint a resumed fit continues; each
            callback gets its own back right after `before_fit`.

    Example:
        >>> run_fit(learn, 3, ConstantSchedule([1e-3] * learn.n_groups), [])  # doctest: +SKIP
    """
    steps_per_epoch = len(learner.dls.train)
    callbacks = [learner.recorder, ProgressCallback(learner.quiet or not distributed.is_main_process()),
                 *callbacks]
    learner.stepper.ensure_optimizer()
    if start_epoch == 0:
        # fastai restarts the loss EMA at every fit; a resumed fit continues the interrupted one.
        learner.recorder.reset_smoothing()
        learner.recorder.start_phase(learner.frozen_to, learner.n_groups)
    learner.position.interrupted = False
    rows_before = len(learner.recorder.history)
    step_in_fit = start_epoch * steps_per_epoch
    overlap = overlap and all(_watches_only(callback) for callback in callbacks)
    fit_logs: dict[str, Any] = {}
    good_state: dict[str, torch.Tensor] | None = None
    check_output_width(learner.model, learner.dls.train, learner.dls.vocab,
                       isinstance(learner.task, Regression))
    learner.set_train_mode()  # the modes the epochs train in decide which norm layers need two images
    try:
        skip_single = check_one_image_batches(learner.model, learner.dls.train)  # batch size 1: stops here
    finally:
        learner.model.eval()
    for callback in callbacks:
        callback.stop_training = False  # a stop asked for in an earlier fit does not carry over
    _begin_fit(callbacks, learner)
    user_callbacks = callbacks[2:]
    load_callback_states(user_callbacks, callback_states)
    try:
        with _seeded(learner), cudnn_autotune(learner.device):
            for epoch in range(start_epoch, n_epoch):
                learner.position.epoch = epoch
                _reseed(learner)
                learner.dls.train.set_epoch(learner.epochs_done)
                emit(callbacks, "before_epoch", epoch)
                start, good_state = time.time(), learner.state_dict(keys=["model"])["model"]
                learner.set_train_mode()
                steps_before = learner.position.step
                step_in_fit, stop = _train_epoch(learner, schedule, step_in_fit, good_state, callbacks, overlap,
                                                 skip_single)
                if learner.position.step == steps_before and not stop:
                    raise DataError(
                        f"Not one training batch of epoch {epoch} could be decoded ({len(learner.dls.train.dataset)} "
                        "items): the loader left every file out. Check the training images (the warning above "
                        "lists the unreadable ones)."
                    )
                distributed.sync_buffers(learner.model)
                emit(callbacks, "before_validate", epoch)
                valid_logs = learner.validate()
                stop = emit(callbacks, "after_validate", epoch, valid_logs) or stop
                smooth = learner.recorder.smooth_losses
                # Plain floats in the history: checkpoints load with weights_only, which takes no float subclass.
                fit_logs = {"epoch": learner.epochs_done, "train_loss": smooth[-1] if smooth else math.nan,
                            **{name: float(value) for name, value in valid_logs.items()}, "time": time.time() - start}
                with stop_signals_held():  # a finished epoch's row and its checkpoint: both, or a stop before
                    learner.recorder.history.append(fit_logs)
                    # A callback that fails here (a logger's full disk) must cost neither the epoch's checkpoint
                    # nor the later callbacks' view of it (KeepBest after it): all run, then the error goes on.
                    asked, error = _emit_to_all(callbacks, "after_epoch", epoch, fit_logs)
                    stop = asked or stop
                    if checkpoint is not None and distributed.is_main_process():
                        checkpoint(epoch, False, user_callbacks)
                    if error is not None:
                        raise error
                if stop:
                    break
    except KeyboardInterrupt:
        # Ctrl-C ends the fit cleanly: the model keeps its current weights and the history is kept.
        position = learner.position
        position.interrupted = True
        learner.recorder.add_note(f"interrupted by the user at epoch {position.epoch}, step {position.step}")
        if not learner.quiet:
            print(f"Training interrupted at epoch {position.epoch}; the model and history are kept.")
    finally:
        learner.model.eval()
        _end_fit(callbacks, fit_logs)
    if checkpoint is not None and not learner.position.interrupted and distributed.is_main_process():
        # Once more after after_fit (which may restore the best weights) and after an early stop:
        # a resume from here runs no more epochs of this fit.
        checkpoint(learner.position.epoch, True, user_callbacks)
    return learner.recorder.history[rows_before:]
