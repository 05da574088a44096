"""SuggestedLRs and LRFindResult.suggest: fastai's suggest_funcs result, without a training run."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest

from unfreeze.train.lr_find import LRFindResult, SuggestedLRs, minimum, slide, steep, valley


def curve() -> LRFindResult:
    lrs = np.logspace(-7, 1, 100).tolist()
    losses = (2.0 - np.tanh(np.linspace(-3, 3, 100)) + np.linspace(0, 3, 100) ** 4 / 20).tolist()
    return LRFindResult(lrs, losses, losses, valley=1e-3, slide=2e-3, minimum=3e-4, steep=1e-5, lr_ratios=[1.0])


def test_suggested_lrs_unpacks_and_reads_like_a_named_tuple() -> None:
    suggested = SuggestedLRs(minimum=1.2e-3, steep=3.3e-4)
    lr_min, lr_steep = suggested
    assert (lr_min, lr_steep) == (1.2e-3, 3.3e-4) == (suggested.minimum, suggested.steep)
    assert repr(suggested) == "SuggestedLRs(minimum=1.2e-03, steep=3.3e-04)"
    assert copy.deepcopy(suggested)._fields == pickle.loads(pickle.dumps(suggested))._fields == ("minimum", "steep")
    with pytest.raises(AttributeError, match="has no 'valley'; it has minimum, steep"):
        _ = suggested.valley


def test_lr_find_result_indexes_and_unpacks_as_fastais_suggested_lrs() -> None:
    # fastai's lr_find() returns SuggestedLRs(valley=...): `learn.lr_find()[0]`, `lr, = learn.lr_find()`.
    result = curve()
    (lr,) = result
    assert result[0] == result[-1] == lr == 1e-3 and len(result) == 1 and tuple(result) == result.suggest()
    with pytest.raises(IndexError):
        _ = result[1]


def test_suggest_reads_the_stored_rules_and_calls_others() -> None:
    result = curve()
    assert result.suggest() == (1e-3,) and result.suggest()._fields == ("valley",)
    assert result.suggest(minimum, steep, slide, valley) == (3e-4, 1e-5, 2e-3, 1e-3)

    def tenth_of_last(lrs: np.ndarray, losses: np.ndarray) -> float | None:
        return float(lrs[-1]) / 10 if len(lrs) else None

    custom = result.suggest(tenth_of_last)
    assert custom.tenth_of_last == pytest.approx(np.logspace(-7, 1, 100)[-6] / 10)
    assert math.isnan(result.suggest(lambda lrs, losses: None)[0])
