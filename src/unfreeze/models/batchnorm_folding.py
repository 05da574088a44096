"""Fold frozen batch norms into the convolutions before them, for the passes that do not train them.

A batch norm in inference mode is an affine map per channel: after a convolution it can be folded into
that convolution's weights and bias, and the pair costs one convolution. On a CPU the norm layers of
an EfficientNet take about as long as its convolutions (benchmarks/results/profile.md), so every pass
that does not train them gets faster: validation, predictions, the checks and feature passes around
training, and the training steps of a frozen body (`train_bn=False` keeps its norm layers in
inference mode).

`folded_batchnorm(model, example)` is a context manager: inside it, each foldable pair runs folded
(the convolution with the folded weights, the norm layer reduced to what follows its normalisation:
timm's BatchNormAct2d keeps its activation). Nothing in the model is replaced or copied: on exit the
modules are as they were. A pair folds when the norm layer is in inference mode with running
statistics, and either no gradient is being computed or none of the pair's parameters trains. The
pairs are found once per model by following one forward pass of `example`, and the folded model is
checked against the plain one on it: a model whose pairs do not fold exactly (an output of the
convolution used elsewhere too) is left as it is. The folded weights are cached until one of the
pair's tensors changes (an optimizer step, a load).

Only on the CPU and in float32: on a GPU the norm layers are cheap and the memory is better spent.
Threads predicting with one model at once share its folding (the first in folds, the last out puts the
modules back); a block inside another's folding (a body inside its model) leaves those pairs to it.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["folded_batchnorm"]

# The largest |folded - plain| of the check's outputs, relative to their largest magnitude.
_TOLERANCE = 1e-4


@dataclass
class _Pair:
    conv: nn.Conv2d
    norm: nn.BatchNorm2d
    after: Any  # what the norm layer does after normalising (an activation), or None
    folded: tuple[torch.Tensor, torch.Tensor] | None = None
    versions: tuple[int, ...] = ()

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.conv.weight, self.conv.bias, self.norm.weight, self.norm.bias,
                            self.norm.running_mean, self.norm.running_var) if t is not None]

    def trains(self) -> bool:
        return any(t.requires_grad for t in self.tensors())

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        versions = tuple(t._version for t in self.tensors())
        if self.folded is None or versions != self.versions:
            with torch.no_grad():
                norm = self.norm
                scale = torch.rsqrt(norm.running_var + norm.eps)
                if norm.weight is not None:
                    scale = scale * norm.weight
                bias = self.conv.bias if self.conv.bias is not None else torch.zeros_like(norm.running_mean)
                shift = (bias - norm.running_mean) * scale + (norm.bias if norm.bias is not None else 0.0)
                weight = self.conv.weight * scale.view(-1, *([1] * (self.conv.weight.ndim - 1)))
                self.folded = (weight.detach(), shift.detach())
            self.versions = versions
        return self.folded


@dataclass
class _Plan:
    signature: tuple[int, ...]
    pairs: list[_Pair] = field(default_factory=list)


_PLANS: weakref.WeakKeyDictionary[nn.Module, _Plan] = weakref.WeakKeyDictionary()


def _after_normalising(norm: nn.BatchNorm2d) -> Any:
    """What `norm` does after its affine normalisation, as a function; None when that is unknown."""
    if type(norm) is nn.BatchNorm2d:
        return lambda x: x
    act, drop = getattr(norm, "act", None), getattr(norm, "drop", None)
    if type(norm).__name__ == "BatchNormAct2d" and isinstance(act, nn.Module) and isinstance(drop, nn.Module):
        return lambda x: act(drop(x))  # timm's fused norm + activation
    return None


def _find_pairs(model: nn.Module, example: torch.Tensor) -> list[_Pair]:
    """The (convolution, norm) pairs where the norm layer's input is the convolution's output, in one
    forward pass of `example` in inference mode."""
    made_by: dict[int, nn.Conv2d] = {}
    pairs: list[_Pair] = []
    seen: set[int] = set()

    def conv_hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            made_by[id(output)] = module  # type: ignore[assignment]

    def norm_hook(module: nn.Module, inputs: Any) -> None:
        conv = made_by.get(id(inputs[0])) if inputs and isinstance(inputs[0], torch.Tensor) else None
        after = _after_normalising(module)  # type: ignore[arg-type]
        if conv is not None and after is not None and id(module) not in seen and module.running_var is not None:
            seen.add(id(module))
            pairs.append(_Pair(conv, module, after))  # type: ignore[arg-type]

    handles = []
    for module in model.modules():
        if type(module) is nn.Conv2d:
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(norm_hook))
    try:
        with torch.no_grad(), _inference_mode(model):
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    # A convolution whose output feeds two norm layers, or a norm layer seen twice, does not fold.
    convs = [id(pair.conv) for pair in pairs]
    return [pair for pair in pairs if convs.count(id(pair.conv)) == 1]


@contextlib.contextmanager
def _inference_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode for the block, each one's own mode again after it."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _plan(model: nn.Module, example: torch.Tensor) -> _Plan:
    signature = tuple(id(module) for module in model.modules())
    plan = _PLANS.get(model)
    if plan is not None and plan.signature == signature:
        return plan
    # The passes that find and check the pairs run on a copy without the model's hooks, so that a hook
    # (a feature tap, a user's) sees only the caller's own passes.
    twin = _copy_without_hooks(model)
    pairs = _find_pairs(twin, example)
    plan = _Plan(signature)
    if pairs and _folds_exactly(twin, pairs, example):
        own = dict(model.named_modules())
        name_of = {id(module): name for name, module in twin.named_modules()}
        for pair in pairs:
            conv, norm = own[name_of[id(pair.conv)]], own[name_of[id(pair.norm)]]
            plan.pairs.append(_Pair(conv, norm, _after_normalising(norm)))  # type: ignore[arg-type]
    _PLANS[model] = plan
    return plan


_FORWARD_HOOKS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                  "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs")


def _copy_without_hooks(model: nn.Module) -> nn.Module:
    """A deep copy of `model` whose modules have no forward hooks (the model's own keep theirs)."""
    saved = []
    for module in model.modules():
        hooks = {name: getattr(module, name) for name in _FORWARD_HOOKS if hasattr(module, name)}
        saved.append((module, hooks))
        for name, value in hooks.items():
            setattr(module, name, type(value)())
    try:
        return copy.deepcopy(model)
    finally:
        for module, hooks in saved:
            for name, value in hooks.items():
                setattr(module, name, value)


def _folds_exactly(model: nn.Module, pairs: list[_Pair], example: torch.Tensor) -> bool:
    with torch.no_grad(), _inference_mode(model):
        plain = model(example)
        with _patched(pairs):
            folded = model(example)
    if not isinstance(plain, torch.Tensor) or not isinstance(folded, torch.Tensor) or plain.shape != folded.shape:
        return False
    scale = float(plain.abs().max()) or 1.0
    return float((plain - folded).abs().max()) <= _TOLERANCE * scale


@contextlib.contextmanager
def _patched(pairs: list[_Pair]) -> Iterator[int]:
    """The pairs folded for the block; yields how many it folded itself."""
    patched: list[nn.Module] = []
    try:
        for pair in pairs:
            if "forward" in vars(pair.conv) or "forward" in vars(pair.norm):
                continue  # folded already by an enclosing block (a body inside its model): left to it
            weight, bias = pair.weights()
            conv = pair.conv
            conv.forward = (lambda x, conv=conv, weight=weight, bias=bias:  # type: ignore[method-assign]
                            conv._conv_forward(x, weight, bias))
            pair.norm.forward = pair.after  # type: ignore[method-assign]
            patched += [conv, pair.norm]
        yield len(patched) // 2
    finally:
        for module in patched:
            vars(module).pop("forward", None)  # the class's forward again


@contextlib.contextmanager
def folded_batchnorm(model: nn.Module, example: torch.Tensor | None) -> Iterator[int]:
    """Run `model`'s foldable (convolution, frozen norm) pairs folded for the block; yields how many.

    Args:
        model: The model; nothing is folded unless it runs on the CPU in float32.
        example: One input batch (its first item finds the pairs the first time), or None to fold nothing.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> x = torch.rand(2, 3, 8, 8)
        >>> with torch.no_grad(), folded_batchnorm(model, x) as n_folded:  # nothing trains: it folds
        ...     y = model(x)
        >>> n_folded, torch.allclose(y, model(x), atol=1e-5)
        (1, True)
    """
    parameter = next(model.parameters(), None)
    if (example is None or parameter is None or parameter.device.type != "cpu" or parameter.dtype != torch.float32
            or not isinstance(example, torch.Tensor) or example.ndim != 4 or len(example) == 0):
        yield 0
        return
    with _LOCK:
        active = _ACTIVE.get(model)
        if active is None:
            plan = _plan(model, example[:1])
            grad = torch.is_grad_enabled()
            pairs = [pair for pair in plan.pairs if not pair.norm.training and not (grad and pair.trains())]
            stack = contextlib.ExitStack()
            active = _ACTIVE[model] = _Active(stack, stack.enter_context(_patched(pairs)))
        active.users += 1  # another thread inside: it shares the pairs already folded
    try:
        yield active.n_folded
    finally:
        with _LOCK:
            active.users -= 1
            if active.users == 0:
                del _ACTIVE[model]
                active.stack.close()


@dataclass
class _Active:
    """A model's folded pairs while at least one block is inside `folded_batchnorm` (`users` of them)."""

    stack: contextlib.ExitStack
    n_folded: int
    users: int = 0


# Threads predicting with one model share its folding: the first in folds, the last out unfolds.
_LOCK = threading.RLock()
_ACTIVE: weakref.WeakKeyDictionary[nn.Module, _Active] = weakref.WeakKeyDictionary()
