"""The unknown scores: they separate far-away features, their thresholds flag the asked share, and they
rebuild exactly from what an export stores."""

from __future__ import annotations

import pytest
import torch

from unfreeze.trust import METHODS, Trust, auroc, fit_score, threshold_for
from unfreeze.trust.ood import KNNScore, copies_of_training, score_from_config


def clusters(n: int, seed: int, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features of 3 classes around fixed centres (plus `shift`), their labels and logits."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(3, 16) * 6
    labels = torch.arange(n) % 3
    features = centres[labels] + torch.randn(n, 16, generator=generator) + shift
    logits = features[:, :3] * 2
    return features, labels, logits


@pytest.mark.parametrize("method", METHODS)
def test_each_method_scores_far_features_higher(method: str) -> None:
    train_features, train_labels, _ = clusters(300, 0)
    valid_features, _, valid_logits = clusters(150, 1)
    generator = torch.Generator().manual_seed(2)
    far_features = torch.randn(150, 16, generator=generator) * 0.3  # near the origin: no class's centre
    far_logits = far_features[:, :3] * 2
    score = fit_score(method, train_features, train_labels, 3, valid=(valid_features, valid_logits))
    with torch.no_grad():
        inside, outside = score(valid_features, valid_logits), score(far_features, far_logits)
    assert inside.shape == (150,) and auroc(inside, outside) > 0.9


def test_threshold_flags_the_asked_share() -> None:
    scores = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    threshold = threshold_for(scores, 0.05)
    assert float((scores > threshold).double().mean()) == pytest.approx(0.05, abs=0.002)
    with pytest.raises(ValueError, match="validation images"):
        threshold_for(torch.zeros(0), 0.05)


def test_the_knn_bank_is_a_capped_seeded_subsample() -> None:
    features, labels, _ = clusters(500, 0)
    first = fit_score("knn", features, labels, 3, bank_size=64, seed=3)
    again = fit_score("knn", features, labels, 3, bank_size=64, seed=3)
    other = fit_score("knn", features, labels, 3, bank_size=64, seed=4)
    assert isinstance(first, KNNScore) and first.bank.shape == (64, 16)
    assert torch.equal(first.bank, again.bank) and not torch.equal(first.bank, other.bank)
    assert torch.allclose(first.bank.norm(dim=1), torch.ones(64), atol=1e-2)  # normalised (float16-rounded)


@pytest.mark.parametrize("method", METHODS)
def test_a_score_rebuilds_from_its_config_and_buffers(method: str) -> None:
    features, labels, logits = clusters(200, 0)
    score = fit_score(method, features, labels, 3, valid=(features, logits), k=7)
    trust = Trust(temperature=1.3, temperature_se=0.07, score=score, threshold=0.5, unknown_rate=0.05)
    section, tensors = trust.metadata(), trust.tensors()
    assert Trust.problems(section) == []
    rebuilt = Trust.from_export(section, tensors)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.score(features, logits), score(features, logits))
    assert rebuilt.temperature == 1.3 and rebuilt.threshold == 0.5 and rebuilt.temperature_se == 0.07
    older = {key: value for key, value in section.items() if key != "temperature_se"}  # an export from before it
    assert Trust.problems(older) == [] and Trust.from_export(older, tensors).temperature_se is None
    assert score_from_config(score.config(), {k.removeprefix("trust."): v for k, v in tensors.items()}).method == method


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        fit_score("isolation-forest", torch.zeros(3, 2), torch.zeros(3), 1)


@pytest.mark.parametrize(("section", "expected"), [
    ({"temperature": float("nan"), "ood": None, "tensors": {}}, "trust.temperature"),
    ({"temperature": 1e9, "ood": None, "tensors": {}}, "trust.temperature"),
    ({"temperature": 1.2, "temperature_se": -0.1, "ood": None, "tensors": {}}, "trust.temperature_se"),
    ({"temperature": 1.2, "temperature_se": "tight", "ood": None, "tensors": {}}, "trust.temperature_se"),
    ({"temperature": 1.0, "ood": None, "tensors": {"bank": [10, 4]}}, "must be empty"),
    ({"temperature": 1.0, "ood": {"method": "knn", "k": 5, "threshold": 0.5}, "tensors": {"bank": [10**6, 10**6]}},
     "trust.tensors"),
    ({"temperature": 1.0, "ood": {"method": "knn", "k": 5, "threshold": 0.5}, "tensors": {"means": [3, 4]}},
     "trust.tensors of knn"),
    ({"temperature": 1.0, "ood": {"method": "knn", "k": 5, "threshold": "high"}, "tensors": {"bank": [3, 4]}},
     "threshold"),
    ({"temperature": 1.0, "ood": {"method": "magic", "threshold": 0.1}, "tensors": {}}, "method"),
    ("yes", "must be an object"),
])
def test_bad_sections_are_named(section: object, expected: str) -> None:
    problems = Trust.problems(section)
    assert problems and any(expected in problem for problem in problems)


def test_two_parts_flag_features_that_only_the_middle_stage_sets_apart() -> None:
    """An image whose last-layer features sit on a training image's but whose middle-stage features are
    unlike all of them (the upscaled digit near a bag): one part cannot see it, two parts do."""
    generator = torch.Generator().manual_seed(0)
    train = torch.cat([torch.randn(200, 8, generator=generator),
                       torch.randn(200, 4, generator=generator) * 0.1 + torch.tensor([5.0, 0, 0, 0])], dim=1)
    valid = torch.cat([torch.randn(50, 8, generator=generator),
                       torch.randn(50, 4, generator=generator) * 0.1 + torch.tensor([5.0, 0, 0, 0])], dim=1)
    odd = train[:5].clone()
    odd[:, 8:] = torch.tensor([0.0, 0, 5.0, 0])
    labels, logits = torch.zeros(200, dtype=torch.long), torch.zeros(50, 2)
    one = fit_score("knn", train[:, :8], labels, 2)
    two = fit_score("knn", train, labels, 2, valid=(valid, logits), parts=(8, 4))
    assert two.config() == {"method": "knn", "k": 1, "parts": [8, 4]}
    for score, features in ((one, valid[:, :8]), (two, valid)):
        threshold = threshold_for(score(features, logits), 0.05)
        flagged = score(odd if score is two else odd[:, :8], torch.zeros(5, 2)) > threshold
        assert flagged.all() if score is two else not flagged.any()
    rebuilt = score_from_config(two.config(), dict(two.named_buffers()))
    torch.testing.assert_close(rebuilt(valid, logits), two(valid, logits))
    assert fit_score("mahalanobis", train, labels, 2, parts=(8, 4)).means.shape == (2, 8)  # the first part only


def test_the_knn_distance_of_a_near_duplicate_is_exact_and_the_same_in_any_batch() -> None:
    # An image close to a training image has a similarity within rounding of 1: through sqrt(2 - 2 * sim)
    # a last-bit difference (another batch size's matrix kernel) moved the score by 1e-3 of its scale.
    generator = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(64, 96, generator=generator), dim=1)
    score = KNNScore(bank, k=1)
    offset = torch.zeros(96)
    offset[0] = 1e-4
    near = bank[5] + offset  # 1e-4 from a bank row
    others = torch.randn(7, 96, generator=generator)
    with torch.no_grad():
        alone = score(near[None], torch.zeros(1, 3))
        in_batch = score(torch.cat([others[:3], near[None], others[3:]]), torch.zeros(8, 3))[3]
    expected = (torch.nn.functional.normalize(near, dim=0) - bank[5]).norm()
    assert float(alone[0]) == pytest.approx(float(expected), rel=1e-3)
    assert float(in_batch) == pytest.approx(float(alone[0]), rel=1e-4)


def test_copies_of_training_features_are_found_whatever_their_scale_and_distinct_ones_are_not() -> None:
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(300, 32, generator=generator)
    fresh = torch.randn(40, 32, generator=generator)
    queries = torch.cat([train[:10] * 3.0, fresh, train[10:20] + 1e-4])  # rescaled copies, new rows, re-saved copies
    found = copies_of_training(train, queries, parts=(32,), chunk=16)  # chunks smaller than the queries
    assert found.tolist() == [True] * 10 + [False] * 40 + [True] * 10
    assert copies_of_training(train, torch.zeros(0, 32)).shape == (0,)
