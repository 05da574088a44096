"""The Learner: a model, its data, its task and optimizer, and the recipes that train them.

The loop itself lives in `unfreeze.train.loop`; `fit`, `fit_one_cycle` and `fine_tune` here are short
recipes that pick a schedule and run it, and the LR finder reuses `train_step`. Everything
architectural goes through the backbone contract of `unfreeze.models` (body, head, `param_groups`,
mean/std), so the same code freezes a resnet, an EfficientNet or a ViT. `state_dict` is the one
serialiser of the learner: checkpoints, the LR finder's restore and SaveBestModel all use it.
Prediction and export are plain functions of `unfreeze.inference`; the methods here only forward.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unfreeze import distributed, inference
from unfreeze._device import cudnn_autotune, default_device
from unfreeze.tasks import MultiLabel, SingleLabel, Task
from unfreeze.train import checkpoint as saved_files
from unfreeze.train import loop
from unfreeze.train import state as state_module
from unfreeze.train.callbacks import Callback, Recorder, callback_list, fit_callbacks
from unfreeze.train.checkpoint import apply_checkpoint, read_checkpoint, save_checkpoint
from unfreeze.train.loop import NonFiniteLossError
from unfreeze.train.metrics import Metric, ValidationResults, metric_name, resolve_metrics
from unfreeze.train.schedules import ConstantSchedule, LRSpec, OneCycleSchedule, resolve_lrs
from unfreeze.train.state import STATE_KEYS

__all__ = ["STATE_KEYS", "Learner", "NonFiniteLossError", "ValidationResults", "default_device"]

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)


class Learner:
    """Trains a `TransferModel` on `ImageDataLoaders`.

    Args:
        dls: The data (`ImageDataLoaders`).
        model: A model honouring the backbone contract (`body`, `head`, `param_groups`, `mean`, `std`).
        metrics: Metric callables or built-in names ("error_rate", "accuracy", "top_k_accuracy",
            "f1_score", "accuracy_multi", "f1_multi"), computed over the whole validation set.
        loss_func: Defaults to the task's loss (cross-entropy, or binary cross-entropy for multi-label
            data), weighted by `class_weights`.
        class_weights: Per-class loss weights against class imbalance: "auto" (inverse class
            frequency in the training set; positive weights for multi-label data), a sequence with
            one weight per class, or None.
        optimizer: "adamw" (fastai's Adam: beta2 0.99, eps 1e-5, decoupled weight decay) or "sgd".
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
        optimizer: str = "adamw",
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
    ) -> None:
        if optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}.")
        self.task: Task = getattr(dls, "task", None) or SingleLabel()  # loaders without a task: single-label
        if getattr(dls, "n_classes", 2) < (1 if isinstance(self.task, MultiLabel) else 2):
            raise ValueError(
                f"A classifier needs at least 2 classes; the data has {dls.n_classes} ({dls.vocab}). "
                "Add a folder per class."
            )
        if isinstance(grad_accum, bool) or not isinstance(grad_accum, int) or grad_accum < 1:
            raise ValueError(f"grad_accum must be a whole number >= 1, got {grad_accum!r}.")
        self.metrics = resolve_metrics(metrics, self.task)
        distributed.init_from_env()
        self.device = torch.device(device) if device is not None else default_device()
        self.dls = dls.to(self.device)
        if distributed.is_distributed():
            # Training shards like DistributedSampler; validation shards cover each item exactly once.
            for loader in (self.dls.train, self.dls.valid):
                loader.shard(distributed.rank(), distributed.world_size())
        if sync_bn:
            if not (distributed.is_distributed() and self.device.type == "cuda"):
                raise ValueError("sync_bn=True needs several GPU processes under torchrun; leave it off here.")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.grad_accum = grad_accum
        self.compile_model = compile_model
        self.model = model.to(self.device)
        # channels_last (NHWC) is the fast layout for convolutions on GPUs under bf16 and on CPUs
        # (oneDNN); benchmarks/results/compare.md has the CPU figures.
        self.model = self.model.to(memory_format=torch.channels_last)
        if hasattr(self.dls, "set_normalization") and hasattr(model, "mean"):
            self.dls.set_normalization(model.mean, model.std)
        self.class_weights = self._class_weights(class_weights)
        self.loss_func = loss_func if loss_func is not None else self.task.loss(self.class_weights)
        self.optimizer_name = optimizer
        self.weight_decay = float(_one_of(weight_decay, wd, "weight_decay", "wd", default=0.01))
        self.callbacks: list[Callback] = callback_list(cbs, "cbs")
        data_path = getattr(self.dls, "path", None)
        self.path = Path(path) if path is not None else Path(data_path) if data_path is not None else Path(".")
        self.model_dir = Path(model_dir)
        self.lr_find_result: Any = None  # the last LRFindResult of lr_find, for plots and inspection
        self.train_bn = train_bn
        self.seed = seed
        self.quiet = quiet
        self.recorder = Recorder()
        self.optimizer: torch.optim.Optimizer | None = None
        self.frozen_to = 0
        self.epoch = 0  # the epoch within the current (or last) fit
        self.step = 0  # optimizer steps over the learner's life
        self.interrupted = False
        # What the current fit is (its schedule, recipe and phase) and its last finished epoch: saved
        # in checkpoints, so that a resume continues the same fit or refuses a different one.
        self.progress: dict[str, Any] = {}
        self._train_model: nn.Module = self.model
        self._scaler: torch.amp.GradScaler | None = None
        # Reading a loss on the host waits for the GPU; on CUDA the loop reads each loss one step late.
        self._overlap_steps = self.device.type == "cuda"
        self._amp_dtype: torch.dtype | None = None
        self._cudnn_user: bool | None = None  # cudnn.benchmark as the user set it, while a fit runs
        if self.device.type == "cuda":
            self._amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self._param_names = dict(self.model.named_parameters())
        self._group_of_param = {n: i for i, g in enumerate(self.param_groups) for n in g}
        self._check_groups()

    # ------------------------------------------------------------------ structure and freezing

    @property
    def param_groups(self) -> list[list[str]]:
        """Parameter names per group, input to head (from the backbone contract)."""
        return self.model.param_groups

    @property
    def n_groups(self) -> int:
        """The number of parameter groups; the last one is the head."""
        return len(self.param_groups)

    @property
    def epochs_done(self) -> int:
        """Epochs trained over the learner's life (rows of the history), across fits.

        Each epoch of the learner's life gets fresh shuffles and augmentations, also across fits.
        """
        return len(self.recorder.history)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype on CUDA (bf16, or fp16 where bf16 is missing); None elsewhere."""
        return self._amp_dtype

    @property
    def metric_names(self) -> list[str]:
        """Column names of the metrics, in order."""
        return [metric_name(m) for m in self.metrics]

    def _class_weights(self, spec: str | Sequence[float] | None) -> torch.Tensor | None:
        if spec is None:
            return None
        if isinstance(spec, str):
            if spec != "auto":
                raise ValueError(f"class_weights must be 'auto', one weight per class or None, got {spec!r}.")
            return self.task.balanced_weights(self.dls.train.dataset.targets, self.dls.n_classes).to(self.device)
        weights = torch.as_tensor([float(value) for value in spec], dtype=torch.float32)
        if len(weights) != self.dls.n_classes or not torch.isfinite(weights).all() or (weights <= 0).any():
            raise ValueError(f"class_weights needs {self.dls.n_classes} positive numbers (one per class in "
                             f"{self.dls.vocab}), got {list(spec)!r}. Or pass 'auto'.")
        return weights.to(self.device)

    def _check_groups(self) -> None:
        missing = set(self._param_names) - set(self._group_of_param)
        if missing:
            raise ValueError(
                f"The model's param_groups miss {len(missing)} parameters (e.g. {sorted(missing)[:3]}). "
                "Every parameter must belong to exactly one group."
            )

    def _norm_modules(self) -> Iterator[tuple[nn.Module, int]]:
        """Norm layers with the group index of their parameters (input-side group wins)."""
        for name, module in self.model.named_modules():
            if isinstance(module, _NORM_TYPES):
                groups = [self._group_of_param[f"{name}.{p}"] for p, _ in module.named_parameters(recurse=False)]
                if groups:
                    yield module, min(groups)

    def freeze_to(self, n: int) -> None:
        """Train groups `[n:]` and freeze groups `[:n]`, as fastai. Negative `n` counts from the end.

        Resets the optimizer state (Adam moments), as fastai does.

        Example:
            >>> learn.freeze_to(-2)  # the last body group and the head train  # doctest: +SKIP
        """
        if not isinstance(n, int) or not -self.n_groups <= n <= self.n_groups:
            raise ValueError(f"freeze_to takes a group index in [-{self.n_groups}, {self.n_groups}], got {n!r}.")
        self.frozen_to = n % self.n_groups if n < 0 else n
        norm_params = set()
        if self.train_bn:
            for module, _ in self._norm_modules():
                norm_params.update(id(p) for p in module.parameters(recurse=False))
        for name, param in self._param_names.items():
            trainable = self._group_of_param[name] >= self.frozen_to or id(param) in norm_params
            param.requires_grad_(trainable)
        self.optimizer = None

    def freeze(self) -> None:
        """Freeze every group but the head (`freeze_to(-1)`)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Make every group trainable (`freeze_to(0)`)."""
        self.freeze_to(0)

    def set_train_mode(self) -> None:
        """Put the model in training mode; with `train_bn=False` the body's norm layers stay in eval."""
        self.model.train()
        if not self.train_bn:
            # Keras semantics: the body's norm layers keep their pretrained running statistics, frozen
            # or not. Switching them to batch statistics at unfreeze undid the frozen phase's work in
            # our measurements (benchmarks/results/defaults.md). The new head's norm layers train.
            head_group = self.n_groups - 1
            for module, group in self._norm_modules():
                if group < head_group:
                    module.eval()

    # ------------------------------------------------------------------ optimizer and step

    def _make_optimizer(self) -> torch.optim.Optimizer:
        groups: list[dict[str, Any]] = []
        for index, names in enumerate(self.param_groups):
            params = [self._param_names[n] for n in names]
            # Biases and norm weights (1-d tensors) get no weight decay (fastai's wd_bn_bias=False).
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            for chunk, wd in ((decay, self.weight_decay), (no_decay, 0.0)):
                if chunk:
                    groups.append({"params": chunk, "weight_decay": wd, "layer_group": index})
        fused = {"fused": True} if self.device.type == "cuda" else {}
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(groups, lr=1e-3, momentum=0.9)
        return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, **fused)

    def ensure_optimizer(self) -> torch.optim.Optimizer:
        """Create the optimizer (and, under torchrun, the DDP wrapper) if freezing cleared them."""
        if self.optimizer is None:
            self.optimizer = self._make_optimizer()
            # DDP registers the parameters that train at construction: rebuild it with the optimizer.
            self._train_model = distributed.wrap(self.model, self.device)
            if self.compile_model:
                backend = "inductor" if self.compile_model is True else str(self.compile_model)
                self._train_model = torch.compile(self._train_model, backend=backend)
        return self.optimizer

    def set_hyper(self, lrs: Sequence[float], mom: float) -> None:
        """Set each parameter group's LR and the momentum (Adam beta1 or SGD momentum)."""
        optimizer = self.ensure_optimizer()
        for group in optimizer.param_groups:
            group["lr"] = lrs[group["layer_group"]]
            if "betas" in group:
                group["betas"] = (mom, group["betas"][1])
            else:
                group["momentum"] = mom

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self._amp_dtype)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, *, skip_non_finite: bool = True) -> torch.Tensor:
        """One optimizer step on a batch; returns the detached loss. Shared by fit and lr_find.

        With `skip_non_finite`, a non-finite loss skips the update, so the weights stay as they were;
        deciding that waits for the GPU, so `fit` on a GPU turns it off and restores the epoch's
        starting weights instead when it reads the loss.
        """
        optimizer = self.ensure_optimizer()
        if self._scaler is None and self._amp_dtype == torch.float16:
            self._scaler = torch.amp.GradScaler("cuda")
        optimizer.zero_grad(set_to_none=True)
        chunks = list(zip(images.chunk(self.grad_accum), labels.chunk(self.grad_accum), strict=True))
        total = images.new_zeros((), dtype=torch.float32)
        for index, (chunk, chunk_labels) in enumerate(chunks):
            last = index == len(chunks) - 1
            # Only the last micro-batch all-reduces gradients under DDP.
            sync = contextlib.nullcontext() if last or not hasattr(self._train_model, "no_sync") else (
                self._train_model.no_sync()
            )
            with sync:
                with self._autocast():
                    loss = self.loss_func(self._train_model(inference.channels_last(chunk)), chunk_labels)
                loss = loss * (len(chunk) / len(images))
                total = total + loss.detach().float()
                if self._scaler is not None:
                    self._scaler.scale(loss).backward()
                else:
                    loss.backward()
        # Under DDP, the mean over ranks: every rank records, and decides on, the same loss. A NaN on any
        # rank makes it NaN everywhere, so one reduction serves both (and, with skip_non_finite, one sync).
        total = distributed.mean(total)
        if skip_non_finite and not torch.isfinite(total):
            # Skip the update: the weights stay as they were and the loop restores the epoch.
            optimizer.zero_grad(set_to_none=True)
            return total
        if self._scaler is not None:
            self._scaler.step(optimizer)
            self._scaler.update()
        else:
            optimizer.step()
        return total

    # ------------------------------------------------------------------ evaluation

    def collect_logits(self, loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model over a loader in eval mode; return float logits and targets, in order.

        Under torchrun each rank sees a disjoint slice and the results are gathered, so every item
        counts exactly once.
        """
        with cudnn_autotune(self.device, training=False):
            return inference.collect_logits(self.model, loader, amp_dtype=self._amp_dtype)

    def validate(self, loader: Any = None, dl: Any = None) -> ValidationResults:
        """Loss and metrics over the whole validation set (or `loader`), unlabelled items left out.

        The result is a dict by name that also indexes by position like fastai's list:
        `learn.validate()[0]` is the loss, `[1]` the first metric.

        Args:
            loader: Score this loader instead of the validation set; `dl=` is fastai's spelling.

        Example:
            >>> learn.validate()  # doctest: +SKIP
            {'valid_loss': 0.41, 'error_rate': 0.12}
            >>> learn.validate()[1]  # doctest: +SKIP
            0.12
        """
        loader = _one_of(loader, dl, "loader", "dl", default=self.dls.valid)
        logits, targets = self.collect_logits(loader)
        labelled = self.task.labelled(targets)
        logits, targets = logits[labelled], targets[labelled]
        if len(targets) == 0:
            return ValidationResults({"valid_loss": math.nan, **{name: math.nan for name in self.metric_names}})
        logs = ValidationResults({"valid_loss": self.loss_func(logits, targets).item()})
        for metric in self.metrics:
            logs[metric_name(metric)] = float(metric(logits, targets))
        return logs

    # ------------------------------------------------------------------ recipes

    def fit(
        self,
        n_epoch: int,
        lr: LRSpec = 1e-3,
        *,
        callbacks: Callback | Sequence[Callback] = (),
        checkpoint: str | Path | None = None,
        resume: str | Path | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        wd: float | None = None,
    ) -> list[dict[str, Any]]:
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

        Returns:
            The rows this fit added to `recorder.history`.

        Example:
            >>> learn.fit(2, 1e-3)  # doctest: +SKIP
        """
        n_epoch = _check_epochs(n_epoch)
        schedule = ConstantSchedule(resolve_lrs(lr, self.n_groups))
        return self._fit(n_epoch, schedule, fit_callbacks(callbacks, cbs), checkpoint, resume, recipe=None, wd=wd)

    def _fit(self, n_epoch: int, schedule: Any, callbacks: Sequence[Callback], checkpoint: str | Path | None,
             resume: str | Path | dict[str, Any] | None, recipe: dict[str, Any] | None,
             wd: float | None = None) -> list[dict[str, Any]]:
        """Run the loop along `schedule`, from the start or from where a checkpoint left this same fit."""
        if len(self.dls.train) == 0:
            raise ValueError(
                f"The training set has {len(self.dls.train.dataset)} items, fewer than one batch of "
                f"{self.dls.train.batch_size}. Use a smaller bs or add images."
            )
        # What makes this fit this fit: a resume must continue the same schedule, weight decay and data.
        data = {"seed": getattr(self.dls, "seed", None), "n_train": len(self.dls.train.dataset),
                "n_valid": len(self.dls.valid.dataset)}
        if wd is not None and (isinstance(wd, bool) or not isinstance(wd, (int, float)) or not math.isfinite(wd)
                               or wd < 0):
            raise ValueError(f"wd must be a number >= 0 (the weight decay for this fit), got {wd!r}.")
        plan = {"n_epoch": n_epoch, "schedule": schedule.config(), "recipe": recipe,
                "wd": None if wd is None else float(wd), "data": data}
        start_epoch, callback_states = 0, None
        if resume is not None:
            # A dict is a checkpoint fine_tune has read, checked against its recipe and loaded already.
            saved = resume if isinstance(resume, dict) else read_checkpoint(resume)
            progress = saved.get("progress") or {}
            state_module.check_same_fit(progress, plan, resume)
            if not isinstance(resume, dict):
                self._load_checkpoint(saved, resume)
            # A finished fit (its after_fit ran: best weights restored, or an early stop) runs no more epochs.
            start_epoch = n_epoch if progress.get("finished") else int(progress["epoch"]) + 1
            callback_states = saved.get("callbacks")
        self.progress = plan
        with self._fit_weight_decay(wd):
            return loop.run_fit(self, n_epoch, schedule, [*self.callbacks, *callbacks], start_epoch=start_epoch,
                                checkpoint=checkpoint, callback_states=callback_states)

    def _load_checkpoint(self, saved: dict[str, Any], where: Any) -> None:
        """Load a read checkpoint. With a learner seed the fit's RNG draws follow from (seed, epoch), so
        the saved RNG state (taken inside the fit's private RNG fork) is left out: it would only change
        the caller's global RNG."""
        apply_checkpoint(self, saved if self.seed is None else {k: v for k, v in saved.items() if k != "rng"},
                         where)

    @contextlib.contextmanager
    def _fit_weight_decay(self, wd: float | None) -> Iterator[None]:
        """fastai's per-fit `wd`: the decayed groups use it during the fit, the learner's value after it."""
        if wd is None:
            yield
            return
        learner_wd = self.weight_decay  # wd was checked by _fit
        # An optimizer built during the fit (after a freeze) reads self.weight_decay; one built before it
        # is updated in place.
        self.weight_decay = float(wd)
        self._set_group_weight_decay()
        try:
            yield
        finally:
            self.weight_decay = learner_wd
            self._set_group_weight_decay()

    def _set_group_weight_decay(self) -> None:
        if self.optimizer is None:
            return
        for group in self.optimizer.param_groups:
            # Biases and norm weights (1-d) never decay; see _make_optimizer.
            if any(param.ndim > 1 for param in group["params"]):
                group["weight_decay"] = self.weight_decay

    def fit_one_cycle(
        self,
        n_epoch: int,
        lr_max: LRSpec | str | None = None,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
        *,
        callbacks: Callback | Sequence[Callback] = (),
        checkpoint: str | Path | None = None,
        resume: str | Path | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        wd: float | None = None,
    ) -> list[dict[str, Any]]:
        """Train with fastai's one-cycle LR and momentum schedule.

        Args:
            n_epoch: Number of epochs.
            lr_max: Peak LR: float, slice, one per group, or "auto" (run `lr_find`, use its valley).
                None means 1e-3, as fastai.
            div: The LR starts at `lr_max / div`.
            div_final: The LR ends at `lr_max / div_final`.
            pct_start: Fraction of the steps spent warming up.
            moms: Momentum (Adam beta1) at start, peak LR and end.
            callbacks, checkpoint, resume, cbs, wd: As in `fit`.

        Example:
            >>> learn.fit_one_cycle(3, slice(1e-5, 1e-3))  # doctest: +SKIP
        """
        return self._one_cycle(n_epoch, lr_max, div, div_final, pct_start, moms, fit_callbacks(callbacks, cbs),
                               checkpoint, resume, None, wd)

    def _one_cycle(self, n_epoch: int, lr_max: LRSpec | str | None, div: float, div_final: float, pct_start: float,
                   moms: tuple[float, float, float], callbacks: Sequence[Callback], checkpoint: str | Path | None,
                   resume: str | Path | dict[str, Any] | None, recipe: dict[str, Any] | None,
                   wd: float | None = None) -> list[dict[str, Any]]:
        n_epoch = _check_epochs(n_epoch)
        if lr_max is None:
            lr_max = 1e-3
        if isinstance(lr_max, str):
            lr_max = self._auto_lr(lr_max, "lr_max")
        lrs = resolve_lrs(lr_max, self.n_groups)
        total = n_epoch * len(self.dls.train)
        schedule = OneCycleSchedule(lrs, total, div=div, div_final=div_final, pct_start=pct_start, moms=moms)
        return self._fit(n_epoch, schedule, callbacks, checkpoint, resume, recipe, wd)

    def fine_tune(
        self,
        epochs: int,
        base_lr: float | str = 2e-3,
        freeze_epochs: int = 1,
        lr_mult: float = 100,
        pct_start: float = 0.3,
        div: float = 5.0,
        *,
        callbacks: Callback | Sequence[Callback] = (),
        checkpoint: str | Path | None = None,
        resume: str | Path | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        wd: float | None = None,
    ) -> list[dict[str, Any]]:
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
            callbacks: Extra callbacks for both phases (fastai's spelling: `cbs=`).
            checkpoint: Save a resumable checkpoint here after every epoch of either phase.
            resume: Continue from such a checkpoint, in the phase and epoch it was written: the
                result equals an uninterrupted run's (bit for bit on the CPU with a seed). A checkpoint
                of a fine_tune with other arguments is refused, naming both values.
            wd: Weight decay for both phases (fastai's `wd=`); None keeps the learner's `weight_decay`.

        Example:
            >>> learn.fine_tune(4)  # doctest: +SKIP
            >>> learn.fine_tune(4, checkpoint="ckpt.pt", resume="ckpt.pt")  # after a crash  # doctest: +SKIP
        """
        epochs = _check_epochs(epochs)
        callbacks = fit_callbacks(callbacks, cbs)
        if isinstance(freeze_epochs, bool) or not isinstance(freeze_epochs, int) or freeze_epochs < 0:
            raise ValueError(f"freeze_epochs must be a whole number >= 0, got {freeze_epochs!r}.")
        if base_lr != "auto" and (isinstance(base_lr, bool) or not isinstance(base_lr, (int, float))
                                  or not math.isfinite(base_lr) or base_lr <= 0):
            raise ValueError(f"base_lr must be a positive number (the head's LR, e.g. 2e-3) or 'auto', got "
                             f"{base_lr!r}. fine_tune spreads the LRs itself (lr_mult): pass one number.")
        recipe = {"name": "fine_tune", "epochs": epochs, "base_lr": base_lr, "freeze_epochs": freeze_epochs,
                  "lr_mult": lr_mult, "pct_start": pct_start, "div": div}
        self.interrupted = False
        saved = None if resume is None else resume if isinstance(resume, dict) else read_checkpoint(resume)
        first_phase, resumed_phase = 0, None
        if saved is not None:
            progress = saved.get("progress") or {}
            previous = dict(progress.get("recipe") or {})
            phase = int(previous.pop("phase", 0))
            if base_lr == "auto":
                recipe["base_lr"] = previous.get("base_lr")  # the LR lr_find chose before the interruption
            state_module.check_same_fit({"recipe": previous}, {"recipe": recipe}, resume)
            self._load_checkpoint(saved, resume)
            # A finished phase (its after_fit ran) hands over to the next; an unfinished one continues.
            first_phase, resumed_phase = (phase + 1, None) if progress.get("finished") else (phase, phase)
        elif base_lr == "auto":
            self.freeze()  # lr_find tests the LRs of the first phase, on the frozen model
            recipe["base_lr"] = self._auto_lr("auto", "base_lr")
        lr = float(recipe["base_lr"])
        moms = (0.95, 0.85, 0.95)
        # fastai's two phases: the head alone with a late peak, then every group at half the LR,
        # spread over lr_mult from input to head.
        phases = [(freeze_epochs, self.freeze, slice(lr), 25.0, 0.99),
                  (epochs, self.unfreeze, slice(lr / 2 / lr_mult, lr / 2), div, pct_start)]
        rows: list[dict[str, Any]] = []
        for index, (n_epoch, set_trainable, lr_max, phase_div, phase_pct) in enumerate(phases):
            if index < first_phase or n_epoch == 0:
                continue
            continuing = index == resumed_phase  # the checkpoint holds this phase's freeze state and optimizer
            if not continuing:
                set_trainable()
            rows += self._one_cycle(n_epoch, lr_max, phase_div, 1e5, phase_pct, moms, callbacks, checkpoint,
                                    saved if continuing else None, {**recipe, "phase": index}, wd)
            if self.interrupted:
                break
        return rows

    def _auto_lr(self, value: str, name: str) -> float:
        if value != "auto":
            raise ValueError(f"{name} must be a number, a slice, a list or 'auto', got {value!r}.")
        result = self.lr_find(plot=None)
        chosen = float(result.valley)
        note = f"{name}='auto': lr_find chose {chosen:.2e} (valley)"
        self.recorder.add_note(note)
        if not self.quiet and distributed.is_main_process():
            print(note)
        return chosen

    def lr_find(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10,
        num_it: int = 100,
        stop_div: bool = True,
        plot: str | Path | None = None,
        lr_ratios: LRSpec | None = None,
        quiet: bool = False,
        suggest_funcs: Sequence[Any] | None = None,
        show_plot: bool = True,
    ) -> Any:
        """Run the LR range test and restore the learner exactly afterwards.

        Args:
            start_lr, end_lr: The head LR rises exponentially between these over `num_it` steps.
            num_it: Number of steps (the training loader is cycled if it is shorter).
            stop_div: Stop once the smoothed loss exceeds 4x its best.
            plot: Write the loss-vs-LR plot with every suggestion marked to this PNG. Without it, a
                notebook shows the plot inline (unless `show_plot=False`) and a script writes no file;
                `learn.recorder.plot_lr_find()` draws it later.
            lr_ratios: Keep discriminative ratios between groups (e.g. `slice(1e-5, 1e-3)`); the
                default moves every group together, as fastai.
            quiet: Do not warn about suspicious curves.
            suggest_funcs: fastai's spelling: rules such as `(minimum, steep)`; the call then returns
                their `SuggestedLRs`, a tuple that unpacks (`lr_min, lr_steep = learn.lr_find(...)`).
            show_plot: fastai's switch for the inline plot in a notebook.

        Returns:
            An `LRFindResult` with `valley` (the default suggestion), `slide`, `minimum`, `steep`,
            the curve (`lrs`, `losses`) and `slice()` for the groups; `SuggestedLRs` with `suggest_funcs`.
            The result is also kept as `learn.lr_find_result`.

        Example:
            >>> result = learn.lr_find(plot="lr_find.png"); result.valley  # doctest: +SKIP
            >>> lr_min, lr_steep = learn.lr_find(suggest_funcs=(minimum, steep))  # doctest: +SKIP
        """
        from unfreeze.train.lr_find import lr_find

        # Every rank steps the same LRs and sees the rank-averaged loss; rank 0's result is broadcast
        # so that all ranks train with one LR (lr_find itself plots and prints on rank 0 only).
        result = lr_find(
            self, start_lr=start_lr, end_lr=end_lr, num_it=num_it, stop_div=stop_div, plot=plot,
            lr_ratios=lr_ratios, quiet=quiet,
        )
        result = distributed.broadcast_object(result)
        # The learner owns its recorder and hands the curve over, so recorder.plot_lr_find can draw it.
        self.lr_find_result = self.recorder.lr_find_result = result
        if plot is None and show_plot and distributed.is_main_process() and _in_notebook():
            from unfreeze.plots import plot_lr_find

            plot_lr_find(result)
        return result if suggest_funcs is None else result.suggest(*suggest_funcs)

    # ------------------------------------------------------------------ inference and export
    # Forwarders: the work lives in unfreeze.inference as plain functions of a model and its data.

    def get_preds(self, dl: Any = None, with_loss: bool = False, *, with_decoded: bool = False) -> Any:
        """Probabilities (the task's activation) and targets over `dl` (default: validation), in order.

        Returns `(probs, targets)`, then the decoded predictions with `with_decoded` (class indices, or
        a bool mask per item for multi-label data) and the item losses with `with_loss`, in fastai's
        order. See `unfreeze.inference.get_preds`.

        Example:
            >>> probs, targets = learn.get_preds()  # doctest: +SKIP
            >>> probs, targets, decoded = learn.get_preds(with_decoded=True)  # doctest: +SKIP
        """
        return inference.get_preds(self, dl=dl, with_decoded=with_decoded, with_loss=with_loss)

    def predict(self, item: Any) -> Any:
        """Predict one image (path, PIL image, numpy array or tensor): `(label, decoded, probs)`.

        For multi-label data the label is a tuple of class names and `decoded` a bool mask.

        Example:
            >>> label, index, probs = learn.predict("cat.jpg")  # doctest: +SKIP
        """
        return inference.predict(self, item)

    def predict_batch(self, items: Any, bs: int = 64, top_k: int = 1, with_tta: bool = False) -> Any:
        """Stream predictions over many images or a folder, in constant memory (`inference.predict_batch`).

        Example:
            >>> rows = learn.predict_batch("photos/", top_k=3)  # doctest: +SKIP
        """
        return inference.predict_batch(self, items, bs=bs, top_k=top_k, with_tta=with_tta)

    def tta(self, dl: Any = None, n: int = 4, beta: float | None = 0.25) -> Any:
        """Test-time augmentation with fastai's defaults: `(probs, targets)`.

        Example:
            >>> probs, targets = learn.tta()  # doctest: +SKIP
        """
        return inference.tta(self, dl=dl, n=n, beta=beta)

    def export(self, path: str | Path | None = None, *, fname: str | Path | None = None) -> Path:
        """Write a pickle-free export (safetensors + JSON) that `load_learner` reads.

        Args:
            path: Where to write it, as given.
            fname: fastai's spelling: a file name relative to `learn.path`. With neither, the export
                goes to `learn.path/export.unfreeze`, where fastai would write export.pkl. A name ending
                in .pkl (either argument) is fastai code: it is taken relative to `learn.path`, and the
                file is written as `<stem>.unfreeze` instead (unfreeze never writes pickles), with a note
                saying where; `load_learner(".../export.pkl")` finds it.

        Returns:
            The path written.

        Example:
            >>> learn.export("model.unfreeze")  # doctest: +SKIP
            >>> learn.export()  # learn.path/export.unfreeze  # doctest: +SKIP
        """
        if path is not None and fname is not None:
            raise ValueError(f"Pass path= or fname= (fastai's spelling), not both; got {path!r} and {fname!r}.")
        name = path if path is not None else fname
        target = Path(name) if path is not None else self.path / (name if name is not None else "export.unfreeze")
        if target.suffix == ".pkl":
            target = (target if path is None else self.path / target).with_suffix(".unfreeze")
            if distributed.is_main_process():
                print(f"unfreeze writes no pickles: exported to {target} (safetensors) instead of {name}; "
                      f"load_learner({str(Path(name).with_suffix('.unfreeze'))!r}) or the .pkl name reads it.")
        if distributed.is_main_process():
            inference.export(self, target)
        distributed.barrier()
        return target

    def export_onnx(self, path: str | Path = "model.onnx", **options: Any) -> Path:
        """Export the inference model, normalization included, to ONNX (needs `unfreeze[onnx]`).

        Example:
            >>> learn.export_onnx("model.onnx")  # doctest: +SKIP
        """
        if distributed.is_main_process():
            inference.export_onnx(self, path, **options)
        distributed.barrier()
        return Path(path)

    # ------------------------------------------------------------------ weights, state and checkpoints

    def save_weights(self, path: str | Path) -> Path:
        """Save the model's weights (the `model` section of `state_dict`) as safetensors, atomically.

        Example:
            >>> learn.save_weights("best.safetensors")  # doctest: +SKIP
        """
        return saved_files.save_weights(self, path)

    def load_weights(self, path: str | Path) -> None:
        """Load weights saved by `save_weights`.

        Example:
            >>> learn.load_weights("best.safetensors")  # doctest: +SKIP
        """
        saved_files.load_weights(self, path)

    def model_file(self, name: str | Path) -> Path:
        """Where `save(name)` writes the weights: `path / model_dir / "<name>.safetensors"`.

        Example:
            >>> learn.model_file("stage-1")  # doctest: +SKIP
            PosixPath('data/models/stage-1.safetensors')
        """
        return saved_files.model_file(self, name)

    def save(self, name: str | Path, with_opt: bool = False) -> Path:
        """fastai's `learn.save`: the weights to `model_file(name)` (safetensors, not a pickle).

        Args:
            name: A name such as "stage-1", under `learn.path/models/`.
            with_opt: Also save the optimizer state (Adam moments) to "<name>.opt.pt", a file that
                loads with `torch.load(weights_only=True)`.

        Example:
            >>> learn.save("stage-1")  # doctest: +SKIP
            PosixPath('data/models/stage-1.safetensors')
        """
        return saved_files.save_named(self, name, with_opt)

    def load(self, name: str | Path, with_opt: bool | None = None) -> Learner:
        """fastai's `learn.load`: the weights `save(name)` wrote, and the optimizer state if saved.

        Args:
            name: The name given to `save`.
            with_opt: None loads the optimizer state when one was saved; True requires it; False
                leaves the optimizer as it is.

        Returns:
            The learner itself, as fastai's (`learn = learn.load("stage-1")` works).

        Example:
            >>> learn.load("stage-1")  # doctest: +SKIP
        """
        saved_files.load_named(self, name, with_opt)
        return self

    def to_fp16(self) -> Learner:
        """Mixed precision, as fastai's `to_fp16`; returns the learner for chaining.

        On CUDA the learner autocasts already (bf16, or fp16 with a loss scaler where bf16 is missing),
        so this only undoes `to_fp32`. Elsewhere (CPU, MPS) it leaves float32 on and says so once.

        Example:
            >>> learn = vision_learner(dls, "resnet34").to_fp16()  # doctest: +SKIP
        """
        if self.device.type == "cuda":
            self._amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            _note_once(f"to_fp16: mixed precision runs on CUDA only; on {self.device.type} the learner keeps "
                       "float32 (nothing to change in your code).")
        return self

    def to_fp32(self) -> Learner:
        """Turn mixed precision off: train and evaluate in float32 on every device; returns the learner.

        Example:
            >>> learn.to_fp32().fit_one_cycle(1)  # doctest: +SKIP
        """
        self._amp_dtype, self._scaler = None, None
        return self

    def summary(self) -> str:
        """The learner as a table: groups with trainable and frozen parameters, input, optimizer, loss
        and callbacks. Printed in a script; in a notebook the returned text displays itself.

        Example:
            >>> learn.summary()  # doctest: +SKIP
        """
        from unfreeze.train.summary import learner_summary

        text = learner_summary(self)
        if _in_notebook():
            return _Text(text)
        print(text)
        return text

    def save_checkpoint(self, path: str | Path, callbacks: Sequence[Callback] = ()) -> Path:
        """Save `state_dict()` (and the callbacks' states) as a resumable checkpoint, atomically.

        Example:
            >>> learn.save_checkpoint("run/checkpoint.pt")  # doctest: +SKIP
        """
        return save_checkpoint(self, path, callbacks=callbacks)

    def state_dict(self, keys: Collection[str] | None = None, *, grads: bool = False) -> dict[str, Any]:
        """Everything needed to put this learner back exactly: the one serialiser of the learner.

        Checkpoints save it (`torch.save`, loadable with `weights_only=True`: only tensors, numbers,
        strings, lists and dicts), `lr_find` restores it in memory, `SaveBestModel` keeps its model
        section. Every tensor is a copy, so later training does not change a saved state.

        Sections (`STATE_KEYS`): `model` (weights and buffers), `optimizer`, `scaler` (fp16 GradScaler),
        `freeze` (frozen_to, train_bn, each parameter's requires_grad), `modes` (each module's
        train/eval flag), `position` (epoch, step, the loader's epoch), `progress` (the fit in
        progress: schedule, recipe and phase, last finished epoch), `recorder`, `rng` (torch CPU and
        CUDA, Python, NumPy).

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


def _check_epochs(n_epoch: Any) -> int:
    if isinstance(n_epoch, bool) or not isinstance(n_epoch, int) or n_epoch < 1:
        raise ValueError(f"The number of epochs must be a whole number >= 1, got {n_epoch!r}.")
    return n_epoch


def _one_of(value: Any, alias: Any, name: str, alias_name: str, default: Any) -> Any:
    """unfreeze's argument or fastai's spelling of it (not both), else the default."""
    if value is not None and alias is not None and value != alias:
        raise ValueError(f"{name}={value!r} and {alias_name}={alias!r} name the same setting; pass only one "
                         f"({alias_name} is fastai's spelling of {name}).")
    return value if value is not None else alias if alias is not None else default


def _in_notebook() -> bool:
    # Only a process that imported IPython can be a kernel: scripts skip importing matplotlib.
    if "IPython" not in sys.modules:
        return False
    from unfreeze.plots import in_notebook

    return in_notebook()


_NOTES_SHOWN: set[str] = set()


def _note_once(note: str) -> None:
    """Print a note the first time it comes up in this process."""
    if note not in _NOTES_SHOWN and distributed.is_main_process():
        _NOTES_SHOWN.add(note)
        print(note)


class _Text(str):
    """Text that a notebook displays as itself (no quotes, real line breaks), as fastai's summary."""

    def __repr__(self) -> str:
        return str(self)
