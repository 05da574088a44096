"""Fixtures of the inference tests: a tiny random-weight learner on the committed sample."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from unfreeze.data import ImageDataLoaders
from unfreeze.train.builders import vision_learner
from unfreeze.train.learner import Learner


def tiny_learner(root: Path, *, size: int = 32, bs: int = 64, arch: str = "test_resnet", seed: int = 0) -> Learner:
    """A CPU learner with random weights: fast to build, deterministic, no weights file needed."""
    dls = ImageDataLoaders.from_folder(root, size=size, bs=bs, seed=seed, num_workers=0)
    return vision_learner(dls, arch, pretrained=False, seed=seed, device="cpu", quiet=True)


@pytest.fixture(scope="session")
def sample_learner(sample_dir: Path) -> Learner:
    """test_resnet (random weights) on the Fashion-MNIST sample at 32 px; 200 validation images.

    Session-scoped because decoding and building cost seconds; tests must not train or refreeze it.
    """
    return tiny_learner(sample_dir)


@pytest.fixture
def tiny_learner_factory() -> Callable[..., Learner]:
    return tiny_learner


@pytest.fixture(scope="session")
def sample_preds(sample_learner: Learner) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`sample_learner.get_preds(with_loss=True)` over the 200 validation images, computed once."""
    return sample_learner.get_preds(with_loss=True)
