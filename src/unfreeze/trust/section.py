"""`Trust`: what a model knows about its own reliability, and its section of an export.

A learner holds one `Trust` (`learn.trust`): the temperature its probabilities are divided by, and the
fitted out-of-distribution score with its threshold. The inference functions ask it for probabilities
(`probabilities`) and for the unknown flag (`scores`, `unknown`); the export stores it as one JSON
section plus the score's buffers, named `trust.<buffer>`, in the same safetensors file:

    "trust": {"temperature": 1.31, "calibrated": true,
              "ood": {"method": "knn", "k": 1, "parts": [1280, 112], "threshold": 0.71,
                      "unknown_rate": 0.05} | null,
              "tensors": {"bank": [1024, 1392], "scales": [2]}}

An export from before this section has none: `Trust.absent()` (temperature 1, no unknown flag).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unfreeze.trust.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE
from unfreeze.trust.ood import METHODS, score_from_config

__all__ = ["TENSOR_PREFIX", "Trust"]

TENSOR_PREFIX = "trust."
_MAX_ROWS = 100_000  # rows of a stored feature bank; DEFAULT_BANK_SIZE is far below
_MAX_DIM = 1_000_000
_MAX_ELEMENTS = 200_000_000
_BUFFERS = {"knn": {"bank"}, "mahalanobis": {"means", "precision"}, "energy": set(),
            "knn+energy": {"knn.bank", "centre", "spread"}}


@dataclass
class Trust:
    """A model's temperature and out-of-distribution score (see the module docstring).

    Attributes:
        temperature: Logits are divided by it before softmax / sigmoid (1: raw probabilities).
        score: The fitted score module (`ood.fit_score`), or None: predictions carry no unknown flag.
        threshold: Scores above it are "unknown".
        unknown_rate: The share of validation images the threshold flags.
        calibration: ECE / NLL / Brier before and after (`calibration.calibration_report`), when fitted here.
        stored: False for a model loaded from an export that predates this section.
        temperature_se: The temperature's standard error (`calibration.temperature_standard_error`), or None
            (not fitted here, or an export from before it was kept).

    Example:
        >>> from unfreeze.tasks import SingleLabel
        >>> Trust().probabilities(torch.tensor([[0.0, 0.0]]), SingleLabel())
        tensor([[0.5000, 0.5000]])
    """

    temperature: float = 1.0
    score: nn.Module | None = None
    threshold: float | None = None
    unknown_rate: float | None = None
    calibration: dict[str, Any] | None = field(default=None, repr=False)
    stored: bool = True
    temperature_se: float | None = None

    @classmethod
    def absent(cls) -> Trust:
        """An old export's trust: temperature 1, no unknown flag."""
        return cls(stored=False)

    @property
    def has_score(self) -> bool:
        """Whether predictions carry `unknown` and `ood_score`."""
        return self.score is not None and self.threshold is not None

    def probabilities(self, logits: torch.Tensor, task: Any) -> torch.Tensor:
        """What leaves the library: the task's activation of `logits / temperature` (softmax, a sigmoid
        per class; a regression task's outputs as they are, never scaled: its temperature stays 1)."""
        return task.activation(logits if self.temperature == 1.0 else logits / self.temperature)

    @torch.no_grad()
    def scores(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        """The out-of-distribution score [N] of a batch (None without a fitted score)."""
        if self.score is None:
            return None
        if len(features) == 0:  # no image was read: no pass ran, so the middle stage's columns are missing
            return torch.zeros(0)
        self.score.to(features.device)
        return self.score(features.float(), logits.float()).cpu()

    def unknown(self, scores: torch.Tensor) -> torch.Tensor:
        """bool [N]: the scores above the threshold."""
        return scores > (self.threshold if self.threshold is not None else math.inf)

    # ------------------------------------------------------------------ export section

    def metadata(self) -> dict[str, Any]:
        """The JSON section of an export (the tensors go beside it, `tensors()`)."""
        ood = None
        if self.has_score:
            ood = {**self.score.config(), "threshold": float(self.threshold), "unknown_rate": self.unknown_rate}
        return {"temperature": float(self.temperature), "calibrated": self.temperature != 1.0,
                "temperature_se": None if self.temperature_se is None else float(self.temperature_se), "ood": ood,
                "tensors": {name: list(tensor.shape) for name, tensor in self._buffers().items()}}

    def _buffers(self) -> dict[str, torch.Tensor]:
        return {} if not self.has_score else dict(self.score.named_buffers())

    def tensors(self) -> dict[str, torch.Tensor]:
        """The score's buffers under `trust.` names; the feature bank as float16 (it was fitted rounded so)."""
        return {f"{TENSOR_PREFIX}{name}": (tensor.half() if name.endswith("bank") else tensor.float()).cpu()
                .contiguous() for name, tensor in self._buffers().items()}

    @staticmethod
    def problems(section: Any) -> list[str]:
        """Every out-of-range or mistyped value of an export's trust section (empty if none)."""
        if not isinstance(section, dict):
            return [f"trust must be an object, found {type(section).__name__}"]
        problems = []
        temperature = section.get("temperature")
        if not (_finite(temperature) and MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE):
            problems.append(f"trust.temperature must be a number from {MIN_TEMPERATURE} to {MAX_TEMPERATURE}, "
                            f"found {temperature!r}"[:200])
        error = section.get("temperature_se")
        if error is not None and not (_finite(error) and error >= 0):
            problems.append(f"trust.temperature_se must be a number >= 0 or null, found {error!r}"[:200])
        ood, tensors = section.get("ood"), section.get("tensors", {})
        if not isinstance(tensors, dict) or not all(_shape(shape) for shape in tensors.values()):
            return [*problems, "trust.tensors must map names to shapes (lists of whole numbers)"]
        if ood is None:
            return problems + (["trust.tensors must be empty without trust.ood"] if tensors else [])
        if not isinstance(ood, dict) or ood.get("method") not in METHODS:
            return [*problems, f"trust.ood.method must be one of {', '.join(METHODS)}"]
        if not _finite(ood.get("threshold")):
            problems.append("trust.ood.threshold must be a finite number")
        rate = ood.get("unknown_rate")
        if rate is not None and not (_finite(rate) and 0.0 < rate < 1.0):
            problems.append("trust.ood.unknown_rate must be a number between 0 and 1")
        k = ood.get("k", 1)
        if not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 10_000):
            problems.append("trust.ood.k must be a whole number from 1 to 10000")
        parts = ood.get("parts")
        expected = set(_BUFFERS[ood["method"]])
        if parts is not None:
            bank = "bank" if ood["method"] == "knn" else "knn.bank"
            if not (ood["method"] in ("knn", "knn+energy") and isinstance(parts, list) and 2 <= len(parts) <= 4
                    and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in parts)):
                return [*problems, "trust.ood.parts must be a list of 2 to 4 whole numbers (knn scores only)"]
            expected.add(bank.replace("bank", "scales"))
            if tensors.get(bank, [0, 0])[-1:] != [sum(parts)]:
                problems.append(f"trust.ood.parts must add up to the columns of trust.tensors.{bank}")
            if tensors.get(bank.replace("bank", "scales")) != [len(parts)]:
                problems.append(f"trust.tensors.{bank.replace('bank', 'scales')} must hold one number per part")
        if set(tensors) != expected:
            problems.append(f"trust.tensors of {ood['method']} must be {sorted(expected)}, "
                            f"found {sorted(tensors)[:5]}")
        return problems

    @staticmethod
    def expected_tensors(section: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Placeholders (no memory) of the tensors a checked section declares, to check the file's header."""
        return {f"{TENSOR_PREFIX}{name}": torch.empty(shape, device="meta")
                for name, shape in section.get("tensors", {}).items()}

    @classmethod
    def from_export(cls, section: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Trust:
        """The trust of a checked section and its `trust.` tensors (names with or without the prefix)."""
        buffers = {name.removeprefix(TENSOR_PREFIX): tensor.float() for name, tensor in tensors.items()}
        ood, error = section.get("ood"), section.get("temperature_se")
        temperature = {"temperature": float(section["temperature"]),
                       "temperature_se": None if error is None else float(error)}
        if ood is None:
            return cls(**temperature)
        score = score_from_config(ood, buffers).eval()
        return cls(**temperature, score=score, threshold=float(ood["threshold"]), unknown_rate=ood.get("unknown_rate"))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shape(shape: Any) -> bool:
    if not (isinstance(shape, list) and len(shape) <= 2):
        return False
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= _MAX_DIM for n in shape):
        return False
    return (shape[0] if shape else 1) <= _MAX_ROWS and math.prod(shape) <= _MAX_ELEMENTS
