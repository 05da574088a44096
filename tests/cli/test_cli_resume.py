"""`unfreeze train --resume`, kill -9 included; multi-label, class weights, `evaluate` and `--top-k`."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from unfreeze.cli import main

TINY = ["--arch", "test_resnet", "--no-pretrained", "--size", "16", "--bs", "4", "--seed", "1"]


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("unfreeze: error:")]
    assert len(lines) == 1, lines
    return lines[0]


def same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(str(a)), load_file(str(b))
    return first.keys() == second.keys() and all(bool((first[k] == second[k]).all()) for k in first)


def interrupt_at_epoch(n: int):
    """A `before_epoch` that raises KeyboardInterrupt at the n-th epoch started (1-based), as Ctrl-C would."""
    started = []

    def before_epoch(callback: object, epoch: int) -> None:
        started.append(epoch)
        if len(started) == n:
            raise KeyboardInterrupt

    return before_epoch


def test_ctrl_c_keeps_the_checkpoint_and_resume_finishes_the_same_run(
        image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["train", str(image_folder), *TINY, "--epochs", "2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    from unfreeze.train.callbacks import Recorder

    with monkeypatch.context() as patch:
        patch.setattr(Recorder, "before_epoch", interrupt_at_epoch(2))  # as the first unfrozen epoch starts
        assert main([*args, "--out", str(tmp_path / "cut")]) == 130
    cut = tmp_path / "cut"
    assert json.loads((cut / "summary.json").read_text())["interrupted"] is True
    assert (cut / "checkpoint.pt").is_file() and not (cut / "model.unfreeze").exists()
    assert "<strong>interrupted</strong>" in (cut / "report.html").read_text()  # the report hook ran
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    report = (cut / "report.html").read_text()
    assert "<strong>interrupted</strong>" not in report and 'alt="confusion matrix: counts, and normalised' in report
    assert same_weights(cut / "model.unfreeze", tmp_path / "full" / "model.unfreeze")
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["resumed_after_epoch"] == 1 and not summary["interrupted"]
    rows = list(csv.DictReader((cut / "history.csv").open()))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]


def test_resume_refuses_other_options_a_missing_checkpoint_and_a_finished_run(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", str(image_folder), *TINY, "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    assert "--epochs 3 (the run used 1)" in error_line(capsys)
    assert main(["train", "--resume", str(run)]) == 2
    assert "finished" in error_line(capsys)
    (run / "checkpoint.pt").unlink()
    (run / "summary.json").unlink()
    assert main(["train", "--resume", str(run)]) == 2
    assert "no checkpoint.pt" in error_line(capsys)
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "config.json not found" in error_line(capsys)
    assert main(["train", *TINY]) == 2
    assert "DATA is missing" in error_line(capsys)


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_equals_an_uninterrupted_run(image_folder: Path, tmp_path: Path) -> None:
    """SIGKILL (no cleanup at all) in the middle of the run; the resumed weights are bit-identical."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNFREEZE_OFFLINE": "1"}
    args = [sys.executable, "-m", "unfreeze", "train", str(image_folder), *TINY, "--size", "48", "--epochs", "4",
            "--quiet"]
    subprocess.run([*args, "--out", str(tmp_path / "full")], env=env, check=True, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen([*args, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Kill once the second epoch's row is in: the run is then in its unfrozen phase, mid-way.
    while time.monotonic() < deadline and process.poll() is None:
        history = killed / "history.csv"
        if history.is_file() and len(history.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "model.unfreeze").exists()
    resumed = subprocess.run([*args[:3], "train", "--resume", str(killed), "--quiet"], env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert same_weights(killed / "model.unfreeze", tmp_path / "full" / "model.unfreeze")
    # The CSV row of an epoch is written just before its checkpoint: a kill in between resumes one epoch
    # earlier, and history.csv is rebuilt from the checkpoint (one row per epoch, no duplicate).
    assert json.loads((killed / "summary.json").read_text())["resumed_after_epoch"] in (1, 2)
    assert [row["epoch"] for row in csv.DictReader((killed / "history.csv").open())] == ["0", "1", "2", "3", "4"]


def test_multi_label_run_evaluate_and_top_k(image_folder: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["file,labels"]
    for index, path in enumerate(sorted(image_folder.rglob("*.png"))):
        rows.append(f"{path.relative_to(image_folder)},{path.parent.name}{' shiny' if index % 2 else ''}")
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "ml"
    assert main(["train", str(image_folder), *TINY, "--epochs", "1", "--csv", "labels.csv", "--multi-label",
                 "--class-weights", "auto", "--sampler", "balanced", "--out", str(run), "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"]["name"] == "multi_label" and "f1_multi" in summary["final"]
    assert not (run / "confusion_matrix.png").exists() and (run / "top_losses.png").is_file()
    capsys.readouterr()
    assert main(["predict", str(run), str(image_folder / "valid" / "ant"), "--format", "json", "--top-k", "2"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert all(isinstance(row["label"], list) and len(row["top_k"]) == 2 for row in predictions)
    assert all(len(row["probability"]) == len(row["label"]) for row in predictions)
    report = tmp_path / "report.json"
    assert main(["evaluate", str(run), str(image_folder), "--csv", "labels.csv", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "accuracy_multi" in out and "shiny" in out
    content = json.loads(report.read_text())
    assert content["images"] == 36 and content["report"]["shiny"]["support"] == 18
    # Multi-label: no confusion matrix; each record's actual label is its set of classes.
    assert content["confusion_matrix"] is None and content["most_confused"] == []
    assert len(content["predictions"]) == 36 and all(isinstance(row["actual"], list) for row in content["predictions"])
    assert {"shiny", "ant"} <= set(content["per_class"])


def test_evaluate_single_label_and_unknown_classes(trained_run: Path, image_folder: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(trained_run), str(image_folder / "valid")]) == 0
    out = capsys.readouterr().out
    assert "error_rate" in out and "macro avg" in out and "12 labelled images" in out
    stranger = tmp_path / "test"
    for name in ("ant", "dog"):
        source = next((image_folder / "valid" / "ant").glob("*.png"))
        (stranger / name).mkdir(parents=True)
        (stranger / name / "x.png").write_bytes(source.read_bytes())
    assert main(["evaluate", str(trained_run), str(stranger)]) == 2
    assert "does not know: dog" in error_line(capsys)


def test_resume_after_the_data_folder_moved(image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A moved DATA is accepted on --resume when it holds the same files (relative paths and sizes)."""
    import shutil

    from unfreeze.train.callbacks import Recorder

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Recorder, "before_epoch", interrupt_at_epoch(2))
        assert main(["train", str(image_folder), *TINY, "--epochs", "2", "--out", str(run), "--quiet"]) == 130
    moved = tmp_path / "moved"
    image_folder.rename(moved)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    line = error_line(capsys)
    assert "not a directory any more" in line and f"unfreeze train NEWPATH --resume {run}" in line
    other = tmp_path / "other"
    shutil.copytree(moved, other)
    next((other / "train" / "ant").iterdir()).unlink()
    assert main(["train", str(other), "--resume", str(run), "--quiet"]) == 2
    assert "does not hold the files" in error_line(capsys)
    assert main(["train", str(moved), "--resume", str(run)]) == 0
    assert f"DATA moved: {image_folder} → {moved.resolve()}, the same 36 files" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["options"]["data"] == str(moved.resolve())
    assert json.loads((run / "summary.json").read_text())["resumed_after_epoch"] == 1
    moved.rename(tmp_path / "again")  # a finished run is refused as finished, wherever its data went
    assert main(["train", "--resume", str(run)]) == 2
    assert "there is nothing to resume" in error_line(capsys)


def test_resume_exports_a_finished_run_whose_model_was_deleted(image_folder: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The trained weights are in checkpoint.pt: --resume used to refuse the run as finished, and
    `unfreeze export` said to train again."""
    run = tmp_path / "run"
    assert main(["train", str(image_folder), *TINY, "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    (run / "model.unfreeze").rename(tmp_path / "first.unfreeze")
    capsys.readouterr()
    assert main(["export", str(run)]) == 2
    assert f"unfreeze train --resume {run}" in error_line(capsys)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert same_weights(run / "model.unfreeze", tmp_path / "first.unfreeze")
    assert main(["train", "--resume", str(run)]) == 2  # finished, with its model: nothing to do
    assert "there is nothing to resume" in error_line(capsys)
