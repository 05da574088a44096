"""fit_recipe and Recipe: fine_tune's formulas kept, each recipe setting reaching the fit, conflicts, resume."""

from __future__ import annotations

import re
import time
import warnings

import pytest
import torch
from torch import nn

from unfreeze.data import ImageDataLoaders
from unfreeze.data.augment import PolicyAugment
from unfreeze.train import recipes
from unfreeze.train.builders import load_learner, vision_learner
from unfreeze.train.callbacks import Callback, EarlyStopping
from unfreeze.train.checkpoint import CheckpointError
from unfreeze.train.ema import EMA
from unfreeze.train.mixup import MixupCutmix
from unfreeze.train.recipe_settings import Recipe, RecipeError
from unfreeze.train.schedules import OneCycleSchedule, resolve_lrs
from unfreeze.train.time_budget import TimeBudget


@pytest.fixture
def folder(make_image_folder):
    return make_image_folder(classes=("ant", "bee", "cat"), n_train=8, n_valid=4)


def make_dls(folder, size: int = 16) -> ImageDataLoaders:
    return ImageDataLoaders.from_folder(folder, size=size, bs=4, seed=0, num_workers=0)


def make_learner(dls, **kwargs):
    return vision_learner(dls, "test_resnet", metrics=["error_rate"], pretrained=False, quiet=True, seed=0, **kwargs)


class Watch(Callback):
    """Records, at each fit's start, what the recipe set up for it."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def before_fit(self, learner) -> None:
        self.seen.append({"loss": learner.loss_func, "augment": learner.dls.train.augment,
                          "size": (learner.dls.train.size, learner.dls.valid.size),
                          "wd": learner.weight_decay})


@pytest.mark.parametrize("augment", [None, "default"])  # the default preset is the loaders' own augmentation
def test_fit_recipe_with_fine_tunes_settings_is_fine_tune_bit_for_bit(folder, augment):
    plain, recipe = make_learner(make_dls(folder)), make_learner(make_dls(folder))
    plain.fine_tune(1, base_lr=2e-3, freeze_epochs=1, lr_mult=100)
    recipe.fit_recipe(1, pct_start=0.3, div=5.0, augment=augment, frozen_groups=0, flip=True, base_lr=2e-3, lr_mult=100,
                      batch_size=None, probe=False, imbalance="none", noise="none")
    for (name, before), after in zip(plain.model.state_dict().items(), recipe.model.state_dict().values(), strict=True):
        assert torch.equal(before, after), name
    assert [row["train_loss"] for row in plain.recorder.history] == [
        row["train_loss"] for row in recipe.recorder.history]


def test_the_default_recipe_runs_fine_tunes_phases_with_its_own_warmup_and_weight_decay(folder):
    dls = make_dls(folder)
    learn, watch = make_learner(dls, weight_decay=0.05), Watch()
    learn.fit_recipe(1, callbacks=[watch], batch_size=None, probe=False)  # the loader's batches, no probe
    n = len(dls.train)
    unfrozen = OneCycleSchedule(resolve_lrs(slice(2e-3 / 10, 2e-3), 3), n, pct_start=0.5, div=25.0)
    for step in range(n):
        assert learn.recorder.lrs[n + step] == pytest.approx(unfrozen.lrs_at(step))
    assert [seen["wd"] for seen in watch.seen] == [0.01, 0.01] and learn.weight_decay == 0.05
    assert learn.progress.recipe["name"] == "fit_recipe" and learn.progress.recipe["div"] == 25
    assert [row["epoch"] for row in learn.recorder.history] == [0, 1]


def test_label_smoothing_and_augmentation_hold_for_the_fit_and_are_put_back(folder):
    dls = make_dls(folder)
    learn, watch = make_learner(dls), Watch()
    own_loss, own_augment = learn.loss_func, dls.train.augment
    learn.fit_recipe(1, label_smoothing=0.1, augment="strong", flip=False, callbacks=[watch])
    for seen in watch.seen:
        assert isinstance(seen["loss"], nn.CrossEntropyLoss) and seen["loss"].label_smoothing == 0.1
        assert isinstance(seen["augment"], PolicyAugment) and seen["augment"].flip_p == 0.0
    assert learn.loss_func is own_loss and dls.train.augment is own_augment


def test_mixup_cutmix_ema_and_patience_become_callbacks_of_every_phase(folder, monkeypatch):
    learn = make_learner(make_dls(folder))
    calls: list[list[type]] = []
    run_fit = recipes.loop.run_fit

    def watching(learner, n_epoch, schedule, callbacks, **kwargs):
        calls.append([type(callback) for callback in callbacks])
        return run_fit(learner, n_epoch, schedule, callbacks, **kwargs)

    monkeypatch.setattr(recipes.loop, "run_fit", watching)
    learn.fit_recipe(1, mixup=0.2, cutmix=1.0, ema=True, patience=2)
    assert len(calls) == 2
    for types in calls:
        assert {MixupCutmix, EMA, EarlyStopping} <= set(types)
    calls.clear()
    learn.fit_recipe(1)
    assert not {MixupCutmix, EMA, EarlyStopping, TimeBudget} & {kind for types in calls for kind in types}


def test_progressive_resizing_trains_the_frozen_phase_smaller_unless_the_map_would_vanish(folder):
    dls, watch = make_dls(folder, size=64), Watch()
    make_learner(dls).fit_recipe(1, progressive=True, callbacks=[watch])
    assert [seen["size"] for seen in watch.seen] == [(48, 48), (64, 64)]
    assert (dls.train.size, dls.valid.size) == (64, 64)
    small, watch = make_dls(folder, size=32), Watch()
    # At 24 px test_resnet's map is 1×1; upscale=False keeps 32 px, where 3/4 of it would be smaller still.
    make_learner(small).fit_recipe(1, progressive=True, upscale=False, callbacks=[watch])
    assert [seen["size"] for seen in watch.seen] == [(32, 32), (32, 32)]


def test_small_images_are_upscaled_to_a_size_the_body_can_use_and_stay_there(folder):
    dls, watch = make_dls(folder, size=32), Watch()  # 24 px images: test_resnet's map at 32 px is 1×1
    learn = make_learner(dls)
    with pytest.warns(UserWarning, match="final feature map is 1x1.*training at 64 px instead"):
        learn.fit_recipe(1, callbacks=[watch])
    assert [seen["size"] for seen in watch.seen] == [(64, 64), (64, 64)] and dls.size == dls.valid.size == 64
    assert dls.train.dataset.item_size == dls.valid.dataset.item_size == 64  # decoded at 64, as the CLI's loaders
    assert any("training at 64 px" in note for note in learn.recorder.notes)
    kept = make_dls(folder, size=32)
    make_learner(kept).fit_recipe(1, upscale=False)
    assert kept.size == 32


def test_a_model_trained_on_upscaled_images_exports_a_file_that_loads(folder, tmp_path):
    learn = make_learner(make_dls(folder, size=32))
    with pytest.warns(UserWarning, match="training at 64 px instead"):
        learn.fit_recipe(1, freeze_epochs=0, flip=True)
    loaded = load_learner(learn.export(tmp_path / "model.unfreeze"))  # refused "item_size 32 is below size 64"
    assert loaded.dls.size == 64
    image = learn.dls.valid.dataset.items[0][0]
    assert torch.allclose(loaded.predict(image)[2], learn.predict(image)[2], atol=1e-5)


def test_a_time_budget_shorter_than_an_epoch_fails_before_training(folder):
    learn = make_learner(make_dls(folder))
    before = {key: value.clone() for key, value in learn.model.state_dict().items()}
    with pytest.raises(RecipeError, match="shorter than one epoch") as refused:
        learn.fit_recipe(time_budget=1e-6)
    # A sub-second epoch is said as such, not "about 0 s" (shorter than the budget it refuses).
    estimate = float(re.search(r"about ([0-9.e+-]+) s", str(refused.value)).group(1))
    assert estimate > 1e-6
    assert all(torch.equal(before[key], value) for key, value in learn.model.state_dict().items())
    assert learn.recorder.history == []


def test_a_time_budget_plans_the_unfrozen_epochs_and_records_the_plan(folder):
    learn = make_learner(make_dls(folder))
    learn.fit_recipe(epochs=3, time_budget=3600)
    assert learn.progress.recipe["planned_epochs"] == 3  # an hour holds all three: the most asked for
    assert len(learn.recorder.history) == 4


def test_time_budget_stops_after_the_epoch_whose_successor_would_overrun() -> None:
    budget = TimeBudget(deadline=time.monotonic() + 3600)
    budget.before_epoch(0)
    assert budget.after_epoch(0, {}) is False
    budget.deadline = time.monotonic()
    budget.before_epoch(1)
    assert budget.after_epoch(1, {}) is True and budget.stopped_early


def test_recipe_check_reports_every_problem_at_once_and_the_multi_label_conflict() -> None:
    with pytest.raises(RecipeError) as error:
        Recipe(mixup=-1, augment="heavy", patience=0, epochs=0).check()
    message = str(error.value)
    for part in ("mixup must be", "augment must be one of none, light, default, strong", "patience must be",
                 "epochs must be"):
        assert part in message
    with pytest.raises(RecipeError, match=r"multi-label\. Set it to 0"):
        Recipe(label_smoothing=0.1).check(multi_label=True)
    for noise in ("label_smoothing", "filter", "gce"):  # each smooths or reweighs single-label targets
        with pytest.raises(RecipeError, match=f"noise='{noise}' applies to single-label data"):
            Recipe(noise=noise).check(multi_label=True)
    assert Recipe(epochs=None, time_budget=60).check().epochs is None
    with pytest.raises(RecipeError, match="no field mixup_alpha"):
        Recipe().replace(mixup_alpha=0.2)


def test_noise_trim_is_refused_for_multi_label_data_instead_of_doing_nothing() -> None:
    """--multi-label --noise trim trained with the plain loss and recorded noise_chosen 'trim' (the check that
    sets the trimmed share skips multi-label data), saying nothing; it is refused as filter and gce are."""
    with pytest.raises(RecipeError, match="noise='trim' applies to single-label data"):
        Recipe(noise="trim").check(multi_label=True)


def test_vision_learner_takes_the_recipe_fit_recipe_runs(folder):
    dls = make_dls(folder)
    learn = make_learner(dls, recipe=Recipe(epochs=2, freeze_epochs=0, lr_mult=10))
    learn.fit_recipe()
    assert [row["epoch"] for row in learn.recorder.history] == [0, 1]
    assert learn.progress.recipe["lr_mult"] == 10
    with pytest.raises(RecipeError, match="no field"):
        learn.fit_recipe(mixup_alpha=0.4)


def test_resume_refuses_a_checkpoint_of_another_recipe_and_continues_the_same_one(folder, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    first = make_learner(make_dls(folder))
    first.fit_recipe(1, mixup=0.2, checkpoint=checkpoint)
    other = make_learner(make_dls(folder))
    with pytest.raises(CheckpointError, match=r"mixup=0\.2 there, 0\.4 now"):
        other.fit_recipe(1, mixup=0.4, resume=checkpoint)
    same = make_learner(make_dls(folder))
    same.fit_recipe(1, mixup=0.2, resume=checkpoint)  # finished: nothing left to run
    for before, after in zip(first.model.state_dict().values(), same.model.state_dict().values(), strict=True):
        assert torch.equal(before, after)


@pytest.mark.parametrize("n_groups,frozen_groups,first_group_trains", [(3, 1, False), (3, 0, True), (2, 1, True)])
def test_frozen_groups_keep_the_first_body_groups_but_never_the_whole_body(folder, n_groups, frozen_groups,
                                                                           first_group_trains):
    learn = make_learner(make_dls(folder), n_groups=n_groups)
    # Weights only: with train_bn (fastai's default) the norm layers of frozen groups train on purpose.
    first = {name: param.detach().clone() for name, param in learn.model.named_parameters()
             if name in learn.model.param_groups[0] and param.ndim > 1}
    last_body = {name: param.detach().clone() for name, param in learn.model.named_parameters()
                 if name in learn.model.param_groups[-2]}
    learn.fit_recipe(1, frozen_groups=frozen_groups, flip=True)
    params = dict(learn.model.named_parameters())
    changed = [not torch.equal(before, params[name]) for name, before in first.items()]
    assert any(changed) is first_group_trains
    assert any(not torch.equal(before, params[name]) for name, before in last_body.items())  # the body trained
    assert learn.progress.recipe["frozen_groups"] == frozen_groups


def test_settings_given_as_none_are_changes_too(folder):
    dls = make_dls(folder)
    own = dls.train.augment
    learn, watch = make_learner(dls), Watch()
    learn.recipe = Recipe(patience=1)
    learn.fit_recipe(1, augment=None, patience=None, callbacks=[watch])  # the loader's own, never stop early
    assert all(seen["augment"] is own for seen in watch.seen)
    assert learn.progress.recipe["augment"] is None and learn.progress.recipe["patience"] is None
    with pytest.raises(RecipeError, match="mixup must be a number"):
        learn.fit_recipe(1, mixup=None)


def test_a_set_smaller_than_the_planned_batch_trains_as_one_batch(make_image_folder):
    # 4 training images in loaders of bs=2 (which drop an incomplete batch); the plan's batch of 16 is
    # larger than the whole set: one batch of 4, as the plan counts it, not an epoch of no batch at all.
    dls = ImageDataLoaders.from_folder(make_image_folder(n_train=2, n_valid=2), size=16, bs=2, seed=0, num_workers=0)
    learn = make_learner(dls)
    learn.fit_recipe(1, probe=False)
    plan = learn.progress.recipe["plan"]
    assert plan["batch_size"] == 16 and plan["steps_per_epoch"] == 1
    assert len(learn.recorder.history) == 2 and len(learn.recorder.losses) == 2
    assert dls.train.batch_size == 2 and dls.train.drop_last  # the loader's own again after the fit


def test_more_frozen_groups_than_the_model_can_keep_frozen_warn_once(folder):
    """--frozen-groups 100 was cut to what the model allows (one body group must train) without a word."""
    learn = make_learner(make_dls(folder), n_groups=4)
    with pytest.warns(UserWarning, match=r"frozen_groups=100.*4 parameter groups.*2 stay frozen") as caught:
        learn.fit_recipe(1, frozen_groups=100, flip=True)
    assert sum("frozen_groups=100" in str(w.message) for w in caught) == 1
    learn = make_learner(make_dls(folder), n_groups=2)
    with warnings.catch_warnings(record=True) as caught:  # the default (1) on one body group: nothing to say
        warnings.simplefilter("always")
        learn.fit_recipe(1, flip=True)
    assert not [w for w in caught if "frozen_groups" in str(w.message)]
