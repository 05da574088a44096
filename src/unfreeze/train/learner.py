"""The Learner: one training loop, freezing, fit_one_cycle and fine_tune.

`Learner.fit` is the only loop. `fit_one_cycle`, `fine_tune` and the LR finder are short compositions
of it (or of its `train_step`). Everything architectural goes through the backbone contract of
`unfreeze.models` (body, head, `param_groups`, mean/std), so the same code freezes a resnet, an
EfficientNet or a ViT.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unfreeze.train import distributed
from unfreeze.train.callbacks import Callback, ProgressCallback, Recorder
from unfreeze.train.metrics import Metric, metric_name, resolve_metrics
from unfreeze.train.schedules import ConstantSchedule, LRSpec, OneCycleSchedule, resolve_lrs

__all__ = ["Learner", "NonFiniteLossError", "default_device"]

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite; the last good weights are restored."""


def default_device() -> torch.device:
    """CUDA if available, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        # Under torchrun each process drives the GPU of its local rank.
        return torch.device("cuda", distributed.local_rank()) if distributed.is_distributed() else torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_epochs(n_epoch: Any) -> int:
    if isinstance(n_epoch, bool) or not isinstance(n_epoch, int) or n_epoch < 1:
        raise ValueError(f"The number of epochs must be a whole number >= 1, got {n_epoch!r}.")
    return n_epoch


def _observes_batches(callback: Callback) -> bool:
    """True for a callback that acts per batch and wants the strict event order (see callbacks.py)."""
    kind = type(callback)
    acts = kind.before_batch is not Callback.before_batch or kind.after_batch is not Callback.after_batch
    return acts and callback.strict_batch_order


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


class Learner:
    """Trains a `TransferModel` on `ImageDataLoaders`.

    Args:
        dls: The data (`ImageDataLoaders`).
        model: A model honouring the backbone contract (`body`, `head`, `param_groups`, `mean`, `std`).
        metrics: Metric callables or built-in names ("error_rate", "accuracy", "top_k_accuracy",
            "f1_score"), computed over the whole validation set.
        loss_func: Defaults to cross-entropy.
        optimizer: "adamw" (fastai's Adam: beta2 0.99, eps 1e-5, decoupled weight decay) or "sgd".
        weight_decay: Decoupled weight decay; never applied to biases and norm parameters.
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
            another backend). Off by default: on efficientnet_lite0 it gave no gain on an H200 and
            cost 50 s of compilation (REFERENCE.md).

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
        optimizer: str = "adamw",
        weight_decay: float = 0.01,
        train_bn: bool = True,
        device: str | torch.device | None = None,
        seed: int | None = None,
        quiet: bool = False,
        grad_accum: int = 1,
        sync_bn: bool = False,
        compile_model: bool | str = False,
    ) -> None:
        if optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}.")
        if getattr(dls, "n_classes", 2) < 2:
            raise ValueError(
                f"A classifier needs at least 2 classes; the data has {dls.n_classes} ({dls.vocab}). "
                "Add a folder per class."
            )
        if isinstance(grad_accum, bool) or not isinstance(grad_accum, int) or grad_accum < 1:
            raise ValueError(f"grad_accum must be a whole number >= 1, got {grad_accum!r}.")
        self.metrics = resolve_metrics(metrics)
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
        # (oneDNN): efficientnet_lite0 trains 1.8x faster on 2 CPU cores than with NCHW batches.
        self.model = self.model.to(memory_format=torch.channels_last)
        if hasattr(self.dls, "set_normalization") and hasattr(model, "mean"):
            self.dls.set_normalization(model.mean, model.std)
        self.loss_func = loss_func if loss_func is not None else nn.CrossEntropyLoss()
        self.optimizer_name = optimizer
        self.weight_decay = weight_decay
        self.train_bn = train_bn
        self.seed = seed
        self.quiet = quiet
        self.recorder = Recorder()
        self.optimizer: torch.optim.Optimizer | None = None
        self.frozen_to = 0
        self.epoch = 0
        self.step = 0
        self.interrupted = False
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
    def metric_names(self) -> list[str]:
        """Column names of the metrics, in order."""
        return [metric_name(m) for m in self.metrics]

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

    def _set_train_mode(self) -> None:
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

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if images.ndim == 4 else images

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
                    loss = self.loss_func(self._train_model(self._prepare(chunk)), chunk_labels)
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

    @torch.no_grad()
    def collect_logits(self, loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model over a loader in eval mode; return float logits and targets, in order.

        Under torchrun each rank sees a disjoint slice and the results are gathered, so every item
        counts exactly once.
        """
        was_training = self.model.training
        self.model.eval()
        outputs, targets = [], []
        try:
            with self._cudnn_autotune(training=False):
                for images, labels in loader:
                    with self._autocast():
                        outputs.append(self.model(self._prepare(images)).float())
                    targets.append(labels)
        finally:
            self.model.train(was_training)
        n_out = getattr(self.model, "n_out", 0)
        logits = torch.cat(outputs) if outputs else torch.zeros(0, n_out, device=self.device)
        labels = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long, device=self.device)
        return distributed.gather_ordered(logits), distributed.gather_ordered(labels)

    def validate(self, loader: Any = None) -> dict[str, float]:
        """Loss and metrics over the whole validation set (or `loader`).

        Example:
            >>> learn.validate()  # doctest: +SKIP
            {'valid_loss': 0.41, 'error_rate': 0.12}
        """
        logits, targets = self.collect_logits(self.dls.valid if loader is None else loader)
        if len(targets) == 0:
            return {"valid_loss": math.nan, **{name: math.nan for name in self.metric_names}}
        logs = {"valid_loss": self.loss_func(logits, targets).item()}
        for metric in self.metrics:
            logs[metric_name(metric)] = float(metric(logits, targets))
        return logs

    # ------------------------------------------------------------------ the loop

    def fit(
        self,
        n_epoch: int,
        lr: LRSpec = 1e-3,
        *,
        callbacks: Sequence[Callback] = (),
        checkpoint: str | Path | None = None,
        resume: str | Path | None = None,
        _schedule: Any = None,
    ) -> list[dict[str, Any]]:
        """Train for `n_epoch` epochs at a constant LR per group (or along `_schedule`).

        Args:
            n_epoch: Number of epochs, >= 1.
            lr: A float, `slice(hi)`, `slice(lo, hi)` or one LR per group.
            callbacks: Extra callbacks for this fit only.
            checkpoint: Save a resumable checkpoint to this path after every epoch.
            resume: Continue an interrupted fit from this checkpoint (same call arguments).

        Returns:
            The rows this fit added to `recorder.history`.

        Example:
            >>> learn.fit(2, 1e-3)  # doctest: +SKIP
        """
        n_epoch = _check_epochs(n_epoch)
        schedule = _schedule if _schedule is not None else ConstantSchedule(resolve_lrs(lr, self.n_groups))
        steps_per_epoch = len(self.dls.train)
        if steps_per_epoch == 0:
            raise ValueError(
                f"The training set has {len(self.dls.train.dataset)} items, fewer than one batch of "
                f"{self.dls.train.batch_size}. Use a smaller bs or add images."
            )
        start_epoch, step_in_fit = 0, 0
        if resume is not None:
            from unfreeze.train.checkpoint import load_checkpoint

            start_epoch = load_checkpoint(self, resume) + 1
            step_in_fit = start_epoch * steps_per_epoch
        callbacks = [self.recorder, ProgressCallback(self.quiet or not distributed.is_main_process()), *callbacks]
        self.ensure_optimizer()
        if resume is None:
            # fastai restarts the loss EMA at every fit; a resumed fit continues the interrupted one.
            self.recorder.reset_smoothing()
            self.recorder.phase_starts.append(len(self.recorder.losses))
        self.interrupted = False
        rows_before = len(self.recorder.history)
        fit_logs: dict[str, float] = {}
        for cb in callbacks:
            cb.before_fit(self)
        pending: _PendingLoss | None = None  # a step whose loss is still on its way to the host
        good_state: dict[str, torch.Tensor] | None = None  # the weights at the start of the epoch
        try:
            with self._seeded(), self._cudnn_autotune():
                for epoch in range(start_epoch, n_epoch):
                    self.epoch = epoch
                    self._reseed(epoch)
                    self.dls.train.set_epoch(self._epoch_counter())
                    for cb in callbacks:
                        cb.before_epoch(epoch)
                    start, good_state = time.time(), self._snapshot_weights()
                    self._set_train_mode()
                    stop = False
                    # On a GPU the loss of step k is read after step k+1 is queued, so the GPU does not
                    # wait for the host between steps. A callback that acts per batch and asks for the
                    # strict before_batch(k), after_batch(k) order gets it: each loss is then read at once.
                    overlap = self._overlap_steps and not any(_observes_batches(cb) for cb in callbacks)
                    for images, labels in self.dls.train:
                        lrs, mom = schedule.lrs_at(step_in_fit), schedule.mom_at(step_in_fit)
                        self.set_hyper(lrs, mom)
                        for cb in callbacks:
                            cb.before_batch(self.step)
                        loss = self.train_step(images, labels, skip_non_finite=not overlap)
                        step_in_fit += 1
                        self.step += 1
                        current = _PendingLoss.queue(loss, lrs, mom, self.step, overlap)
                        done, pending = (pending, current) if overlap else (current, None)
                        if done is not None and self._after_step(done, epoch, good_state, callbacks):
                            stop = True
                            break
                    if pending is not None:
                        done, pending = pending, None
                        stop = self._after_step(done, epoch, good_state, callbacks) or stop
                    distributed.sync_buffers(self.model)
                    for cb in callbacks:
                        cb.before_validate(epoch)
                    valid_logs = self.validate()
                    for cb in callbacks:
                        cb.after_validate(epoch, valid_logs)
                    fit_logs = {
                        "epoch": len(self.recorder.history),
                        "train_loss": self.recorder.smooth_losses[-1] if self.recorder.smooth_losses else math.nan,
                        **valid_logs,
                    }
                    fit_logs["time"] = time.time() - start
                    self.recorder.history.append(fit_logs)
                    for cb in callbacks:
                        stop = bool(cb.after_epoch(epoch, fit_logs)) or cb.stop_training or stop
                    if checkpoint is not None and distributed.is_main_process():
                        from unfreeze.train.checkpoint import save_checkpoint

                        save_checkpoint(self, checkpoint, epoch=epoch, total_steps=n_epoch * steps_per_epoch)
                    if stop:
                        break
        except KeyboardInterrupt:
            # Ctrl-C ends the fit cleanly: the model keeps its current weights and the history is kept.
            self.interrupted = True
            self._settle(pending, good_state)
            self.recorder.add_note(f"interrupted by the user at epoch {self.epoch}, step {self.step}")
            if not self.quiet:
                print(f"Training interrupted at epoch {self.epoch}; the model and history are kept.")
        except NonFiniteLossError:
            raise  # the weights are already restored
        except Exception:
            self._settle(pending, good_state)
            raise
        finally:
            self.model.eval()
            for cb in callbacks:
                cb.after_fit(fit_logs)
        return self.recorder.history[rows_before:]

    def _settle(self, pending: _PendingLoss | None, good_state: dict[str, torch.Tensor] | None) -> None:
        """After an interruption: a step still unread may have been NaN; then restore the epoch start."""
        if pending is not None and good_state is not None:
            loss = pending.read()
            if not math.isfinite(loss):
                self._restore_epoch_start(good_state, pending.step, f"the last step's loss was {loss}; the "
                                          f"weights from the start of epoch {self.epoch} were restored")

    def _restore_epoch_start(self, good_state: dict[str, torch.Tensor], bad_step: int, note: str) -> None:
        """Undo a non-finite step (and, on a GPU, the one queued after it): back to the epoch's start."""
        self.model.load_state_dict(good_state)
        self.optimizer = None
        self.step = bad_step - 1  # the steps taken before the bad one
        self.recorder.add_note(note)

    def _after_step(self, done: _PendingLoss, epoch: int, good_state: dict[str, torch.Tensor],
                    callbacks: Sequence[Callback]) -> bool:
        """Read one step's loss, record it and run after_batch; True if a callback asks to stop."""
        lrs, mom, step = done.lrs, done.mom, done.step
        loss = done.read()
        if not math.isfinite(loss):
            message = (
                f"The training loss became {loss} at epoch {epoch}, step {step - 1}; the weights from the "
                f"start of epoch {epoch} were restored. Lower the LR (try learn.lr_find()) or check the data "
                "for corrupt labels."
            )
            self._restore_epoch_start(good_state, step, message)
            raise NonFiniteLossError(message)
        smooth = self.recorder.record_step(loss, lrs, mom)
        logs = {"loss": loss, "smooth_loss": smooth, "lr": lrs[-1]}
        stop = False
        for cb in callbacks:
            stop = bool(cb.after_batch(step, logs)) or cb.stop_training or stop
        return stop

    def _epoch_counter(self) -> int:
        # Each epoch of the learner's life gets fresh shuffles and augmentations, also across fits.
        return len(self.recorder.history)

    def _snapshot_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @contextlib.contextmanager
    def _cudnn_autotune(self, training: bool = True) -> Iterator[None]:
        # Training batches repeat one shape every step, so letting cuDNN time its algorithms once per
        # shape pays: on an H200, unfrozen epochs ran at about 11,000 instead of 9,300 images/s
        # (benchmarks/results/gpu.md). Evaluation shapes recur far less often, and the first validation
        # of a fresh process took about 4.5 s longer with autotuning on, so evaluation keeps the user's
        # own setting (the effect of that choice is not yet measured on a GPU). Skipped
        # when the user asked for deterministic algorithms; the global setting is always restored.
        previous = torch.backends.cudnn.benchmark
        outermost = self._cudnn_user is None
        if outermost:
            self._cudnn_user = previous
        deterministic = torch.backends.cudnn.deterministic or torch.are_deterministic_algorithms_enabled()
        autotune = training and self.device.type == "cuda" and not deterministic
        torch.backends.cudnn.benchmark = bool(self._cudnn_user) or autotune
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = previous
            if outermost:
                self._cudnn_user = None

    @contextlib.contextmanager
    def _seeded(self) -> Iterator[None]:
        if self.seed is None:
            yield
            return
        devices = [torch.cuda.current_device()] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            yield

    def _reseed(self, epoch: int) -> None:
        if self.seed is not None:
            # Dropout draws depend only on (seed, epoch of the learner's life): resumable and repeatable.
            # Ranks draw different dropout masks, as they see different images.
            torch.manual_seed(self.seed * 100_003 + self._epoch_counter() * 1_009 + distributed.rank())

    def fit_one_cycle(
        self,
        n_epoch: int,
        lr_max: LRSpec | str | None = None,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
        *,
        callbacks: Sequence[Callback] = (),
        checkpoint: str | Path | None = None,
        resume: str | Path | None = None,
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
            callbacks, checkpoint, resume: As in `fit`.

        Example:
            >>> learn.fit_one_cycle(3, slice(1e-5, 1e-3))  # doctest: +SKIP
        """
        n_epoch = _check_epochs(n_epoch)
        if lr_max is None:
            lr_max = 1e-3
        if isinstance(lr_max, str):
            lr_max = self._auto_lr(lr_max, "lr_max")
        lrs = resolve_lrs(lr_max, self.n_groups)
        total = n_epoch * len(self.dls.train)
        schedule = OneCycleSchedule(lrs, total, div=div, div_final=div_final, pct_start=pct_start, moms=moms)
        return self.fit(n_epoch, lrs, callbacks=callbacks, checkpoint=checkpoint, resume=resume, _schedule=schedule)

    def fine_tune(
        self,
        epochs: int,
        base_lr: float | str = 2e-3,
        freeze_epochs: int = 1,
        lr_mult: float = 100,
        pct_start: float = 0.3,
        div: float = 5.0,
        *,
        callbacks: Sequence[Callback] = (),
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

        Example:
            >>> learn.fine_tune(4)  # doctest: +SKIP
        """
        epochs = _check_epochs(epochs)
        self.freeze()
        if isinstance(base_lr, str):
            base_lr = self._auto_lr(base_lr, "base_lr")
        rows = []
        if freeze_epochs > 0:
            rows += self.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99, callbacks=callbacks)
            if self.interrupted:
                return rows
        base_lr /= 2
        self.unfreeze()
        rows += self.fit_one_cycle(
            epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, callbacks=callbacks
        )
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
    ) -> Any:
        """Run the LR range test and restore the learner exactly afterwards.

        Args:
            start_lr, end_lr: The head LR rises exponentially between these over `num_it` steps.
            num_it: Number of steps (the training loader is cycled if it is shorter).
            stop_div: Stop once the smoothed loss exceeds 4x its best.
            plot: Write the loss-vs-LR plot with every suggestion marked to this PNG.
            lr_ratios: Keep discriminative ratios between groups (e.g. `slice(1e-5, 1e-3)`); the
                default moves every group together, as fastai.
            quiet: Do not warn about suspicious curves.

        Returns:
            An `LRFindResult` with `valley` (the default suggestion), `slide`, `minimum`, `steep`,
            the curve (`lrs`, `losses`) and `slice()` for the groups.

        Example:
            >>> result = learn.lr_find(plot="lr_find.png"); result.valley  # doctest: +SKIP
        """
        from unfreeze.train.lr_find import lr_find

        # Every rank steps the same LRs and sees the rank-averaged loss; rank 0's result is broadcast
        # so that all ranks train with one LR (lr_find itself plots and prints on rank 0 only).
        result = lr_find(
            self, start_lr=start_lr, end_lr=end_lr, num_it=num_it, stop_div=stop_div, plot=plot,
            lr_ratios=lr_ratios, quiet=quiet,
        )
        return distributed.broadcast_object(result)

    # ------------------------------------------------------------------ inference and export
    # Thin entry points: the work lives in unfreeze.inference, which owns prediction and export.

    def get_preds(self, dl: Any = None, with_loss: bool = False) -> Any:
        """Softmax probabilities and targets over `dl` (default: validation), in dataset order.

        Example:
            >>> probs, targets = learn.get_preds()  # doctest: +SKIP
        """
        from unfreeze.inference.predict import get_preds

        return get_preds(self, dl=dl, with_loss=with_loss)

    def predict(self, item: Any) -> Any:
        """Predict one image (path, PIL image, numpy array or tensor): `(label, index, probs)`.

        Example:
            >>> label, index, probs = learn.predict("cat.jpg")  # doctest: +SKIP
        """
        from unfreeze.inference.predict import predict

        return predict(self, item)

    def predict_batch(self, items: Any, bs: int = 64) -> Any:
        """Stream predictions over many images or a folder, in constant memory.

        Example:
            >>> rows = learn.predict_batch("photos/")  # doctest: +SKIP
        """
        from unfreeze.inference.predict import predict_batch

        return predict_batch(self, items, bs=bs)

    def tta(self, dl: Any = None, n: int = 4, beta: float | None = 0.25) -> Any:
        """Test-time augmentation with fastai's defaults: `(probs, targets)`.

        Example:
            >>> probs, targets = learn.tta()  # doctest: +SKIP
        """
        from unfreeze.inference.predict import tta

        return tta(self, dl=dl, n=n, beta=beta)

    def export(self, path: str | Path = "model.unfreeze") -> Path:
        """Write a pickle-free export (safetensors + JSON) that `load_learner` reads.

        Example:
            >>> learn.export("model.unfreeze")  # doctest: +SKIP
        """
        from unfreeze.inference.export import export

        if distributed.is_main_process():
            export(self, path)
        distributed.barrier()
        return Path(path)

    def export_onnx(self, path: str | Path = "model.onnx", **options: Any) -> Path:
        """Export the inference model, normalization included, to ONNX (needs `unfreeze[onnx]`).

        Example:
            >>> learn.export_onnx("model.onnx")  # doctest: +SKIP
        """
        from unfreeze.inference.export import export_onnx

        if distributed.is_main_process():
            export_onnx(self, path, **options)
        distributed.barrier()
        return Path(path)

    # ------------------------------------------------------------------ weights

    def save_weights(self, path: str | Path) -> Path:
        """Save the model's weights as safetensors (atomically)."""
        from safetensors.torch import save_file

        from unfreeze._io import atomic_path, cpu_state_dict

        if distributed.is_main_process():
            state = cpu_state_dict(self.model)
            with atomic_path(path) as tmp:
                save_file(state, str(tmp))
        distributed.barrier()
        return Path(path)

    def load_weights(self, path: str | Path) -> None:
        """Load weights saved by `save_weights`."""
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(str(path), device=str(self.device)))

    def save_checkpoint(self, path: str | Path) -> Path:
        """Save weights, optimizer, position, history, freeze state and RNG states (resumable)."""
        from unfreeze.train.checkpoint import save_checkpoint

        return save_checkpoint(self, path, epoch=self.epoch, total_steps=None)

    def state_snapshot(self) -> dict[str, Any]:
        """Everything `restore_snapshot` needs to put the learner back exactly (used by lr_find).

        Held in memory: weights, gradients, optimizer and grad-scaler state, freeze flags, each
        module's train/eval mode, the recorder, the position (step, epoch, loader epoch) and every
        RNG (torch CPU/CUDA, Python, NumPy).
        """
        return {
            "model": copy.deepcopy(self.model.state_dict()),
            "grads": {n: None if p.grad is None else p.grad.detach().clone() for n, p in self._param_names.items()},
            "optimizer": None if self.optimizer is None else copy.deepcopy(self.optimizer.state_dict()),
            "scaler": None if self._scaler is None else (self._scaler, copy.deepcopy(self._scaler.state_dict())),
            "requires_grad": {n: p.requires_grad for n, p in self._param_names.items()},
            "training": {n: m.training for n, m in self.model.named_modules()},
            "frozen_to": self.frozen_to,
            "recorder": copy.deepcopy(self.recorder.state_dict()),
            "step": self.step,
            "epoch": self.epoch,
            "loader_epoch": self.dls.train.epoch,
            "cpu_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python_rng": random.getstate(),
            "numpy_rng": np.random.get_state(),
        }

    def restore_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Restore a `state_snapshot` bit for bit."""
        self.model.load_state_dict(snapshot["model"])
        for name, param in self._param_names.items():
            param.requires_grad_(snapshot["requires_grad"][name])
            param.grad = snapshot["grads"][name]
        for name, module in self.model.named_modules():
            module.training = snapshot["training"][name]
        self.frozen_to = snapshot["frozen_to"]
        if snapshot["optimizer"] is None:
            self.optimizer = None
        else:
            # Load in place: anything holding learner.optimizer keeps a live object.
            self.ensure_optimizer().load_state_dict(snapshot["optimizer"])
        self._scaler = None if snapshot["scaler"] is None else snapshot["scaler"][0]
        if self._scaler is not None:
            self._scaler.load_state_dict(snapshot["scaler"][1])
        self.recorder.load_state_dict(snapshot["recorder"])
        self.step, self.epoch = snapshot["step"], snapshot["epoch"]
        self.dls.train.set_epoch(snapshot["loader_epoch"])
        torch.set_rng_state(snapshot["cpu_rng"])
        if snapshot["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(snapshot["cuda_rng"])
        random.setstate(snapshot["python_rng"])
        np.random.set_state(snapshot["numpy_rng"])

    def __repr__(self) -> str:
        arch = getattr(self.model, "arch", type(self.model).__name__)
        return (
            f"Learner(arch={arch!r}, groups={self.n_groups}, frozen_to={self.frozen_to}, "
            f"device={self.device}, metrics={self.metric_names})"
        )
