"""The Learner: a model, its data and task, composed from parts that each own their state.

    ParamGroups (train.groups)   parameter groups, freezing, train modes: the "freeze" section
    Stepper (train.stepper)      optimizer, AMP and scaler, accumulation, DDP/compile, train_step:
                                 the "optimizer" and "scaler" sections
    Position (train.loop)        epoch, step, interrupted: the "position" section, written by the loop
    FitProgress (train.recipes)  the fit in progress and its last epoch: the "progress" section
    Recorder (train.callbacks)   the history: the "recorder" section

The methods here check the constructor's arguments, compose the parts and forward: the loop lives in
`train.loop`, the recipes (`fit`, `fit_one_cycle`, `fine_tune`, resume) in `train.recipes`, the LR
finder in `train.lr_find`, prediction and export in `unfreeze.inference` (forwarders mixed in from
`train.inference_methods`), fastai's method names in
`train.fastai_idioms.FastaiMethods`. `state_dict` is the one serialiser of the learner (`train.state`
composes the parts' sections): checkpoints, the LR finder's restore and SaveBestModel all use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unfreeze import distributed, inference
from unfreeze._device import cudnn_autotune, default_device
from unfreeze.inference.predict import loader_of
from unfreeze.tasks import SingleLabel, Task, class_weights_tensor
from unfreeze.train import checkpoint as saved_files
from unfreeze.train import fastai_idioms as fastai
from unfreeze.train import recipes, recommended, trust_fit
from unfreeze.train import state as state_module
from unfreeze.train.callbacks import Callback, Recorder, callback_list
from unfreeze.train.data_binding import bind_data
from unfreeze.train.fastai_training import FastaiTrainingMethods, optimizer_or_opt_func
from unfreeze.train.groups import ParamGroups
from unfreeze.train.inference_methods import InferenceMethods
from unfreeze.train.loop import NonFiniteLossError, Position
from unfreeze.train.metrics import (
    Metric,
    MetricValue,
    ValidationResults,
    column_names,
    follow_task,
    metric_value,
    resolve_metrics,
)
from unfreeze.train.recipe_settings import Recipe
from unfreeze.train.recipes import FitProgress, Resume
from unfreeze.train.schedules import LRSpec
from unfreeze.train.state import STATE_KEYS
from unfreeze.train.stepper import Stepper
from unfreeze.trust import Trust

__all__ = ["STATE_KEYS", "Learner", "NonFiniteLossError", "ValidationResults", "default_device"]


class _OnPart:
    """A learner attribute kept by one of its parts: read there and, unless read-only, set there."""

    def __init__(self, part: str, doc: str, *, read_only: bool = False) -> None:
        self.part, self.__doc__, self.read_only, self.name = part, doc, read_only, ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, learner: Any, owner: type | None = None) -> Any:
        return self if learner is None else getattr(getattr(learner, self.part), self.name)

    def __set__(self, learner: Any, value: Any) -> None:
        if self.read_only:
            raise AttributeError(f"Learner.{self.name} is read-only: it is kept by learn.{self.part}.")
        setattr(getattr(learner, self.part), self.name, value)


class Learner(InferenceMethods, fastai.FastaiMethods, FastaiTrainingMethods):
    """Trains a `TransferModel` (or any `nn.Module`) on `ImageDataLoaders`.

    Args:
        dls: The data (`ImageDataLoaders`).
        model: A model honouring the backbone contract (`body`, `head`, `param_groups`, `mean`, `std`), or
            any `nn.Module` (fastai's plain Learner: one group, every layer trains, nothing to freeze).
        metrics: Metric callables or built-in names ("error_rate", "accuracy", "top_k_accuracy",
            "f1_score", "accuracy_multi", "f1_multi"), computed over the whole validation set.
        loss_func: Defaults to the task's loss (cross-entropy, or binary cross-entropy for multi-label
            data), weighted by `class_weights`.
        class_weights: Per-class loss weights against class imbalance: "auto" (inverse class
            frequency in the training set; positive weights for multi-label data), a sequence with
            one weight per class, or None.
        optimizer: "adamw" (fastai's Adam: beta2 0.99, eps 1e-5, decoupled weight decay), "sgd" or "ranger";
            fastai's `opt_func=Adam | SGD | ranger` works too.
        weight_decay: Decoupled weight decay (default 0.01); never applied to biases and norm parameters.
            fastai's spelling `wd=` works too.
        train_bn: True is fastai's behaviour: norm layers in frozen groups keep training (weights and
            running statistics). False is Keras's: the body's norm layers always run in inference mode
            with their pretrained statistics; their weights train only when their group is unfrozen.
            A frozen body then gets no gradient at all, and unfreezing does not swap the statistics
            the head was trained on for batch statistics.
        device: Defaults to CUDA, then MPS, then CPU.
        seed: Makes runs on the CPU repeat exactly, without touching the global RNG. On a GPU, cuDNN's
            autotuning may pick different algorithms from run to run; for repeatable GPU runs also call
            `torch.use_deterministic_algorithms(True)`, which turns the autotuning off.
        quiet: Print nothing while training.
        grad_accum: Split each batch into this many micro-batches whose gradients add up before
            one optimizer step: the same training at a fraction of the activation memory.
        sync_bn: Under torchrun on GPUs, synchronise BatchNorm statistics across processes.
        compile_model: Train through `torch.compile` (True: the inductor backend; a string names
            another backend). Off by default: compiling takes long and gave efficientnet_lite0 no
            gain on a GPU (benchmarks/results/gpu.md).
        cbs: Callbacks that take part in every fit of this learner (fastai's `Learner(cbs=...)`); a
            fit's own `callbacks=` run after them.
        path: The folder `save`, `load` and `export(fname=...)` work in (fastai's `learn.path`);
            default the data's folder when the loaders know it, else the current directory.
        model_dir: The subfolder of `path` that `save` and `load` use, "models" as in fastai.

    Example:
        >>> learn = Learner(dls, create_model("resnet34", dls.n_classes), metrics=["error_rate"])  # doctest: +SKIP
        >>> learn.fit_one_cycle(3, 1e-3)  # doctest: +SKIP
    """

    def __init__(
        self,
        dls: Any,
        model: nn.Module,
        *,
        metrics: Metric | str | Sequence[Metric | str] | None = None,
        loss_func: nn.Module | None = None,
        class_weights: str | Sequence[float] | None = None,
        optimizer: str | None = None,
        weight_decay: float | None = None,
        train_bn: bool = True,
        device: str | torch.device | None = None,
        seed: int | None = None,
        quiet: bool = False,
        grad_accum: int = 1,
        sync_bn: bool = False,
        compile_model: bool | str = False,
        cbs: Callback | Sequence[Callback] | None = None,
        wd: float | None = None,
        path: str | Path | None = None,
        model_dir: str | Path = "models",
        opt_func: Any = None,
    ) -> None:
        weight_decay = fastai.weight_decay_or_wd(weight_decay, wd)
        optimizer = optimizer_or_opt_func(optimizer, opt_func)
        self._task: Task = getattr(dls, "task", None) or SingleLabel()  # loaders without a task: single-label
        if getattr(dls, "n_classes", 2) < (2 if isinstance(self.task, SingleLabel) else 1):
            raise ValueError(
                f"A classifier needs at least 2 classes; the data has {dls.n_classes} ({dls.vocab}). "
                "Add a folder per class."
            )
        self.metrics = metrics
        distributed.init_from_env()
        self.device = torch.device(device) if device is not None else default_device()
        if sync_bn:
            if not (distributed.is_distributed() and self.device.type == "cuda"):
                raise ValueError("sync_bn=True needs several GPU processes under torchrun; leave it off here.")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # channels_last (NHWC) is the fast layout for convolutions on GPUs under bf16 and on CPUs
        # (oneDNN); benchmarks/results/compare.md has the CPU figures.
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self.dls = dls  # the setter moves them to the device, shards them and applies the model's statistics
        self.class_weights = None if class_weights is None else class_weights_tensor(
            self.task, class_weights, self.dls.train.dataset.targets, self.dls.vocab).to(self.device)
        # A plain nn.Module (fastai's `Learner(dls, module)`) has no groups of its own: it is one group.
        self._groups = ParamGroups(self.model, train_bn, groups=fastai.plain_module_groups(self.model))
        self._stepper = Stepper(self.model, self._groups, loss_func if loss_func is not None else
                                self.task.loss(self.class_weights), self.device, optimizer=optimizer,
                                weight_decay=weight_decay, grad_accum=grad_accum, compile_model=compile_model)
        self.callbacks: list[Callback] = callback_list(cbs, "cbs")
        data_path = getattr(self.dls, "path", None)
        self.path = Path(path) if path is not None else Path(data_path) if data_path is not None else Path(".")
        self.model_dir = Path(model_dir)
        self.lr_find_result: Any = None  # the last LRFindResult of lr_find, for plots and inspection
        self.seed = seed
        self.quiet = quiet
        self.recorder = Recorder()
        self.position = Position()
        self.progress = FitProgress()
        self.recipe = Recipe()  # what fit_recipe runs by default; vision_learner(recipe=...) sets it
        # Temperature and unknown score of the predictions: set by calibrate() (the end of fit_recipe) and
        # load_learner; a plain Trust (T = 1, no unknown flag) until then.
        self.trust = Trust()

    # ------------------------------------------------------------------ the parts and what they hold

    @property
    def groups(self) -> ParamGroups:
        """The parameter groups and their freezing (`train.groups.ParamGroups`)."""
        return self._groups

    @property
    def stepper(self) -> Stepper:
        """The optimizer, mixed precision and training step (`train.stepper.Stepper`)."""
        return self._stepper

    @property
    def param_groups(self) -> list[list[str]]:
        """Parameter names per group, input to head (from the backbone contract)."""
        return self._groups.groups

    @property
    def n_groups(self) -> int:
        """The number of parameter groups; the last one is the head."""
        return self._groups.n_groups

    # Attributes that live on a part: read there and, unless read-only, set there (as plain attributes were).
    frozen_to = _OnPart("groups", "Groups `[:frozen_to]` are frozen (`freeze_to` sets it).")
    train_bn = _OnPart("groups", "Whether norm layers of frozen groups train (see the constructor).")
    optimizer = _OnPart("stepper", "The optimizer, or None until the next step builds it.", read_only=True)
    optimizer_name = _OnPart("stepper", '"adamw" or "sgd".')
    weight_decay = _OnPart("stepper", "Decoupled weight decay of the weight matrices (a fit's `wd=` while it runs).")
    grad_accum = _OnPart("stepper", "Micro-batches per batch whose gradients add up before one step.")
    compile_model = _OnPart("stepper", "Train through `torch.compile` (True: inductor; a string names a backend).")
    loss_func = _OnPart("stepper", "The loss that training and `validate` use.")
    amp_dtype = _OnPart("stepper", "The autocast dtype on CUDA (bf16, or fp16 where bf16 is missing); None elsewhere.",
                        read_only=True)
    epoch = _OnPart("position", "The epoch within the current (or last) fit.")
    step = _OnPart("position", "Optimizer steps over the learner's life.")
    interrupted = _OnPart("position", "Whether the last fit ended by Ctrl-C (its weights and history are kept).")

    @property
    def dls(self) -> Any:
        """The data. Setting it (progressive resizing: `learn.dls = get_dls(64, 224)`) prepares the new
        loaders as the constructor does (`train.data_binding.bind_data`); their classes must match."""
        return self._dls

    @dls.setter
    def dls(self, dls: Any) -> None:
        self._dls = bind_data(dls, self.device, self.model, getattr(self, "_dls", None))

    @property
    def task(self) -> Task:
        """What the model predicts (single-label, multi-label with its threshold, regression)."""
        return self._task

    @task.setter
    def task(self, task: Task) -> None:
        # A tuned threshold (`learn.task = tune_threshold(learn).task`) must reach the metrics too, or
        # validate() scores at the old threshold while predict and the export decide at the new one.
        self._task = task
        if hasattr(self, "_metrics"):
            self._metrics = follow_task(self._metrics, task)

    @property
    def metrics(self) -> list[Metric]:
        """The metrics, in column order; assigning what `metrics=` takes checks and names them at once."""
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: Metric | str | Sequence[Metric | str] | None) -> None:
        self._metrics = resolve_metrics(metrics, self.task)

    @property
    def epochs_done(self) -> int:
        """Epochs trained over the learner's life (rows of the history); each gets fresh shuffles."""
        return len(self.recorder.history)

    @property
    def metric_names(self) -> list[str]:
        """Column names of the metrics, in order (a repeated name numbered: `top_k_accuracy_2`)."""
        return column_names(self.metrics)

    # ------------------------------------------------------------------ freezing and the step

    def freeze_to(self, n: int) -> None:
        """Train groups `[n:]` and freeze groups `[:n]`, as fastai. Negative `n` counts from the end.

        Resets the optimizer state (Adam moments), as fastai does.

        Example:
            >>> learn.freeze_to(-2)  # the last body group and the head train  # doctest: +SKIP
        """
        self._groups.freeze_to(n)
        self._stepper.reset_optimizer()
        if self.n_groups > 1 and self.frozen_to == self.n_groups:  # fastai warns too: "whole model is frozen"
            warnings.warn(f"freeze_to({n}) freezes all {self.n_groups} groups, the head too: a fit then trains "
                          f"{'only the norm layers' if self._groups.train_bn else 'nothing'}. Pass freeze_to(-1) "
                          "(or freeze()) to train the head", UserWarning, stacklevel=2)

    def freeze(self) -> None:
        """Freeze every group but the head (`freeze_to(-1)`); a one-group model has nothing to freeze."""
        if self.n_groups == 1:
            fastai.note_once(fastai.ONE_GROUP_NOTE)
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Make every group trainable (`freeze_to(0)`)."""
        self.freeze_to(0)

    def set_train_mode(self) -> None:
        """Put the model in training mode; with `train_bn=False` the body's norm layers stay in eval."""
        self._groups.set_train_mode()

    def ensure_optimizer(self) -> torch.optim.Optimizer:
        """Create the optimizer (and, under torchrun, the DDP wrapper) if freezing cleared them."""
        return self._stepper.ensure_optimizer()

    def set_hyper(self, lrs: Sequence[float], mom: float) -> None:
        """Set each parameter group's LR and the momentum (Adam beta1 or SGD momentum)."""
        self._stepper.set_hyper(lrs, mom)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, *, skip_non_finite: bool = True) -> torch.Tensor:
        """One optimizer step on a batch; returns the detached loss (`Stepper.train_step`)."""
        return self._stepper.train_step(images, labels, skip_non_finite=skip_non_finite)

    # ------------------------------------------------------------------ evaluation

    def collect_logits(self, loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Float logits and targets over a loader in eval mode, in order (gathered over ranks)."""
        with cudnn_autotune(self.device, training=False):
            return inference.collect_logits(self.model, loader, amp_dtype=self.amp_dtype)

    def validate(self, loader: Any = None, dl: Any = None, *, ds_idx: int = 1) -> ValidationResults:
        """Loss and metrics over the whole validation set (or `loader`), unlabelled items left out.

        The result is a dict by name that also indexes by position like fastai's list:
        `learn.validate()[0]` is the loss, `[1]` the first metric. The metrics see the logits over the
        calibrated temperature (`learn.trust`), as `predict` does; the loss sees the raw logits.

        Args:
            loader: Score this loader instead of the validation set; `dl=` is fastai's spelling.
            ds_idx: fastai's choice of set without a loader, as in `get_preds`: 1 validation, 0 the training
                images in order (also as the first argument: `learn.validate(0)`).

        Example:
            >>> learn.validate()  # doctest: +SKIP
            {'valid_loss': 0.41, 'error_rate': 0.12}
            >>> learn.validate()[1]  # doctest: +SKIP
            0.12
        """
        if isinstance(loader, int) and not isinstance(loader, bool):  # fastai's signature starts with ds_idx
            ds_idx, loader = loader, None
        loader = fastai.loader_or_dl(loader, dl, default=None)
        if loader is None:
            loader = loader_of(self.dls, ds_idx)
        logits, targets = self.collect_logits(loader)
        labelled = self.task.labelled(targets)
        logits, targets = logits[labelled], targets[labelled]
        if len(targets) == 0:
            return ValidationResults({"valid_loss": float("nan"), **{name: float("nan") for name in self.metric_names}})
        # MetricValue: a float with fastai's `.item()`, so `validate()[1].item()` runs unchanged.
        logs = ValidationResults({"valid_loss": MetricValue(self.loss_func(logits, targets).item())})
        # The metrics score the predictions predict makes: a calibrated learner's logits over its temperature
        # (a multi-label threshold is chosen on those probabilities). The loss stays the one trained on.
        scored = logits if self.trust.temperature == 1.0 else logits / self.trust.temperature
        for name, metric in zip(self.metric_names, self.metrics, strict=True):
            logs[name] = metric_value(metric, metric(scored, targets))
        return logs

    # ------------------------------------------------------------------ recipes (train.recipes)

    def fit(self, n_epoch: int, lr: LRSpec = 1e-3, *, callbacks: Callback | Sequence[Callback] = (),
            checkpoint: str | Path | None = None, resume: str | Path | Resume | None = None,
            cbs: Callback | Sequence[Callback] | None = None, wd: float | None = None, reset_opt: bool = False,
            start_epoch: int = 0) -> list[dict[str, Any]]:
        """Train for `n_epoch` epochs at a constant LR per group.

        Args:
            n_epoch: Number of epochs, >= 1.
            lr: A float, `slice(hi)`, `slice(lo, hi)` or one LR per group.
            callbacks: Extra callbacks for this fit only, after the learner's own (`Learner(cbs=...)`);
                `cbs=` is fastai's spelling.
            checkpoint: Save a resumable checkpoint (`state_dict`) to this path after every epoch.
            resume: Continue an interrupted fit from this checkpoint; a checkpoint of a different fit
                (other n_epoch or LRs) is refused.
            wd: Weight decay for this fit only (fastai's `wd=`); None keeps the learner's `weight_decay`.
            reset_opt: Start from a new optimizer (no Adam moments), as fastai's.
            start_epoch: Skip the epochs before it, the schedule starting where it sits (fastai's); `resume=`
                continues from a checkpoint instead.

        Returns:
            The rows this fit added to `recorder.history`.

        Example:
            >>> learn.fit(2, 1e-3)  # doctest: +SKIP
        """
        callbacks = fastai.callbacks_and_cbs(callbacks, cbs)
        fastai.reset_optimizer_if(self.stepper, reset_opt)
        return recipes.fit(self, n_epoch, lr, callbacks, checkpoint, resume, wd, start_epoch)

    def fit_one_cycle(self, n_epoch: int, lr_max: LRSpec | str | None = None, div: float = 25.0,
                      div_final: float = 1e5, pct_start: float = 0.25,
                      moms: tuple[float, float, float] | None = None, *,
                      callbacks: Callback | Sequence[Callback] = (), checkpoint: str | Path | None = None,
                      resume: str | Path | Resume | None = None, cbs: Callback | Sequence[Callback] | None = None,
                      wd: float | None = None, reset_opt: bool = False, start_epoch: int = 0) -> list[dict[str, Any]]:
        """Train with fastai's one-cycle LR and momentum schedule.

        Args:
            n_epoch: Number of epochs.
            lr_max: Peak LR: float, slice, one per group, or "auto" (run `lr_find`, use its valley).
                None means 1e-3, as fastai.
            div: The LR starts at `lr_max / div`.
            div_final: The LR ends at `lr_max / div_final`.
            pct_start: Fraction of the steps spent warming up.
            moms: Momentum (Adam beta1) at start, peak LR and end; None: fastai's (0.95, 0.85, 0.95).
            callbacks, checkpoint, resume, cbs, wd, reset_opt, start_epoch: As in `fit`.

        Example:
            >>> learn.fit_one_cycle(3, slice(1e-5, 1e-3))  # doctest: +SKIP
        """
        callbacks = fastai.callbacks_and_cbs(callbacks, cbs)
        fastai.reset_optimizer_if(self.stepper, reset_opt)
        return recipes.fit_one_cycle(self, n_epoch, lr_max, div, div_final, pct_start, fastai.moms_or_default(moms),
                                     callbacks, checkpoint, resume, wd, start_epoch=start_epoch)

    def fine_tune(self, epochs: int, base_lr: float | str = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100,
                  pct_start: float = 0.3, div: float = 5.0, *, callbacks: Callback | Sequence[Callback] = (),
                  checkpoint: str | Path | None = None, resume: str | Path | Resume | None = None,
                  cbs: Callback | Sequence[Callback] | None = None, wd: float | None = None, div_final: float = 1e5,
                  moms: tuple[float, float, float] | None = None, reset_opt: bool = False, start_epoch: int = 0,
                  lr_max: Any = None) -> list[dict[str, Any]]:
        """fastai's recipe: train the head with the body frozen, then everything with discriminative LRs.

        1. `freeze()`; `fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99)`
        2. `base_lr /= 2`; `unfreeze()`
        3. `fit_one_cycle(epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start, div=div)`

        Args:
            epochs: Epochs with every group trainable.
            base_lr: The head's LR in the frozen phase, or "auto" to run `lr_find` first.
            freeze_epochs: Epochs with only the head (and, with train_bn, the norm layers) training.
            lr_mult: Ratio between the head's and the first group's LR in the unfrozen phase.
            pct_start, div: One-cycle settings of the unfrozen phase.
            callbacks, cbs, wd, reset_opt: As in `fit`, for both phases.
            div_final, moms: As in `fit_one_cycle`, for both phases (fastai passes them to both).
            start_epoch, lr_max: Refused with what to pass instead (fastai's fine_tune takes them, but its
                lr_max collides with the LRs it sets, and resume= restarts a phase where it stopped).
            checkpoint: Save a resumable checkpoint here after every epoch of either phase.
            resume: Continue from such a checkpoint, in the phase and epoch it was written: the
                result equals an uninterrupted run's (bit for bit on the CPU with a seed). A checkpoint
                of a fine_tune with other arguments is refused, naming both values.

        Example:
            >>> learn.fine_tune(4)  # doctest: +SKIP
            >>> learn.fine_tune(4, checkpoint="ckpt.pt", resume="ckpt.pt")  # after a crash  # doctest: +SKIP
        """
        callbacks = fastai.callbacks_and_cbs(callbacks, cbs)
        fastai.refuse_fine_tune_options(lr_max, start_epoch)
        fastai.reset_optimizer_if(self.stepper, reset_opt)
        return recipes.fine_tune(self, epochs, base_lr, freeze_epochs, lr_mult, pct_start, div, callbacks,
                                 checkpoint, resume, wd, div_final, fastai.moms_or_default(moms))

    def fit_recipe(self, epochs: int | None = None, recipe: Recipe | None = None, *,
                   callbacks: Callback | Sequence[Callback] = (), checkpoint: str | Path | None = None,
                   resume: str | Path | Resume | None = None, cbs: Callback | Sequence[Callback] | None = None,
                   calibrate: bool = True, unknown_rate: float | None = 0.05,
                   **settings: Any) -> list[dict[str, Any]]:
        """The recommended recipe: `recipe` (default `self.recipe`, `Recipe()` unless vision_learner got one)
        with `epochs` and any `Recipe` field in `settings` changed; fine_tune's phases around them.

        `fine_tune` keeps fastai's formulas (README, "The recommended recipe", spells the fit_recipe that equals it).
        callbacks, checkpoint, resume, cbs: As in `fine_tune`.
        calibrate, unknown_rate: As in `calibrate()`, which a finished fit ends with (`calibrate=False`: raw
            softmax; `unknown_rate=None`: no unknown flag).

        Example:
            >>> learn.fit_recipe()  # doctest: +SKIP
            >>> learn.fit_recipe(6, mixup=0.2, flip=False, time_budget=600)  # doctest: +SKIP
        """
        trust_fit.check_unknown_rate(unknown_rate)  # before the fit, not after it
        history = recommended.fit_recipe(self, epochs, recipe or self.recipe, fastai.callbacks_and_cbs(callbacks, cbs),
                                         checkpoint, resume, **settings)
        if not self.interrupted:
            trust_fit.calibrate_after_fit(self, calibrate, unknown_rate)
        return history

    def calibrate(self, temperature: bool = True, unknown_rate: float | None = 0.05, method: str | None = None) -> Any:
        """Fit the temperature of the probabilities and the unknown score on this learner's data (`trust_fit`).

        Args:
            temperature: Fit the temperature on the validation predictions (False: raw softmax / sigmoid).
            unknown_rate: The share of validation images flagged unknown (default 5%); None: no unknown flag.
            method: The unknown score (`unfreeze.trust.METHODS`); default: the one benchmarks/trust_study.py chose.

        Returns:
            The new `learn.trust` (temperature, score, threshold, and the before/after numbers).

        Example:
            >>> learn.calibrate().temperature  # doctest: +SKIP
            1.27
        """
        return trust_fit.calibrate(self, temperature=temperature, unknown_rate=unknown_rate,
                                   **({} if method is None else {"method": method}))

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True,
                plot: str | Path | None = None, lr_ratios: LRSpec | None = None, quiet: bool = False,
                suggest_funcs: Sequence[Any] | None = None, show_plot: bool = True) -> Any:
        """Run the LR range test (`unfreeze.train.lr_find.lr_find`) and restore the learner exactly afterwards.

        The arguments up to `quiet` are those of `unfreeze.train.lr_find.lr_find`, documented there once.
        Without `plot`, a notebook shows the plot inline (unless `show_plot=False`) and
        `learn.recorder.plot_lr_find()` draws it later.

        Args:
            suggest_funcs: fastai's spelling: rules such as `(minimum, steep)`; the call then returns
                their `SuggestedLRs`, a tuple that unpacks (`lr_min, lr_steep = learn.lr_find(...)`).
            show_plot: fastai's switch for the inline plot in a notebook.

        Returns:
            An `LRFindResult` (also kept as `learn.lr_find_result`); `SuggestedLRs` with `suggest_funcs`.

        Example:
            >>> result = learn.lr_find(plot="lr_find.png"); result.valley  # doctest: +SKIP
            >>> lr_min, lr_steep = learn.lr_find(suggest_funcs=(minimum, steep))  # doctest: +SKIP
        """
        from unfreeze.train.lr_find import lr_find

        # Every rank steps the same LRs and sees the rank-averaged loss; rank 0's result is broadcast
        # so that all ranks train with one LR (lr_find itself plots and prints on rank 0 only).
        result = distributed.broadcast_object(lr_find(
            self, start_lr=start_lr, end_lr=end_lr, num_it=num_it, stop_div=stop_div, plot=plot,
            lr_ratios=lr_ratios, quiet=quiet,
        ))
        # The learner owns its recorder and hands the curve over, so recorder.plot_lr_find can draw it.
        self.lr_find_result = self.recorder.lr_find_result = result
        fastai.show_lr_find_inline(result, plot, show_plot)
        return fastai.lr_find_answer(result, suggest_funcs)

    # ------------------------------------------------------------------ weights, state and checkpoints

    def save_weights(self, path: str | Path) -> Path:
        """Save the model's weights (the `model` section of `state_dict`) as safetensors, atomically.

        Example:
            >>> learn.save_weights("best.safetensors")  # doctest: +SKIP
        """
        return saved_files.save_weights(self, path)

    def load_weights(self, path: str | Path, *, strict: bool = True) -> None:
        """Load weights saved by `save_weights` (`strict=False`: skip names only one side holds, as torch's).

        Example:
            >>> learn.load_weights("best.safetensors")  # doctest: +SKIP
        """
        saved_files.load_weights(self, path, strict=strict)

    def save_checkpoint(self, path: str | Path, callbacks: Sequence[Callback] = ()) -> Path:
        """Save `state_dict()` (and the callbacks' states) as a resumable checkpoint, atomically.

        Example:
            >>> learn.save_checkpoint("run/checkpoint.pt")  # doctest: +SKIP
        """
        return saved_files.save_checkpoint(self, path, callbacks=callbacks)

    def state_dict(self, keys: Collection[str] | None = None, *, grads: bool = False) -> dict[str, Any]:
        """Everything needed to put this learner back exactly: the one serialiser of the learner.

        The sections (`STATE_KEYS`) and their owners are described in `train.state`. Every tensor is a
        copy, and a state loads with `torch.load(weights_only=True)`.

        Args:
            keys: Only these sections (default: all).
            grads: Also each parameter's gradient (lr_find uses it; checkpoints do not need it).

        Example:
            >>> state = learn.state_dict()  # doctest: +SKIP
            >>> learn.fit(1, 1e-3); learn.load_state_dict(state)  # back to before the fit  # doctest: +SKIP
        """
        return state_module.capture(self, keys, grads)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved; sections that are absent are left as they are.

        Raises:
            RuntimeError: The model section does not fit this model (other architecture or classes).

        Example:
            >>> learn.load_state_dict(torch.load("run/checkpoint.pt", weights_only=True))  # doctest: +SKIP
        """
        state_module.restore(self, state)

    def __repr__(self) -> str:
        arch = getattr(self.model, "arch", type(self.model).__name__)
        return (
            f"Learner(arch={arch!r}, groups={self.n_groups}, frozen_to={self.frozen_to}, "
            f"device={self.device}, metrics={self.metric_names})"
        )
