"""Predictions you can trust: calibrated probabilities and an "unknown" flag for unfamiliar images.

    calibration.py  temperature scaling (fit, its standard error, apply, before/after report)
    ood.py          out-of-distribution scores (knn, mahalanobis, energy, knn+energy) and their threshold
    features.py     the features the scores read: the input of the model's last linear layer (a forward hook)
    metrics.py      ECE / NLL / Brier / reliability bins; AUROC / FPR95 / flagged shares
    section.py      Trust: a learner's temperature and score, and its section of an export

This package sits between models/ and inference/: the inference functions and the exports import it;
it imports neither them nor train/ (where `learn.calibrate()` fits it, train/trust_fit.py).

Example:
    >>> from unfreeze.trust import Trust
    >>> Trust(temperature=2.0).probabilities(torch.tensor([[2.0, 0.0]]), SingleLabel())  # doctest: +SKIP
"""

from unfreeze.trust.calibration import (
    apply_temperature,
    calibration_report,
    fit_temperature,
    temperature_standard_error,
)
from unfreeze.trust.features import FeatureTap, NoFeatureLayerError, feature_layer
from unfreeze.trust.metrics import (
    auroc,
    calibration_metrics,
    expected_calibration_error,
    fpr_at_95_tpr,
    ood_metrics,
    reliability_bins,
)
from unfreeze.trust.ood import DEFAULT_METHOD, METHODS, fit_score, threshold_for
from unfreeze.trust.section import TENSOR_PREFIX, Trust

__all__ = ["DEFAULT_METHOD", "METHODS", "TENSOR_PREFIX", "FeatureTap", "NoFeatureLayerError", "Trust",
           "apply_temperature", "auroc", "calibration_metrics", "calibration_report", "expected_calibration_error",
           "feature_layer", "fit_score", "fit_temperature", "fpr_at_95_tpr", "ood_metrics", "reliability_bins",
           "temperature_standard_error", "threshold_for"]
