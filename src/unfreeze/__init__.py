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
from unfreeze.fastai_names import LAZY_NAMES, UNSUPPORTED, Unsupported, load_lazy

if TYPE_CHECKING:  # what type checkers and editors see; at run time _PUBLIC below loads each name on first use
    from torchvision.models import resnet18, resnet34, resnet50

    from unfreeze.data import (
        Categorize,
        CategoryBlock,
        ColReader,
        ColSplitter,
        DataBlock,
        DataError,
        Datasets,
        DataWarning,
        FuncSplitter,
        GrandparentSplitter,
        ImageBlock,
        ImageDataLoader,
        ImageDataLoaders,
        IndexSplitter,
        IntToFloatTensor,
        MultiCategoryBlock,
        Normalize,
        PadMode,
        PILImage,
        PILImageBW,
        PointBlock,
        RandomResizedCrop,
        RandomSplitter,
        RegexLabeller,
        RegressionBlock,
        Resize,
        ResizeMethod,
        TfmdLists,
        ToTensor,
        URLs,
        aug_transforms,
        augment_preset,
        get_image_files,
        imagenet_stats,
        parent_label,
        sample_path,
        untar_data,
        using_attr,
        verify_images,
    )
    from unfreeze.fastai_names import Path, tensor, to_cpu
    from unfreeze.inference import (
        ClassificationInterpretation,
        ExportError,
        FastaiConversionError,
        Interpretation,
        convert_fastai,
    )
    from unfreeze.losses import CrossEntropyLossFlat, L1LossFlat, LabelSmoothingCrossEntropy, MSELossFlat
    from unfreeze.models import (
        TransferModel,
        UnknownArchitectureError,
        WeightsNotFoundError,
        create_model,
        xresnet18,
        xresnet34,
        xresnet50,
    )
    from unfreeze.tasks import MultiLabel, Regression, SingleLabel
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
    from unfreeze.train.fastai_training import SGD, Adam, GradientAccumulation, ShowGraphCallback, ranger, set_seed
    from unfreeze.train.keep_best import KeepBest
    from unfreeze.train.learner import Learner, NonFiniteLossError
    from unfreeze.train.loggers import MLflowLogger, TensorBoardLogger
    from unfreeze.train.lr_find import SuggestedLRs, minimum, slide, steep, valley
    from unfreeze.train.metric_classes import (
        BalancedAccuracy,
        F1Score,
        Precision,
        R2Score,
        Recall,
        RocAuc,
        RocAucBinary,
    )
    from unfreeze.train.metrics import (
        accuracy,
        accuracy_multi,
        error_rate,
        f1_multi,
        f1_score,
        mae,
        mse,
        r2_score,
        rmse,
        top_k_accuracy,
    )
    from unfreeze.train.mixup import MixupCutmix
    from unfreeze.train.recipe_settings import Recipe, RecipeError
    from unfreeze.train.threshold_tuning import tune_threshold
    from unfreeze.train.time_budget import TimeBudget

# Every public name -> the module that defines it, imported on first use: `import unfreeze` (and the
# command line's --help) must not pay for torch, torchvision and timm before anything needs them.
# fastai notebooks use torchvision's resnets, Path, tensor, pd, plt... without importing them: `from
# unfreeze import *` gives them (the modules pd, plt, L... through LAZY_NAMES).
_PUBLIC: dict[str, str] = {
    "Categorize": "unfreeze.data", "CategoryBlock": "unfreeze.data", "DataBlock": "unfreeze.data",
    "ColReader": "unfreeze.data", "ColSplitter": "unfreeze.data",
    "DataError": "unfreeze.data", "Datasets": "unfreeze.data", "DataWarning": "unfreeze.data",
    "FuncSplitter": "unfreeze.data", "GrandparentSplitter": "unfreeze.data", "ImageBlock": "unfreeze.data",
    "ImageDataLoader": "unfreeze.data", "ImageDataLoaders": "unfreeze.data", "IndexSplitter": "unfreeze.data",
    "IntToFloatTensor": "unfreeze.data", "MultiCategoryBlock": "unfreeze.data", "Normalize": "unfreeze.data",
    "PadMode": "unfreeze.data", "PILImage": "unfreeze.data", "PILImageBW": "unfreeze.data",
    "PointBlock": "unfreeze.data",
    "RandomResizedCrop": "unfreeze.data", "RandomSplitter": "unfreeze.data", "RegexLabeller": "unfreeze.data",
    "RegressionBlock": "unfreeze.data", "Resize": "unfreeze.data", "ResizeMethod": "unfreeze.data",
    "TfmdLists": "unfreeze.data", "ToTensor": "unfreeze.data", "URLs": "unfreeze.data",
    "aug_transforms": "unfreeze.data", "augment_preset": "unfreeze.data", "get_image_files": "unfreeze.data",
    "imagenet_stats": "unfreeze.data", "parent_label": "unfreeze.data", "sample_path": "unfreeze.data",
    "untar_data": "unfreeze.data", "using_attr": "unfreeze.data",
    "verify_images": "unfreeze.data", "Path": "unfreeze.fastai_names",
    "tensor": "unfreeze.fastai_names", "to_cpu": "unfreeze.fastai_names",
    "ClassificationInterpretation": "unfreeze.inference", "ExportError": "unfreeze.inference",
    "FastaiConversionError": "unfreeze.inference", "Interpretation": "unfreeze.inference",
    "convert_fastai": "unfreeze.inference", "CrossEntropyLossFlat": "unfreeze.losses",
    "L1LossFlat": "unfreeze.losses", "LabelSmoothingCrossEntropy": "unfreeze.losses",
    "MSELossFlat": "unfreeze.losses", "TransferModel": "unfreeze.models",
    "UnknownArchitectureError": "unfreeze.models", "WeightsNotFoundError": "unfreeze.models",
    "create_model": "unfreeze.models", "xresnet18": "unfreeze.models", "xresnet34": "unfreeze.models",
    "xresnet50": "unfreeze.models", "MultiLabel": "unfreeze.tasks", "Regression": "unfreeze.tasks",
    "SingleLabel": "unfreeze.tasks", "cnn_learner": "unfreeze.train.builders",
    "load_learner": "unfreeze.train.builders", "vision_learner": "unfreeze.train.builders",
    "Callback": "unfreeze.train.callbacks", "CSVLogger": "unfreeze.train.callbacks",
    "EarlyStopping": "unfreeze.train.callbacks", "ProgressCallback": "unfreeze.train.callbacks",
    "Recorder": "unfreeze.train.callbacks", "SaveBestModel": "unfreeze.train.callbacks",
    "CheckpointError": "unfreeze.train.checkpoint", "DivergenceGuard": "unfreeze.train.divergence",
    "TrainingDivergedError": "unfreeze.train.divergence", "retry_on_divergence": "unfreeze.train.divergence",
    "EMA": "unfreeze.train.ema", "CutMix": "unfreeze.train.fastai_idioms",
    "EarlyStoppingCallback": "unfreeze.train.fastai_idioms", "MixUp": "unfreeze.train.fastai_idioms",
    "MultiCategory": "unfreeze.train.fastai_idioms", "SaveModelCallback": "unfreeze.train.fastai_idioms",
    "SGD": "unfreeze.train.fastai_training", "Adam": "unfreeze.train.fastai_training",
    "GradientAccumulation": "unfreeze.train.fastai_training", "ShowGraphCallback": "unfreeze.train.fastai_training",
    "ranger": "unfreeze.train.fastai_training", "set_seed": "unfreeze.train.fastai_training",
    "KeepBest": "unfreeze.train.keep_best", "Learner": "unfreeze.train.learner",
    "NonFiniteLossError": "unfreeze.train.learner", "MLflowLogger": "unfreeze.train.loggers",
    "TensorBoardLogger": "unfreeze.train.loggers", "SuggestedLRs": "unfreeze.train.lr_find",
    "minimum": "unfreeze.train.lr_find", "slide": "unfreeze.train.lr_find", "steep": "unfreeze.train.lr_find",
    "valley": "unfreeze.train.lr_find", "BalancedAccuracy": "unfreeze.train.metric_classes",
    "F1Score": "unfreeze.train.metric_classes", "Precision": "unfreeze.train.metric_classes",
    "R2Score": "unfreeze.train.metric_classes", "Recall": "unfreeze.train.metric_classes",
    "RocAuc": "unfreeze.train.metric_classes", "RocAucBinary": "unfreeze.train.metric_classes",
    "accuracy": "unfreeze.train.metrics", "accuracy_multi": "unfreeze.train.metrics",
    "error_rate": "unfreeze.train.metrics", "f1_multi": "unfreeze.train.metrics",
    "f1_score": "unfreeze.train.metrics", "mae": "unfreeze.train.metrics", "mse": "unfreeze.train.metrics",
    "r2_score": "unfreeze.train.metrics", "rmse": "unfreeze.train.metrics",
    "top_k_accuracy": "unfreeze.train.metrics", "MixupCutmix": "unfreeze.train.mixup",
    "Recipe": "unfreeze.train.recipe_settings", "RecipeError": "unfreeze.train.recipe_settings",
    "tune_threshold": "unfreeze.train.threshold_tuning", "TimeBudget": "unfreeze.train.time_budget",
    "resnet18": "torchvision.models", "resnet34": "torchvision.models", "resnet50": "torchvision.models",
}

__all__ = [
    "EMA",
    "SGD",
    "Adam",
    "BalancedAccuracy",
    "CSVLogger",
    "Callback",
    "Categorize",
    "CategoryBlock",
    "CheckpointError",
    "ClassificationInterpretation",
    "ColReader",
    "ColSplitter",
    "CrossEntropyLossFlat",
    "CutMix",
    "DataBlock",
    "DataError",
    "DataWarning",
    "Datasets",
    "DivergenceGuard",
    "EarlyStopping",
    "EarlyStoppingCallback",
    "ExportError",
    "F",
    "F1Score",
    "FastaiConversionError",
    "FuncSplitter",
    "GradientAccumulation",
    "GrandparentSplitter",
    "ImageBlock",
    "ImageDataLoader",
    "ImageDataLoaders",
    "IndexSplitter",
    "IntToFloatTensor",
    "Interpretation",
    "KeepBest",
    "L",
    "L1LossFlat",
    "LabelSmoothingCrossEntropy",
    "Learner",
    "MLflowLogger",
    "MSELossFlat",
    "MixUp",
    "MixupCutmix",
    "MultiCategory",
    "MultiCategoryBlock",
    "MultiLabel",
    "NonFiniteLossError",
    "Normalize",
    "PILImage",
    "PILImageBW",
    "PadMode",
    "Path",
    "PointBlock",
    "Precision",
    "ProgressCallback",
    "R2Score",
    "RandomResizedCrop",
    "RandomSplitter",
    "Recall",
    "Recipe",
    "RecipeError",
    "Recorder",
    "RegexLabeller",
    "Regression",
    "RegressionBlock",
    "Resize",
    "ResizeMethod",
    "RocAuc",
    "RocAucBinary",
    "SaveBestModel",
    "SaveModelCallback",
    "ShowGraphCallback",
    "SingleLabel",
    "SuggestedLRs",
    "TensorBoardLogger",
    "TfmdLists",
    "TimeBudget",
    "ToTensor",
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
    "mae",
    "minimum",
    "mse",
    "nn",
    "np",
    "os",
    "parent_label",
    "partial",
    "pd",
    "plt",
    "r2_score",
    "ranger",
    "resnet18",
    "resnet34",
    "resnet50",
    "retry_on_divergence",
    "rmse",
    "sample_path",
    "set_seed",
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
    "verify_images",
    "vision_learner",
    "xresnet18",
    "xresnet34",
    "xresnet50",
]
# fastai names unfreeze does not copy: `from unfreeze import *` hands out stand-ins that say what to use instead.
__all__ += sorted(UNSUPPORTED)


def __getattr__(name: str) -> Any:
    # A public name is imported from its module on first use, then kept as a plain module attribute.
    # The modules fastai notebooks use unimported (pd, plt, L, ...) load the same way, so that only
    # `from unfreeze import *` (or unfreeze.pd) pays for pandas.
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in LAZY_NAMES:
        value = load_lazy(name)
    elif name in UNSUPPORTED:  # a fastai name unfreeze does not copy: a stand-in that fails in one line when used
        return Unsupported(name, UNSUPPORTED[name])
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")  # a subpackage, as `import unfreeze` once loaded them
    else:
        raise AttributeError(f"module 'unfreeze' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
