"""LR finder: parity of the suggestion rules with fastai 2.8, the range test, and exact restoration."""

from __future__ import annotations

import copy
import math
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from unfreeze.plots import lr_find_figure, plot_lr_find
from unfreeze.train.lr_find import (
    LRFindError,
    LRFindResult,
    LRFindWarning,
    lr_find,
    minimum,
    slide,
    steep,
    suggestion_window,
    valley,
)
from unfreeze.train.schedules import resolve_lrs

# Real curves from 10-60 iterations are noisy; the warnings themselves are tested explicitly below.
pytestmark = pytest.mark.filterwarnings("ignore::unfreeze.train.lr_find.LRFindWarning")

# ---------------------------------------------------------------------------- parity: fixed curves
# The expected values are worked out by hand from fastai 2.8's definitions (fastai/callback/schedule.py)
# and were cross-checked once against fastai 2.8.12's own functions.

# Curve A: 12 points, lr_i = 10 ** (-6 + 0.5 i).
CURVE_A_LRS = np.array([10 ** (-6 + 0.5 * i) for i in range(12)])
CURVE_A = np.array([3.0, 2.9, 3.1, 2.5, 2.0, 2.2, 1.5, 1.0, 0.8, 1.2, 2.0, 5.0])
# Curve B: 30 points, lr_i = 10 ** (-7 + 0.25 i); straight down (slope -0.05) to i=24, then up (+0.3).
CURVE_B_LRS = np.array([10 ** (-7 + 0.25 * i) for i in range(30)])
CURVE_B = np.array([2 - 0.05 * i for i in range(25)] + [0.8 + 0.3 * (i - 24) for i in range(25, 30)])


def test_valley_matches_fastai_on_a_bumpy_curve() -> None:
    # Longest decreasing subsequence lengths: [1,2,1,3,4,4,5,6,7,6,5,1]; the first maximum (7) is at
    # max_end=8, so max_start = 8 - 7 = 1, sections = 7/3 = 2.33, idx = 1 + 2 + int(1.17) = 4 -> 1e-4.
    assert valley(CURVE_A_LRS, CURVE_A) == pytest.approx(1e-4, rel=1e-12)


def test_valley_matches_fastai_when_the_whole_window_decreases() -> None:
    # Strictly decreasing from 0 to 24: length 25, max_end=24, max_start=-1, sections=25/3=8.33,
    # idx = -1 + 8 + 4 = 11 -> 10 ** (-7 + 2.75).
    assert valley(CURVE_B_LRS, CURVE_B) == pytest.approx(10**-4.25, rel=1e-12)


def test_valley_is_undefined_without_a_decrease() -> None:
    assert valley(CURVE_A_LRS, np.linspace(1, 2, 12)) is None
    assert valley(CURVE_A_LRS[:1], CURVE_A[:1]) is None


def test_slide_matches_fastai() -> None:
    # np.gradient: -0.05 for i <= 23, 0.125 at 24, 0.3 after. Walking (right, left) = (29,14), (28,13),
    # ..., (24,9) all differ by more than 0.005 and move the pick down to lrs[9]; at (23,8) both are
    # -0.05 and the walk stops: 10 ** (-7 + 9 * 0.25).
    assert slide(CURVE_B_LRS, CURVE_B) == pytest.approx(10**-4.75, rel=1e-12)


def test_slide_needs_more_than_lr_diff_points() -> None:
    assert slide(CURVE_A_LRS, CURVE_A) is None  # fastai would raise IndexError here


def test_minimum_matches_fastai() -> None:
    # The lowest loss, 0.8, is at i=8 (lr 1e-2); minimum is a tenth of it.
    assert minimum(CURVE_A_LRS, CURVE_A) == pytest.approx(1e-3, rel=1e-12)
    assert minimum(CURVE_B_LRS, CURVE_B) == pytest.approx(1e-2, rel=1e-12)  # i=24: 10**-1 / 10


def test_steep_matches_fastai() -> None:
    # Loss steps: -0.1, 0.2, -0.6, -0.5, 0.2, -0.7, -0.5, ...; the steepest is 5 -> 6, so lrs[5].
    assert steep(CURVE_A_LRS, CURVE_A) == pytest.approx(10**-3.5, rel=1e-12)
    assert steep(CURVE_A_LRS[:1], CURVE_A[:1]) is None


def test_suggestion_window_drops_the_first_tenth_the_last_five_and_everything_from_the_first_nan() -> None:
    lrs = [float(i) for i in range(100)]
    losses = [1.0] * 100
    window_lrs, window_losses = suggestion_window(lrs, losses, num_it=100)
    assert window_lrs.tolist() == [float(i) for i in range(10, 95)]
    losses[50] = math.nan
    window_lrs, window_losses = suggestion_window(lrs, losses, num_it=100)
    assert window_lrs.tolist() == [float(i) for i in range(10, 50)]
    assert len(window_losses) == 40


# ---------------------------------------------------------------------------- the range test


def _fake_losses(learner: Any, monkeypatch: pytest.MonkeyPatch, losses: list[float]) -> list[list[float]]:
    """Make `train_step` return `losses` in turn (without training); return each call's group LRs."""
    seen: list[list[float]] = []

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        optimizer = learner.ensure_optimizer()
        by_group = {g["layer_group"]: g["lr"] for g in optimizer.param_groups}
        seen.append([by_group[i] for i in range(learner.n_groups)])
        return torch.tensor(losses[len(seen) - 1])

    monkeypatch.setattr(learner, "train_step", step)
    return seen


def test_lr_rises_exponentially_and_every_group_gets_the_head_lr_by_default(tiny_learner, monkeypatch) -> None:
    learn = tiny_learner()
    seen = _fake_losses(learn, monkeypatch, [2.0 - 0.01 * i for i in range(50)])
    result = lr_find(learn, start_lr=1e-6, end_lr=1.0, num_it=50)
    expected = [1e-6 * (1.0 / 1e-6) ** (i / 50) for i in range(50)]
    assert result.lrs == pytest.approx(expected, rel=1e-12)
    assert [lrs[-1] for lrs in seen] == pytest.approx(expected, rel=1e-12)
    assert all(lrs == [lrs[-1]] * 3 for lrs in seen)
    assert result.lr_ratios == [1.0, 1.0, 1.0]


def test_loss_is_smoothed_with_a_debiased_ema(tiny_learner, monkeypatch) -> None:
    learn = tiny_learner()
    raw = [3.0, 1.0, 2.0, 0.5, 1.5, 1.0, 0.9, 0.8, 0.7, 0.6]
    _fake_losses(learn, monkeypatch, raw)
    result = lr_find(learn, num_it=10, stop_div=False)
    assert result.raw_losses == pytest.approx(raw, rel=1e-6)  # float32 losses, as train_step returns them
    average, expected = 0.0, []
    for i, loss in enumerate(result.raw_losses, start=1):
        average = 0.98 * average + 0.02 * loss
        expected.append(average / (1 - 0.98**i))
    assert result.losses == pytest.approx(expected, rel=1e-12)
    assert result.losses[0] == 3.0  # debiased: the first point is the first loss, not 2% of it


def test_stops_once_the_smoothed_loss_exceeds_four_times_the_best(tiny_learner, monkeypatch) -> None:
    learn = tiny_learner()
    raw = [1.0] * 20 + [100.0] * 80
    _fake_losses(learn, monkeypatch, raw)
    result = lr_find(learn, num_it=100)
    assert result.diverged
    # After 20 losses of 1 the smoothed loss is 1; one loss of 100 lifts it to
    # (0.98 (1 - 0.98**20) + 0.02 * 100) / (1 - 0.98**21) = 6.73 > 4, so the test stops at 21 points.
    assert result.losses[-1] == pytest.approx((0.98 * (1 - 0.98**20) + 2) / (1 - 0.98**21), rel=1e-9)
    assert result.losses[-1] > 4 * min(result.losses) >= result.losses[-2]
    assert len(result.lrs) == len(result.losses) == 21
    assert not lr_find(learn, num_it=20, stop_div=False).diverged


def test_discriminative_ratios_are_kept_and_reported_as_a_slice(tiny_learner, monkeypatch) -> None:
    learn = tiny_learner()
    seen = _fake_losses(learn, monkeypatch, [2.0 - 0.01 * i for i in range(30)])
    result = lr_find(learn, num_it=30, lr_ratios=slice(1e-5, 1e-3))
    assert result.lr_ratios == pytest.approx([1e-2, 1e-1, 1.0])
    for lrs in seen:
        assert lrs == pytest.approx([lrs[-1] * 1e-2, lrs[-1] * 1e-1, lrs[-1]], rel=1e-12)
    assert result.head_lr == result.valley == result.suggestion
    chosen = result.slice()
    assert chosen.stop == result.valley and chosen.start == pytest.approx(result.valley / 100)
    assert resolve_lrs(chosen, 3) == pytest.approx(result.group_lrs(), rel=1e-12)
    assert result.slice(1e-3) == slice(pytest.approx(1e-5), 1e-3)


def test_nan_on_the_first_batch_raises_a_clear_error_and_restores_the_learner(tiny_learner, monkeypatch) -> None:
    learn = tiny_learner()
    before = _state(learn)
    _fake_losses(learn, monkeypatch, [math.nan] * 10)
    with pytest.raises(LRFindError, match="start_lr"):
        lr_find(learn, num_it=10)
    _assert_same_state(before, _state(learn))


def test_a_curve_that_never_decreases_falls_back_with_a_warning(tiny_learner, monkeypatch) -> None:
    learn = tiny_learner()
    _fake_losses(learn, monkeypatch, [1.0 + 0.01 * i for i in range(100)])
    with pytest.warns(LRFindWarning, match="no valley"):
        result = lr_find(learn, num_it=100, stop_div=False)
    assert result.valley == pytest.approx(1e-3)  # the conservative default, inside the tested range
    assert result.valley != pytest.approx(result.lrs[0])
    assert any("no valley" in note for note in result.warnings)


def test_an_early_divergence_still_gives_a_valley_inside_the_tested_range(tiny_learner, monkeypatch) -> None:
    learn = tiny_learner()
    _fake_losses(learn, monkeypatch, [1.0, 1.0, 1.0, 50.0] + [1e3] * 96)
    with pytest.warns(LRFindWarning):
        result = lr_find(learn, num_it=100)
    assert result.diverged and len(result.lrs) < 10
    assert result.lrs[0] <= result.valley <= result.lrs[-1]
    assert math.isnan(result.slide) and math.isnan(result.steep)


def test_suggestions_that_disagree_by_orders_of_magnitude_are_reported_once(tiny_learner, monkeypatch) -> None:
    learn = tiny_learner()
    # A long shallow slope with a dip at the end: minimum sits late, valley early.
    raw = [2.0 - 0.002 * i for i in range(80)] + [0.5] * 5 + [2.0] * 15
    _fake_losses(learn, monkeypatch, raw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = lr_find(learn, num_it=100, stop_div=False)
    checked = [result.valley, result.minimum, result.steep]
    spread = max(checked) / min(checked)
    assert spread > 100
    disagreements = [note for note in result.warnings if "disagree" in note]
    assert len(disagreements) == 1
    assert f"{result.valley:.1e}" in disagreements[0] and f"{result.minimum:.1e}" in disagreements[0]
    assert len([w for w in caught if issubclass(w.category, LRFindWarning)]) == 1


def test_invalid_arguments_are_all_reported_at_once(tiny_learner) -> None:
    learn = tiny_learner()
    with pytest.raises(ValueError, match=r"start_lr must be a positive number.*num_it must be"):
        lr_find(learn, start_lr=0, num_it=3)
    with pytest.raises(ValueError, match="end_lr"):
        lr_find(learn, start_lr=1e-2, end_lr=1e-3)


# ---------------------------------------------------------------------------- exact restoration


def _state(learn: Any) -> dict[str, Any]:
    return {
        "model": {k: v.clone() for k, v in learn.model.state_dict().items()},
        "optimizer": None if learn.optimizer is None else copy.deepcopy(learn.optimizer.state_dict()),
        "requires_grad": {n: p.requires_grad for n, p in learn.model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in learn.model.named_parameters()},
        "training": {n: m.training for n, m in learn.model.named_modules()},
        "frozen_to": learn.frozen_to,
        "step": learn.step,
        "epoch": learn.epoch,
        "recorder": copy.deepcopy(learn.recorder.state_dict()),
        "loader_epoch": learn.dls.train.epoch,
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state()[1].copy(),
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in before:
        assert _same(before[key], after[key]), f"lr_find changed {key}"


@pytest.mark.parametrize(
    "setup", ["fresh", "after_fit", "frozen_after_fit", "frozen_no_train_bn", "eval_mode", "partly_frozen"]
)
def test_everything_is_restored_bit_for_bit(tiny_learner, setup: str) -> None:
    learn = tiny_learner(train_bn=setup != "frozen_no_train_bn")
    if setup in ("frozen_after_fit", "frozen_no_train_bn"):
        learn.freeze()
    if setup == "partly_frozen":
        learn.freeze_to(1)
    if setup in ("after_fit", "frozen_after_fit", "frozen_no_train_bn", "partly_frozen"):
        learn.fit(1, 1e-3)  # optimizer state, gradients, a history row, BN statistics
    if setup == "eval_mode":
        learn.model.body.train()
    random.random()  # touch every RNG so their states are not the initial ones
    np.random.rand()
    before = _state(learn)
    result = lr_find(learn, num_it=30, end_lr=100.0)  # far enough to wreck the weights
    assert len(result.lrs) > 5
    _assert_same_state(before, _state(learn))


def test_training_after_lr_find_is_identical_to_training_without_it(tiny_learner) -> None:
    with_finder, without = tiny_learner(), tiny_learner()
    for learn in (with_finder, without):
        learn.fit(1, 1e-3)
    lr_find(with_finder, num_it=20)
    for learn in (with_finder, without):
        learn.fit(1, 1e-3)
    for (name, a), b in zip(with_finder.model.state_dict().items(), without.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert with_finder.recorder.losses == without.recorder.losses


def test_no_file_is_written_without_a_plot(tiny_learner, tmp_path: Path, monkeypatch) -> None:
    # The snapshot lives in memory: parallel runs in one folder cannot collide (fastai #3240).
    monkeypatch.chdir(tmp_path)
    lr_find(tiny_learner(), num_it=10)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- the loop itself


def test_uses_the_learners_train_step_and_computes_no_gradient_through_a_frozen_body(tiny_learner, monkeypatch):
    learn = tiny_learner(train_bn=False)
    learn.freeze()
    original_step = learn.train_step
    body_outputs_need_grad: list[bool] = []
    body_grads: list[bool] = []
    head_grads: list[bool] = []
    body_modes: list[bool] = []
    handle = learn.model.body.register_forward_hook(
        lambda module, args, output: body_outputs_need_grad.append(output.requires_grad)
    )

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = original_step(images, labels)
        body_grads.append(any(p.grad is not None for p in learn.model.body.parameters()))
        head_grads.append(all(p.grad is not None for p in learn.model.head.parameters()))
        body_modes.append(any(m.training for m in learn.model.body.modules() if "BatchNorm" in type(m).__name__))
        return loss

    monkeypatch.setattr(learn, "train_step", step)
    lr_find(learn, num_it=10, stop_div=False)
    handle.remove()
    assert len(body_grads) == 10
    assert body_outputs_need_grad == [False] * 10  # no autograd graph through the body at all
    assert not any(body_grads) and all(head_grads)
    assert not any(body_modes)  # frozen BN runs in inference mode, as in training
    assert all(p.grad is None for p in learn.model.parameters())  # restored: the fresh learner had none


def test_unfrozen_test_trains_every_group(tiny_learner, monkeypatch) -> None:
    learn = tiny_learner()
    learn.unfreeze()
    original_step = learn.train_step
    body_grads: list[bool] = []

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = original_step(images, labels)
        body_grads.append(all(p.grad is not None for p in learn.model.body.parameters()))
        return loss

    monkeypatch.setattr(learn, "train_step", step)
    lr_find(learn, num_it=8)
    assert body_grads and all(body_grads)


def test_cycles_a_small_loader_through_new_epochs_deterministically(tiny_learner) -> None:
    learn = tiny_learner(n_train=32, batch_size=16)  # 2 batches per epoch
    learn.fit(1, 1e-3)
    epoch_before = learn.dls.train.epoch
    learn.dls.train.epochs_started.clear()
    first = lr_find(learn, num_it=10, stop_div=False)
    assert learn.dls.train.epochs_started == [1, 2, 3, 4, 5]  # fresh, consecutive epochs after the fit's
    assert learn.dls.train.epoch == epoch_before
    second = lr_find(learn, num_it=10, stop_div=False)
    assert first.raw_losses == second.raw_losses  # same seed and state: same curve
    assert len(first.lrs) == 10


def test_a_real_curve_gives_finite_suggestions_in_range(tiny_learner) -> None:
    learn = tiny_learner(n_train=128, batch_size=16)
    result = lr_find(learn, num_it=60)
    assert all(math.isfinite(v) for v in result.raw_losses[:5])
    assert result.lrs[0] <= result.valley <= result.lrs[-1]
    assert isinstance(result, LRFindResult)


def test_auto_lr_uses_the_valley(tiny_learner, capsys) -> None:
    learn = tiny_learner()
    learn.fit_one_cycle(1, lr_max="auto")
    assert any("lr_find chose" in note and "valley" in note for note in learn.recorder.notes)
    assert len(learn.recorder.history) == 1


def test_prints_a_summary_unless_quiet(tiny_learner, capsys) -> None:
    learn = tiny_learner()
    learn.quiet = False
    lr_find(learn, num_it=10)
    assert "lr_find: 10 iterations" in capsys.readouterr().out
    lr_find(learn, num_it=10, quiet=True)
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------------------- the plot


def _result_for_plot() -> LRFindResult:
    lrs = [float(lr) for lr in CURVE_B_LRS]
    return LRFindResult(lrs, list(CURVE_B), list(CURVE_B), 1e-5, 2e-5, 1e-3, 1e-6, [1.0, 1.0, 1.0])


def test_plot_is_a_png_with_log_x_and_every_suggestion_labelled(tmp_path: Path) -> None:
    result = _result_for_plot()
    path = plot_lr_find(result, tmp_path / "sub" / "lr_find.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axis = lr_find_figure(result).axes[0]
    assert axis.get_xscale() == "log"
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    for name, lr in result.suggestions.items():
        assert f"{name}: {lr:.2e}" in labels


def test_lr_find_writes_the_plot_when_asked(tiny_learner, tmp_path: Path) -> None:
    result = lr_find(tiny_learner(), num_it=20, plot=tmp_path / "lr.png")
    assert result.plot_path == tmp_path / "lr.png" and result.plot_path.stat().st_size > 1000


# ---------------------------------------------------------------------------- real data and model


def test_with_real_loaders_and_a_timm_model(make_image_folder, tmp_path: Path) -> None:
    data = pytest.importorskip("unfreeze.data")
    models = pytest.importorskip("unfreeze.models")
    from unfreeze.train.learner import Learner

    dls = data.ImageDataLoaders.from_folder(make_image_folder(n_train=12), size=32, bs=8, seed=0, num_workers=0)
    model = models.create_model("test_resnet", dls.n_classes, pretrained=False)
    learn = Learner(dls, model, device="cpu", seed=0, quiet=True, train_bn=False)
    learn.freeze()
    learn.fit(1, 1e-3)
    before = _state(learn)
    result = learn.lr_find(num_it=12, plot=tmp_path / "lr.png", lr_ratios=slice(1e-4, 1e-2))
    _assert_same_state(before, _state(learn))
    assert len(result.lrs) >= 6 and result.plot_path is not None
    assert learn.dls.train.epoch == before["loader_epoch"]


def test_a_window_of_one_point_is_not_called_a_span() -> None:
    # lr_find(num_it=6): the window [0:-5] holds one point; the note said "between 1.0e-07 and 1.0e-07".
    from unfreeze.train.lr_find import _suggest

    lrs = [1e-7 * 10 ** (i / 2) for i in range(6)]
    _, notes = _suggest(lrs, [1.0, 1.1, 1.2, 1.3, 1.4, 1.5], num_it=6)
    assert any("in the 1 point(s) it could use" in note for note in notes), notes
    assert not any("between" in note for note in notes)
