"""How well a regression model predicts, per output: the report `unfreeze train` and `evaluate` write.

Example:
    >>> report = regression_report(torch.tensor([[1.0], [2.0]]), torch.tensor([[1.0], [3.0]]), ["age"])
    >>> report["age"]["mae"], report["age"]["count"]
    (0.5, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["regression_report"]


def regression_report(preds: torch.Tensor, targets: torch.Tensor, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per output: mean absolute error, root mean squared error, R2 (1 - SS_res / SS_tot) and the count of
    labelled items; unlabelled rows (NaN targets) are left out.

    Args:
        preds, targets: [N, K] predictions and targets.
        names: The K output names (the model's vocab).
    """
    preds, targets = preds.double().reshape(len(preds), -1), targets.double().reshape(len(targets), -1)
    labelled = ~targets.isnan().any(dim=-1)
    preds, targets = preds[labelled], targets[labelled]
    report: dict[str, dict[str, Any]] = {}
    for column, name in enumerate(names):
        predicted, actual = preds[:, column], targets[:, column]
        error = predicted - actual
        total = ((actual - actual.mean()) ** 2).sum()
        report[name] = {
            "mae": error.abs().mean().item() if len(error) else float("nan"),
            "rmse": error.pow(2).mean().sqrt().item() if len(error) else float("nan"),
            "r2": 1.0 - (error.pow(2).sum() / total).item() if total > 0 else float("nan"),
            "count": len(error),
        }
    return report
