"""The guards of issue 17 §3 in Python: KeepBest, the divergence guard and its retry, the finite-prediction
gate, the input-size plan, lr_find's curve flags and pipe progress, the multi-label threshold.

Each test first reproduces the fault on main's behaviour (a plain fit), then shows the guard's answer.
Real image folders written here, the tiny random timm model `test_resnet`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from unfreeze import ImageDataLoaders, load_learner, vision_learner
from unfreeze.inference import export
from unfreeze.models import create_model
from unfreeze.tasks import MultiLabel
from unfreeze.train.divergence import (
    DivergenceGuard,
    TrainingDivergedError,
    check_finite_predictions,
    retry_on_divergence,
)
from unfreeze.train.input_size import native_size, plan_input_size
from unfreeze.train.keep_best import KeepBest, default_monitor
from unfreeze.train.lr_find import _run, curve_flags
from unfreeze.train.metrics import f1_multi
from unfreeze.train.threshold_tuning import tune_threshold


def _learner(folder: Path, bs: int = 4, metrics: list[str] | None = None) -> Any:
    dls = ImageDataLoaders.from_folder(folder, size=16, bs=bs, seed=0)
    return vision_learner(dls, "test_resnet", pretrained=False, quiet=True, seed=0, metrics=metrics)


@pytest.fixture
def folder(make_image_folder: Callable[..., Path]) -> Path:
    return make_image_folder(classes=("ant", "bee", "cat"), n_train=8, n_valid=4)


# ---------------------------------------------------------------------------- keep the best epoch


def test_default_monitor_is_the_first_metric() -> None:
    assert default_monitor(["error_rate", "accuracy"]) == "error_rate"
    assert default_monitor([]) == "valid_loss"


def test_keep_best_ends_on_the_best_epoch_across_fits(folder: Path) -> None:
    learn = _learner(folder)
    best = KeepBest(monitor="valid_loss")
    learn.fit(1, 1e-2, callbacks=[best])
    learn.fit(1, 1.0, callbacks=[best])  # a far too high LR: the second epoch is worse
    losses = [row["valid_loss"] for row in learn.recorder.history]
    assert losses[1] > losses[0]  # the fault: the last epoch is not the best
    assert best.best_epoch == 0
    assert float(learn.validate()["valid_loss"]) == pytest.approx(losses[0], rel=1e-5)  # the model holds epoch 0
    described = best.describe()
    assert described == {"kept": "best", "monitor": "valid_loss", "mode": "min", "best_epoch": 0,
                         "best_value": pytest.approx(losses[0])}
    assert "kept epoch 0" in best.sentence()


def test_keep_last_leaves_the_last_epoch_and_reports_the_best(folder: Path, tmp_path: Path) -> None:
    learn = _learner(folder)
    best = KeepBest(monitor="valid_loss", keep="last", path=tmp_path / "best.safetensors")
    learn.fit(1, 1e-2, callbacks=[best])
    learn.fit(1, 1.0, callbacks=[best])
    last = learn.recorder.history[-1]["valid_loss"]
    assert float(learn.validate()["valid_loss"]) == pytest.approx(last, rel=1e-5)
    assert best.describe()["kept"] == "last" and best.describe()["last_epoch"] == 1
    assert best.describe()["best_epoch"] == 0 and not (tmp_path / "best.safetensors").exists()  # nothing to restore

    restoring = KeepBest(monitor="valid_loss", path=tmp_path / "kept.safetensors")
    learn.fit(1, 1e-3, callbacks=[restoring])
    assert (tmp_path / "kept.safetensors").is_file() and restoring.state_dict()["best_epoch"] == 2


def test_keep_best_takes_the_first_metric_and_refuses_an_unknown_keep(folder: Path) -> None:
    learn = _learner(folder, metrics=["accuracy", "error_rate"])
    best = KeepBest()
    learn.fit(1, 1e-2, callbacks=[best])
    assert best.monitor == "accuracy" and best.mode == "max"
    with pytest.raises(ValueError, match="keep must be one of best, last"):
        KeepBest(keep="first")


# ---------------------------------------------------------------------------- divergence


def test_one_step_per_epoch_at_a_huge_lr_is_caught(folder: Path) -> None:
    learn = _learner(folder, bs=64)
    assert len(learn.dls.train) == 1
    learn.fine_tune(1, 1e10, freeze_epochs=0)  # the fault: no error, the model now predicts NaN
    assert math.isnan(learn.recorder.history[-1]["valid_loss"])
    with pytest.raises(TrainingDivergedError, match="predicts NaN or infinity"):
        check_finite_predictions(learn)

    learn = _learner(folder, bs=64)
    before = {name: tensor.clone() for name, tensor in learn.model.state_dict().items()}
    with pytest.raises(TrainingDivergedError, match=r"diverged at LR 1\.00e\+10 .* and again at 1\.00e\+09"):
        retry_on_divergence(learn, lambda lr, guard: learn.fine_tune(1, lr, freeze_epochs=0, callbacks=[guard]), 1e10)
    for name, tensor in learn.model.state_dict().items():  # rolled back: the weights from before training
        assert torch.equal(tensor, before[name]), name
    check_finite_predictions(learn)


def test_an_exploding_validation_loss_rolls_back_and_retries_at_a_lower_lr(folder: Path) -> None:
    learn = _learner(folder, bs=64)
    fitted = retry_on_divergence(learn, lambda lr, guard: learn.fine_tune(1, lr, freeze_epochs=1, callbacks=[guard]),
                                 1e3, lr_factor=1e-5)
    assert fitted.lr == pytest.approx(1e-2)
    assert "exploded" in fitted.retried_because and "more than 10x its best" in fitted.retried_because
    assert [row["epoch"] for row in learn.recorder.history] == [0, 1]  # the failed attempt's rows are gone
    assert all(math.isfinite(row["valid_loss"]) for row in learn.recorder.history)
    assert any("retrying once at 1.00e-02" in note for note in learn.recorder.notes)


def test_a_tiny_best_loss_counts_as_the_loss_of_a_model_that_knows_nothing() -> None:
    from types import SimpleNamespace

    from unfreeze.tasks import SingleLabel

    guard = DivergenceGuard(factor=10)
    learner = SimpleNamespace(task=SingleLabel(), dls=SimpleNamespace(n_classes=3),
                              recorder=SimpleNamespace(history=[]))
    guard.before_fit(learner)
    assert guard.floor == pytest.approx(math.log(3))
    assert not guard.after_validate(0, {"valid_loss": 0.0015})  # every validation image right
    assert not guard.after_validate(1, {"valid_loss": 2.2})  # 1,000x the best, 2x chance: not diverged
    assert guard.after_validate(2, {"valid_loss": 12.0})  # over 10x chance
    assert "more than 10x the 1.099 of a model that knows nothing" in guard.reason


def test_divergence_guard_checks_its_factor() -> None:
    with pytest.raises(ValueError, match="factor must be a number > 1"):
        DivergenceGuard(factor=1)


# ---------------------------------------------------------------------------- input size


def _write_images(root: Path, side: int) -> Path:
    for index, name in enumerate(("zero", "one")):
        for split, count in (("train", 4), ("valid", 2)):
            for item in range(count):
                path = root / split / name / f"{item}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = np.random.default_rng(item).integers(0, 60, (side, side, 3)) + 150 * index
                Image.fromarray(pixels.astype(np.uint8)).save(path)
    return root


def test_small_images_at_a_too_small_size_are_upscaled(tmp_path: Path) -> None:
    root = _write_images(tmp_path / "digits", 8)
    dls = ImageDataLoaders.from_folder(root, size=32, bs=4, seed=0)
    body = create_model("test_resnet", 2, pretrained=False).body
    assert native_size(dls.train.dataset.sources) == 8
    plan = plan_input_size(body, 32, dls.train.dataset.sources)
    assert plan.feature_map == (1, 1) and plan.upscaled and plan.size == 64 and plan.native == 8
    assert "training at 64 px instead (--no-upscale keeps 32)" in plan.message("test_resnet")
    kept = plan_input_size(body, 32, dls.train.dataset.sources, upscale=False)
    assert kept.size == 32 and "use --size 64 or more" in kept.message("test_resnet")


def test_large_images_shrunk_on_purpose_are_only_warned_about(tmp_path: Path) -> None:
    root = _write_images(tmp_path / "large", 48)
    dls = ImageDataLoaders.from_folder(root, size=32, bs=4, seed=0)
    body = create_model("test_resnet", 2, pretrained=False).body
    plan = plan_input_size(body, 32, dls.train.dataset.sources)
    assert not plan.upscaled and plan.usable == 64 and plan.message("x")
    assert plan_input_size(body, 64, dls.train.dataset.sources).message("x") == ""


# ---------------------------------------------------------------------------- lr_find


def test_curve_flags_name_a_minimum_at_the_start_and_a_valley_off_a_descent() -> None:
    lrs = np.logspace(-6, 0, 40)
    rising = np.linspace(1.0, 3.0, 40)
    flags = curve_flags(lrs, rising, float(lrs[20]))
    assert any("lowest at the start" in flag for flag in flags)
    assert any("does not sit on a descending stretch" in flag for flag in flags)
    falling = np.concatenate([np.linspace(3.0, 1.0, 30), np.linspace(1.0, 4.0, 10)])
    assert curve_flags(lrs, falling, float(lrs[15])) == []


def test_lr_find_prints_one_line_per_tenth_into_a_pipe(folder: Path) -> None:
    learn = _learner(folder)
    lrs = [1e-7 * (10 / 1e-7) ** (i / 20) for i in range(20)]
    stream = io.StringIO()  # not a terminal
    _run(learn, lrs, [1.0] * learn.n_groups, stop_div=False, progress=stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("lr_find: 2/20 iterations") and "20/20" in lines[-1]


# ---------------------------------------------------------------------------- multi-label threshold


def test_the_threshold_is_chosen_on_validation_and_stored_in_the_export(make_image_folder: Callable[..., Path],
                                                                         tmp_path: Path) -> None:
    root = make_image_folder(classes=("a", "b", "c"), n_train=6, n_valid=4, flat=True)
    rows = ["file,labels"] + [f"{path.relative_to(root)},{path.parent.name}{' b' if index % 2 else ''}"
                              for index, path in enumerate(sorted(root.rglob("*.png")))]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    dls = ImageDataLoaders.from_csv(root, "labels.csv", label_delim=" ", size=16, bs=4, seed=0, valid_pct=0.4)
    learn = vision_learner(dls, "test_resnet", pretrained=False, quiet=True, seed=0)
    learn.fit(1, 1e-3)
    choice = tune_threshold(learn)
    assert choice.previous == 0.5 and choice.f1 >= choice.previous_f1  # 0.5 is one of the candidates
    learn.task = choice.task
    path = export(learn, tmp_path / "model.unfreeze")
    loaded = load_learner(path)
    assert isinstance(loaded.task, MultiLabel) and loaded.task.threshold == pytest.approx(choice.threshold)
    assert choice.describe()["chosen_by"] == "F1 on the validation set"
    per_class = tune_threshold(learn, per_class=True)
    assert len(per_class.threshold) == 3 and per_class.f1 >= per_class.previous_f1 - 1e-9
    learn.task = per_class.task
    loaded = load_learner(export(learn, tmp_path / "per_class.unfreeze"))
    assert loaded.task.threshold == pytest.approx(per_class.threshold)
    probs = learn.get_preds()[0]
    assert torch.equal(loaded.task.decode(probs), probs >= torch.tensor(per_class.threshold))


def test_the_metrics_follow_a_threshold_set_on_the_learners_task(make_image_folder: Callable[..., Path]) -> None:
    """After `learn.task = choice.task` (the README's recipe), learn.validate() still scored accuracy_multi and
    f1_multi at 0.5 while predict and get_preds decided at the tuned threshold: two numbers for one model."""
    root = make_image_folder(classes=("a", "b", "c"), n_train=6, n_valid=4, flat=True)
    rows = ["file,labels"] + [f"{path.relative_to(root)},{path.parent.name}{' b' if index % 2 else ''}"
                              for index, path in enumerate(sorted(root.rglob("*.png")))]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    dls = ImageDataLoaders.from_csv(root, "labels.csv", label_delim=" ", size=16, bs=4, seed=0, valid_pct=0.4)
    learn = vision_learner(dls, "test_resnet", pretrained=False, quiet=True, seed=0,
                           metrics=["accuracy_multi", "f1_multi"])
    probs, targets = learn.get_preds()[:2]
    cutoff = float(probs.median())  # a threshold that decides differently from 0.5 on these probabilities
    learn.task = MultiLabel(threshold=cutoff)
    scores = learn.validate()
    decided = learn.task.decode(probs)
    assert scores["f1_multi"] == pytest.approx(float(f1_multi(probs, targets, threshold=cutoff, sigmoid=False)))
    assert scores["f1_multi"] != pytest.approx(float(f1_multi(probs, targets, sigmoid=False)))
    assert scores["accuracy_multi"] == pytest.approx(float((decided == targets.bool()).float().mean()), abs=0.05)


def test_tune_threshold_refuses_a_single_label_learner(folder: Path) -> None:
    with pytest.raises(ValueError, match="for multi-label tasks"):
        tune_threshold(_learner(folder))
