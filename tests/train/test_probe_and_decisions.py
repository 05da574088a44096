"""The recipe's data-driven decisions (train/recipe/): the linear probe (LP-FT), the long-tail remedy,
the wrong-label guard and the training images the model disagrees with."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from torch import nn

from unfreeze.data import ImageDataLoaders
from unfreeze.train import recommended
from unfreeze.train.builders import vision_learner
from unfreeze.train.callbacks import Callback
from unfreeze.train.keep_best import KeepBest
from unfreeze.train.recipe import noise
from unfreeze.train.recipe import plan as plan_module
from unfreeze.train.recipe.imbalance import LogitAdjustedLoss, balanced_scores, check_imbalance
from unfreeze.train.recipe.noise import (
    GeneralizedCrossEntropy,
    NoiseCheck,
    TrimmedCrossEntropy,
    check_noise,
    disagreements,
)
from unfreeze.train.recipe.probe import fit_linear_probe, probe_head


def make_learner(root, head="linear", **kwargs):
    dls = ImageDataLoaders.from_folder(root, size=32, bs=64, seed=0, num_workers=0)
    return vision_learner(dls, "test_resnet", metrics=["error_rate"], pretrained=False, quiet=True, seed=0,
                          head=head, **kwargs)


class Losses(Callback):
    def __init__(self) -> None:
        self.losses: list[nn.Module] = []

    def before_fit(self, learner) -> None:
        self.losses.append(learner.loss_func)


def test_the_probe_fits_the_head_on_cached_features_and_lowers_the_training_loss(make_image_folder):
    learn = make_learner(make_image_folder(("a", "b", "c"), n_train=8, n_valid=3, size=(40, 40)))
    learn.freeze()
    body_before = {name: value.clone() for name, value in learn.model.body.state_dict().items()}
    images, targets = next(iter(learn.dls.test_dl([path for path, _ in learn.dls.train.dataset.items],
                                                  labels=[label for _, label in learn.dls.train.dataset.items])))
    learn.model.eval()
    before = float(nn.functional.cross_entropy(learn.model(images), targets))
    fitted = fit_linear_probe(learn, passes=2)
    after = float(nn.functional.cross_entropy(learn.model(images), targets))
    assert fitted is not None and fitted.n_items == 24 and after < before
    assert all(torch.equal(value, learn.model.body.state_dict()[name]) for name, value in body_before.items())
    assert learn.dls.train.passes == 1


def test_the_probe_leaves_other_heads_to_the_frozen_epochs(make_image_folder):
    learn = make_learner(make_image_folder(("a", "b"), n_train=6, n_valid=2, size=(40, 40)), head="fastai")
    assert probe_head(learn.model) is None and fit_linear_probe(learn) is None


def test_the_probe_asked_for_fits_first_and_keeps_the_best_epoch(make_image_folder):
    learn = make_learner(make_image_folder(("a", "b", "c"), n_train=8, n_valid=3, size=(40, 40)))
    learn.fit_recipe(epochs=2, flip=True, probe=True)
    assert learn.progress.recipe["plan"]["probe"] is True
    assert any(note.startswith("probe: the head fitted") for note in learn.recorder.notes)
    # KeepBest was added: the model ends on the best epoch by error_rate, the probe's epoch included.
    errors = [row["error_rate"] for row in learn.recorder.history]
    assert learn.validate()["error_rate"] == pytest.approx(min(errors))


def test_no_probe_when_turned_off_or_the_set_is_large_enough(make_image_folder):
    learn = make_learner(make_image_folder(("a", "b"), n_train=6, n_valid=2, size=(40, 40)))
    learn.fit_recipe(epochs=1, flip=True, probe=False)
    assert learn.progress.recipe["plan"]["probe"] is False
    assert not any(note.startswith("probe:") for note in learn.recorder.notes)


def test_a_long_tail_is_detected_from_the_training_counts_and_trained_with_logit_adjustment(make_image_folder):
    root = make_image_folder(("big", "small"), n_train=24, n_valid=4, size=(40, 40))
    for path in sorted((root / "train" / "small").iterdir())[4:]:
        path.unlink()  # 24 vs 4 images: a 6x imbalance
    learn, watch = make_learner(root), Losses()
    learn.fit_recipe(epochs=1, flip=True, callbacks=[watch])
    assert learn.progress.recipe["imbalance_chosen"] == "logit_adjust"
    assert all(isinstance(loss, LogitAdjustedLoss) for loss in watch.losses)
    assert any(note.startswith("imbalance='auto': logit adjustment") for note in learn.recorder.notes)
    assert not isinstance(learn.loss_func, LogitAdjustedLoss)  # the learner's own loss is back
    # --imbalance none (Python: imbalance="none") turns the remedy off.
    off, watch = make_learner(root), Losses()
    off.fit_recipe(epochs=1, flip=True, imbalance="none", callbacks=[watch])
    assert off.progress.recipe["imbalance_chosen"] == "none"
    assert not any(isinstance(loss, LogitAdjustedLoss) for loss in watch.losses)


@pytest.mark.parametrize("evened", ["sampler", "class_weights"])
def test_auto_adds_no_logit_adjustment_on_top_of_a_balanced_sampler_or_class_weights(make_image_folder, evened):
    """--sampler balanced (or --class-weights auto) on a long tail also got imbalance='auto''s logit adjustment:
    the rare classes were favoured twice, and every validation image of the large class was called rare."""
    root = make_image_folder(("big", "small"), n_train=24, n_valid=4, size=(40, 40))
    for path in sorted((root / "train" / "small").iterdir())[4:]:
        path.unlink()  # 24 vs 4 images: a 6x imbalance
    dls = ImageDataLoaders.from_folder(root, size=32, bs=64, seed=0, num_workers=0)
    if evened == "sampler":
        dls.balance_classes()
    learn = vision_learner(dls, "test_resnet", metrics=["error_rate"], pretrained=False, quiet=True, seed=0,
                           class_weights="auto" if evened == "class_weights" else None)
    watch = Losses()
    learn.fit_recipe(epochs=1, flip=True, callbacks=[watch])
    assert learn.progress.recipe["imbalance_chosen"] == "none"
    assert not any(isinstance(loss, LogitAdjustedLoss) for loss in watch.losses)
    said = [note for note in learn.recorder.notes if note.startswith("imbalance='auto': no remedy")]
    assert len(said) == 1 and ("balanced sampler" if evened == "sampler" else "class weights") in said[0]


def test_balanced_classes_get_no_remedy_and_multi_label_targets_no_check():
    assert check_imbalance(torch.tensor([0, 1, 2] * 5), 3).remedy == "none"
    assert check_imbalance(torch.zeros(4, 3), 3) is None


def test_logit_adjustment_adds_the_log_prior_to_the_logits():
    counts = torch.tensor([99, 9])
    adjusted = LogitAdjustedLoss(counts)
    logits, targets = torch.tensor([[0.3, -0.2], [1.0, 2.0]]), torch.tensor([0, 1])
    prior = torch.log((counts + 1.0) / (counts + 1.0).sum())
    expected = nn.functional.cross_entropy(logits + prior, targets)
    assert float(adjusted(logits, targets)) == pytest.approx(float(expected))


def test_balanced_scores_weigh_each_class_alike():
    predicted, targets = torch.tensor([0, 0, 0, 0, 1]), torch.tensor([0, 0, 0, 1, 1])
    scores = balanced_scores(predicted, targets, 2)
    assert scores["balanced_accuracy"] == pytest.approx((1 + 0.5) / 2)
    assert scores["error"] == pytest.approx(0.2)
    assert scores["macro_f1"] == pytest.approx((2 * 3 / 7 + 2 * 1 / 3) / 2)


def test_generalized_cross_entropy_bounds_a_confidently_wrong_label():
    loss = GeneralizedCrossEntropy(0.7)
    wrong = torch.tensor([[20.0, -20.0]])
    assert float(loss(wrong, torch.tensor([1]))) <= 1 / 0.7 + 1e-6  # cross-entropy would be about 40
    assert float(loss(wrong, torch.tensor([0]))) == pytest.approx(0.0, abs=1e-6)


def test_the_trimmed_loss_leaves_out_the_largest_losses_after_its_ramp():
    logits = torch.tensor([[3.0, 0.0], [3.0, 0.0], [3.0, 0.0], [3.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1])  # the last label is wrong: the largest loss
    per_image = nn.functional.cross_entropy(logits, labels, reduction="none")
    loss = TrimmedCrossEntropy(0.25, ramp_steps=2)
    first = loss(logits, labels)  # step 1 of a 2-step ramp: 12.5% of 4 rounds to 0 left out
    assert float(first.detach()) == pytest.approx(float(per_image.detach().mean()))
    second = loss(logits, labels)  # ramped up: the wrong label is left out and gets no gradient
    assert float(second.detach()) == pytest.approx(float(per_image.detach()[:3].mean()))
    second.backward()
    assert logits.grad[3].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
    with torch.no_grad():  # validation: the plain mean, whatever the ramp
        assert float(loss(logits, labels)) == pytest.approx(float(per_image.detach().mean()))
    soft = loss(logits.detach(), nn.functional.one_hot(labels, 2).float())  # mixup's soft targets
    assert float(soft) == pytest.approx(float(per_image.detach()[:3].mean()))
    with pytest.raises(ValueError, match="rate must be in"):
        TrimmedCrossEntropy(0.9, ramp_steps=1)


def test_the_estimated_noise_is_the_flagged_share_beyond_what_clean_labels_give():
    assert NoiseCheck(flagged=tuple(range(9)), n_items=100, filtered=False).estimated_noise == 0.0
    assert NoiseCheck(flagged=tuple(range(30)), n_items=100, filtered=False).estimated_noise == pytest.approx(
        (0.30 - noise.CLEAN_FLAGGED) / (1 - noise.CLEAN_FLAGGED))
    assert NoiseCheck(flagged=tuple(range(90)), n_items=100, filtered=False).estimated_noise == noise.MAX_TRIM


def test_noise_trim_trains_with_the_trimmed_loss_at_the_checked_share(make_image_folder, monkeypatch):
    monkeypatch.setattr(noise, "FLAG_BELOW", 0.9)
    monkeypatch.setattr(noise, "MIN_PER_CLASS", 20)
    root = make_image_folder(("red", "green", "blue"), n_train=24, n_valid=3, size=(40, 40))
    for index in range(8):  # eight red images labelled green
        shutil.move(root / "train" / "red" / f"red_{index}.png", root / "train" / "green" / f"red_{index}.png")
    learn, watch = make_learner(root), Losses()
    expected = check_noise(learn).estimated_noise
    learn.fit_recipe(epochs=1, flip=True, probe=False, noise="trim", callbacks=[watch])
    recipe = learn.progress.recipe
    assert expected > 0 and recipe["noise_chosen"] == "trim" and recipe["noise_trim"] == pytest.approx(expected)
    assert recipe["noise_left_out"] == []  # trimmed per batch, not left out
    assert all(isinstance(loss, TrimmedCrossEntropy) and loss.rate == pytest.approx(expected) for loss in watch.losses)
    assert any("largest losses are left out" in note for note in learn.recorder.notes)


def test_noise_guard_smooths_with_the_probe_and_can_be_chosen(make_image_folder, monkeypatch):
    root = make_image_folder(("a", "b"), n_train=6, n_valid=2, size=(40, 40))
    monkeypatch.setattr(recommended, "check_noise", lambda *args, **kwargs: pytest.fail("auto checks no labels"))
    few, watch = make_learner(root), Losses()  # the probe asked for: smoothing goes with it
    few.fit_recipe(epochs=1, flip=True, probe=True, callbacks=[watch])
    assert few.progress.recipe["noise_chosen"] == "label_smoothing" and few.progress.recipe["noise_left_out"] == []
    assert all(getattr(loss, "label_smoothing", 0) == 0.1 for loss in watch.losses)
    said = "noise='auto': label smoothing 0.1 (with the linear probe"
    assert any(note.startswith(said) for note in few.recorder.notes)
    plain, watch = make_learner(root), Losses()  # the same images without the probe: the default
    plain.fit_recipe(epochs=1, flip=True, callbacks=[watch])
    assert plain.progress.recipe["noise_chosen"] == "none" and all(loss is plain.loss_func for loss in watch.losses)
    assert any(note.startswith("noise='auto': plain cross-entropy") for note in plain.recorder.notes)
    monkeypatch.undo()
    smoothed, watch = make_learner(root), Losses()
    smoothed.fit_recipe(epochs=1, flip=True, probe=False, noise="label_smoothing", callbacks=[watch])
    assert all(getattr(loss, "label_smoothing", 0) == 0.1 for loss in watch.losses)
    robust, watch = make_learner(root), Losses()
    robust.fit_recipe(epochs=1, flip=True, probe=False, noise="gce", callbacks=[watch])
    assert all(isinstance(loss, GeneralizedCrossEntropy) for loss in watch.losses)


def test_disagreements_put_a_mislabelled_training_image_first(make_image_folder):
    root = make_image_folder(("red", "green"), n_train=8, n_valid=2, size=(40, 40))
    moved = root / "train" / "green" / "red_0.png"
    shutil.move(root / "train" / "red" / "red_0.png", moved)  # a red image labelled green
    learn = make_learner(root)
    # The probe's head learns the colours of 16 images from the random-weight test body at once.
    learn.fit_recipe(epochs=3, flip=True, probe=True, callbacks=[KeepBest()])
    rows = disagreements(learn, top=3)
    assert len(rows) == 3 and rows[0]["path"].endswith("red_0.png") and rows[0]["label"] == "green"
    assert rows[0]["predicted"] == "red" and rows[0]["loss"] >= rows[1]["loss"]


class Weights(Callback):
    def before_fit(self, learner) -> None:
        self.weights = learner.dls.train.sample_weights


def test_the_noise_check_flags_moved_labels_and_filter_leaves_them_out(make_image_folder, monkeypatch):
    # A random-weight body separates the colours less sharply than a pretrained one separates Fashion-MNIST
    # (benchmarks/results/hard_data.md): the cut is raised to match.
    monkeypatch.setattr(noise, "FLAG_BELOW", 0.9)
    monkeypatch.setattr(noise, "MIN_PER_CLASS", 20)  # a small set, to keep the test quick
    root = make_image_folder(("red", "green", "blue"), n_train=24, n_valid=3, size=(40, 40))
    for index in range(4):  # four red images labelled green
        shutil.move(root / "train" / "red" / f"red_{index}.png", root / "train" / "green" / f"red_{index}.png")
    learn = make_learner(root)
    check = check_noise(learn)
    items = learn.dls.train.dataset.items
    moved = {index for index, (path, _) in enumerate(items) if path.parent.name == "green" and "red_" in path.name}
    green = {index for index, (path, _) in enumerate(items) if path.parent.name == "green"}
    assert moved <= set(check.flagged) and set(check.flagged) & green == moved
    assert check.filtered == (check.fraction >= noise.FILTER_FROM)
    assert not check_noise(learn, filter_from=1.01).filtered  # noise="auto" keeps them under the measured share
    watch = Weights()
    learn.fit_recipe(epochs=1, flip=True, probe=False, noise="filter", callbacks=[watch])
    assert set(learn.progress.recipe["noise_left_out"]) == set(check.flagged)
    assert all(watch.weights[index] == 0 for index in moved) and watch.weights.sum() == pytest.approx(1.0)
    assert learn.dls.train.sample_weights is None  # a plain shuffle again after the fit
    assert learn.progress.recipe["noise_chosen"] == "filter"


def test_the_noise_check_needs_enough_images_a_class(make_image_folder):
    assert check_noise(make_learner(make_image_folder(("a", "b"), n_train=8, n_valid=2, size=(40, 40)))) is None


@pytest.mark.parametrize("asked", ["filter", "trim"])
def test_noise_asked_for_on_too_few_images_says_the_check_did_not_run(make_image_folder, asked):
    """--noise filter / trim on a small set trained as if asked for nothing and said nothing (the check needs
    MIN_PER_CLASS images a class); the recipe now says so in one line, naming the counts."""
    learn = make_learner(make_image_folder(("a", "b"), n_train=8, n_valid=2, size=(40, 40)))
    learn.fit_recipe(epochs=1, flip=True, probe=False, noise=asked)
    said = [note for note in learn.recorder.notes if note.startswith(f"noise={asked!r}: ")]
    assert len(said) == 1 and "16 training images for 2 classes" in said[0] and "nothing is left out" in said[0]
    assert learn.progress.recipe["noise_left_out"] == [] and learn.progress.recipe["noise_trim"] == 0.0


def test_a_resume_reuses_the_plan_and_the_decisions(make_image_folder, monkeypatch, tmp_path):
    root = make_image_folder(("red", "green", "blue"), n_train=24, n_valid=3, size=(40, 40))
    for index in range(4):
        shutil.move(root / "train" / "red" / f"red_{index}.png", root / "train" / "green" / f"red_{index}.png")
    monkeypatch.setattr(noise, "FLAG_BELOW", 0.9)
    monkeypatch.setattr(noise, "MIN_PER_CLASS", 20)
    first = make_learner(root)
    first.fit_recipe(epochs=2, flip=True, noise="filter", probe=True, checkpoint=tmp_path / "ckpt.pt")
    decided = first.progress.recipe
    assert decided["noise_left_out"] and decided["plan"]["probe"] is True
    # The resumed fit takes the left-out images from the checkpoint instead of checking again.
    monkeypatch.setattr(recommended, "check_noise", lambda *args, **kwargs: pytest.fail("checked again on resume"))
    again = make_learner(root)
    again.fit_recipe(epochs=2, flip=True, noise="filter", probe=True, checkpoint=tmp_path / "ckpt2.pt",
                     resume=tmp_path / "ckpt.pt")
    for key in ("plan", "noise_left_out", "noise_chosen", "imbalance_chosen"):
        assert again.progress.recipe[key] == decided[key], key


def test_a_resume_keeps_the_plan_its_fit_started_with_when_the_rule_has_changed(make_image_folder, monkeypatch,
                                                                                tmp_path):
    # A checkpoint written before the plan's rule changed (here: batches of 8 instead of 16) resumes with
    # its own plan instead of being refused for a plan that differs.
    root = make_image_folder(("red", "green"), n_train=24, n_valid=3, size=(40, 40))
    planned = recommended.plan_training

    def older_rule(*args, **kwargs):
        plan = planned(*args, **kwargs)
        return dataclasses.replace(plan, batch_size=8, steps_per_epoch=plan.n_images * plan.passes // 8)

    monkeypatch.setattr(recommended, "plan_training", older_rule)
    first = make_learner(root)
    first.fit_recipe(epochs=1, flip=True, probe=False, checkpoint=tmp_path / "ckpt.pt")
    started = first.progress.recipe["plan"]
    assert started["batch_size"] == 8
    monkeypatch.setattr(recommended, "plan_training", planned)
    assert planned(started["n_images"], probe=False).batch_size != 8  # today's rule plans otherwise
    again = make_learner(root)
    again.fit_recipe(epochs=1, flip=True, probe=False, checkpoint=tmp_path / "ckpt2.pt", resume=tmp_path / "ckpt.pt")
    assert again.progress.recipe["plan"] == started


def test_a_resume_keeps_the_probe_and_smoothing_an_older_default_chose(make_image_folder, monkeypatch, tmp_path):
    # Until the probe became opt-in, probe="auto" fitted it under 1,000 images, with label smoothing; a
    # checkpoint of such a fit resumes with both instead of being refused as another fit.
    root = make_image_folder(("red", "green"), n_train=24, n_valid=3, size=(40, 40))
    planned = recommended.plan_training
    monkeypatch.setattr(recommended, "plan_training", lambda *args, **kwargs: dataclasses.replace(
        planned(*args, **kwargs), probe=True))
    first = make_learner(root)
    first.fit_recipe(epochs=1, flip=True, checkpoint=tmp_path / "ckpt.pt")
    decided = first.progress.recipe
    assert decided["plan"]["probe"] is True and decided["noise_chosen"] == "label_smoothing"
    monkeypatch.setattr(recommended, "plan_training", planned)
    again = make_learner(root)
    again.fit_recipe(epochs=1, flip=True, checkpoint=tmp_path / "ckpt2.pt", resume=tmp_path / "ckpt.pt")
    assert (again.progress.recipe["plan"], again.progress.recipe["noise_chosen"]) == (decided["plan"],
                                                                                      "label_smoothing")


def _short_plans(monkeypatch):
    """Auto-planned fits of 1 unfrozen epoch of one pass: the hard-label rule's epochs stand out."""
    monkeypatch.setattr(plan_module, "DEFAULT_EPOCHS", 1)
    monkeypatch.setattr(plan_module, "MIN_EPOCH_STEPS", 1)


def test_labels_the_frozen_features_separate_poorly_get_more_unfrozen_epochs(make_image_folder, monkeypatch,
                                                                             capsys):
    _short_plans(monkeypatch)
    root = make_image_folder(("red", "green"), n_train=30, n_valid=3, size=(40, 40))
    for index in range(15):  # half of each class carries the other's label: no probe can learn them
        shutil.move(root / "train" / "red" / f"red_{index}.png", root / "train" / "green" / f"moved_red_{index}.png")
        shutil.move(root / "train" / "green" / f"green_{index}.png", root / "train" / "red" / f"moved_{index}.png")
    learn = make_learner(root)
    learn.quiet = False
    learn.fit_recipe(probe=False, flip="auto")
    plan = learn.progress.recipe["plan"]
    assert plan["hard_labels"] >= plan_module.HARD_LABELS
    assert plan["epochs"] == 1 + plan_module.EXTRA_EPOCHS
    assert len(learn.recorder.history) == plan["freeze_epochs"] + plan["epochs"]
    out = capsys.readouterr().out
    assert f"{plan_module.EXTRA_EPOCHS} more unfrozen epochs: a linear probe on the frozen features errs on" in out
    assert out.index("plan: ") < out.index("flip='auto'")  # the plan's line first, then the decisions
    # Epochs given are taken as they are.
    given = make_learner(root)
    given.fit_recipe(1, probe=False, flip="auto")
    assert given.progress.recipe["plan"]["epochs"] == 1 and given.progress.recipe["plan"]["hard_labels"] is None


def test_labels_the_frozen_features_separate_keep_the_planned_epochs(make_image_folder, monkeypatch):
    _short_plans(monkeypatch)
    learn = make_learner(make_image_folder(("red", "green"), n_train=30, n_valid=3, size=(40, 40)))
    learn.fit_recipe(probe=False, flip="auto")
    plan = learn.progress.recipe["plan"]
    assert (plan["epochs"], plan["hard_labels"]) == (1, None)
    assert len(learn.recorder.history) == 2


def test_with_hard_labels_leaves_exempt_unchecked_and_budgeted_plans_alone():
    plan = plan_module.plan_training(2000)
    hard = plan_module.HARD_LABELS + 0.1
    assert plan_module.with_hard_labels(plan, hard).epochs == plan.epochs + plan_module.EXTRA_EPOCHS
    assert plan_module.with_hard_labels(plan, hard, exempt=True) == plan
    assert plan_module.with_hard_labels(plan, None) == plan
    budgeted = plan_module.plan_training(2000, epochs=None)
    assert plan_module.with_hard_labels(budgeted, hard) == budgeted
    assert plan_module.TrainingPlan.from_dict(plan_module.with_hard_labels(plan, hard).to_dict()).hard_labels == hard


def test_few_images_train_without_the_probe_and_smoothing_unless_asked(make_image_folder, capsys):
    # Few images (the probe's regime until hard_data.md measured it worse), one of them a long tail.
    root = make_image_folder(("red", "green"), n_train=24, n_valid=3, size=(40, 40))
    for index in range(4, 24):
        (root / "train" / "green" / f"green_{index}.png").unlink()
    learn = make_learner(root)
    learn.quiet = False
    learn.fit_recipe(epochs=1, flip=True)
    recipe = learn.progress.recipe
    assert recipe["plan"]["probe"] is False and recipe["imbalance_chosen"] == "logit_adjust"
    assert recipe["noise_chosen"] == "none"
    assert "noise='auto': plain cross-entropy" in capsys.readouterr().out
    # Asked for, the probe runs, with the label smoothing measured with it.
    asked = make_learner(root)
    asked.fit_recipe(epochs=1, flip=True, probe=True)
    assert asked.progress.recipe["plan"]["probe"] is True
    assert asked.progress.recipe["noise_chosen"] == "label_smoothing"
