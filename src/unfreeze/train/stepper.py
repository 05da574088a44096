"""The optimizer step: optimizer, mixed precision, gradient accumulation and the DDP/compile wrapper.

`Stepper.train_step` is the one training step: `fit` (through the loop) and `lr_find` both take it.
The stepper owns the optimizer (built lazily over the parameters that train, cleared whenever the
freezing changes), the autocast dtype and fp16 GradScaler, the wrapper the forward pass runs through
(DDP under torchrun, `torch.compile` if asked), and the "optimizer" and "scaler" state sections.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from unfreeze import distributed
from unfreeze.inference import channels_last
from unfreeze.models.batchnorm_folding import folded_batchnorm
from unfreeze.models.small_map_convolutions import small_map_convolutions
from unfreeze.train.groups import ParamGroups

__all__ = ["OPTIMIZERS", "Stepper", "checked_loss_func"]

OPTIMIZERS = ("adamw", "sgd", "ranger")


def checked_loss_func(loss_func: Any) -> Any:
    """`loss_func` itself if it can be called as `loss_func(logits, targets)`; a TypeError with the fix if not.

    Example:
        >>> checked_loss_func(nn.CrossEntropyLoss)  # doctest: +SKIP
        TypeError: loss_func takes a loss to call, got CrossEntropyLoss (a class): ... loss_func=CrossEntropyLoss()
    """
    if isinstance(loss_func, type):
        raise TypeError(
            f"loss_func takes a loss to call as loss_func(logits, targets), got {loss_func.__name__} (a class): "
            f"add () to create one, loss_func={loss_func.__name__}()."
        )
    if not callable(loss_func):
        raise TypeError(
            "loss_func takes a loss to call as loss_func(logits, targets), such as nn.CrossEntropyLoss() or "
            f"a function, got {loss_func!r}."
        )
    return loss_func


def _checked_loss(loss: Any) -> torch.Tensor:
    """The loss of a batch if backward can start from it: one number in a tensor with a gradient."""
    expected = "loss_func must return one number, a 0-d tensor computed from the logits"
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{expected}, got a {type(loss).__name__}: return the torch result itself, not "
                        ".item() or float(...), so that it is computed from the logits and backward can run.")
    if loss.ndim != 0:
        raise TypeError(f"{expected}, got a tensor of shape {tuple(loss.shape)}: a loss with reduction='none' "
                        "gives one value per item. Use reduction='mean' (the default), or return loss.mean().")
    if not loss.requires_grad:
        raise TypeError(f"{expected}, got one with no gradient: it was not computed from the logits "
                        "(torch.tensor(...), .item() or .detach() cut it off), or no parameter requires grad.")
    return loss


def _cuda_amp_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class _DecoupledSGD(torch.optim.SGD):
    """torch's SGD with decoupled weight decay, as fastai's `SGD` (`decouple_wd=True`) and AdamW: each step
    scales the weights by `1 - lr * weight_decay`, then takes the momentum step on the plain gradient.
    torch's own `weight_decay` adds `weight_decay * p` to the gradient instead (L2), which the momentum
    then accumulates."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        decays = [group["weight_decay"] for group in self.param_groups]
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None and group["weight_decay"]:
                    param.mul_(1 - group["lr"] * group["weight_decay"])
            group["weight_decay"] = 0.0
        try:
            return super().step(closure)
        finally:
            for group, decay in zip(self.param_groups, decays, strict=True):
                group["weight_decay"] = decay


class Stepper:
    """Takes optimizer steps on a model whose parameter groups `groups` describes.

    Args:
        model: The model (its parameters are the ones `groups` maps).
        groups: The parameter groups; biases and norm weights of each get no weight decay.
        loss_func: The loss of a batch (`loss_func(logits, targets)`).
        device: Where the model runs: CUDA autocasts (bf16, or fp16 with a loss scaler) and reads
            each loss one step late (`overlap_steps`).
        optimizer: "adamw" (fastai's Adam: beta2 0.99, eps 1e-5, decoupled weight decay), "sgd", or "ranger"
            (fastai's RAdam + Lookahead).
        weight_decay: Decoupled weight decay of the weight matrices.
        grad_accum: Micro-batches per batch whose gradients add up before one step.
        compile_model: Run the forward pass through `torch.compile` (True: inductor; a string names a backend).

    Example:
        >>> stepper = Stepper(model, ParamGroups(model), nn.CrossEntropyLoss(), torch.device("cpu"))  # doctest: +SKIP
        >>> stepper.set_hyper([1e-3] * 3, 0.9); stepper.train_step(images, labels)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, groups: ParamGroups, loss_func: nn.Module, device: torch.device, *,
                 optimizer: str = "adamw", weight_decay: float = 0.01, grad_accum: int = 1,
                 compile_model: bool | str = False) -> None:
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
        if isinstance(grad_accum, bool) or not isinstance(grad_accum, int) or grad_accum < 1:
            raise ValueError(f"grad_accum must be a whole number >= 1, got {grad_accum!r}.")
        self._model = model
        self._groups = groups
        self._loss_func = checked_loss_func(loss_func)
        self.device = device
        self.optimizer_name = optimizer
        self.weight_decay = float(weight_decay)
        self.grad_accum = grad_accum
        self.compile_model = compile_model
        # Reading a loss on the host waits for the GPU; on CUDA the loop reads each loss one step late.
        self.overlap_steps = device.type == "cuda"
        self._optimizer: torch.optim.Optimizer | None = None
        self._train_model: nn.Module = model
        self._scaler: torch.amp.GradScaler | None = None
        self._amp_dtype: torch.dtype | None = _cuda_amp_dtype() if device.type == "cuda" else None

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer, or None until the next step builds it (after a freeze, or a new learner)."""
        return self._optimizer

    @property
    def loss_func(self) -> Any:
        """The loss of a batch, `loss_func(logits, targets)`; setting it checks that it can be called."""
        return self._loss_func

    @loss_func.setter
    def loss_func(self, loss_func: Any) -> None:
        self._loss_func = checked_loss_func(loss_func)

    @property
    def train_model(self) -> nn.Module:
        """The module the forward pass of a training step runs: the model, wrapped by DDP or compile."""
        return self._train_model

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype on CUDA (bf16, or fp16 where bf16 is missing); None means float32."""
        return self._amp_dtype

    def set_mixed_precision(self, enabled: bool) -> bool:
        """Turn autocast on (CUDA only) or off; returns whether it is on. Off also drops the scaler."""
        if not enabled:
            self._amp_dtype, self._scaler = None, None
        elif self.device.type == "cuda":
            self._amp_dtype = _cuda_amp_dtype()
        return self._amp_dtype is not None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = self._groups.params
        groups: list[dict[str, Any]] = []
        for index, names in enumerate(self._groups.groups):
            tensors = [params[n] for n in names]
            # Biases and norm weights (1-d tensors) get no weight decay (fastai's wd_bn_bias=False).
            decay = [p for p in tensors if p.ndim > 1]
            no_decay = [p for p in tensors if p.ndim <= 1]
            for chunk, wd in ((decay, self.weight_decay), (no_decay, 0.0)):
                if chunk:
                    groups.append({"params": chunk, "weight_decay": wd, "layer_group": index})
        if self.optimizer_name == "sgd":
            return _DecoupledSGD(groups, lr=1e-3, momentum=0.9)
        if self.optimizer_name == "ranger":
            # fastai's ranger: RAdam (beta1 0.95, beta2 0.99, eps 1e-6, decoupled weight decay) inside
            # Lookahead (k=6, alpha=0.5), here torch's RAdam in timm's Lookahead.
            from timm.optim import Lookahead

            radam = torch.optim.RAdam(groups, lr=1e-3, betas=(0.95, 0.99), eps=1e-6, decoupled_weight_decay=True)
            return Lookahead(radam, alpha=0.5, k=6)
        # Fused: one kernel over every tensor, a third of the single-tensor loop's time a step on the CPU.
        # It writes the weights without counting the write, so `train_step` counts it (the folded batch
        # norms' cache reads that count).
        settings: dict[str, Any] = {"lr": 1e-3, "betas": (0.9, 0.99), "eps": 1e-5}
        if self.device.type in ("cpu", "cuda"):
            try:  # copies: a torch that refuses fused=True does so after writing it into the groups it was given
                return torch.optim.AdamW([dict(group) for group in groups], fused=True, **settings)
            except RuntimeError:  # a torch without this device's fused kernel: the per-tensor loop
                pass
        return torch.optim.AdamW(groups, **settings)

    def ensure_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer, built (with the DDP/compile wrapper) if a freeze or a restore cleared it."""
        if self._optimizer is None:
            self._optimizer = self._make_optimizer()
            # DDP registers the parameters that train at construction: rebuild it with the optimizer.
            self._train_model = distributed.wrap(self._model, self.device)
            if self.compile_model:
                backend = "inductor" if self.compile_model is True else str(self.compile_model)
                self._train_model = torch.compile(self._train_model, backend=backend)
        return self._optimizer

    def reset_optimizer(self) -> None:
        """Drop the optimizer and its state (Adam moments); the next step builds a new one, as fastai."""
        self._optimizer = None

    def set_hyper(self, lrs: Sequence[float], mom: float) -> None:
        """Set each parameter group's LR and the momentum (Adam beta1 or SGD momentum)."""
        for group in self.ensure_optimizer().param_groups:
            group["lr"] = lrs[group["layer_group"]]
            if "betas" in group:
                group["betas"] = (mom, group["betas"][1])
            else:
                group["momentum"] = mom

    @contextlib.contextmanager
    def weight_decay_for_fit(self, wd: float | None) -> Iterator[None]:
        """fastai's per-fit `wd`: the decayed groups use it during the block, the stepper's own after it.

        An optimizer built inside the block (after a freeze) reads `weight_decay`; one built before it is
        updated in place.
        """
        if wd is None:
            yield
            return
        own = self.weight_decay
        self.weight_decay = float(wd)
        self._set_group_weight_decay()
        try:
            yield
        finally:
            self.weight_decay = own
            self._set_group_weight_decay()

    def _set_group_weight_decay(self) -> None:
        for group in self._optimizer.param_groups if self._optimizer is not None else ():
            # Biases and norm weights (1-d) never decay; see _make_optimizer.
            if any(param.ndim > 1 for param in group["params"]):
                group["weight_decay"] = self.weight_decay

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast to `amp_dtype` on CUDA; nothing in float32."""
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self._amp_dtype)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, *, skip_non_finite: bool = True) -> torch.Tensor:
        """One optimizer step on a batch; returns the detached loss (the mean over ranks under DDP).

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
            chunk = channels_last(chunk)
            # The frozen (convolution, norm) pairs of a frozen body run folded: no gradient reaches them;
            # the training convolutions on small late maps skip the kernel taps that meet only padding, and
            # depthwise ones there take their weight gradient as shifted products.
            # Both change the modules' forward: not under torch.compile (it would recompile).
            folded = folded_batchnorm(self._model, chunk) if not self.compile_model else contextlib.nullcontext()
            small = small_map_convolutions(self._model) if not self.compile_model else contextlib.nullcontext()
            with sync, folded, small:
                with self.autocast():
                    loss = _checked_loss(self.loss_func(self._train_model(chunk), chunk_labels))
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
            optimizer.zero_grad(set_to_none=True)
            return total
        if self._scaler is not None:
            self._scaler.step(optimizer)
            self._scaler.update()
        else:
            optimizer.step()
        if self._counts_writes(optimizer):
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        torch.autograd.graph.increment_version(param)
        return total

    @staticmethod
    def _counts_writes(optimizer: torch.optim.Optimizer) -> bool:
        # A fused torch optimizer writes the weights in one kernel that leaves their version counts as they were.
        return any(group.get("fused") for group in optimizer.param_groups)

    def state_dict(self, keys: Collection[str] = ("optimizer", "scaler")) -> dict[str, Any]:
        """The "optimizer" (its state_dict, or None) and "scaler" (fp16 GradScaler, or None) sections, as copies."""
        builders = {
            "optimizer": lambda: None if self._optimizer is None else copy.deepcopy(self._optimizer.state_dict()),
            "scaler": lambda: None if self._scaler is None else self._scaler.state_dict(),
        }
        return {key: build() for key, build in builders.items() if key in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the sections present in `state`: a new optimizer over the trainable parameters, then
        the saved moments; the scaler as saved (None drops it)."""
        if "optimizer" in state:
            self._optimizer = None
            if state["optimizer"] is not None:
                optimizer = self.ensure_optimizer()
                optimizer.load_state_dict(_with_fused_of(state["optimizer"], optimizer))
        if state.get("scaler") is not None:
            self._scaler = self._scaler or torch.amp.GradScaler("cuda")
            self._scaler.load_state_dict(state["scaler"])
        elif "scaler" in state:
            self._scaler = None


def _with_fused_of(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """`saved` (an optimizer state_dict) with each group's "fused" as `optimizer` has it.

    A torch optimizer takes its groups' settings from the state it loads: a checkpoint written before the
    CPU step was fused would go on unfused (slower, and not the uninterrupted run's rounding).
    """
    groups = optimizer.param_groups
    if len(saved.get("param_groups", ())) != len(groups):
        return saved  # load_state_dict says what does not fit
    return {**saved, "param_groups": [{**kept, "fused": group["fused"]} if "fused" in group else kept
                                      for kept, group in zip(saved["param_groups"], groups, strict=True)]}
