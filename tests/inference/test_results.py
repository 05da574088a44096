"""show_results (validation images titled actual/predicted) and tta(use_max=True), on the sample learner."""

from __future__ import annotations

import pytest
import torch

from unfreeze import plots
from unfreeze.inference import show_results, tta
from unfreeze.inference.results import result_title


def test_show_results_titles_each_image_with_its_label_and_the_prediction(sample_learner, monkeypatch, tmp_path):
    drawn = {}

    def capture(images, titles, path, **options):
        drawn.update(images=images, titles=titles, path=path, options=options)
        return path

    monkeypatch.setattr(plots, "plot_image_grid", capture)
    assert show_results(sample_learner, 4, path=tmp_path / "r.png", nrows=2) == tmp_path / "r.png"
    items = sample_learner.dls.valid.dataset.items[:4]
    predicted = [sample_learner.predict(source)[0] for source, _ in items]

    assert drawn["titles"] == [f"{label}/{guess}" for (_, label), guess in zip(items, predicted, strict=True)]
    assert len(drawn["images"]) == 4 and drawn["images"][0].dtype.name == "uint8"
    assert drawn["images"][0].shape[-1] == 3 and drawn["options"]["nrows"] == 2


def test_show_results_writes_the_file_and_refuses_a_bad_count(sample_learner, tmp_path):
    assert sample_learner.show_results(max_n=2, path=tmp_path / "results.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="max_n must be a whole number >= 1"):
        sample_learner.show_results(max_n=0)


def test_result_titles_name_both_sides():
    assert result_title("Bag", "Coat") == "Bag/Coat"
    assert result_title(("car", "dog"), ()) == "car;dog/(none)"


def test_tta_use_max_takes_the_largest_augmented_probability(sample_learner):
    (highest, plain), targets = tta(sample_learner, n=3, beta=None, use_max=True)
    (average, plain_again), _ = tta(sample_learner, n=3, beta=None)
    probs, _ = sample_learner.tta(n=3, use_max=True)

    assert torch.equal(plain, plain_again) and torch.all(highest >= average - 1e-6)
    assert torch.allclose(probs, torch.lerp(highest, plain, 0.25)) and len(targets) == len(probs)
    assert not torch.allclose(highest, average)  # the augmented passes differ, so the max is not the mean
    with pytest.raises(TypeError, match="use_max must be True or False"):
        tta(sample_learner, use_max="yes")
