"""Out-of-distribution scores: how unlike the training images an image is (higher = less like them).

Each score is a small `nn.Module` whose forward takes the features (the input of the model's last
linear layer, `features.FeatureTap`) and the logits of a batch and returns one float per image, so the
same module runs in PyTorch and inside the ONNX / TorchScript / OpenVINO graphs. All of them are fitted
on training images; `threshold_for` then sets the threshold on validation images.

    knn           distance to the k-th nearest training feature, features L2-normalised (Sun et al. 2022)
    mahalanobis   smallest class-conditional Mahalanobis distance, one shared covariance (Lee et al. 2018)
    energy        -logsumexp(logits) (Liu et al. 2020); needs no training features
    knn+energy    the sum of the two, each standardised by its validation mean and spread

benchmarks/trust_study.py measured them (benchmarks/results/trust.md); `DEFAULT_METHOD` is its choice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["DEFAULT_BANK_SIZE", "DEFAULT_K", "DEFAULT_METHOD", "METHODS", "CombinedScore", "EnergyScore",
           "KNNScore", "MahalanobisScore", "fit_score", "score_from_config", "threshold_for"]

METHODS = ("knn", "mahalanobis", "energy", "knn+energy")
DEFAULT_METHOD = "knn"
# The nearest training feature (k = 1): in every model of three study runs (nine models) it separated
# the far sets better than k = 5, 10 or 50 (benchmarks/results/trust.md, trust_label_smoothing.md).
DEFAULT_K = 1
# Training features kept for knn: a seeded subsample, so an export grows by at most this many rows
# (stored as float16: 1,024 x 1,280 features of efficientnet_lite0 are 2.6 MB). The study measured 2,048
# rows barely better (far AUROC +0.001 to +0.002) at twice the scoring time.
DEFAULT_BANK_SIZE = 1024


def _normalise(features: torch.Tensor) -> torch.Tensor:
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


class KNNScore(nn.Module):
    """Euclidean distance between the L2-normalised features and their k-th nearest training feature."""

    method = "knn"

    def __init__(self, bank: torch.Tensor, k: int = DEFAULT_K) -> None:
        super().__init__()
        self.k = int(min(k, len(bank)))
        self.register_buffer("bank", bank.float())

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        similarity = _normalise(features.float()) @ self.bank.t()
        kth = similarity.topk(self.k, dim=1).values[:, -1]
        return (2.0 - 2.0 * kth).clamp_min(0.0).sqrt()

    def config(self) -> dict[str, Any]:
        return {"method": self.method, "k": self.k}


class MahalanobisScore(nn.Module):
    """The smallest squared Mahalanobis distance to a class mean, with the covariance shared by all classes."""

    method = "mahalanobis"

    def __init__(self, means: torch.Tensor, precision: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("means", means.float())
        self.register_buffer("precision", precision.float())

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        centred = features.float().unsqueeze(1) - self.means.unsqueeze(0)  # [N, C, D]
        distances = ((centred @ self.precision) * centred).sum(dim=2)
        return distances.min(dim=1).values

    def config(self) -> dict[str, Any]:
        return {"method": self.method}


class EnergyScore(nn.Module):
    """The free energy of the logits, -logsumexp (multi-label: -sum softplus, the classes' joint energy)."""

    method = "energy"

    def __init__(self, multi_label: bool = False) -> None:
        super().__init__()
        self.multi_label = bool(multi_label)

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.multi_label:
            return -nn.functional.softplus(logits).sum(dim=1)
        return -torch.logsumexp(logits, dim=1)

    def config(self) -> dict[str, Any]:
        return {"method": self.method, "multi_label": self.multi_label}


class CombinedScore(nn.Module):
    """knn + energy, each standardised by the mean and spread of its validation scores."""

    method = "knn+energy"

    def __init__(self, knn: KNNScore, energy: EnergyScore, centre: torch.Tensor, spread: torch.Tensor) -> None:
        super().__init__()
        self.knn, self.energy = knn, energy
        self.register_buffer("centre", centre.float())
        self.register_buffer("spread", spread.float())

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        parts = torch.stack([self.knn(features, logits), self.energy(features, logits)], dim=1)
        return ((parts - self.centre) / self.spread).sum(dim=1)

    def config(self) -> dict[str, Any]:
        return {"method": self.method, "k": self.knn.k, "multi_label": self.energy.multi_label}


def _bank(features: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """A seeded subsample of at most `size` normalised feature rows, rounded to float16 (how it is stored)."""
    if len(features) > size:
        chosen = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:size]
        features = features[chosen.sort().values]
    return _normalise(features.float()).half().float()


def _mahalanobis(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> MahalanobisScore:
    features = features.double()
    if labels.ndim == 2:  # multi-label: an item counts for each of its classes
        rows, classes = torch.nonzero(labels.nan_to_num(0) > 0.5, as_tuple=True)
        features, labels = features[rows], classes
    means = torch.zeros(n_classes, features.shape[1], dtype=torch.float64)
    overall = features.mean(dim=0)
    for index in range(n_classes):
        members = features[labels == index]
        means[index] = members.mean(dim=0) if len(members) else overall  # a class never seen: the overall mean
    centred = features - means[labels.clamp_min(0)]
    covariance = centred.t() @ centred / max(len(features), 1)
    # Shrinkage keeps the inverse finite when features outnumber images (1,280 features, 500 images).
    ridge = 1e-3 * covariance.diagonal().mean().clamp_min(1e-12)
    precision = torch.linalg.pinv(covariance + ridge * torch.eye(len(covariance), dtype=torch.float64))
    return MahalanobisScore(means.float(), precision.float())


def fit_score(method: str, features: torch.Tensor, labels: torch.Tensor, n_classes: int, *,
              multi_label: bool = False, valid: tuple[torch.Tensor, torch.Tensor] | None = None,
              k: int = DEFAULT_K, bank_size: int = DEFAULT_BANK_SIZE, seed: int = 0) -> nn.Module:
    """Fit the score `method` on training `features` [N, D] and their `labels`.

    Args:
        method: One of `METHODS`.
        features: Training features (the input of the last linear layer), unaugmented.
        labels: Class indices [N] (or multi-hot [N, C]); only Mahalanobis uses them.
        n_classes: The number of classes.
        multi_label: Energy of sigmoid outputs instead of a softmax.
        valid: (features, logits) of validation images: "knn+energy" standardises with them.
        k: The neighbour whose distance is the knn score.
        bank_size: At most this many training features are kept (seeded subsample).
        seed: Seeds the subsample.

    Example:
        >>> score = fit_score("knn", torch.randn(100, 8), torch.zeros(100, dtype=torch.long), 2)
        >>> score(torch.randn(3, 8), torch.zeros(3, 2)).shape
        torch.Size([3])
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    if method == "energy":
        return EnergyScore(multi_label)
    if len(features) == 0:
        raise ValueError("fitting an unknown-image score needs training images; the training set has none.")
    if method == "mahalanobis":
        return _mahalanobis(features, labels, n_classes)
    knn = KNNScore(_bank(features, bank_size, seed), k)
    if method == "knn":
        return knn
    if valid is None:
        raise ValueError("knn+energy standardises the scores on validation images: pass valid=(features, logits).")
    energy = EnergyScore(multi_label)
    with torch.no_grad():
        parts = torch.stack([knn(*valid), energy(*valid)], dim=1)
    return CombinedScore(knn, energy, parts.mean(dim=0), parts.std(dim=0).clamp_min(1e-6))


def threshold_for(scores: torch.Tensor, unknown_rate: float) -> float:
    """The score above which `unknown_rate` of `scores` (validation images) lie.

    Example:
        >>> threshold_for(torch.arange(101.0), 0.05)
        95.0
    """
    if len(scores) == 0:
        raise ValueError("setting the unknown threshold needs validation images; the validation set has none.")
    return float(torch.quantile(scores.double().flatten(), 1.0 - unknown_rate))


def score_from_config(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> nn.Module:
    """Rebuild a fitted score from its `config()` and its buffers (as an export stores them).

    Example:
        >>> score_from_config({"method": "energy", "multi_label": False}, {}).method
        'energy'
    """
    method = config["method"]
    if method == "energy":
        return EnergyScore(bool(config.get("multi_label", False)))
    if method == "mahalanobis":
        return MahalanobisScore(tensors["means"], tensors["precision"])
    knn = KNNScore(tensors["bank" if method == "knn" else "knn.bank"], int(config["k"]))
    if method == "knn":
        return knn
    return CombinedScore(knn, EnergyScore(bool(config.get("multi_label", False))), tensors["centre"],
                         tensors["spread"])
