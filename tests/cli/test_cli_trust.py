"""The command line's calibrated probabilities and unknown flag: train's options and summary, predict's
rows, evaluate's "calibration" and --ood, and the user errors around them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import TINY, run_user_error
from unfreeze import load_learner
from unfreeze.cli import main


def data_of(run: Path) -> Path:
    return Path(json.loads((run / "config.json").read_text())["options"]["data"])


def far_folder(root: Path, n: int = 6) -> Path:
    """Images that are none of ant / bee / cat: noise and flat grey."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(n):
        pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) if index % 2 else np.full((20, 24, 3), 30 * index,
                                                                                             np.uint8)
        Image.fromarray(pixels).save(root / f"far_{index}.png")
    return root


def test_train_writes_the_calibration_into_summary_config_and_export(trained_run: Path) -> None:
    summary = json.loads((trained_run / "summary.json").read_text())
    calibration = summary["calibration"]
    assert calibration["temperature"] > 0 and {"ece", "nll", "brier", "bins"} <= set(calibration["before"])
    assert calibration["after"]["nll"] <= calibration["before"]["nll"] + 1e-9
    assert calibration["unknown"]["method"] and calibration["unknown"]["unknown_rate"] == 0.05
    options = json.loads((trained_run / "config.json").read_text())["options"]
    assert options["calibrate"] is True and options["unknown_rate"] == 0.05
    learn = load_learner(trained_run / "model.unfreeze")
    assert learn.trust.temperature == pytest.approx(calibration["temperature"])
    assert learn.trust.threshold == pytest.approx(calibration["unknown"]["threshold"])
    report = (trained_run / "report.html").read_text()
    assert "<h2>Calibration</h2>" in report and 'alt="reliability diagram"' in report


def test_predict_rows_carry_unknown_and_ood_score(trained_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    far = far_folder(tmp_path / "far")
    valid = data_of(trained_run) / "valid"
    assert main(["predict", str(trained_run), str(valid), str(far), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 18 and all(row["unknown"] in ("true", "false") and float(row["ood_score"]) >= 0
                                   for row in rows)
    assert main(["predict", str(trained_run), str(far), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    learn = load_learner(trained_run / "model.unfreeze")
    for row in rows:
        prediction = learn.predict(row["file"])
        assert row["unknown"] == prediction.unknown and row["ood_score"] == pytest.approx(prediction.ood_score,
                                                                                          rel=1e-5, abs=1e-5)


def test_evaluate_reports_calibration_and_ood(trained_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    far = far_folder(tmp_path / "far")
    out = tmp_path / "evaluation.json"
    assert main(["evaluate", str(trained_run), str(data_of(trained_run) / "valid"), "--json", str(out),
                 "--ood", str(far)]) == 0
    printed = capsys.readouterr().out
    assert "Calibration (temperature" in printed and "Out-of-distribution (6 images" in printed
    report = json.loads(out.read_text())
    assert {"before", "after", "temperature"} <= set(report["calibration"])
    assert report["calibration"]["after"]["items"] == 12
    ood = report["ood"]
    assert 0 <= ood["auroc"] <= 1 and 0 <= ood["fpr95"] <= 1 and ood["n_in"] == 12 and ood["n_out"] == 6
    assert 0 <= ood["flagged_out"] <= 1 and report["unknown"]["flagged"] == ood["flagged_in"]
    # Each image's record carries its flag and score: together they give the share flagged.
    records = report["predictions"]
    assert len(records) == 12 and all(isinstance(row["unknown"], bool) and row["ood_score"] >= 0 for row in records)
    assert sum(row["unknown"] for row in records) / 12 == pytest.approx(report["unknown"]["flagged"])


def test_evaluate_ood_user_errors(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    valid = str(data_of(trained_run) / "valid")
    line = run_user_error(["evaluate", str(trained_run), valid, "--ood", str(tmp_path / "missing")], capsys)
    assert "is not a folder" in line
    (tmp_path / "empty").mkdir()
    line = run_user_error(["evaluate", str(trained_run), valid, "--ood", str(tmp_path / "empty")], capsys)
    assert "holds no image files" in line
    # Image names, but none decodes: no score to compare (the report was AUROC nan, flagged nan%, exit 0).
    (tmp_path / "broken").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "broken" / name).write_bytes(b"not an image")
    line = run_user_error(["evaluate", str(trained_run), valid, "--quiet", "--ood", str(tmp_path / "broken"),
                           "--json", str(tmp_path / "evaluation.json")], capsys)
    assert "none of its 2 image files could be read" in line and not (tmp_path / "evaluation.json").exists()


@pytest.mark.parametrize("rate", ["0.9", "-1", "five", "nan"])
def test_a_bad_unknown_rate_is_a_user_error(image_folder: Path, tmp_path: Path, rate: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["train", str(image_folder), *TINY, "--out", str(tmp_path / "run"), "--unknown-rate", rate],
                          capsys)
    assert "--unknown-rate" in line and not (tmp_path / "run").exists()


def test_no_calibrate_and_no_unknown_flag(image_folder: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "raw"
    assert main(["train", str(image_folder), *TINY, "--out", str(run), "--quiet", "--no-calibrate",
                 "--unknown-rate", "0"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["calibration"]["temperature"] == 1.0 and "unknown" not in summary["calibration"]
    config = json.loads((run / "config.json").read_text())
    assert "--no-calibrate" in config["rerun"] and "--unknown-rate 0" in config["rerun"]
    learn = load_learner(run / "model.unfreeze")
    assert learn.trust.temperature == 1.0 and not learn.trust.has_score
    capsys.readouterr()
    assert main(["predict", str(run), str(image_folder / "valid"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(row["unknown"] == "" and row["ood_score"] == "" for row in rows)
    line = run_user_error(["evaluate", str(run), str(image_folder / "valid"), "--ood", str(image_folder)], capsys)
    assert "has none" in line


def test_evaluate_ood_of_one_image_says_one_image(trained_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    far = far_folder(tmp_path / "far", n=1)
    assert main(["evaluate", str(trained_run), str(data_of(trained_run) / "valid"), "--ood", str(far)]) == 0
    assert f"Out-of-distribution (1 image in {far})" in capsys.readouterr().out
