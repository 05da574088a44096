import random
from pathlib import Path

import numpy as np
import pytest
import torch

from unfreeze.data import DataError, random_split
from unfreeze.data.split import split_items


def test_fixed_seed_gives_the_recorded_split():
    # Recorded once from fastai's algorithm (torch.manual_seed(seed); torch.randperm(n)); torch's CPU
    # generator (mt19937) is stable across runs, machines and versions.
    assert random_split(10, 0.3, seed=42) == ([0, 3, 4, 5, 7, 8, 9], [1, 2, 6])
    assert random_split(10, 0.2, seed=0) == ([0, 2, 3, 5, 6, 7, 8, 9], [1, 4])


def test_split_leaves_global_rngs_alone():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    random_split(100, 0.2, seed=3)
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_different_seeds_differ_and_fraction_is_respected():
    train_a, valid_a = random_split(50, 0.2, seed=1)
    _, valid_b = random_split(50, 0.2, seed=2)
    assert len(valid_a) == 10 and len(train_a) == 40 and valid_a != valid_b
    assert sorted(train_a + valid_a) == list(range(50))


def test_valid_pct_out_of_range_is_an_error():
    with pytest.raises(DataError, match="valid_pct"):
        random_split(10, 1.5, seed=0)


def test_a_class_never_goes_entirely_to_validation():
    items = [(Path(f"a{i}.png"), "a") for i in range(5)] + [(Path("b.png"), "b")]
    for seed in range(20):
        train, _ = split_items(items, 0.5, seed)
        assert "b" in {label for _, label in train}
