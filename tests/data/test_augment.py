"""Augmentation presets: what each preset is, the flip switch, the per-image policy's repeatable draws
(global RNG untouched), and a strong preset feeding a real loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unfreeze.data import ImageDataLoaders
from unfreeze.data.augment import AUGMENT_PRESETS, PolicyAugment, PolicyParams, augment_preset
from unfreeze.data.transforms import BatchAugment


def test_each_preset_is_the_documented_augmentation():
    assert augment_preset("none") is None
    light, default, strong = (augment_preset(name) for name in ("light", "default", "strong"))
    assert light == BatchAugment(flip_p=0.5, max_rotate=0.0, max_lighting=0.1)
    assert default == BatchAugment()  # fastai's aug_transforms
    assert isinstance(strong, PolicyAugment) and strong.policy == "trivial" and strong.erase_p == 0.25
    assert set(AUGMENT_PRESETS) == {"none", "light", "default", "strong"}


@pytest.mark.parametrize("name", ["light", "default", "strong"])
def test_flip_false_turns_flips_off(name):
    assert augment_preset(name, flip=False).flip_p == 0.0
    assert augment_preset(name).flip_p == 0.5


def test_unknown_names_say_what_is_expected():
    with pytest.raises(ValueError, match=r"one of .*'strong'"):
        augment_preset("heavy")
    with pytest.raises(ValueError, match="policy must be one of"):
        PolicyAugment(policy="autoaugment")
    with pytest.raises(ValueError, match="erase_p must be a probability"):
        PolicyAugment(erase_p=1.5)


@pytest.mark.parametrize("policy", ["trivial", "randaugment"])
def test_policy_draws_repeat_per_seed_and_leave_the_global_rng_alone(policy):
    augment = PolicyAugment(policy=policy, erase_p=0.5)
    images = torch.rand(6, 3, 40, 40)
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    first = augment(images.clone(), augment.draw(np.random.default_rng([1, 0]), 6), size=32)
    again = augment(images.clone(), augment.draw(np.random.default_rng([1, 0]), 6), size=32)
    other = augment(images.clone(), augment.draw(np.random.default_rng([1, 1]), 6), size=32)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert first.shape == (6, 3, 32, 32) and torch.equal(first, again) and not torch.equal(first, other)
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0


def test_the_policy_changes_images_beyond_the_geometric_pass():
    base = BatchAugment(flip_p=0.0, p_affine=0.0, p_lighting=0.0)
    policy = PolicyAugment(flip_p=0.0, p_affine=0.0, p_lighting=0.0, policy="trivial", erase_p=1.0)
    images = torch.rand(4, 3, 32, 32)
    params = policy.draw(np.random.default_rng(0), 4)
    plain = base(images, base.draw(np.random.default_rng(0), 4), size=32)
    augmented = policy(images, params, size=32)
    # random erasing with p=1 blanks a rectangle of every image
    assert all(not torch.equal(augmented[i], plain[i]) for i in range(4))
    assert (augmented == 0).all(dim=1).flatten(1).any(dim=1).all()


def test_params_keep_their_seeds_when_slots_are_selected_or_moved():
    params = PolicyAugment().draw(np.random.default_rng(0), 5)
    chosen = params.select([0, 3])
    assert isinstance(chosen, PolicyParams) and chosen.seed.tolist() == [params.seed[0], params.seed[3]]
    moved = chosen.to(torch.device("meta"))
    assert moved.angle.device.type == "meta" and moved.seed.device.type == "cpu"
    with pytest.raises(TypeError, match="PolicyParams"):
        PolicyAugment()(torch.rand(2, 3, 8, 8), BatchAugment().draw(np.random.default_rng(0), 2), size=8)


def test_a_loader_with_the_strong_preset_yields_augmented_normalized_batches(make_image_folder):
    root = make_image_folder(n_train=6)
    kwargs = {"size": 16, "bs": 4, "seed": 0, "num_workers": 0}
    strong = ImageDataLoaders.from_folder(root, augment=augment_preset("strong"), **kwargs)
    plain = ImageDataLoaders.from_folder(root, augment=False, **kwargs)
    images, labels = next(iter(strong.train))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32 and len(labels) == 4
    assert not torch.equal(images, next(iter(plain.train))[0])
    assert torch.equal(images, next(iter(strong.train))[0])  # the same epoch replays the same draws
