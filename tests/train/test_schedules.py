"""Parity of LR specs and one-cycle curves with the formulas in REFERENCE.md (fastai 2.8)."""

import math

import pytest
import torch

from unfreeze.train.schedules import OneCycleSchedule, resolve_lrs


def fastai_cos(start: float, end: float, pct: float) -> float:
    # fastai's SchedCos: start + (1 + cos(pi * (1 - pct))) * (end - start) / 2
    return start + (1 + math.cos(math.pi * (1 - pct))) * (end - start) / 2


def fastai_one_cycle(step, total, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """Reference: fastai's combined_cos over pct = step / total."""
    pos = step / total
    if pos < pct_start:
        p = pos / pct_start
        return fastai_cos(lr_max / div, lr_max, p), fastai_cos(moms[0], moms[1], p)
    p = (pos - pct_start) / (1 - pct_start)
    return fastai_cos(lr_max, lr_max / div_final, p), fastai_cos(moms[1], moms[2], p)


@pytest.mark.parametrize("n_groups,expected", [
    (2, [1e-5, 1e-3]),
    (3, [1e-5, 1e-4, 1e-3]),
    (5, [1e-5, 1e-5 * 10**0.5, 1e-4, 1e-4 * 10**0.5, 1e-3]),
])
def test_slice_spacing_is_geometric(n_groups, expected):
    assert resolve_lrs(slice(1e-5, 1e-3), n_groups) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n_groups", [2, 3, 5])
def test_slice_hi_gives_tenth_to_body(n_groups):
    assert resolve_lrs(slice(1e-3), n_groups) == pytest.approx([1e-4] * (n_groups - 1) + [1e-3])


def test_float_and_list_specs():
    assert resolve_lrs(3e-3, 3) == [3e-3] * 3
    assert resolve_lrs([1e-5, 1e-4, 1e-3], 3) == [1e-5, 1e-4, 1e-3]


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan"), float("inf"), "fast", slice(0, 1e-3), slice(1e-3, None)])
def test_bad_lrs_are_refused_with_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"learning rate|LR|slice"):
        resolve_lrs(bad, 3)


def test_wrong_number_of_lrs():
    with pytest.raises(ValueError, match="2 learning rates for 3 parameter groups"):
        resolve_lrs([1e-4, 1e-3], 3)


@pytest.mark.parametrize("pct_start,div,div_final,moms", [
    (0.25, 25.0, 1e5, (0.95, 0.85, 0.95)), (0.3, 5.0, 1e5, (0.95, 0.85, 0.95)), (0.99, 25.0, 1e5, (0.95, 0.85, 0.95)),
    (0.3, 5.0, 1e4, (0.9, 0.8, 0.9)),  # fine_tune(1, div_final=1e4, moms=(.9, .8, .9))
])
def test_one_cycle_matches_fastai_at_every_step(pct_start, div, div_final, moms):
    total = 137
    lr_max = [1e-5, 1e-4, 1e-3]
    sched = OneCycleSchedule(lr_max, total, div=div, div_final=div_final, pct_start=pct_start, moms=moms)
    for step in range(total):
        lrs = sched.lrs_at(step)
        for group, hi in enumerate(lr_max):
            want_lr, want_mom = fastai_one_cycle(step, total, hi, div, div_final, pct_start, moms)
            assert lrs[group] == pytest.approx(want_lr, rel=1e-9)
        assert sched.mom_at(step) == pytest.approx(want_mom, rel=1e-9)


def test_one_cycle_landmarks():
    sched = OneCycleSchedule([1e-3], 100)
    assert sched.lrs_at(0)[0] == pytest.approx(1e-3 / 25)
    assert sched.lrs_at(25)[0] == pytest.approx(1e-3)
    assert sched.mom_at(0) == pytest.approx(0.95)
    assert sched.mom_at(25) == pytest.approx(0.85)
    assert sched.lrs_at(99)[0] < 1e-5  # annealing to lr_max / div_final
    peak = max(range(100), key=lambda s: sched.lrs_at(s)[0])
    assert peak == 25


def test_one_cycle_close_to_torch_onecyclelr():
    """torch's OneCycleLR draws the same curve, shifted by its own step convention."""
    total, hi = 200, 1e-3
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=hi, betas=(0.95, 0.99))
    torch_sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=hi, total_steps=total, pct_start=0.25, div_factor=25.0, final_div_factor=1e5 / 25.0,
        base_momentum=0.85, max_momentum=0.95,
    )
    ours = OneCycleSchedule([hi], total)
    for step in range(total - 1):
        assert opt.param_groups[0]["lr"] == pytest.approx(ours.lrs_at(step)[0], rel=0.05, abs=2e-5)
        opt.step()
        torch_sched.step()


def test_bad_schedule_settings():
    with pytest.raises(ValueError, match="pct_start"):
        OneCycleSchedule([1e-3], 10, pct_start=1.5)
    with pytest.raises(ValueError, match="moms"):
        OneCycleSchedule([1e-3], 10, moms=(0.9, 0.8))
