"""Inference: predictions, TTA, interpretation, and pickle-free export / load_learner / ONNX.

Example:
    >>> from unfreeze.inference import ClassificationInterpretation, load_learner
    >>> learn = load_learner("model.unfreeze")  # doctest: +SKIP
    >>> label, index, probs = learn.predict("cat.jpg")  # doctest: +SKIP
"""

from unfreeze.inference.export import (
    FORMAT_VERSION,
    ExportArchitectureError,
    ExportError,
    NonFiniteWeightsWarning,
    export,
    export_onnx,
    load_learner,
    read_export_metadata,
)
from unfreeze.inference.interpret import ClassificationInterpretation
from unfreeze.inference.predict import get_preds, iter_image_files, predict, predict_batch, tta

__all__ = [
    "FORMAT_VERSION",
    "ClassificationInterpretation",
    "ExportArchitectureError",
    "ExportError",
    "NonFiniteWeightsWarning",
    "export",
    "export_onnx",
    "get_preds",
    "iter_image_files",
    "load_learner",
    "predict",
    "predict_batch",
    "read_export_metadata",
    "tta",
]
