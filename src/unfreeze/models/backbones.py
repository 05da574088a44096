"""TransferModel: a pretrained body, a new head, parameter groups and input stats (the Backbone contract).

``create_model`` accepts a timm name (``"resnet34"``, ``"resnet50.a1_in1k"``), a model constructor
(torchvision's ``resnet34``, a timm factory) or a built ``nn.Module``. Bodies come in two kinds:

* feature-map bodies (CNNs): the body returns ``[B, C, H, W]`` and the head pools it (fastai's head
  uses concat pooling);
* pooled bodies (token models such as ViT, Swin whose features are channels-last, and CNNs whose
  timm head has layers after pooling, such as mobilenetv3's conv_head): the body keeps the model's
  own pooling (timm ``forward_head(pre_logits=True)``) and returns ``[B, C]``; the head then skips
  its pooling layers. ``config()["features"]`` says which one.

Parameter groups come from timm's ``group_matcher(coarse=True)`` (stem, then one group per stage)
or, for other modules, from the body's top-level stages; they are split into ``n_groups - 1``
contiguous body chunks (earlier chunks take the remainder, so resnet34 with 3 groups gives fastai's
stem+layer1+layer2 | layer3+layer4 | head) followed by the head.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from timm.models import adapt_input_conv, get_pretrained_cfg, group_parameters, split_model_name_tag
from torch import nn

from unfreeze.models.heads import HEAD_KINDS, build_head
from unfreeze.models.weights import (
    BUNDLED_WEIGHTS,
    PretrainedSpec,
    WeightsNotFoundError,
    load_state_dict_into,
    resolve_pretrained,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ArchitectureNotRebuildableError",
    "TransferModel",
    "UnknownArchitectureError",
    "create_model",
    "model_from_config",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Stats = tuple[float, float, float]


class UnknownArchitectureError(ValueError):
    """An architecture name that neither timm nor torchvision knows."""


class ArchitectureNotRebuildableError(ValueError):
    """A config that cannot be turned back into a model (custom module or custom head)."""


class TransferModel(nn.Module):
    """A backbone body plus a classifier head: ``forward(x) = head(body(x))``.

    Attributes:
        body, head: the two halves.
        arch: timm name (``"resnet34"``), ``"torchvision:<name>"`` or ``"custom:<ClassName>"``.
        mean, std: input statistics the weights expect (3-tuples); input_size: pretraining size.
        n_in, n_out, num_features: input channels, classes, channels of the body's output.
        param_groups: full parameter names, ordered input → head; the last group is the head.
        weights_source: ``"<kind>:<where>"``, kind one of file, hf-cache, torch-cache, bundled,
            download, module (weights of a module passed in), random (pretrained=False).

    Example:
        >>> model = create_model("test_resnet", 10, pretrained=False)
        >>> model(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 10])
    """

    def __init__(self, body: nn.Module, head: nn.Module, *, arch: str, info: dict[str, Any]) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.arch = arch
        self.mean: Stats = info["mean"]
        self.std: Stats = info["std"]
        self.input_size: int = info["input_size"]
        self.n_in: int = info["n_in"]
        self.n_out: int = info["n_out"]
        self.num_features: int = info["num_features"]
        self.param_groups: list[list[str]] = info["param_groups"]
        self.weights_source: str = info["weights_source"]
        self._head_config: dict[str, Any] = info["head_config"]
        self._features: str = info["features"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    # fastai's model is nn.Sequential(body, head): `learn.model[0]` is the body, `learn.model[1]` the head.
    def __getitem__(self, index: int) -> nn.Module:
        halves = (self.body, self.head)
        if not isinstance(index, int) or not -2 <= index < 2:
            raise IndexError(f"A TransferModel has two parts: index 0 (the body) or 1 (the head), got {index!r}; "
                             "model.body and model.head name them.")
        return halves[index]

    def __len__(self) -> int:
        return 2

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this architecture with ``model_from_config`` (JSON-able).

        Example:
            >>> create_model("test_resnet", 10, pretrained=False).config()["head"]
            {'kind': 'fastai', 'ps': 0.5}
        """
        return {
            "arch": self.arch,
            "n_out": self.n_out,
            "n_in": self.n_in,
            "n_groups": len(self.param_groups),
            "head": dict(self._head_config),
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": self.input_size,
            "features": self._features,
            "num_features": self.num_features,
        }


@dataclass
class _Body:
    module: nn.Module
    units: list[list[str]]  # parameter names of the body, one list per stem/stage, input first
    mean: Stats
    std: Stats
    input_size: int
    weights_source: str
    feature_shape: tuple[int, ...] = field(default=())


def create_model(
    arch: str | Callable[..., nn.Module] | nn.Module,
    n_out: int,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    n_in: int = 3,
    n_groups: int = 3,
    head: str | nn.Module = "fastai",
    ps: float = 0.5,
    y_range: tuple[float, float] | None = None,
    hidden: int | Sequence[int] = 512,
    concat_pool: bool = True,
) -> TransferModel:
    """Build a TransferModel: pretrained body, new head, parameter groups, input statistics.

    Args:
        arch: timm name with or without tag, ``"torchvision:<name>"``, a model constructor
            (torchvision or timm) or a built ``nn.Module`` (its weights are used as they are).
        n_out: number of classes.
        pretrained: load pretrained weights (see ``weights.resolve_pretrained`` for the order);
            raises ``WeightsNotFoundError`` rather than falling back to random weights.
        weights: explicit weights file (.safetensors, .pth, .pt, .bin) for the original model.
        n_in: input channels; 1 adapts the pretrained first convolution (RGB filters summed).
        n_groups: parameter groups, >= 2: ``n_groups - 1`` body chunks plus the head.
        head: ``"fastai"``, ``"linear"`` or an ``nn.Module`` mapping body features to logits.
        ps: dropout of the fastai head (``ps / 2`` before the first linear layer).
        y_range: ``(low, high)``: the head ends in a sigmoid scaled to that range (fastai's regression
            ``y_range``).
        hidden: the fastai head's hidden width, or widths (fastai's ``lin_ftrs``); default 512.
        concat_pool: the fastai head pools max and average (True, fastai's default) or average only.

    Returns:
        The model; ``model.weights_source`` says where its weights came from.

    Example:
        >>> model = create_model("efficientnet_lite0", 10)  # bundled ImageNet weights, offline
        >>> model.param_groups[-1][0]
        'head.2.weight'
    """
    _check_int("n_out", n_out, 1)
    _check_int("n_in", n_in, 1)
    _check_int("n_groups", n_groups, 2)
    if isinstance(head, str) and head not in HEAD_KINDS:
        raise ValueError(f"head must be one of {HEAD_KINDS} or an nn.Module, got {head!r}.")
    if not pretrained and weights is not None:
        raise ValueError("weights= was given with pretrained=False; drop one of them.")
    name, body = _build_body(arch, n_in=n_in, pretrained=pretrained, weights=weights)
    if n_groups > len(body.units) + 1:
        raise ValueError(
            f"n_groups={n_groups} is too many for {name}: its body has {len(body.units)} stages, so "
            f"n_groups can be 2 to {len(body.units) + 1}."
        )
    head_module, head_config = build_head(head, body.feature_shape, n_out, ps=ps, y_range=y_range,
                                          hidden=hidden, concat_pool=concat_pool)
    groups = [["body." + n for chunk in part for n in chunk] for part in _split(body.units, n_groups - 1)]
    groups.append(["head." + n for n, _ in head_module.named_parameters()])
    info = {
        "mean": body.mean, "std": body.std, "input_size": body.input_size, "n_in": n_in, "n_out": n_out,
        "num_features": body.feature_shape[1], "param_groups": groups, "weights_source": body.weights_source,
        "head_config": head_config, "features": "pooled" if len(body.feature_shape) == 2 else "map",
    }  # fmt: skip
    return TransferModel(body.module, head_module, arch=name, info=info)


def model_from_config(config: dict[str, Any], *, head: nn.Module | None = None) -> TransferModel:
    """Rebuild the architecture described by ``TransferModel.config()``, with random weights.

    Args:
        config: the dict from ``config()`` (e.g. read back from an export).
        head: the head module, required when the config's head kind is ``"custom"``.

    Raises:
        UnknownArchitectureError: the arch name is not known (closest names suggested).
        ArchitectureNotRebuildableError: a custom module or custom head that only the user can build.

    Example:
        >>> config = create_model("test_resnet", 10, pretrained=False).config()
        >>> model_from_config(config).n_out
        10
    """
    missing = [k for k in ("arch", "n_out", "n_in", "n_groups", "head", "mean", "std", "input_size") if k not in config]
    if missing:
        raise ValueError(f"Model config lacks {', '.join(missing)}; expected the dict of TransferModel.config().")
    arch = config["arch"]
    if arch.startswith("custom:"):
        raise ArchitectureNotRebuildableError(
            f"Architecture {arch!r} was an nn.Module passed to create_model and cannot be rebuilt from a "
            f"config. Build the module yourself and call create_model(module, ...) before loading weights."
        )
    kind = config["head"].get("kind")
    if kind == "custom" and head is None:
        raise ArchitectureNotRebuildableError(
            "This config has a custom head module; rebuild it and pass it as model_from_config(config, head=...)."
        )
    model = create_model(
        arch, config["n_out"], pretrained=False, n_in=config["n_in"], n_groups=config["n_groups"],
        head=head if kind == "custom" else kind, ps=config["head"].get("ps", 0.5),
        y_range=config["head"].get("y_range"), hidden=config["head"].get("hidden", 512),
        concat_pool=config["head"].get("concat_pool", True),
    )  # fmt: skip
    model.mean, model.std = tuple(config["mean"]), tuple(config["std"])
    model.input_size = config["input_size"]
    return model


def _build_body(
    arch: str | Callable[..., nn.Module] | nn.Module, *, n_in: int, pretrained: bool, weights: str | Path | None
) -> tuple[str, _Body]:
    if isinstance(arch, str):
        if arch.startswith("torchvision:"):
            return arch, _torchvision_body(arch.split(":", 1)[1], n_in, pretrained, weights)
        return arch, _timm_body(arch, n_in, pretrained, weights)
    if isinstance(arch, nn.Module):
        name = f"custom:{type(arch).__name__}"
        source = f"module:{type(arch).__name__}" if pretrained else "random"
        if _is_timm_model(arch):
            return name, _timm_body_from_model(arch, n_in, pretrained, weights, spec=None, source=source)
        return name, _module_body(arch, n_in, pretrained, weights, spec=None, source=source)
    if not callable(arch):
        raise TypeError(f"arch must be a name, a model constructor or an nn.Module, got {type(arch).__name__}.")
    module_name, function_name = getattr(arch, "__module__", "") or "", getattr(arch, "__name__", "")
    if module_name.startswith("timm.") and timm.is_model(function_name):
        return function_name, _timm_body(function_name, n_in, pretrained, weights)
    if module_name.startswith("torchvision.models") and function_name in torchvision.models.list_models():
        return f"torchvision:{function_name}", _torchvision_body(function_name, n_in, pretrained, weights)
    if pretrained and weights is None:
        raise WeightsNotFoundError(
            f"unfreeze cannot know where the pretrained weights of {function_name or arch!r} live. Pass "
            f"weights='file.safetensors', pass a built nn.Module (its weights are used as they are), "
            f"or use pretrained=False."
        )
    name = f"custom:{function_name or type(arch).__name__}"
    return name, _module_body(arch(), n_in, pretrained, weights, spec=None, source="random")


def _timm_body(arch: str, n_in: int, pretrained: bool, weights: str | Path | None) -> _Body:
    model_name, tag = split_model_name_tag(arch)
    if not timm.is_model(model_name):
        raise UnknownArchitectureError(_unknown_message(arch, model_name, timm.list_models()))
    try:
        cfg = get_pretrained_cfg(arch)
    except RuntimeError as error:  # timm raises RuntimeError for a tag the model does not have
        tags = ", ".join(timm.list_pretrained(f"{model_name}.*")) or "none"
        raise UnknownArchitectureError(f"Unknown pretrained tag {tag!r} for {model_name}. Known: {tags}.") from error
    module = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=n_in)
    # The bundled weights stand in for the untagged name only: a tag asks for timm's own weights.
    bundled = model_name if not tag and model_name in BUNDLED_WEIGHTS else None
    spec = PretrainedSpec(
        f"{model_name}.{cfg.tag}" if cfg and cfg.tag else model_name,
        hf_hub_id=cfg.hf_hub_id if cfg else None, url=cfg.url if cfg else None, bundled=bundled,
    )  # fmt: skip
    return _timm_body_from_model(module, n_in, pretrained, weights, spec=spec, source="random")


def _timm_body_from_model(
    module: nn.Module,
    n_in: int,
    pretrained: bool,
    weights: str | Path | None,
    *,
    spec: PretrainedSpec | None,
    source: str,
) -> _Body:
    cfg = module.pretrained_cfg
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    with _evaluating(module):
        features = _probe(module.forward_features, n_in, size, bool(cfg.get("fixed_input_size")))
        is_map = features.ndim == 4 and features.shape[1] == module.num_features
        if is_map:
            # Pass-through pooling keeps the feature map for the head's concat pooling, unless the
            # model's head has layers after its pooling (mobilenetv3's conv_head): those were
            # trained on pooled features, so such models keep timm's average pooling.
            module.reset_classifier(0, "")
            is_map = module.forward_head(features).shape == features.shape
            if not is_map:
                module.reset_classifier(0, "avg")
        else:  # token and channels-last models keep timm's own pooling (identity classifier)
            module.reset_classifier(0)
        feature_shape = tuple(module.forward_head(features).shape)
    classifier = cfg.get("classifier") or ()
    ignore = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    filter_fn = getattr(sys.modules[type(module).__module__], "checkpoint_filter_fn", None)
    if pretrained and (spec is not None or weights is not None):
        resolved = resolve_pretrained(spec or PretrainedSpec(type(module).__name__), weights=weights)
        load_state_dict_into(
            module, resolved.state_dict, ignore_prefixes=ignore, first_conv=cfg.get("first_conv"),
            remap=(lambda state: filter_fn(state, module)) if filter_fn else None, source=resolved.source,
        )  # fmt: skip
        mean, std, source = resolved.mean or cfg.get("mean"), resolved.std or cfg.get("std"), resolved.source
    else:
        mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    _adapt_first_conv_module(module, n_in)
    try:
        units = list(group_parameters(module, module.group_matcher(coarse=True)).values())
    except (AttributeError, NotImplementedError):  # a few timm models have no group_matcher
        units = _stage_units(module, "")
    return _Body(module, units, _stats(mean), _stats(std), size, source, feature_shape)


def _torchvision_body(name: str, n_in: int, pretrained: bool, weights: str | Path | None) -> _Body:
    known = torchvision.models.list_models()
    if name not in known:
        raise UnknownArchitectureError(_unknown_message(name, name, known, lister="torchvision.models.list_models()"))
    url = None
    with contextlib.suppress(ValueError, AttributeError):  # a torchvision model without published weights
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    spec = PretrainedSpec(f"torchvision {name}", url=url)
    return _module_body(
        torchvision.models.get_model(name, weights=None), n_in, pretrained, weights, spec=spec, source="random"
    )


def _module_body(
    module: nn.Module,
    n_in: int,
    pretrained: bool,
    weights: str | Path | None,
    *,
    spec: PretrainedSpec | None,
    source: str,
) -> _Body:
    children = list(module.named_children())
    pools = [
        i for i, (_, child) in enumerate(children) if isinstance(child, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
    ]
    if not pools:
        raise ValueError(
            f"Cannot split {type(module).__name__}: no global pooling layer (nn.AdaptiveAvgPool2d) among its "
            f"top-level children ({', '.join(n for n, _ in children)}). Pass a timm architecture name instead."
        )
    body = nn.Sequential(OrderedDict(children[: pools[-1]]))
    if pretrained and (spec is not None or weights is not None):
        resolved = resolve_pretrained(spec or PretrainedSpec(type(module).__name__), weights=weights)
        tail = tuple(n for n, _ in children[pools[-1] :])
        load_state_dict_into(body, resolved.state_dict, ignore_prefixes=tail, source=resolved.source)
        source = resolved.source
    _adapt_first_conv_module(body, n_in)
    with _evaluating(body):
        feature_shape = tuple(_probe(body, n_in, 224, fixed=False).shape)
    return _Body(body, _stage_units(body, ""), IMAGENET_MEAN, IMAGENET_STD, 224, source, feature_shape)


def _stage_units(module: nn.Module, prefix: str) -> list[list[str]]:
    children = [(n, c) for n, c in module.named_children() if any(True for _ in c.parameters())]
    # A body that is one container of stages (torchvision convnext's `features`): split inside it.
    if len(children) == 1 and len(list(children[0][1].children())) > 1:
        return _stage_units(children[0][1], prefix + children[0][0] + ".")
    units: list[list[str]] = []
    for index, (name, child) in enumerate(children):
        names = [f"{prefix}{name}.{p}" for p, _ in child.named_parameters()]
        # Leading single layers (conv1, bn1) form the stem together, as in fastai's resnet split.
        is_stem_layer = not isinstance(child, (nn.Sequential, nn.ModuleList)) and all(
            not isinstance(c, (nn.Sequential, nn.ModuleList)) for _, c in children[:index]
        )
        if is_stem_layer and units:
            units[0].extend(names)
        else:
            units.append(names)
    return units


def _split(units: list[list[str]], n_chunks: int) -> list[list[list[str]]]:
    size, extra = divmod(len(units), n_chunks)
    chunks, start = [], 0
    for i in range(n_chunks):
        end = start + size + (1 if i < extra else 0)
        chunks.append(units[start:end])
        start = end
    return chunks


@contextlib.contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    # Probing must not touch BatchNorm statistics nor leave the module in another mode.
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def _probe(forward: Callable[[torch.Tensor], torch.Tensor], n_in: int, size: int, fixed: bool) -> torch.Tensor:
    # One forward pass tells a feature map from pooled tokens and gives the channel count. The
    # channels do not depend on the image size, so CNNs are probed at 128 px (a third of the cost of
    # 224 on a CPU); a model that cannot take 128 px is retried at its own size.
    if fixed or size <= 128:
        return forward(torch.zeros(1, n_in, size, size))
    try:
        return forward(torch.zeros(1, n_in, 128, 128))
    except RuntimeError:
        return forward(torch.zeros(1, n_in, size, size))


def _adapt_first_conv_module(module: nn.Module, n_in: int) -> None:
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.in_channels == n_in:
        return
    # Adapt in place so that subclasses such as timm's Conv2dSame keep their padding behaviour.
    conv.weight = nn.Parameter(adapt_input_conv(n_in, conv.weight.detach()))
    conv.in_channels = n_in


def _is_timm_model(module: nn.Module) -> bool:
    return type(module).__module__.startswith("timm.") and hasattr(module, "reset_classifier")


def _unknown_message(arch: str, name: str, known: list[str], lister: str | None = None) -> str:
    close = difflib.get_close_matches(name, known, n=6, cutoff=0.6)
    family = re.match(r"[a-z]+", name)
    lister = lister or f"timm.list_models('{family.group(0) if family else ''}*')"
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"Unknown architecture {arch!r}.{hint} List names with {lister}."


def _stats(values: Any) -> Stats:
    values = tuple(float(v) for v in values)
    return values * 3 if len(values) == 1 else values  # type: ignore[return-value]


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
