"""The trust inside an exported graph: a module that returns calibrated probabilities and the unknown score.

ONNX, TorchScript and OpenVINO files carry no unfreeze code, so the temperature and the score must be
part of the graph itself. `TrustedModel` wraps the model: its forward divides the logits by the
temperature before the activation and, when a score is fitted, also returns the score of the
features (`features.FeatureTap`: what the model's last linear layer received, and the pooled middle
stage) captured by hooks during the same pass.
"""

from __future__ import annotations

import torch
from torch import nn

from unfreeze.trust.features import FeatureTap
from unfreeze.trust.section import Trust

__all__ = ["TrustedModel"]


class TrustedModel(nn.Module):
    """normalised images → (logits, probabilities[, ood_score]), the trust's temperature and score applied.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2, bias=False))  # zero images: logits 0
        >>> logits, probs = TrustedModel(model, Trust(temperature=2.0), multi_label=False)(torch.zeros(1, 12))
        >>> probs.tolist()
        [[0.5, 0.5]]
    """

    def __init__(self, model: nn.Module, trust: Trust, multi_label: bool) -> None:
        super().__init__()
        self.model = model
        self.multi_label = multi_label
        self.temperature = float(trust.temperature)
        self.score = trust.score if trust.has_score else None
        self._tap: FeatureTap | None = None
        if self.score is not None:
            self._tap = FeatureTap(model)
            self._tap.attach()  # for the wrapper's life: it exists to be exported

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self._tap is not None:
            self._tap.clear()
        logits = self.model(images).float()
        scaled = logits / self.temperature
        probs = torch.sigmoid(scaled) if self.multi_label else torch.softmax(scaled, dim=1)
        if self.score is None or self._tap is None or not self._tap.captured:
            return logits, probs
        score = self.score(self._tap.features(), logits)
        self._tap.clear()
        return logits, probs, score
