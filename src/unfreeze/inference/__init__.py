"""Inference: predictions, TTA, interpretation and pickle-free export / ONNX, as plain functions.

They take a predictor (a `Learner`, or anything with its model, data and device) and never import the
training code; `unfreeze.load_learner` rebuilds a Learner from an export.

Example:
    >>> from unfreeze import load_learner
    >>> from unfreeze.inference import ClassificationInterpretation
    >>> learn = load_learner("model.unfreeze")  # doctest: +SKIP
    >>> label, index, probs = learn.predict("cat.jpg")  # doctest: +SKIP
"""

from unfreeze.inference.convert import FastaiConversionError, convert_fastai
from unfreeze.inference.export import (
    FORMAT_VERSION,
    ExportArchitectureError,
    ExportError,
    NonFiniteWeightsWarning,
    export,
    export_onnx,
    fastai_export_hint,
    inference_dls,
    read_export,
    read_export_metadata,
)
from unfreeze.inference.interpret import ClassificationInterpretation, Interpretation
from unfreeze.inference.predict import (
    Prediction,
    Predictor,
    channels_last,
    collect_logits,
    get_preds,
    iter_image_files,
    predict,
    predict_batch,
    prediction_row,
    tta,
)
from unfreeze.inference.records import (
    CSV_COLUMNS,
    PREDICTION_SCHEMA,
    SCHEMA_VERSION,
    csv_row,
    error_record,
    evaluation_records,
    prediction_record,
    regression_records,
)
from unfreeze.inference.results import show_results
from unfreeze.inference.thresholds import best_threshold, best_thresholds

__all__ = [
    "CSV_COLUMNS",
    "FORMAT_VERSION",
    "PREDICTION_SCHEMA",
    "SCHEMA_VERSION",
    "ClassificationInterpretation",
    "ExportArchitectureError",
    "ExportError",
    "FastaiConversionError",
    "Interpretation",
    "NonFiniteWeightsWarning",
    "Prediction",
    "Predictor",
    "best_threshold",
    "best_thresholds",
    "channels_last",
    "collect_logits",
    "convert_fastai",
    "csv_row",
    "error_record",
    "evaluation_records",
    "export",
    "export_onnx",
    "fastai_export_hint",
    "get_preds",
    "inference_dls",
    "iter_image_files",
    "predict",
    "predict_batch",
    "prediction_record",
    "prediction_row",
    "read_export",
    "read_export_metadata",
    "regression_records",
    "show_results",
    "tta",
]
