"""unfreeze: transfer learning for image classifiers, with fastai's workflow and safe exports.

Example:
    >>> from unfreeze import ImageDataLoaders, vision_learner, error_rate, sample_path
    >>> dls = ImageDataLoaders.from_folder(sample_path(), size=64)           # doctest: +SKIP
    >>> learn = vision_learner(dls, "efficientnet_lite0", metrics=[error_rate])  # doctest: +SKIP
    >>> learn.fine_tune(2)                                                   # doctest: +SKIP
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from unfreeze._version import __version__
from unfreeze.fastai_names import LAZY_NAMES, load_lazy

if TYPE_CHECKING:  # what type checkers and editors see; at run time _PUBLIC below loads each name on first use
    from torchvision.models import resnet18, resnet34, resnet50

    from unfreeze.data import (
        CategoryBlock,
        DataBlock,
        DataError,
        DataWarning,
        GrandparentSplitter,
        ImageBlock,
        ImageDataLoader,
        ImageDataLoaders,
        MultiCategoryBlock,
        Normalize,
        PILImage,
        RandomResizedCrop,
        RandomSplitter,
        RegexLabeller,
        Resize,
        ResizeMethod,
        URLs,
        aug_transforms,
        augment_preset,
        get_image_files,
        imagenet_stats,
        parent_label,
        sample_path,
        untar_data,
        using_attr,
    )
    from unfreeze.fastai_names import Path, tensor, to_cpu
    from unfreeze.inference import (
        ClassificationInterpretation,
        ExportError,
        FastaiConversionError,
        Interpretation,
        convert_fastai,
    )
    from unfreeze.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropy
    from unfreeze.models import (
        TransferModel,
        UnknownArchitectureError,
        WeightsNotFoundError,
        create_model,
        xresnet18,
        xresnet34,
        xresnet50,
    )
    from unfreeze.tasks import MultiLabel, SingleLabel
    from unfreeze.train.builders import cnn_learner, load_learner, vision_learner
    from unfreeze.train.callbacks import (
        Callback,
        CSVLogger,
        EarlyStopping,
        ProgressCallback,
        Recorder,
        SaveBestModel,
    )
    from unfreeze.train.checkpoint import CheckpointError
    from unfreeze.train.divergence import DivergenceGuard, TrainingDivergedError, retry_on_divergence
    from unfreeze.train.ema import EMA
    from unfreeze.train.fastai_idioms import CutMix, EarlyStoppingCallback, MixUp, MultiCategory, SaveModelCallback
    from unfreeze.train.keep_best import KeepBest
    from unfreeze.train.learner import Learner, NonFiniteLossError
    from unfreeze.train.loggers import MLflowLogger, TensorBoardLogger
    from unfreeze.train.lr_find import SuggestedLRs, minimum, slide, steep, valley
    from unfreeze.train.metrics import accuracy, accuracy_multi, error_rate, f1_multi, f1_score, top_k_accuracy
    from unfreeze.train.mixup import MixupCutmix
    from unfreeze.train.recipe_settings import Recipe, RecipeError
    from unfreeze.train.threshold_tuning import tune_threshold
    from unfreeze.train.time_budget import TimeBudget

# Every public name -> the module that defines it, imported on first use: `import unfreeze` (and the
# command line's --help) must not pay for torch, torchvision and timm before anything needs them.
# fastai notebooks use torchvision's resnets, Path, tensor, pd, plt... without importing them: `from
# unfreeze import *` gives them (the modules pd, plt, L... through LAZY_NAMES).
_PUBLIC: dict[str, str] = {
    "resnet18": "torchvision.models", "resnet34": "torchvision.models", "resnet50": "torchvision.models",
    "CategoryBlock": "unfreeze.data", "DataBlock": "unfreeze.data", "DataError": "unfreeze.data",
    "DataWarning": "unfreeze.data", "GrandparentSplitter": "unfreeze.data", "ImageBlock": "unfreeze.data",
    "ImageDataLoader": "unfreeze.data", "ImageDataLoaders": "unfreeze.data", "MultiCategoryBlock": "unfreeze.data",
    "Normalize": "unfreeze.data", "PILImage": "unfreeze.data", "RandomResizedCrop": "unfreeze.data",
    "RandomSplitter": "unfreeze.data", "RegexLabeller": "unfreeze.data", "Resize": "unfreeze.data",
    "ResizeMethod": "unfreeze.data", "URLs": "unfreeze.data", "aug_transforms": "unfreeze.data",
    "augment_preset": "unfreeze.data", "get_image_files": "unfreeze.data", "imagenet_stats": "unfreeze.data",
    "parent_label": "unfreeze.data", "sample_path": "unfreeze.data", "untar_data": "unfreeze.data",
    "using_attr": "unfreeze.data",
    "Path": "unfreeze.fastai_names", "tensor": "unfreeze.fastai_names", "to_cpu": "unfreeze.fastai_names",
    "ClassificationInterpretation": "unfreeze.inference", "ExportError": "unfreeze.inference",
    "FastaiConversionError": "unfreeze.inference", "Interpretation": "unfreeze.inference",
    "convert_fastai": "unfreeze.inference",
    "CrossEntropyLossFlat": "unfreeze.losses", "LabelSmoothingCrossEntropy": "unfreeze.losses",
    "TransferModel": "unfreeze.models", "UnknownArchitectureError": "unfreeze.models",
    "WeightsNotFoundError": "unfreeze.models", "create_model": "unfreeze.models", "xresnet18": "unfreeze.models",
    "xresnet34": "unfreeze.models", "xresnet50": "unfreeze.models",
    "MultiLabel": "unfreeze.tasks", "SingleLabel": "unfreeze.tasks",
    "cnn_learner": "unfreeze.train.builders", "load_learner": "unfreeze.train.builders",
    "vision_learner": "unfreeze.train.builders",
    "Callback": "unfreeze.train.callbacks", "CSVLogger": "unfreeze.train.callbacks",
    "EarlyStopping": "unfreeze.train.callbacks", "ProgressCallback": "unfreeze.train.callbacks",
    "Recorder": "unfreeze.train.callbacks", "SaveBestModel": "unfreeze.train.callbacks",
    "CheckpointError": "unfreeze.train.checkpoint",
    "DivergenceGuard": "unfreeze.train.divergence", "TrainingDivergedError": "unfreeze.train.divergence",
    "retry_on_divergence": "unfreeze.train.divergence",
    "EMA": "unfreeze.train.ema",
    "CutMix": "unfreeze.train.fastai_idioms", "EarlyStoppingCallback": "unfreeze.train.fastai_idioms",
    "MixUp": "unfreeze.train.fastai_idioms", "MultiCategory": "unfreeze.train.fastai_idioms",
    "SaveModelCallback": "unfreeze.train.fastai_idioms",
    "KeepBest": "unfreeze.train.keep_best",
    "Learner": "unfreeze.train.learner", "NonFiniteLossError": "unfreeze.train.learner",
    "MLflowLogger": "unfreeze.train.loggers", "TensorBoardLogger": "unfreeze.train.loggers",
    "SuggestedLRs": "unfreeze.train.lr_find", "minimum": "unfreeze.train.lr_find", "slide": "unfreeze.train.lr_find",
    "steep": "unfreeze.train.lr_find", "valley": "unfreeze.train.lr_find",
    "accuracy": "unfreeze.train.metrics", "accuracy_multi": "unfreeze.train.metrics",
    "error_rate": "unfreeze.train.metrics", "f1_multi": "unfreeze.train.metrics",
    "f1_score": "unfreeze.train.metrics", "top_k_accuracy": "unfreeze.train.metrics",
    "MixupCutmix": "unfreeze.train.mixup",
    "Recipe": "unfreeze.train.recipe_settings", "RecipeError": "unfreeze.train.recipe_settings",
    "tune_threshold": "unfreeze.train.threshold_tuning",
    "TimeBudget": "unfreeze.train.time_budget",
}

__all__ = [
    "EMA",
    "CSVLogger",
    "Callback",
    "CategoryBlock",
    "CheckpointError",
    "ClassificationInterpretation",
    "CrossEntropyLossFlat",
    "CutMix",
    "DataBlock",
    "DataError",
    "DataWarning",
    "DivergenceGuard",
    "EarlyStopping",
    "EarlyStoppingCallback",
    "ExportError",
    "F",
    "FastaiConversionError",
    "GrandparentSplitter",
    "ImageBlock",
    "ImageDataLoader",
    "ImageDataLoaders",
    "Interpretation",
    "KeepBest",
    "L",
    "LabelSmoothingCrossEntropy",
    "Learner",
    "MLflowLogger",
    "MixUp",
    "MixupCutmix",
    "MultiCategory",
    "MultiCategoryBlock",
    "MultiLabel",
    "NonFiniteLossError",
    "Normalize",
    "PILImage",
    "Path",
    "ProgressCallback",
    "RandomResizedCrop",
    "RandomSplitter",
    "Recipe",
    "RecipeError",
    "Recorder",
    "RegexLabeller",
    "Resize",
    "ResizeMethod",
    "SaveBestModel",
    "SaveModelCallback",
    "SingleLabel",
    "SuggestedLRs",
    "TensorBoardLogger",
    "TimeBudget",
    "TrainingDivergedError",
    "TransferModel",
    "URLs",
    "UnknownArchitectureError",
    "WeightsNotFoundError",
    "__version__",
    "accuracy",
    "accuracy_multi",
    "aug_transforms",
    "augment_preset",
    "cnn_learner",
    "convert_fastai",
    "create_model",
    "error_rate",
    "f1_multi",
    "f1_score",
    "get_image_files",
    "imagenet_stats",
    "load_learner",
    "minimum",
    "nn",
    "np",
    "parent_label",
    "partial",
    "pd",
    "plt",
    "resnet18",
    "resnet34",
    "resnet50",
    "retry_on_divergence",
    "sample_path",
    "slide",
    "steep",
    "tensor",
    "to_cpu",
    "top_k_accuracy",
    "torch",
    "tune_threshold",
    "untar_data",
    "using_attr",
    "valley",
    "vision_learner",
    "xresnet18",
    "xresnet34",
    "xresnet50",
]


def __getattr__(name: str) -> Any:
    # A public name is imported from its module on first use, then kept as a plain module attribute.
    # The modules fastai notebooks use unimported (pd, plt, L, ...) load the same way, so that only
    # `from unfreeze import *` (or unfreeze.pd) pays for pandas.
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in LAZY_NAMES:
        value = load_lazy(name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")  # a subpackage, as `import unfreeze` once loaded them
    else:
        raise AttributeError(f"module 'unfreeze' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
