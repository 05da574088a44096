"""Out-of-distribution scores: how unlike the training images an image is (higher = less like them).

Each score is a small `nn.Module` whose forward takes the features (the input of the model's last
linear layer, `features.FeatureTap`) and the logits of a batch and returns one float per image, so the
same module runs in PyTorch and inside the ONNX / TorchScript / OpenVINO graphs. All of them are fitted
on training images; `threshold_for` then sets the threshold on validation images.

    knn           distance to the k-th nearest training feature, features L2-normalised (Sun et al. 2022);
                  with two feature parts (`features.FeatureTap.parts`: the last linear layer's input and a
                  middle stage of the body), each part searched on its own and the two distances, each
                  divided by its validation 95th percentile, added
    mahalanobis   smallest class-conditional Mahalanobis distance, one shared covariance (Lee et al. 2018)
    energy        -logsumexp(logits) (Liu et al. 2020); needs no training features
    knn+energy    the sum of the two, each standardised by its validation mean and spread

benchmarks/trust_study.py measured them (benchmarks/results/trust.md); `DEFAULT_METHOD` is its choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["COPY_DISTANCE", "DEFAULT_BANK_SIZE", "DEFAULT_K", "DEFAULT_METHOD", "METHODS", "CombinedScore",
           "EnergyScore", "KNNScore", "MahalanobisScore", "copies_of_training", "fit_score", "score_from_config",
           "threshold_for"]

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


def _neighbour_distance(rows: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """[N]: each normalised row's distance to its k-th most similar bank row.

    Measured as the distance to that row itself, not sqrt(2 - 2 * similarity): near a training image the
    similarity is within rounding of 1, and the square root turned a last-bit difference (another batch
    size's kernel) into a visible change of the score, and a copy's distance into exactly 0.
    """
    kth = (rows @ bank.t()).topk(k, dim=1).indices[:, -1]
    return (rows - bank.index_select(0, kth)).norm(dim=1)


def _normalise_parts(features: torch.Tensor, parts: Sequence[int]) -> torch.Tensor:
    """Each part of the columns L2-normalised on its own; columns past the parts are left out."""
    pieces, start = [], 0
    for width in parts:
        pieces.append(_normalise(features[:, start:start + width]))
        start += width
    return torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]


class KNNScore(nn.Module):
    """Euclidean distance between the L2-normalised features and their k-th nearest training feature.

    With several `parts` (column widths of the features), each part is normalised and searched on its
    own, and the score is the sum of the parts' distances, each divided by its `scales` entry.
    """

    method = "knn"

    def __init__(self, bank: torch.Tensor, k: int = DEFAULT_K, parts: Sequence[int] | None = None,
                 scales: torch.Tensor | None = None) -> None:
        super().__init__()
        self.k = int(min(k, len(bank)))
        self.parts = tuple(int(width) for width in parts) if parts else (int(bank.shape[1]),)
        if sum(self.parts) != bank.shape[1]:
            raise ValueError(f"the feature parts {list(self.parts)} must add up to the bank's {bank.shape[1]} "
                             "columns.")
        self.register_buffer("bank", bank.float())
        if len(self.parts) > 1:
            self.register_buffer("scales", (torch.ones(len(self.parts)) if scales is None else scales).float())

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """[N, parts]: each part's distance to its k-th nearest training feature (not scaled)."""
        features = features.float()
        columns, start = [], 0
        for width in self.parts:
            part = _normalise(features[:, start:start + width])
            columns.append(_neighbour_distance(part, self.bank[:, start:start + width], self.k))
            start += width
        return torch.stack(columns, dim=1)

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        distances = self.distances(features)
        if len(self.parts) == 1:
            return distances[:, 0]
        return (distances / self.scales).sum(dim=1)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"method": self.method, "k": self.k}
        if len(self.parts) > 1:
            config["parts"] = list(self.parts)
        return config


class MahalanobisScore(nn.Module):
    """The smallest squared Mahalanobis distance to a class mean, with the covariance shared by all classes."""

    method = "mahalanobis"

    def __init__(self, means: torch.Tensor, precision: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("means", means.float())
        self.register_buffer("precision", precision.float())

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        # The first part only (the last linear layer's input): a middle stage's columns are left out.
        centred = features[:, :self.means.shape[1]].float().unsqueeze(1) - self.means.unsqueeze(0)  # [N, C, D]
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


def _bank(features: torch.Tensor, size: int, seed: int, parts: Sequence[int]) -> torch.Tensor:
    """A seeded subsample of at most `size` feature rows, each part normalised, rounded to float16 (how it
    is stored)."""
    if len(features) > size:
        chosen = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:size]
        features = features[chosen.sort().values]
    return _normalise_parts(features.float(), parts).half().float()


def _knn(features: torch.Tensor, parts: Sequence[int], valid: tuple[torch.Tensor, torch.Tensor] | None, k: int,
         bank_size: int, seed: int) -> KNNScore:
    """The knn score; with two parts, each part's distances are scaled by their validation 95th percentile
    (without validation features, by 1)."""
    knn = KNNScore(_bank(features, bank_size, seed, parts), k, parts)
    if len(parts) > 1 and valid is not None and len(valid[0]):
        with torch.no_grad():
            scales = torch.quantile(knn.distances(valid[0]).double(), 0.95, dim=0).float().clamp_min(1e-6)
        knn.scales.copy_(scales)
    return knn


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
              k: int = DEFAULT_K, bank_size: int = DEFAULT_BANK_SIZE, seed: int = 0,
              parts: Sequence[int] | None = None) -> nn.Module:
    """Fit the score `method` on training `features` [N, D] and their `labels`.

    Args:
        method: One of `METHODS`.
        features: Training features (`FeatureTap.features()`), unaugmented.
        labels: Class indices [N] (or multi-hot [N, C]); only Mahalanobis uses them.
        n_classes: The number of classes.
        multi_label: Energy of sigmoid outputs instead of a softmax.
        valid: (features, logits) of validation images: "knn+energy" standardises with them, and a knn
            score of two parts scales each part's distances by them.
        k: The neighbour whose distance is the knn score.
        bank_size: At most this many training features are kept (seeded subsample).
        seed: Seeds the subsample.
        parts: The widths of the feature parts (`FeatureTap.parts`); None: one part, all columns. Only
            knn reads a second part; Mahalanobis reads the first.

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
    parts = tuple(parts) if parts else (features.shape[1],)
    if method == "mahalanobis":
        return _mahalanobis(features[:, :parts[0]], labels, n_classes)
    knn = _knn(features, parts, valid, k, bank_size, seed)
    if method == "knn":
        return knn
    if valid is None:
        raise ValueError("knn+energy standardises the scores on validation images: pass valid=(features, logits).")
    energy = EnergyScore(multi_label)
    with torch.no_grad():
        parts = torch.stack([knn(*valid), energy(*valid)], dim=1)
    return CombinedScore(knn, energy, parts.mean(dim=0), parts.std(dim=0).clamp_min(1e-6))


# Features (L2-normalised) this close to a training image's are taken for a copy of it: the same file, or
# one re-saved or resized. On the default Fashion-MNIST model (2,000 / 1,000 images) no distinct validation
# image came closer to a training image than 0.062 (median 0.28).
COPY_DISTANCE = 0.02


def copies_of_training(train_features: torch.Tensor, features: torch.Tensor, parts: Sequence[int] | None = None,
                       chunk: int = 1024) -> torch.Tensor:
    """bool [N]: which rows of `features` lie within `COPY_DISTANCE` of a row of `train_features`.

    Only the first part of the columns counts (the last linear layer's input; `parts` as in `fit_score`).
    A validation image that copies a training image scores about 0 on knn: counted in the scales and the
    threshold, copies pull both down (with nearly all of them copies, to about 0, flagging new images that
    are like the training images).

    Example:
        >>> train = torch.randn(50, 8)
        >>> copies_of_training(train, torch.cat([train[:2], torch.randn(3, 8)])).tolist()
        [True, True, False, False, False]
    """
    width = int(parts[0]) if parts else train_features.shape[1]
    bank = _normalise(train_features[:, :width].float())
    found = [_neighbour_distance(_normalise(features[start:start + chunk, :width].float()), bank, 1) < COPY_DISTANCE
             for start in range(0, len(features), chunk)]  # a bounded [chunk, training images] similarity at a time
    return torch.cat(found) if found else torch.zeros(0, dtype=torch.bool)


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
    prefix = "" if method == "knn" else "knn."
    knn = KNNScore(tensors[f"{prefix}bank"], int(config["k"]), config.get("parts"), tensors.get(f"{prefix}scales"))
    if method == "knn":
        return knn
    return CombinedScore(knn, EnergyScore(bool(config.get("multi_label", False))), tensors["centre"],
                         tensors["spread"])
