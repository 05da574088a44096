"""Temperature scaling: recovers a known temperature, lowers the ECE, leaves the decisions alone."""

from __future__ import annotations

import pytest
import torch

from unfreeze.trust import apply_temperature, calibration_report, fit_temperature, temperature_standard_error
from unfreeze.trust.calibration import MAX_TEMPERATURE


def calibrated_logits(n: int = 4000, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a perfectly calibrated model: labels drawn from softmax(logits)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator) * 2.0
    targets = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
    return logits, targets


def test_fit_temperature_recovers_the_overconfidence() -> None:
    logits, targets = calibrated_logits()
    assert fit_temperature(logits * 3.0, targets) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(logits / 2.0, targets) == pytest.approx(0.5, rel=0.1)


def test_calibration_lowers_ece_and_keeps_the_argmax() -> None:
    logits, targets = calibrated_logits()
    overconfident = logits * 3.0
    temperature = fit_temperature(overconfident, targets)
    report = calibration_report(overconfident, targets, temperature)
    assert report["after"]["ece"] < report["before"]["ece"] / 3
    assert report["after"]["nll"] < report["before"]["nll"]
    scaled = apply_temperature(overconfident, temperature, multi_label=False)
    assert torch.equal(scaled.argmax(dim=1), overconfident.argmax(dim=1))


def test_multi_label_temperature_on_sigmoid_logits() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3000, 4, generator=generator) * 2
    targets = torch.bernoulli(torch.sigmoid(logits), generator=generator)
    assert fit_temperature(logits * 2.5, targets, multi_label=True) == pytest.approx(2.5, rel=0.1)
    assert torch.equal(apply_temperature(logits, 2.5, True) > 0.5, logits > 0)  # the 0.5 decisions stay


def test_unlabelled_rows_are_ignored_and_nothing_to_fit_gives_one() -> None:
    logits, targets = calibrated_logits(n=2000)
    with_unlabelled = torch.cat([targets, torch.full((500,), -1)])
    noise = torch.randn(500, 5) * 50
    assert fit_temperature(torch.cat([logits * 2, noise]), with_unlabelled) == pytest.approx(2.0, rel=0.15)
    assert fit_temperature(torch.zeros(3, 2), torch.full((3,), -1)) == 1.0


def test_degenerate_validation_is_bounded() -> None:
    # Labels unrelated to confident logits: the likelihood wants T → infinity; the bound keeps it finite.
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]] * 50)
    targets = torch.tensor([1, 0] * 50)
    assert fit_temperature(logits, targets) == MAX_TEMPERATURE


@pytest.mark.parametrize(("multi_label", "items"), [(False, 200), (False, 1000), (True, 300)])
def test_the_temperature_standard_error_is_the_spread_of_refits_on_fresh_draws(multi_label: bool, items: int) -> None:
    """Many validation sets of `items` images from one overconfident model (true T 1.6): the fitted
    temperatures spread by about the standard error each set reports."""
    generator = torch.Generator().manual_seed(1)
    fitted, errors = [], []
    for _ in range(60):
        logits = torch.randn(items, 5, generator=generator) * 3.0
        if multi_label:
            targets = torch.bernoulli(torch.sigmoid(logits / 1.6), generator=generator)
        else:
            targets = torch.multinomial((logits / 1.6).softmax(dim=1), 1, generator=generator).squeeze(1)
        temperature = fit_temperature(logits, targets, multi_label)
        error = temperature_standard_error(logits, targets, temperature, multi_label)
        assert error is not None and error > 0
        fitted.append(temperature)
        errors.append(error)
    spread, reported = torch.tensor(fitted).std().item(), sum(errors) / len(errors)
    assert abs(sum(fitted) / len(fitted) - 1.6) < 2 * spread  # the fits are centred on the truth
    assert 0.7 < spread / reported < 1.4


def test_the_standard_error_shrinks_with_more_images_and_is_none_with_nothing_to_say() -> None:
    logits, targets = calibrated_logits(4000)
    few = temperature_standard_error(logits[:250], targets[:250], fit_temperature(logits[:250], targets[:250]))
    many = temperature_standard_error(logits, targets, fit_temperature(logits, targets))
    assert few is not None and many is not None and 3 < few / many < 5.5  # about sqrt(16) = 4
    assert temperature_standard_error(logits[:1], targets[:1], 1.0) is None  # one item
    assert temperature_standard_error(logits, torch.full_like(targets, -1), 1.0) is None  # nothing labelled
    assert temperature_standard_error(logits, targets, MAX_TEMPERATURE) is None  # at a bound
