"""MixupCutmix: batches and targets mixed during a fit only, repeatable draws that leave the global RNG
alone, odd batches, multi-label rows, a full fit and fine_tune, and bad arguments."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from unfreeze.data import ImageDataLoaders
from unfreeze.models import create_model
from unfreeze.train.learner import Learner
from unfreeze.train.mixup import MixupCutmix


def learner(root, n_classes: int = 2, bs: int = 8, **options) -> Learner:
    dls = ImageDataLoaders.from_folder(root, size=16, bs=bs, seed=0, augment=False, num_workers=0, **options)
    return Learner(dls, create_model("test_resnet", n_classes, pretrained=False), seed=0, quiet=True, device="cpu")


def first_batch(callback: MixupCutmix, learn: Learner) -> tuple[torch.Tensor, torch.Tensor]:
    callback.before_fit(learn)
    callback.before_epoch(0)
    learn.dls.train.set_epoch(0)
    return next(iter(learn.dls.train))


def test_training_batches_get_mixed_images_and_probability_targets(make_image_folder):
    learn = learner(make_image_folder(n_train=8))
    plain_images, plain_targets = next(iter(learn.dls.train))
    callback = MixupCutmix(mixup_alpha=1.0)
    images, targets = first_batch(callback, learn)
    assert plain_targets.dtype == torch.long
    assert targets.dtype.is_floating_point and targets.shape == (len(plain_targets), 2)
    assert torch.allclose(targets.sum(dim=1), torch.ones(len(targets)))
    assert not torch.equal(images, plain_images)
    # Each row is lam · one_hot(y_i) + (1 - lam) · one_hot(y_mirror): the mirror pairs share lam.
    lam = targets[torch.arange(len(targets)), plain_targets]
    mirrored = targets[torch.arange(len(targets)), plain_targets.flip(0)]
    assert torch.allclose(torch.where(plain_targets == plain_targets.flip(0), lam, lam + mirrored),
                          torch.ones(len(targets)))
    callback.after_fit({})
    assert learn.dls.train.batch_transforms == []
    assert next(iter(learn.dls.train))[1].dtype == torch.long  # unmixed again after the fit


def test_the_draws_repeat_and_leave_the_global_rngs_alone(make_image_folder):
    root = make_image_folder(n_train=8)
    learners = learner(root), learner(root)  # built first: a new model's init draws from torch's RNG
    np.random.seed(123)
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state()
    first = first_batch(MixupCutmix(mixup_alpha=0.4, cutmix_alpha=1.0), learners[0])
    second = first_batch(MixupCutmix(mixup_alpha=0.4, cutmix_alpha=1.0), learners[1])
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)


def test_an_odd_batch_keeps_its_last_item_unmixed(make_image_folder):
    learn = learner(make_image_folder(n_train=4), bs=5)  # 8 items: batches of 5 and 3
    plain_images, plain_targets = next(iter(learn.dls.train))
    images, targets = first_batch(MixupCutmix(mixup_alpha=1.0), learn)
    assert len(targets) == len(plain_targets) and len(plain_targets) % 2 == 1
    assert torch.equal(images[-1], plain_images[-1])
    assert targets[-1].tolist() == torch.nn.functional.one_hot(plain_targets[-1], 2).float().tolist()


def test_multi_label_rows_are_mixed_multi_hot(tmp_path, write_image):
    rows = []
    for index in range(8):
        write_image(tmp_path / f"{index}.png", seed=index)
        rows.append((f"{index}.png", ["a", "b", "a b", ""][index % 4]))
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("file", "labels"), *rows])
    dls = ImageDataLoaders.from_csv(tmp_path, "labels.csv", label_delim=" ", valid_pct=0.25, seed=0, size=16,
                                    bs=6, augment=False, num_workers=0)
    learn = Learner(dls, create_model("test_resnet", 2, pretrained=False), seed=0, quiet=True, device="cpu")
    _, plain = next(iter(learn.dls.train))
    _, mixed = first_batch(MixupCutmix(mixup_alpha=1.0), learn)
    assert mixed.shape == plain.shape
    # mixed = lam · plain + (1 - lam) · mirror, with one lam for the batch.
    mirror = plain.flip(0)
    differs = plain != mirror
    lam = (mixed - mirror)[differs] / (plain - mirror)[differs]
    assert differs.any() and torch.allclose(lam, lam[0].expand_as(lam)) and 0 <= lam[0] <= 1
    assert torch.allclose(mixed[~differs], plain[~differs])


def test_fit_and_fine_tune_train_with_mixup_and_leave_the_loader_as_it_was(make_image_folder):
    learn = learner(make_image_folder(n_train=8))
    learn.fit(1, 1e-3, callbacks=[MixupCutmix(mixup_alpha=0.4)])
    # fine_tune runs two fits with the same callback: the transform must be removed after each one,
    # or the second phase would mix already-mixed targets.
    learn.fine_tune(1, callbacks=[MixupCutmix(cutmix_alpha=1.0)])
    assert learn.dls.train.batch_transforms == []
    assert all(np.isfinite(row["train_loss"]) for row in learn.recorder.history)
    assert len(learn.recorder.history) == 3


@pytest.mark.parametrize("options, message", [
    ({}, "mixup_alpha > 0 or cutmix_alpha > 0"),
    ({"mixup_alpha": -0.2}, "mixup_alpha must be a number >= 0"),
    ({"cutmix_alpha": True}, "cutmix_alpha must be a number >= 0"),
    ({"mixup_alpha": 0.4, "prob": 1.5}, "prob must be a probability"),
])
def test_bad_arguments_say_what_is_expected(options, message):
    with pytest.raises(ValueError, match=message):
        MixupCutmix(**options)


def test_mix_outside_a_fit_is_refused():
    with pytest.raises(RuntimeError, match="inside a fit"):
        MixupCutmix(mixup_alpha=0.4).mix(torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]))
