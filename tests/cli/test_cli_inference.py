"""`unfreeze predict`, `interpret` and `export` on a run directory written by `unfreeze train`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze import load_learner
from unfreeze.cli import main


def valid_images(run: Path) -> list[Path]:
    data = Path(json.loads((run / "config.json").read_text())["options"]["data"])
    return sorted((data / "valid").rglob("*.png"))


def test_predict_table_matches_the_python_api(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = valid_images(trained_run)[:3]
    assert main(["predict", str(trained_run / "model.unfreeze"), *map(str, images)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["prob", "label", "path"]
    learn = load_learner(trained_run / "model.unfreeze")
    for line, image in zip(lines[1:], images, strict=True):
        prob, label, path = line.replace(" (unknown)", "").split()  # an image unlike the training ones is marked
        expected_label, index, probs = learn.predict(image)
        assert (label, path) == (expected_label, str(image))
        assert float(prob) == pytest.approx(float(probs[index]), abs=1e-3)


def test_predict_a_folder_as_csv_and_json(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(json.loads((trained_run / "config.json").read_text())["options"]["data"])
    assert main(["predict", str(trained_run), str(data / "valid"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 12 and {row["label"] for row in rows} <= {"ant", "bee", "cat"}
    assert all(0.0 <= float(row["probability"]) <= 1.0 and row["error"] == "" for row in rows)
    assert main(["predict", str(trained_run), str(data / "valid" / "bee"), "--format", "json", "--tta"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert len(rows) == 4 and all(row["error"] is None and row["label"] in {"ant", "bee", "cat"} for row in rows)


def test_predict_reports_unreadable_images_and_exits_1(trained_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    good = valid_images(trained_run)[0]
    assert main(["predict", str(trained_run), str(good), str(broken), "--format", "csv"]) == 1
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert rows[0]["error"] == "" and rows[1]["file"] == str(broken) and rows[1]["error"] != ""
    assert "1 image(s) could not be predicted" in captured.err and "Traceback" not in captured.err


def test_interpret_redraws_the_plots_and_prints_the_report(trained_run: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (trained_run / "confusion_matrix.png").unlink()
    assert main(["interpret", str(trained_run)]) == 0
    printed = capsys.readouterr().out
    assert "precision" in printed and "macro avg" in printed
    assert (trained_run / "confusion_matrix.png").stat().st_size > 1000
    assert (trained_run / "top_losses.png").stat().st_size > 1000
    summary = json.loads((trained_run / "summary.json").read_text())
    accuracy_line = next(line for line in printed.splitlines() if line.startswith("accuracy"))
    assert float(accuracy_line.split()[1]) == pytest.approx(summary["final"]["accuracy"], abs=1e-3)


def test_interpret_on_a_run_whose_data_was_moved_says_so(image_folder: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", str(image_folder), *TINY, "--out", str(run), "--quiet"]) == 0
    moved = image_folder.rename(tmp_path / "moved")
    line = run_user_error(["interpret", str(run)], capsys)
    # Not the training layout's "Dataset root is not a directory": what happened, and both ways on.
    assert f"{image_folder} (config.json's data) no longer exists" in line
    assert "Put it back there" in line and f"unfreeze evaluate {run}" in line
    assert moved.is_dir() and not image_folder.exists()


def test_export_checks_the_model(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(trained_run)]) == 0
    printed = capsys.readouterr().out
    assert "test_resnet" in printed and "3 classes" in printed
    size = (trained_run / "model.unfreeze").stat().st_size / 2**20  # binary megabytes: labelled MiB
    assert f"{size:.1f} MiB" in printed and " MB" not in printed


def test_export_onnx(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    target = tmp_path / "deploy" / "classifier.onnx"
    assert main(["export", str(trained_run), "--onnx", "--to", str(target)]) == 0
    assert target.stat().st_size > 1000 and str(target) in capsys.readouterr().out


def test_predict_and_evaluate_over_a_folder_show_progress_on_stderr(trained_run: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Output to a pipe (capsys is none): a line per tenth on stderr, the rows alone on stdout; --quiet: none."""
    data = Path(json.loads((trained_run / "config.json").read_text())["options"]["data"])
    assert main(["predict", str(trained_run), str(data / "valid"), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert len(list(csv.DictReader(io.StringIO(captured.out)))) == 12
    # OpenVINO cannot compile this 16 px test model: the line saying so, then the progress.
    lines = [line for line in captured.err.splitlines() if "cannot run this model" not in line]
    assert lines[0] == "predict: 1/12 images" and lines[-1] == "predict: 12/12 images" and len(lines) == 12
    assert main(["predict", str(trained_run), str(data / "valid"), "--format", "csv", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["evaluate", str(trained_run), str(data / "valid"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["evaluate", str(trained_run), str(data / "valid")]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == "evaluate: 24/24 images (2 passes)" and "evaluate:" not in captured.out


def test_evaluate_on_a_class_the_model_does_not_know_says_what_to_do(trained_run: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ant").mkdir()
    (tmp_path / "dog").mkdir()
    image = valid_images(trained_run)[0]
    (tmp_path / "ant" / "a.png").write_bytes(image.read_bytes())
    (tmp_path / "dog" / "d.png").write_bytes(image.read_bytes())
    line = run_user_error(["evaluate", str(trained_run), str(tmp_path), "--quiet"], capsys)
    assert "does not know: dog" in line and "Remove or rename" in line


def test_predict_table_of_a_multi_label_model_shows_each_class_with_its_probability(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table showed one 'prob' (the largest) beside a set of classes, 'nan' beside '(none)', and a label
    column as wide as one class name, so a row with several classes pushed its path out of the column."""
    from unfreeze.tasks import MultiLabel

    images = sorted(image_folder.rglob("*.png"))
    rows = [f"{path.relative_to(image_folder)},{'ant bee cat' if path.parent.name == 'ant' else ''}"
            for path in images]
    (image_folder / "labels.csv").write_text("\n".join(["file,labels", *rows]) + "\n")
    out = tmp_path / "run"
    assert main(["train", str(image_folder), *TINY, "--csv", "labels.csv", "--multi-label", "--out", str(out),
                 "--no-calibrate", "--quiet"]) == 0
    learn = load_learner(out / "model.unfreeze")
    everything, nothing = tmp_path / "everything.unfreeze", tmp_path / "nothing.unfreeze"
    learn.task = MultiLabel(threshold=0.01)
    learn.export(everything)
    learn.task = MultiLabel(threshold=0.99)
    learn.export(nothing)
    capsys.readouterr()
    shown = [str(path) for path in images[:2]]
    assert main(["predict", str(everything), *shown, "--runtime", "torch", "--quiet"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["classes", "path"]
    for line, image in zip(lines, shown, strict=True):
        _, _, probs = learn.predict(image)
        expected = ", ".join(f"{name} {float(prob):.3f}" for name, prob in zip(learn.dls.vocab, probs, strict=True))
        assert line.replace(" (unknown)", "").startswith(expected + "  ") and line.endswith(f"  {image}")
        assert line.index(image) == header.index("path")  # one column of paths
    assert main(["predict", str(nothing), shown[0], "--runtime", "torch", "--quiet"]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert line.startswith("(none)") and "nan" not in line and line.index(shown[0]) == header.index("path")


def test_a_run_without_its_model_or_its_training_checkpoint_says_what_to_pass(
        trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = str(valid_images(trained_run)[0])
    stopped = tmp_path / "stopped run"  # a run stopped before training wrote model.unfreeze
    stopped.mkdir()
    for name in ("config.json", "checkpoint.pt"):
        (stopped / name).write_bytes((trained_run / name).read_bytes())
    line = run_user_error(["predict", str(stopped), image], capsys)
    assert "run directory without model.unfreeze" in line and f"unfreeze train --resume '{stopped}'" in line
    # The run's own checkpoint is no fastai pickle to convert: the line names the run directory to pass.
    line = run_user_error(["predict", str(trained_run / "checkpoint.pt"), image], capsys)
    assert "training checkpoint" in line and "fastai" not in line and f"Pass the run directory {trained_run}" in line


def test_an_image_where_the_model_goes_says_the_order(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = valid_images(trained_run)[0]
    line = run_user_error(["predict", str(image), str(trained_run)], capsys)
    assert f"{image} is an image, not an unfreeze export" in line and "unfreeze predict RUN IMAGES" in line
