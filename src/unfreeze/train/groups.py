"""Parameter groups and freezing: which parameters train, and which norm layers run in eval mode.

The groups come from the backbone contract (`model.param_groups`: parameter names per group, input to
head), so the same code freezes a resnet, an EfficientNet or a ViT. `ParamGroups` owns the name →
parameter map, `frozen_to`, `train_bn` and the "freeze" state section; nothing else sets a
parameter's `requires_grad`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import nn

__all__ = ["NORM_TYPES", "ParamGroups"]

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)


class ParamGroups:
    """The parameter groups of a model and their freezing (fastai's `freeze_to`).

    Args:
        model: A model honouring the backbone contract (`param_groups`: names per group, head last).
        groups: Parameter names per group for a model without `param_groups` (e.g. all in one group).
        train_bn: True is fastai's behaviour: norm layers in frozen groups keep training. False is
            Keras's: the body's norm layers run in inference mode and train only with their group.

    Raises:
        ValueError: A parameter belongs to no group.

    Example:
        >>> groups = ParamGroups(model, train_bn=True)  # doctest: +SKIP
        >>> groups.freeze_to(-1); groups.frozen_to  # doctest: +SKIP
        2
    """

    def __init__(self, model: nn.Module, train_bn: bool = True, groups: list[list[str]] | None = None) -> None:
        self._model = model
        self._fixed_groups = groups
        self._params = dict(model.named_parameters())
        self._group_of = {name: index for index, names in enumerate(self.groups) for name in names}
        self.frozen_to = 0
        self.train_bn = train_bn
        missing = set(self._params) - set(self._group_of)
        if missing:
            raise ValueError(
                f"The model's param_groups miss {len(missing)} parameters (e.g. {sorted(missing)[:3]}). "
                "Every parameter must belong to exactly one group."
            )

    @property
    def params(self) -> dict[str, nn.Parameter]:
        """Every parameter by name, in the model's order (a copy of the map; the tensors are the model's)."""
        return dict(self._params)

    @property
    def groups(self) -> list[list[str]]:
        """Parameter names per group, input to head (from the backbone contract, or as given)."""
        return self._fixed_groups if self._fixed_groups is not None else self._model.param_groups

    @property
    def n_groups(self) -> int:
        """The number of groups; the last one is the head."""
        return len(self.groups)

    def group_of(self, name: str) -> int:
        """The index of the group that holds parameter `name`."""
        return self._group_of[name]

    def norm_modules(self) -> Iterator[tuple[nn.Module, int]]:
        """Norm layers with the group index of their parameters (the input-side group wins)."""
        for name, module in self._model.named_modules():
            if isinstance(module, NORM_TYPES):
                groups = [self._group_of[f"{name}.{p}"] for p, _ in module.named_parameters(recurse=False)]
                if groups:
                    yield module, min(groups)

    def freeze_to(self, n: int) -> None:
        """Train groups `[n:]` and freeze groups `[:n]`; negative `n` counts from the end.

        With `train_bn`, the norm layers of frozen groups keep training. The optimizer is not touched
        here: `Learner.freeze_to` resets it too, as fastai does.

        Raises:
            ValueError: `n` is not a group index.
        """
        if not isinstance(n, int) or not -self.n_groups <= n <= self.n_groups:
            raise ValueError(f"freeze_to takes a group index in [-{self.n_groups}, {self.n_groups}], got {n!r}.")
        self.frozen_to = n % self.n_groups if n < 0 else n
        norm_params = set()
        if self.train_bn:
            for module, _ in self.norm_modules():
                norm_params.update(id(p) for p in module.parameters(recurse=False))
        for name, param in self._params.items():
            param.requires_grad_(self._group_of[name] >= self.frozen_to or id(param) in norm_params)

    def set_train_mode(self) -> None:
        """The model in training mode; with `train_bn=False` the body's norm layers stay in eval."""
        self._model.train()
        if not self.train_bn:
            # Keras semantics: the body's norm layers keep their pretrained running statistics, frozen
            # or not. Switching them to batch statistics at unfreeze undid the frozen phase's work in
            # our measurements (benchmarks/results/defaults.md). The new head's norm layers train.
            head_group = self.n_groups - 1
            for module, group in self.norm_modules():
                if group < head_group:
                    module.eval()

    def state_dict(self) -> dict[str, Any]:
        """The "freeze" section: frozen_to, train_bn and each parameter's requires_grad."""
        return {"frozen_to": self.frozen_to, "train_bn": self.train_bn,
                "requires_grad": [p.requires_grad for p in self._params.values()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the "freeze" section (the flags as saved, also ones a user set by hand)."""
        self.train_bn = bool(state["train_bn"])
        self.freeze_to(int(state["frozen_to"]))
        for param, flag in zip(self._params.values(), state["requires_grad"], strict=True):
            param.requires_grad_(bool(flag))
