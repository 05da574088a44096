"""The training plan (train/recipe/plan.py): steps, not epochs, decide a fit's length; given values win."""

from __future__ import annotations

import pytest
import torch

from unfreeze.data import ImageDataLoaders
from unfreeze.train.builders import vision_learner
from unfreeze.train.recipe.plan import DEFAULT_EPOCHS, FULL_BATCH_STEPS, MIN_EPOCH_STEPS, plan_training


@pytest.mark.parametrize("n_images", [50, 100, 333, 2_000, 7_777, 50_000])
def test_every_size_gets_enough_steps_an_epoch_and_small_sets_small_batches(n_images):
    plan = plan_training(n_images)
    assert plan.steps_per_epoch >= MIN_EPOCH_STEPS - 1
    assert 16 <= plan.batch_size <= 64 and plan.batch_size <= max(16, n_images / 30)
    assert plan.epochs is not None and 3 <= plan.epochs <= DEFAULT_EPOCHS
    assert plan.probe is False  # the probe is asked for (probe=True), never planned (hard_data.md)
    assert plan.steps() == (plan.freeze_epochs + plan.epochs) * plan.steps_per_epoch


def test_large_sets_are_not_over_trained_and_small_ones_are_not_under_trained():
    # Issue 27: at batch size 64 an epoch of 100 images was two steps; the whole run a dozen.
    small, medium, large = plan_training(100), plan_training(2_000), plan_training(100_000)
    assert small.steps() >= 6 * MIN_EPOCH_STEPS and small.passes > 1
    # 2,000 images: batches of 32 at the recipe's LR, twice an epoch's updates at 64 (hard_data.md).
    assert (medium.batch_size, medium.passes, medium.epochs, medium.lr_scale) == (32, 1, DEFAULT_EPOCHS, 1.0)
    assert medium.steps_per_epoch == 2_000 // 32
    full = plan_training(64 * FULL_BATCH_STEPS)
    assert (full.batch_size, full.lr_scale) == (64, 1.0) and full.steps_per_epoch == FULL_BATCH_STEPS
    just_under = plan_training(64 * FULL_BATCH_STEPS - 1)
    assert (just_under.batch_size, just_under.lr_scale) == (32, 1.0)
    assert plan_training(1_000).batch_size == 32 and plan_training(1_000).lr_scale < 1.0  # a small set's 32
    assert large.epochs < medium.epochs and large.passes == 1


def test_given_values_win():
    plan = plan_training(100, batch_size=8, epochs=2, freeze_epochs=0, probe=True)
    assert (plan.batch_size, plan.epochs, plan.freeze_epochs, plan.passes) == (8, 2, 0, 1)
    assert plan.probe is False  # no frozen phase: nothing to probe before
    assert plan_training(100, batch_size=None, loader_batch_size=32).batch_size == 32
    assert plan_training(500, epochs=None).epochs is None  # a time budget plans them


def test_an_epoch_of_several_passes_sees_every_item_that_often(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(n_train=5, n_valid=2), size=16, bs=4, seed=0,
                                       num_workers=0, augment=False)
    one = [labels for _, labels in dls.train]
    dls.train.passes = 3
    three = [labels for _, labels in dls.train]
    assert len(dls.train) == len(three) == 30 // 4  # 3 passes of 10 items in batches of 4, the last dropped
    assert torch.equal(torch.cat(three)[: len(torch.cat(one))], torch.cat(one))  # the first pass is unchanged
    assert len(dls.valid) == len(list(dls.valid))  # validation never repeats


def test_fit_recipe_says_and_records_the_plan_and_the_loader_is_put_back(make_image_folder, capsys):
    dls = ImageDataLoaders.from_folder(make_image_folder(("a", "b"), n_train=20, n_valid=4), size=16, bs=64,
                                       seed=0, num_workers=0)
    learn = vision_learner(dls, "test_resnet", metrics=["error_rate"], pretrained=False, seed=0)
    learn.fit_recipe(epochs=1, flip=True)
    plan = learn.progress.recipe["plan"]
    assert (plan["n_images"], plan["batch_size"], plan["epochs"]) == (40, 16, 1)
    assert "plan: 40 images, batch size 16" in capsys.readouterr().out
    assert any(note.startswith("plan: ") for note in learn.recorder.notes)
    assert (dls.train.batch_size, dls.train.passes) == (64, 1)
