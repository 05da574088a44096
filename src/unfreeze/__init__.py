"""unfreeze: transfer learning for image classifiers, with fastai's workflow and safe exports.

Example:
    >>> from unfreeze import ImageDataLoaders, vision_learner, error_rate, sample_path
    >>> dls = ImageDataLoaders.from_folder(sample_path(), size=64)           # doctest: +SKIP
    >>> learn = vision_learner(dls, "efficientnet_lite0", metrics=[error_rate])  # doctest: +SKIP
    >>> learn.fine_tune(2)                                                   # doctest: +SKIP
"""

from typing import Any

# fastai notebooks use torchvision's resnets, Path, tensor, pd, plt... without importing them: `from unfreeze
# import *` gives them (the modules lazily, through __getattr__ below).
from torchvision.models import resnet18, resnet34, resnet50

from unfreeze._version import __version__
from unfreeze.data import (
    Categorize,
    CategoryBlock,
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
)
from unfreeze.fastai_names import LAZY_NAMES, UNSUPPORTED, Path, Unsupported, load_lazy, tensor, to_cpu
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
    "vision_learner",
    "xresnet18",
    "xresnet34",
    "xresnet50",
]
# fastai names unfreeze does not copy: `from unfreeze import *` hands out stand-ins that say what to use instead.
__all__ += sorted(UNSUPPORTED)


def __getattr__(name: str) -> Any:
    # The modules fastai notebooks use unimported (pd, plt, L, ...) load on first use, so that
    # `import unfreeze` stays fast and only `from unfreeze import *` (or unfreeze.pd) pays for pandas.
    if name in LAZY_NAMES:
        value = load_lazy(name)
        globals()[name] = value  # once loaded, a plain module attribute
        return value
    if name in UNSUPPORTED:  # a fastai name unfreeze does not copy: a stand-in that fails in one line when used
        return Unsupported(name, UNSUPPORTED[name])
    raise AttributeError(f"module 'unfreeze' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
