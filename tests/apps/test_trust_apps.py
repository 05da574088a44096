"""The unknown flag where a run becomes something for people: the server's JSON, the upload page (a real
browser) and model_card.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from app_helpers import serving, wait_until
from PIL import Image

from unfreeze.apps.serve import ServeSettings, create_app, load_model
from unfreeze.cli import main


def noise_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


def test_the_server_answers_unknown_and_ood_score(trained_app_run: Path, tmp_path: Path) -> None:
    learner = load_model(trained_app_run)
    noise = noise_png(tmp_path / "noise.png")
    bee = trained_app_run.parent / "images" / "valid" / "bee" / "bee_0.png"
    with serving(create_app(learner, "tiny", ServeSettings(top_k=2))) as url:
        answer = httpx.post(f"{url}/predict", files=[("file", ("noise.png", noise.read_bytes())),
                                                     ("file", ("bee_0.png", bee.read_bytes()))], timeout=30)
        health = httpx.get(f"{url}/health", timeout=30).json()
    assert answer.status_code == 200
    assert health["temperature"] == pytest.approx(learner.trust.temperature)
    assert health["temperature_se"] == pytest.approx(learner.trust.temperature_se) and health["temperature_se"] > 0
    assert health["unknown_threshold"] == pytest.approx(learner.trust.threshold)
    assert health["unknown_rate"] == pytest.approx(learner.trust.unknown_rate)
    for prediction, path in zip(answer.json()["predictions"], (noise, bee), strict=True):
        expected = learner.predict(path)
        assert prediction["unknown"] is expected.unknown
        assert prediction["ood_score"] == pytest.approx(expected.ood_score, rel=1e-5, abs=1e-5)


def test_the_model_card_gives_the_threshold_and_its_use(trained_app_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    assert main(["export", str(trained_app_run), "--format", "onnx", "--out", str(out)]) == 0
    card = (out / "model_card.md").read_text()
    threshold = load_model(trained_app_run).trust.threshold
    assert f"ood_score > {threshold:.6g}" in capsys.readouterr().out  # the command says it too
    assert "## Calibration and unknown images" in card and f"threshold {threshold:.6g}" in card
    assert f"unknown = ood_score > {threshold:.6g}" in card and "divides the logits by the temperature" in card
    assert f"± {load_model(trained_app_run).trust.temperature_se:.3g} (one standard error)" in card


def test_the_temperature_comes_with_its_standard_error_and_a_note_when_it_is_rough(trained_app_run: Path) -> None:
    """A trained run's summary keeps the temperature's standard error (in the export too), and its notes say
    so when the error is over 5% of the temperature, as on the sample's few validation images."""
    summary = json.loads((trained_app_run / "summary.json").read_text())
    calibration, trust = summary["calibration"], load_model(trained_app_run).trust
    assert calibration["temperature_se"] == pytest.approx(trust.temperature_se) and trust.temperature_se > 0
    notes = [note for note in summary["notes"] if note.startswith("calibration:")]
    assert trust.temperature_se > 0.05 * trust.temperature and len(notes) == 1  # 12 validation images: rough
    assert f"{trust.temperature:.3f} ± {trust.temperature_se:.3f}" in notes[0]
    assert f"{calibration['after']['items']:,} validation images" in notes[0]


@pytest.mark.slow
def test_the_page_shows_an_unknown_image_as_none_of_the_classes(browser: Any, trained_app_run: Path,
                                                               tmp_path: Path) -> None:
    learner = load_model(trained_app_run)
    candidates = [noise_png(tmp_path / "noise.png"), *(trained_app_run.parent / "images" / "valid").rglob("*.png")]
    scored = sorted(candidates, key=lambda path: learner.predict(path).ood_score)
    known, strange = scored[0], scored[-1]
    # The tiny random model's threshold may flag neither: put it between the two, this test is about the page.
    learner.trust.threshold = (learner.predict(known).ood_score + learner.predict(strange).ood_score) / 2
    with serving(create_app(learner, "ant-bee-cat", ServeSettings(top_k=3))) as url:
        page = browser.new_page()
        page.goto(url)
        wait_until(page, "document.getElementById('model-info').textContent.includes('3 classes')")
        page.set_input_files("#files", [str(known), str(strange)])
        page.wait_for_selector(".result:nth-child(2) .label")
        unknown = page.locator(".result.unknown")
        assert unknown.count() == 1
        assert unknown.locator(".label").inner_text().startswith("not one of the 3 classes (closest: ")
        assert unknown.locator(".file").inner_text() == strange.name
        styles = [page.locator(".result").nth(index).evaluate("card => getComputedStyle(card).borderTopStyle")
                  for index in range(2)]
        assert sorted(styles) == ["dashed", "solid"]  # visibly different from a confident answer
        page.close()
