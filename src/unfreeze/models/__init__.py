"""Models: pretrained backbones with new heads, parameter groups and input statistics.

Imports nothing from unfreeze.data, train, inference or cli.

Example:
    >>> from unfreeze.models import create_model
    >>> model = create_model("efficientnet_lite0", n_out=10)   # bundled ImageNet weights, offline
    >>> model.weights_source.split(":")[0], model.mean
    ('bundled', (0.5, 0.5, 0.5))
"""

from unfreeze.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArchitectureNotRebuildableError,
    TransferModel,
    UnknownArchitectureError,
    create_model,
    model_from_config,
)
from unfreeze.models.feature_map import FeatureMapCheck, check_input_size, feature_map_size, min_input_size
from unfreeze.models.heads import HEAD_KINDS, AdaptiveConcatPool2d, build_head, fastai_head, linear_head
from unfreeze.models.weights import (
    PretrainedSpec,
    ResolvedWeights,
    WeightsFileError,
    WeightsMismatchError,
    WeightsNotFoundError,
    load_bundled_weights,
    load_state_dict_into,
    read_state_dict,
    resolve_pretrained,
)
from unfreeze.models.xresnet import xresnet18, xresnet34, xresnet50

__all__ = [
    "HEAD_KINDS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AdaptiveConcatPool2d",
    "ArchitectureNotRebuildableError",
    "FeatureMapCheck",
    "PretrainedSpec",
    "ResolvedWeights",
    "TransferModel",
    "UnknownArchitectureError",
    "WeightsFileError",
    "WeightsMismatchError",
    "WeightsNotFoundError",
    "build_head",
    "check_input_size",
    "create_model",
    "fastai_head",
    "feature_map_size",
    "linear_head",
    "load_bundled_weights",
    "load_state_dict_into",
    "min_input_size",
    "model_from_config",
    "read_state_dict",
    "resolve_pretrained",
    "xresnet18",
    "xresnet34",
    "xresnet50",
]
