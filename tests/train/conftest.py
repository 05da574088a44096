"""Fakes for the train tests: a tiny model honouring the backbone contract and in-memory loaders
honouring the data contract, so the loop can be tested in a second without images or timm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from unfreeze.train.learner import Learner


class TinyModel(nn.Module):
    """Two conv blocks (two body groups) and a head with BN and dropout: the backbone contract in small."""

    def __init__(self, n_out: int = 4, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(width, 16), nn.BatchNorm1d(16), nn.Dropout(0.25), nn.Linear(16, n_out))
        self.n_out = n_out
        self.arch = "custom"
        self.mean, self.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
        self.input_size = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @property
    def param_groups(self) -> list[list[str]]:
        names = [n for n, _ in self.named_parameters()]
        return [
            [n for n in names if n.startswith(("body.0.", "body.1."))],
            [n for n in names if n.startswith(("body.3.", "body.4."))],
            [n for n in names if n.startswith("head.")],
        ]

    def config(self) -> dict:
        return {"arch": self.arch, "n_out": self.n_out}


class FakeDataset:
    def __init__(self, labels: torch.Tensor, vocab: list[str]) -> None:
        self.items = [(Path(f"{i}.png"), vocab[int(y)]) for i, y in enumerate(labels)]
        self.vocab = vocab
        self._labels = labels

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> list[int]:
        return self._labels.tolist()


class FakeLoader:
    """In-memory `ImageDataLoader`: order and noise augmentation are a function of (seed, epoch) only."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        vocab: list[str],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
    ) -> None:
        self.images, self.labels_tensor = images, labels
        self.dataset = FakeDataset(labels, vocab)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, shuffle
        self.device = torch.device("cpu")
        self.seed, self.epoch = seed, 0
        self.epochs_started: list[int] = []  # every epoch iterated, for the tests

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def shard(self, rank: int, world_size: int) -> None:
        pass

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.epochs_started.append(self.epoch)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.images)) if self.shuffle else np.arange(len(self.images))
        for b in range(len(self)):
            index = torch.from_numpy(order[b * self.batch_size : (b + 1) * self.batch_size])
            images = self.images[index]
            if self.shuffle:
                noise = torch.from_numpy(rng.standard_normal(images.shape).astype(np.float32))
                images = images + 0.1 * noise
            yield images.to(self.device), self.labels_tensor[index].to(self.device)


class FakeDataLoaders:
    def __init__(
        self,
        n_train: int = 64,
        n_valid: int = 32,
        batch_size: int = 16,
        n_classes: int = 4,
        size: int = 16,
        seed: int = 0,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.vocab = [f"class{i}" for i in range(n_classes)]
        self.size, self.seed = size, seed

        def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            labels = torch.randint(0, n_classes, (n,), generator=generator)
            images = torch.randn(n, 3, size, size, generator=generator)
            # A learnable signal: the class sets the brightness of one channel.
            images[torch.arange(n), labels % 3] += (1.0 + labels.float())[:, None, None]
            return images, labels

        self.train = FakeLoader(*make(n_train), self.vocab, batch_size, shuffle=True, seed=seed)
        self.valid = FakeLoader(*make(n_valid), self.vocab, batch_size, shuffle=False, seed=seed)

    @property
    def n_classes(self) -> int:
        return len(self.vocab)

    def to(self, device: str | torch.device) -> FakeDataLoaders:
        self.train.device = self.valid.device = torch.device(device)
        return self

    def set_normalization(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        pass


@pytest.fixture
def tiny_learner() -> Callable[..., Learner]:
    """Factory: `tiny_learner(n_train=64, batch_size=16, train_bn=True, seed=0)` on the CPU, quiet."""

    def factory(
        n_train: int = 64,
        batch_size: int = 16,
        train_bn: bool = True,
        seed: int | None = 0,
        n_classes: int = 4,
        **kwargs: object,
    ) -> Learner:
        torch.manual_seed(0)
        dls = FakeDataLoaders(n_train=n_train, batch_size=batch_size, n_classes=n_classes)
        model = TinyModel(n_out=n_classes)
        return Learner(dls, model, train_bn=train_bn, device="cpu", seed=seed, quiet=True, **kwargs)

    return factory


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models run 10-100x faster on one thread than on two when the cores are shared (xdist, CI).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
