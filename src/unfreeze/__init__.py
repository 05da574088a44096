"""unfreeze: transfer learning for image classifiers, with fastai's workflow and safe exports.

Example:
    >>> from unfreeze import ImageDataLoaders, vision_learner, error_rate, sample_path
    >>> dls = ImageDataLoaders.from_folder(sample_path(), size=64)           # doctest: +SKIP
    >>> learn = vision_learner(dls, "efficientnet_lite0", metrics=[error_rate])  # doctest: +SKIP
    >>> learn.fine_tune(2)                                                   # doctest: +SKIP
"""

from unfreeze._version import __version__
from unfreeze.data import DataError, DataWarning, ImageDataLoader, ImageDataLoaders, sample_path
from unfreeze.inference import ClassificationInterpretation, ExportError
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
    ProgressCallback,
    Recorder,
    SaveBestModel,
)
from unfreeze.train.checkpoint import CheckpointError
from unfreeze.train.ema import EMA
from unfreeze.train.learner import Learner, NonFiniteLossError
from unfreeze.train.loggers import MLflowLogger, TensorBoardLogger
from unfreeze.train.metrics import accuracy, accuracy_multi, error_rate, f1_multi, f1_score, top_k_accuracy

__all__ = [
    "EMA",
    "CSVLogger",
    "Callback",
    "CheckpointError",
    "ClassificationInterpretation",
    "DataError",
    "DataWarning",
    "EarlyStopping",
    "ExportError",
    "ImageDataLoader",
    "ImageDataLoaders",
    "Learner",
    "MLflowLogger",
    "MultiLabel",
    "NonFiniteLossError",
    "ProgressCallback",
    "Recorder",
    "SaveBestModel",
    "SingleLabel",
    "TensorBoardLogger",
    "TransferModel",
    "UnknownArchitectureError",
    "WeightsNotFoundError",
    "__version__",
    "accuracy",
    "accuracy_multi",
    "cnn_learner",
    "create_model",
    "error_rate",
    "f1_multi",
    "f1_score",
    "load_learner",
    "sample_path",
    "top_k_accuracy",
    "vision_learner",
]
