"""`unfreeze train` and `unfreeze lr-find` with the guards of issue 17 §3: the best epoch kept and named,
divergence refused with one line, small images upscaled, lr-find's rerun line, the multi-label threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import TINY, run_user_error
from unfreeze import load_learner
from unfreeze.cli import main


def test_the_best_epoch_is_kept_and_named(image_folder: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", str(image_folder), *TINY, "--epochs", "2", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    kept = summary["kept"]
    assert kept["kept"] == "best" and kept["monitor"] == "error_rate" and kept["mode"] == "min"
    errors = [row["error_rate"] for row in summary["history"]]
    assert kept["best_value"] == min(errors) and errors.index(min(errors)) == kept["best_epoch"]
    assert summary["final"]["epoch"] == kept["best_epoch"]  # the final row is the kept epoch's
    final = next(line for line in out.splitlines() if line.startswith("Final:"))
    assert f"kept epoch {kept['best_epoch']}, the best by error_rate" in final
    calibration = summary["calibration"]  # and the line after it says what the calibration ended with
    said = out.splitlines()[out.splitlines().index(final) + 1]
    assert said.startswith(f"Calibration: temperature {calibration['temperature']:.3f} ± "
                           f"{calibration['temperature_se']:.3f}") and "validation images" in said
    assert f"<dt>epoch exported</dt><dd>epoch <strong>{kept['best_epoch']}</strong>, the best by error_rate" in (
        run / "report.html").read_text()  # in the report's automatic decisions


def test_keep_last_opts_out_and_lands_in_the_config(image_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", str(image_folder), *TINY, "--keep", "last", "--out", str(run), "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["kept"]["kept"] == "last" and summary["kept"]["last_epoch"] == 1
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["keep"] == "last" and "--keep last" in config["rerun"]


def test_a_huge_lr_with_one_step_per_epoch_is_refused_not_exported(image_folder: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # One batch of 64 holds the whole training set: the step that breaks the weights is the epoch's last.
    run = tmp_path / "run"
    line = run_user_error(["train", str(image_folder), *TINY, "--bs", "64", "--freeze-epochs", "0", "--lr", "1e10",
                           "--out", str(run)], capsys)
    assert "Training diverged at LR 1.00e+10" in line and "and again at 1.00e+09" in line
    assert not (run / "model.unfreeze").exists()


def _small_images(root: Path, side: int) -> Path:
    for index, name in enumerate(("zero", "one")):
        for split, count in (("train", 4), ("valid", 2)):
            for item in range(count):
                path = root / split / name / f"{item}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = np.random.default_rng(item).integers(0, 60, (side, side, 3)) + 150 * index
                Image.fromarray(pixels.astype(np.uint8)).save(path)
    return root


def test_small_images_are_upscaled_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _small_images(tmp_path / "digits", 8)
    argv = ["train", str(data), "--arch", "test_resnet", "--no-pretrained", "--size", "32", "--bs", "4",
            "--epochs", "1", "--freeze-epochs", "0"]
    assert main([*argv, "--out", str(tmp_path / "up")]) == 0
    printed = capsys.readouterr()
    assert "final feature map is 1x1" in printed.err
    assert "training at 64 px instead (--no-upscale keeps 32)" in printed.err
    assert "Upscaled: training at 64 px (the images are 8 px)." in printed.out and "size 64, seed 0)" in printed.out
    summary = json.loads((tmp_path / "up" / "summary.json").read_text())
    assert summary["input_size"] == {"requested": 32, "size": 64, "native": 8, "feature_map": [1, 1],
                                     "upscaled": True}
    assert load_learner(tmp_path / "up" / "model.unfreeze").dls.size == 64
    config = json.loads((tmp_path / "up" / "config.json").read_text())["options"]
    assert config["size"] == 64 and config["upscaled_from"] == 32  # interpret and --resume rebuild 64 px data
    assert main([*argv, "--no-upscale", "--quiet", "--out", str(tmp_path / "kept")]) == 0
    assert "use --size 64 or more" in capsys.readouterr().err
    assert json.loads((tmp_path / "kept" / "summary.json").read_text())["input_size"]["size"] == 32


def test_lr_find_keeps_every_option_and_shows_progress_in_a_pipe(image_folder: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lr-find", str(image_folder), "--arch", "test_resnet", "--no-pretrained", "--size", "24",
                 "--bs", "4", "--num-it", "20", "--plot", str(tmp_path / "lr.png")]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.startswith("lr_find: ") and "/20 iterations" in line]) == 10
    command = next(line for line in out.splitlines() if line.startswith("Train with: "))
    assert command.startswith(f"Train with: unfreeze train {image_folder} --arch test_resnet --no-pretrained "
                              "--size 24 --bs 4 --lr ")
    assert "--plot" not in command and "--num-it" not in command


def test_multi_label_threshold_is_chosen_reported_and_exported(image_folder: Path, tmp_path: Path) -> None:
    rows = ["file,labels"]
    for index, path in enumerate(sorted(image_folder.rglob("*.png"))):
        rows.append(f"{path.relative_to(image_folder)},{path.parent.name}{' shiny' if index % 2 else ''}")
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "ml"
    assert main(["train", str(image_folder), *TINY, "--csv", "labels.csv", "--multi-label", "--out", str(run),
                 "--quiet"]) == 0
    threshold = json.loads((run / "summary.json").read_text())["threshold"]
    assert threshold["chosen_by"] == "F1 on the validation set" and 0 < threshold["threshold"] < 1
    assert threshold["f1"] >= threshold["previous_f1"]
    assert load_learner(run / "model.unfreeze").task.threshold == pytest.approx(threshold["threshold"])


def _multi_label_run(image_folder: Path, tmp_path: Path) -> Path:
    """A multi-label run trained on `image_folder`'s classes, every other image also tagged 'shiny'."""
    rows = ["file,labels"]
    for index, path in enumerate(sorted(image_folder.rglob("*.png"))):
        rows.append(f"{path.relative_to(image_folder)},{path.parent.name}{' shiny' if index % 2 else ''}")
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "ml"
    assert main(["train", str(image_folder), *TINY, "--csv", "labels.csv", "--multi-label", "--out", str(run),
                 "--quiet"]) == 0
    return run


def test_evaluate_scores_a_multi_label_model_at_its_threshold_on_the_probabilities_it_predicts(
        image_folder: Path, tmp_path: Path) -> None:
    # The threshold is chosen on the calibrated probabilities: the scores must decide as predict does, so
    # that they agree with the report and the records beside them (they were scored on the raw sigmoid).
    run, scores = _multi_label_run(image_folder, tmp_path), tmp_path / "scores.json"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["threshold"]["threshold"] != 0.5 and summary["calibration"]["temperature"] != 1.0
    assert main(["evaluate", str(run), str(image_folder), "--csv", "labels.csv", "--json", str(scores),
                 "--quiet"]) == 0
    evaluated = json.loads(scores.read_text())
    classes = summary["data"]["classes"]
    right = [(name in record["label"]) == (name in record["actual"])
             for record in evaluated["predictions"] for name in classes]
    assert evaluated["scores"]["accuracy_multi"] == pytest.approx(sum(right) / len(right), abs=1e-6)
    assert evaluated["scores"]["f1_multi"] == pytest.approx(evaluated["report"]["macro avg"]["f1"], abs=1e-6)


def test_a_run_whose_lr_a_retry_lowered_resumes_at_that_lr(image_folder: Path, tmp_path: Path) -> None:
    import torch

    from unfreeze.train.schedules import resolve_lrs

    run = tmp_path / "run"
    assert main(["train", str(image_folder), *TINY, "--lr", "1e-2", "--out", str(run), "--quiet"]) == 0
    # What a divergence retry leaves: the checkpoint's fit ran at lr / 10, config.json keeps --lr as given.
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    progress = checkpoint["progress"]
    recipe, lr = progress["recipe"], 1e-3
    recipe["base_lr"] = lr
    spread = slice(lr) if recipe["phase"] == 0 else slice(lr / 2 / recipe["lr_mult"], lr / 2)  # fine_tune's phases
    progress["schedule"]["lr_max"] = resolve_lrs(spread, len(progress["schedule"]["lr_max"]))
    progress["finished"] = False
    torch.save(checkpoint, run / "checkpoint.pt")
    (run / "summary.json").unlink()  # as if it had been interrupted after its last checkpoint
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["recipe"]["base_lr"] == 1e-3


def test_per_class_thresholds_are_chosen_on_validation_exported_and_predicted_with(image_folder: Path,
                                                                                  tmp_path: Path) -> None:
    # Issue 27: per-class thresholds were Python only; --thresholds per-class chooses them in the CLI.
    rows = ["file,labels"]
    for index, path in enumerate(sorted(image_folder.rglob("*.png"))):
        rows.append(f"{path.relative_to(image_folder)},{path.parent.name}{' shiny' if index % 2 else ''}")
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "ml"
    assert main(["train", str(image_folder), *TINY, "--csv", "labels.csv", "--multi-label", "--out", str(run),
                 "--thresholds", "per-class", "--quiet"]) == 0
    chosen = json.loads((run / "summary.json").read_text())["threshold"]["threshold"]
    learn = load_learner(run / "model.unfreeze")
    assert isinstance(chosen, list) and len(chosen) == len(learn.dls.vocab)
    assert list(learn.task.threshold) == pytest.approx(chosen)
    image = next(image_folder.rglob("*.png"))
    labels, _, probs = learn.predict(image)
    expected = {name for name, prob, cut in zip(learn.dls.vocab, probs.tolist(), chosen, strict=True) if prob >= cut}
    assert set(labels) == expected
    assert "--thresholds per-class" in json.loads((run / "config.json").read_text())["rerun"]


def test_an_image_over_pillows_pixel_limit_is_skipped_not_a_traceback(image_folder: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Pillow refuses a file of more than twice Image.MAX_IMAGE_PIXELS (a decompression bomb) with an error that
    is no OSError; reading the images' size for the input-size check ended train with its traceback."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 24x20 images pass; the 64x64 one is over 2 x 1000
    Image.new("RGB", (64, 64)).save(image_folder / "train" / "ant" / "ant_huge.png")
    assert main(["train", str(image_folder), *TINY, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "ant_huge.png (DecompressionBombError" in err  # left out of training, named once
    assert (tmp_path / "run" / "model.unfreeze").is_file()


def test_images_over_pillows_warning_limit_train_without_a_warning_each(image_folder: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Images between Image.MAX_IMAGE_PIXELS and twice that (a 100-megapixel camera's) decode fine, yet each
    size printed Pillow's raw 'could be decompression bomb DOS attack' line, naming no file, several times."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # the 24x20 images (480 pixels) are over it, not over 600
    assert main(["train", str(image_folder), *TINY, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "decompression bomb" not in err
    assert (tmp_path / "run" / "model.unfreeze").is_file()


def test_evaluate_splits_multi_label_cells_as_the_run_trained(image_folder: Path, tmp_path: Path) -> None:
    """evaluate split the cells at a space whatever --label-delim the run trained with: 'ant;shiny' was one
    class the model did not know."""
    rows = ["file,labels"]
    for index, path in enumerate(sorted(image_folder.rglob("*.png"))):
        rows.append(f"{path.relative_to(image_folder)},{path.parent.name}{';shiny' if index % 2 else ''}")
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    run, scores = tmp_path / "ml", tmp_path / "scores.json"
    assert main(["train", str(image_folder), *TINY, "--csv", "labels.csv", "--multi-label", "--label-delim", ";",
                 "--out", str(run), "--quiet"]) == 0
    assert main(["evaluate", str(run), str(image_folder), "--csv", "labels.csv", "--json", str(scores),
                 "--quiet"]) == 0
    actual = {name for record in json.loads(scores.read_text())["predictions"] for name in record["actual"]}
    assert "shiny" in actual and not any(";" in name for name in actual)


def test_evaluate_json_names_the_threshold_its_multi_label_scores_are_decided_at(image_folder: Path,
                                                                                 tmp_path: Path) -> None:
    """evaluate --json of a multi-label model gave accuracy_multi and f1_multi without the threshold they were
    decided at (the run's tuned one, not 0.5): the numbers could not be reproduced from the probabilities."""
    run, scores = _multi_label_run(image_folder, tmp_path), tmp_path / "scores.json"
    assert main(["evaluate", str(run), str(image_folder), "--csv", "labels.csv", "--json", str(scores),
                 "--quiet"]) == 0
    chosen = json.loads((run / "summary.json").read_text())["threshold"]["threshold"]
    assert json.loads(scores.read_text())["decision_threshold"] == pytest.approx(chosen)
