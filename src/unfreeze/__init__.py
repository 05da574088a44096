"""unfreeze: transfer learning for image classifiers, with fastai's workflow and safe exports.

Example:
    >>> from unfreeze import ImageDataLoaders, vision_learner, error_rate, sample_path
    >>> dls = ImageDataLoaders.from_folder(sample_path(), size=64)           # doctest: +SKIP
    >>> learn = vision_learner(dls, "efficientnet_lite0", metrics=[error_rate])  # doctest: +SKIP
    >>> learn.fine_tune(2)                                                   # doctest: +SKIP
"""

# fastai notebooks use Path and torchvision's resnets without importing them: `from unfreeze import *` gives them.
from pathlib import Path

from torchvision.models import resnet18, resnet34, resnet50

from unfreeze._version import __version__
from unfreeze.data import (
    CategoryBlock,
    DataBlock,
    DataError,
    DataWarning,
    GrandparentSplitter,
    ImageBlock,
    ImageDataLoader,
    ImageDataLoaders,
    RandomResizedCrop,
    RandomSplitter,
    RegexLabeller,
    Resize,
    ResizeMethod,
    aug_transforms,
    augment_preset,
    get_image_files,
    parent_label,
    sample_path,
    using_attr,
)
from unfreeze.inference import (
    ClassificationInterpretation,
    ExportError,
    FastaiConversionError,
    Interpretation,
    convert_fastai,
)
from unfreeze.models import (
    TransferModel,
    UnknownArchitectureError,
    WeightsNotFoundError,
    create_model,
)
from unfreeze.tasks import MultiLabel, SingleLabel
from unfreeze.train.builders import cnn_learner, load_learner, vision_learner
from unfreeze.train.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    EarlyStoppingCallback,
    ProgressCallback,
    Recorder,
    SaveBestModel,
    SaveModelCallback,
)
from unfreeze.train.checkpoint import CheckpointError
from unfreeze.train.ema import EMA
from unfreeze.train.learner import Learner, NonFiniteLossError
from unfreeze.train.loggers import MLflowLogger, TensorBoardLogger
from unfreeze.train.lr_find import SuggestedLRs, minimum, slide, steep, valley
from unfreeze.train.metrics import accuracy, accuracy_multi, error_rate, f1_multi, f1_score, top_k_accuracy
from unfreeze.train.mixup import MixupCutmix

__all__ = [
    "EMA",
    "CSVLogger",
    "Callback",
    "CategoryBlock",
    "CheckpointError",
    "ClassificationInterpretation",
    "DataBlock",
    "DataError",
    "DataWarning",
    "EarlyStopping",
    "EarlyStoppingCallback",
    "ExportError",
    "FastaiConversionError",
    "GrandparentSplitter",
    "ImageBlock",
    "ImageDataLoader",
    "ImageDataLoaders",
    "Interpretation",
    "Learner",
    "MLflowLogger",
    "MixupCutmix",
    "MultiLabel",
    "NonFiniteLossError",
    "Path",
    "ProgressCallback",
    "RandomResizedCrop",
    "RandomSplitter",
    "Recorder",
    "RegexLabeller",
    "Resize",
    "ResizeMethod",
    "SaveBestModel",
    "SaveModelCallback",
    "SingleLabel",
    "SuggestedLRs",
    "TensorBoardLogger",
    "TransferModel",
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
    "load_learner",
    "minimum",
    "parent_label",
    "resnet18",
    "resnet34",
    "resnet50",
    "sample_path",
    "slide",
    "steep",
    "top_k_accuracy",
    "using_attr",
    "valley",
    "vision_learner",
]
