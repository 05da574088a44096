"""The training recipes: which schedule a fit runs, and how a fit resumes from a checkpoint.

`fit` (constant LRs), `fit_one_cycle` (fastai's one-cycle schedule) and `fine_tune` (fastai's frozen,
then unfrozen phases) each build a schedule and run `loop.run_fit`. What a fit is travels as a typed
`FitPlan` (schedule, recipe and phase, weight decay, data), and how far it got as the learner's
`FitProgress` (the "progress" state section), which this module owns. A resume runs in three steps:
read the checkpoint (`Resume.read`), check that it was written by this same fit
(`FitPlan.check_resumes`), then apply it (`Resume.apply`) and continue after its last epoch.

The `Learner` methods of the same names forward here; their docstrings hold the arguments. The
recipes are typed against the `RecipeTarget` protocol and never import learner.py. `fit_recipe`, the
recommended recipe (recommended.py), runs fine_tune's phases (`fine_tune_phases`, `run_phases`) with
the recipe's loss, augmentation, sizes and callbacks around them.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unfreeze import distributed
from unfreeze.train import loop, trust_fit
from unfreeze.train.callbacks import Callback
from unfreeze.train.checkpoint import CheckpointError, apply_checkpoint, read_checkpoint, save_checkpoint
from unfreeze.train.schedules import ConstantSchedule, LRSpec, OneCycleSchedule, resolve_lrs
from unfreeze.train.time_budget import TimeBudget

if TYPE_CHECKING:
    from unfreeze.train.protocols import RecipeTarget

__all__ = [
    "FitPlan",
    "FitProgress",
    "Phase",
    "Resume",
    "auto_lr",
    "check_epochs",
    "fine_tune",
    "fine_tune_phases",
    "fit",
    "fit_one_cycle",
    "read_resume",
    "run_phases",
    "run_schedule",
]


# ---------------------------------------------------------------------------- what a fit is, and how far it got


@dataclass(frozen=True)
class FitPlan:
    """What makes a fit this fit: a resume must continue the same one.

    Attributes:
        n_epoch: Epochs in the fit.
        schedule: The schedule's `config()` (kind, LRs, steps, ...).
        recipe: The recipe and its arguments (`fine_tune`'s, with its `phase`), or None for a plain fit.
        wd: The fit's own weight decay (fastai's `wd=`), or None for the learner's.
        data: The data's seed and sizes.
    """

    n_epoch: int
    schedule: dict[str, Any]
    recipe: dict[str, Any] | None = None
    wd: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As plain values, the way a checkpoint's progress section holds it."""
        return {"n_epoch": self.n_epoch, "schedule": self.schedule, "recipe": self.recipe, "wd": self.wd,
                "data": self.data}

    def check_resumes(self, saved: dict[str, Any], where: Any) -> None:
        """Refuse a checkpoint written by another fit (`saved` is its progress section), naming what differs.

        Raises:
            CheckpointError: A value of this plan differs from the checkpoint's.
        """
        check_same(saved, self.to_dict(), where)


@dataclass
class FitProgress:
    """The fit in progress (its plan) and its last finished epoch: the learner's "progress" state section.

    Attributes:
        plan: The current (or last) fit; None before the first fit.
        epoch: The last epoch a checkpoint was written after, or None.
        finished: Whether that fit ran to its end (its after_fit ran: best weights restored, early stop).
    """

    plan: FitPlan | None = None
    epoch: int | None = None
    finished: bool = False

    @property
    def recipe(self) -> dict[str, Any]:
        """The recipe of the current fit and its arguments (`{}` for a plain fit or none yet)."""
        return dict(self.plan.recipe or {}) if self.plan is not None else {}

    def start(self, plan: FitPlan) -> None:
        """A new fit begins (or a resumed one continues) along `plan`."""
        self.plan, self.epoch, self.finished = plan, None, False

    def reached(self, epoch: int, finished: bool) -> None:
        """The fit has finished `epoch` (and, with `finished`, its after_fit ran)."""
        self.epoch, self.finished = epoch, finished

    def state_dict(self) -> dict[str, Any]:
        """Plain values: the plan's fields, then `epoch` and `finished` once known."""
        if self.plan is None:
            return {}
        state = self.plan.to_dict()
        if self.epoch is not None:
            state["epoch"] = self.epoch
        if self.finished:
            state["finished"] = True
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (an empty dict: no fit yet)."""
        if "n_epoch" not in state:
            self.plan, self.epoch, self.finished = None, None, False
            return
        self.plan = FitPlan(n_epoch=int(state["n_epoch"]), schedule=state.get("schedule") or {},
                            recipe=state.get("recipe"), wd=state.get("wd"), data=state.get("data") or {})
        self.epoch = None if state.get("epoch") is None else int(state["epoch"])
        self.finished = bool(state.get("finished", False))


# Recipe fields added after checkpoints were first written, with the value that behaved as those fits did:
# a checkpoint without them resumes into a fit that has these values.
_ADDED_FIELDS = {"frozen_groups": 0, "head": "fastai", "upscale": False}


def check_same(saved: dict[str, Any], requested: dict[str, Any], where: Any) -> None:
    """Refuse to resume a checkpoint into a different fit, naming the first value that differs."""
    for key in requested:
        before, now = _plain(saved.get(key)), _plain(requested[key])
        if isinstance(before, dict) and isinstance(now, dict):
            before = {**{name: value for name, value in _ADDED_FIELDS.items() if name in now}, **before}
        if before == now:
            continue
        if isinstance(before, dict) and isinstance(now, dict):
            differing = [name for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]
            detail = "; ".join(f"{name}={before.get(name)!r} there, {now.get(name)!r} now" for name in differing)
        else:
            detail = f"{key}={before!r} there, {now!r} now"
        raise CheckpointError(
            f"Cannot resume from {where}: it was written by a different fit ({detail}). Resume with the "
            "arguments of the interrupted run, or start a new run without resume."
        )


def _plain(value: Any) -> Any:
    """Tuples as lists, so that values compare equal after a round trip through a checkpoint."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


@dataclass
class Resume:
    """A checkpoint read for a resume: its state, where it came from, and whether it is applied yet.

    Example:
        >>> resume = Resume.read("run/checkpoint.pt")  # doctest: +SKIP
        >>> resume.progress["epoch"]  # doctest: +SKIP
        2
    """

    state: dict[str, Any]
    where: Any
    applied: bool = False

    @classmethod
    def read(cls, path: str | Path) -> Resume:
        """Read and check a checkpoint file (`read_checkpoint`); nothing is loaded yet."""
        return cls(read_checkpoint(path), path)

    @property
    def progress(self) -> dict[str, Any]:
        """The checkpoint's progress section (what fit wrote it, and how far it got)."""
        return self.state.get("progress") or {}

    def apply(self, learner: RecipeTarget) -> None:
        """Load the checkpoint into `learner` (once). With a learner seed the fit's RNG draws follow from
        (seed, epoch), so the saved RNG state (taken inside the fit's private RNG fork) is left out: it
        would only change the caller's global RNG."""
        if not self.applied:
            state = self.state if learner.seed is None else {k: v for k, v in self.state.items() if k != "rng"}
            apply_checkpoint(learner, state, self.where)
            self.applied = True


# ---------------------------------------------------------------------------- running one fit


def check_epochs(n_epoch: Any) -> int:
    """`n_epoch` if it is a whole number >= 1; else a ValueError saying so."""
    if isinstance(n_epoch, bool) or not isinstance(n_epoch, int) or n_epoch < 1:
        raise ValueError(f"The number of epochs must be a whole number >= 1, got {n_epoch!r}.")
    return n_epoch


def _check_wd(wd: Any) -> float | None:
    if wd is not None and (isinstance(wd, bool) or not isinstance(wd, (int, float)) or not math.isfinite(wd)
                           or wd < 0):
        raise ValueError(f"wd must be a number >= 0 (the weight decay for this fit), got {wd!r}.")
    return None if wd is None else float(wd)


def _checkpoint_writer(learner: RecipeTarget, path: str | Path) -> loop.CheckpointWriter:
    """What the loop calls after each epoch: note how far the fit got, then write the checkpoint."""

    def write(epoch: int, finished: bool, callbacks: Sequence[Callback]) -> None:
        learner.progress.reached(epoch, finished)
        save_checkpoint(learner, path, callbacks=callbacks)

    return write


def run_schedule(learner: RecipeTarget, n_epoch: int, schedule: Any, callbacks: Sequence[Callback],
                 checkpoint: str | Path | None, resume: Resume | None, recipe: dict[str, Any] | None,
                 wd: float | None, first_epoch: int = 0) -> list[dict[str, Any]]:
    """Run the loop along `schedule`, from the start or from where a checkpoint left this same fit.

    `first_epoch` skips the epochs before it, the schedule starting where that epoch sits (fastai's
    `start_epoch`); a resume finds its epoch in the checkpoint instead.
    """
    if len(learner.dls.train) == 0:
        raise ValueError(
            f"The training set has {len(learner.dls.train.dataset)} items, fewer than one batch of "
            f"{learner.dls.train.batch_size}. Use a smaller bs or add images."
        )
    data = {"seed": getattr(learner.dls, "seed", None), "n_train": len(learner.dls.train.dataset),
            "n_valid": len(learner.dls.valid.dataset)}
    plan = FitPlan(n_epoch, schedule.config(), recipe, _check_wd(wd), data)
    start_epoch, callback_states = _check_first_epoch(first_epoch, n_epoch, resume), None
    if start_epoch:
        # A fit that skips its first epochs is still a new fit: run_fit restarts these only at epoch 0.
        learner.recorder.reset_smoothing()
        learner.recorder.start_phase(learner.frozen_to, learner.n_groups)
    if resume is not None:
        plan.check_resumes(resume.progress, resume.where)
        resume.apply(learner)
        # A finished fit (its after_fit ran: best weights restored, or an early stop) runs no more epochs.
        start_epoch = n_epoch if resume.progress.get("finished") else int(resume.progress["epoch"]) + 1
        callback_states = resume.state.get("callbacks")
    trust_fit.drop_before_training(learner)
    learner.progress.start(plan)
    writer = None if checkpoint is None else _checkpoint_writer(learner, checkpoint)
    with learner.stepper.weight_decay_for_fit(plan.wd):
        return loop.run_fit(learner, n_epoch, schedule, [*learner.callbacks, *callbacks], start_epoch=start_epoch,
                            overlap=learner.stepper.overlap_steps, checkpoint=writer, callback_states=callback_states)


def _check_first_epoch(first_epoch: Any, n_epoch: int, resume: Resume | None) -> int:
    if isinstance(first_epoch, bool) or not isinstance(first_epoch, int) or not 0 <= first_epoch <= n_epoch:
        raise ValueError(f"start_epoch must be a whole number from 0 to n_epoch ({n_epoch}), got {first_epoch!r}.")
    if first_epoch and resume is not None:
        raise ValueError(f"start_epoch={first_epoch} and resume= both say where the fit starts; pass only resume=, "
                         "which reads the epoch from the checkpoint.")
    return first_epoch


def read_resume(resume: str | Path | Resume | None) -> Resume | None:
    """A resume read from a path, or the `Resume` a caller read already (the command line does)."""
    return resume if resume is None or isinstance(resume, Resume) else Resume.read(resume)


# ---------------------------------------------------------------------------- the recipes


def fit(learner: RecipeTarget, n_epoch: int, lr: LRSpec, callbacks: Sequence[Callback],
        checkpoint: str | Path | None, resume: str | Path | Resume | None, wd: float | None,
        start_epoch: int = 0) -> list[dict[str, Any]]:
    """Constant LRs per group; the arguments are `Learner.fit`'s."""
    n_epoch = check_epochs(n_epoch)
    schedule = ConstantSchedule(resolve_lrs(lr, learner.n_groups))
    return run_schedule(learner, n_epoch, schedule, callbacks, checkpoint, read_resume(resume), None, wd,
                        start_epoch)


def fit_one_cycle(learner: RecipeTarget, n_epoch: int, lr_max: LRSpec | str | None = None, div: float = 25.0,
                  div_final: float = 1e5, pct_start: float = 0.25,
                  moms: tuple[float, float, float] = (0.95, 0.85, 0.95), callbacks: Sequence[Callback] = (),
                  checkpoint: str | Path | None = None, resume: str | Path | Resume | None = None,
                  wd: float | None = None, recipe: dict[str, Any] | None = None,
                  start_epoch: int = 0) -> list[dict[str, Any]]:
    """fastai's one-cycle schedule; the arguments are `Learner.fit_one_cycle`'s (`recipe`: fine_tune's phase)."""
    n_epoch = check_epochs(n_epoch)
    if lr_max is None:
        lr_max = 1e-3
    if isinstance(lr_max, str):
        lr_max = auto_lr(learner, lr_max, "lr_max")
    lrs = resolve_lrs(lr_max, learner.n_groups)
    total = n_epoch * len(learner.dls.train)
    schedule = OneCycleSchedule(lrs, total, div=div, div_final=div_final, pct_start=pct_start, moms=moms)
    return run_schedule(learner, n_epoch, schedule, callbacks, checkpoint, read_resume(resume), recipe, wd,
                        start_epoch)


@dataclass(frozen=True)
class Phase:
    """One phase of fine_tune or fit_recipe: its epochs, what trains, its one-cycle settings and size.

    `n_epoch` may be a function, called when the phase starts (a time budget plans it from the time left).
    """

    n_epoch: int | Callable[[], int]
    set_trainable: Callable[[], None]
    lr_max: Callable[[float], slice]
    div: float
    pct_start: float
    size: int | None = None
    div_final: float = 1e5
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)


def _check_fine_tune(epochs: Any, base_lr: Any, freeze_epochs: Any) -> int:
    epochs = check_epochs(epochs)
    if isinstance(freeze_epochs, bool) or not isinstance(freeze_epochs, int) or freeze_epochs < 0:
        raise ValueError(f"freeze_epochs must be a whole number >= 0, got {freeze_epochs!r}.")
    if base_lr != "auto" and (isinstance(base_lr, bool) or not isinstance(base_lr, (int, float))
                              or not math.isfinite(base_lr) or base_lr <= 0):
        raise ValueError(f"base_lr must be a positive number (the head's LR, e.g. 2e-3) or 'auto', got "
                         f"{base_lr!r}. fine_tune spreads the LRs itself (lr_mult): pass one number.")
    return epochs


def fine_tune_phases(learner: RecipeTarget, freeze_epochs: int, epochs: int | Callable[[], int], lr_mult: float,
                      pct_start: float, div: float, sizes: tuple[int | None, int | None] = (None, None),
                      frozen_groups: int = 0, div_final: float = 1e5,
                      moms: tuple[float, float, float] = (0.95, 0.85, 0.95)) -> list[Phase]:
    """fastai's two phases: the head alone with a late peak, then every group at half the LR, spread
    over lr_mult from input to head (the first `frozen_groups` body groups stay frozen, but at least
    one body group trains). `div_final` and `moms` apply to both phases, as fastai passes them to both."""
    keep_frozen = min(frozen_groups, learner.n_groups - 2)
    if frozen_groups > max(1, keep_frozen):  # the default 1 on a one-body-group model is no request to correct
        warnings.warn(f"frozen_groups={frozen_groups}: this model has {learner.n_groups} parameter groups (the head "
                      f"and {learner.n_groups - 1} body groups) and at least one body group must train, so "
                      f"{max(keep_frozen, 0)} stay frozen. Pass frozen_groups (--frozen-groups) of at most "
                      f"{max(keep_frozen, 0)}, or fit the head alone with freeze() and fit_one_cycle.",
                      UserWarning, stacklevel=3)
    train_body = learner.unfreeze if keep_frozen <= 0 else lambda: learner.freeze_to(keep_frozen)
    return [Phase(freeze_epochs, learner.freeze, lambda lr: slice(lr), 25.0, 0.99, sizes[0], div_final, moms),
            Phase(epochs, train_body, lambda lr: slice(lr / 2 / lr_mult, lr / 2), div, pct_start, sizes[1],
                  div_final, moms)]


def fine_tune(learner: RecipeTarget, epochs: int, base_lr: float | str = 2e-3, freeze_epochs: int = 1,
              lr_mult: float = 100, pct_start: float = 0.3, div: float = 5.0, callbacks: Sequence[Callback] = (),
              checkpoint: str | Path | None = None, resume: str | Path | Resume | None = None,
              wd: float | None = None, div_final: float = 1e5,
              moms: tuple[float, float, float] = (0.95, 0.85, 0.95)) -> list[dict[str, Any]]:
    """fastai's frozen-then-unfrozen recipe; the arguments are `Learner.fine_tune`'s.

    A resume reads the checkpoint once: an unfinished phase continues from it, a finished one hands
    over to the next phase, which starts from the weights the checkpoint holds.
    """
    epochs = _check_fine_tune(epochs, base_lr, freeze_epochs)
    recipe: dict[str, Any] = {"name": "fine_tune", "epochs": epochs, "base_lr": base_lr,
                              "freeze_epochs": freeze_epochs, "lr_mult": lr_mult, "pct_start": pct_start, "div": div}
    phases = fine_tune_phases(learner, freeze_epochs, epochs, lr_mult, pct_start, div, div_final=div_final,
                              moms=moms)
    return run_phases(learner, recipe, phases, callbacks, checkpoint, resume, wd)


def run_phases(learner: RecipeTarget, recipe: dict[str, Any], phases: list[Phase], callbacks: Sequence[Callback],
                checkpoint: str | Path | None, resume: str | Path | Resume | None,
                wd: float | None) -> list[dict[str, Any]]:
    """Run `phases` one-cycle fit after one-cycle fit, each checkpointed with `recipe` and its phase.

    A resume reads the checkpoint once: an unfinished phase continues from it, a finished one hands
    over to the next phase, which starts from the weights the checkpoint holds. Values the recipe
    chose while running (an 'auto' base_lr, a time budget's planned epochs) come from the checkpoint.
    """
    learner.position.interrupted = False  # a resume with nothing left to run was not interrupted
    saved = read_resume(resume)
    first_phase, resumed_phase = 0, None
    if saved is not None:
        previous = dict(saved.progress.get("recipe") or {})
        phase = int(previous.pop("phase", 0))
        if recipe["base_lr"] == "auto":
            recipe["base_lr"] = previous.get("base_lr")  # the LR lr_find chose before the interruption
        if "planned_epochs" in previous:  # chosen while running, recorded in the checkpoint
            recipe["planned_epochs"] = previous["planned_epochs"]
        check_same({"recipe": previous}, {"recipe": recipe}, saved.where)
        saved.apply(learner)
        # A finished phase (its after_fit ran) hands over to the next; an unfinished one continues.
        first_phase, resumed_phase = (phase + 1, None) if saved.progress.get("finished") else (phase, phase)
        if resumed_phase is None:  # the callbacks carry what they held between the phases (KeepBest's best)
            loop.load_callback_states([*learner.callbacks, *callbacks], saved.state.get("callbacks"))
    elif recipe["base_lr"] == "auto":
        learner.freeze()  # lr_find tests the LRs of the first phase, on the frozen model
        recipe["base_lr"] = auto_lr(learner, "auto", "base_lr")
    lr = float(recipe["base_lr"])
    rows: list[dict[str, Any]] = []
    for index, phase_spec in enumerate(phases):
        if index < first_phase:
            continue
        n_epoch = phase_spec.n_epoch
        if callable(n_epoch):
            n_epoch = recipe.setdefault("planned_epochs", n_epoch())
        if n_epoch == 0:
            continue
        continuing = index == resumed_phase  # the checkpoint holds this phase's freeze state and optimizer
        if not continuing:
            phase_spec.set_trainable()
        with _loader_size(learner.dls, phase_spec.size):
            rows += fit_one_cycle(learner, n_epoch, phase_spec.lr_max(lr), phase_spec.div, phase_spec.div_final,
                                  phase_spec.pct_start, phase_spec.moms, callbacks, checkpoint,
                                  saved if continuing else None, wd, recipe={**recipe, "phase": index})
        out_of_time = any(isinstance(callback, TimeBudget) and callback.stopped_early for callback in callbacks)
        if learner.position.interrupted or out_of_time:
            break
    return rows


@contextlib.contextmanager
def _loader_size(dls: Any, size: int | None) -> Iterator[None]:
    """Both loaders yield `size` × `size` batches for the block (progressive resizing); None: unchanged."""
    if size is None:
        yield
        return
    before = dls.train.size, dls.valid.size
    dls.train.size = dls.valid.size = size
    try:
        yield
    finally:
        dls.train.size, dls.valid.size = before


def auto_lr(learner: RecipeTarget, value: str, name: str) -> float:
    """`value="auto"`: run `lr_find` and take its valley (noted in the recorder and printed)."""
    if value != "auto":
        raise ValueError(f"{name} must be a number, a slice, a list or 'auto', got {value!r}.")
    chosen = float(learner.lr_find(plot=None).valley)
    note = f"{name}='auto': lr_find chose {chosen:.2e} (valley)"
    learner.recorder.add_note(note)
    if not learner.quiet and distributed.is_main_process():
        print(note)
    return chosen
