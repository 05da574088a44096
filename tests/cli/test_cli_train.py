"""`unfreeze train`, `lr-find` and the run directory, through `main([...])` in-process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze import Recipe, __version__
from unfreeze.cli import main

RUN_FILES = {"config.json", "history.csv", "checkpoint.pt", "model.unfreeze", "summary.json", "loss.png", "sched.png",
             "confusion_matrix.png", "top_losses.png"}


def test_train_writes_a_complete_run_directory(image_folder: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "ants"
    assert main(["train", str(image_folder), *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert {path.name for path in out.iterdir()} >= RUN_FILES
    assert "lr_find.png" not in {path.name for path in out.iterdir()}
    # The results table (one line per epoch in a pipe), the final metrics and where the plots are.
    assert "train_loss" in printed and "valid_loss" in printed and "accuracy" in printed
    assert f"Plots: {out / 'loss.png'}" in printed and str(out / "top_losses.png") in printed
    assert str(out / "reliability.png") in printed.split("Plots: ")[1] and (out / "reliability.png").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["unfreeze_version"] == __version__
    assert config["options"]["arch"] == "test_resnet" and config["options"]["pretrained"] is False
    assert config["options"]["data"] == str(image_folder.resolve())
    assert config["rerun"].startswith("unfreeze train ") and "--no-pretrained" in config["rerun"]
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0
    assert summary["lr"]["base_lr"] == pytest.approx(Recipe().base_lr) and summary["lr"]["chosen_by"] == "--lr"
    assert summary["device"] == "cpu" and summary["wall_time_s"] > 0
    assert set(summary["versions"]) >= {"unfreeze", "torch", "timm"}
    assert summary["data"] == {"train": 24, "valid": 12, "classes": ["ant", "bee", "cat"]}
    with (out / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]  # the frozen and the unfrozen epoch, both kept


def test_the_config_reruns_the_run(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "first"
    assert main(["train", str(image_folder), *TINY, "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    rerun = config["rerun"].split()[1:]
    assert rerun[0] == "train"
    assert main([*rerun, "--quiet"]) == 0
    again = json.loads((tmp_path / "first-2" / "summary.json").read_text())
    first = json.loads((out / "summary.json").read_text())
    assert again["final"]["valid_loss"] == pytest.approx(first["final"]["valid_loss"], rel=1e-5)


def test_existing_run_directory_gets_a_fresh_name(image_folder: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["train", str(image_folder), *TINY, "--out", str(out), "--quiet", "--freeze-epochs", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"{out} exists; this run goes to {tmp_path / 'run-2'}" in printed
    assert (out / "keep.txt").read_text() == "mine" and not (out / "config.json").exists()
    assert (tmp_path / "run-2" / "model.unfreeze").is_file()


def test_overwrite_reuses_a_run_directory(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", str(image_folder), *TINY, "--out", str(out), "--quiet", "--freeze-epochs", "0"]
    assert main(args) == 0
    assert main([*args, "--overwrite"]) == 0
    assert not (tmp_path / "run-2").exists()
    with (out / "history.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 1  # the old history was cleared, not appended to


def test_overwrite_refuses_a_folder_that_is_not_a_run(image_folder: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"precious")
    code = main(["train", str(image_folder), *TINY, "--out", str(tmp_path / "photos"), "--overwrite"])
    assert code == 2 and "is not a run directory" in capsys.readouterr().err
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"precious"


def test_overwrite_refuses_a_file(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --out naming a file with --overwrite used to train into notes.txt-2 and print "--overwrite reuses notes.txt".
    (tmp_path / "notes.txt").write_text("mine")
    code = main(["train", str(image_folder), *TINY, "--out", str(tmp_path / "notes.txt"), "--overwrite"])
    captured = capsys.readouterr()
    assert code == 2 and "is a file, not a run directory" in captured.err and "Traceback" not in captured.err
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "notes.txt-2").exists()
    assert main(["train", str(image_folder), *TINY, "--out", str(tmp_path / "notes.txt"), "--quiet"]) == 0
    printed = capsys.readouterr().out  # without --overwrite: a fresh name, and no hint that would not work
    assert f"this run goes to {tmp_path / 'notes.txt-2'}." in printed and "--overwrite" not in printed


def test_default_out_is_runs_data_arch(image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(image_folder), *TINY, "--quiet", "--freeze-epochs", "0"]) == 0
    assert (tmp_path / "runs" / "images-test_resnet" / "summary.json").is_file()


def test_lr_auto_runs_lr_find_and_keeps_its_plot(image_folder: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "auto"
    assert main(["train", str(image_folder), *TINY, "--lr", "auto", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lr"]["chosen_by"] == "lr_find valley"
    assert summary["lr"]["base_lr"] == pytest.approx(summary["lr"]["suggestions"]["valley"])
    assert (out / "lr_find.png").stat().st_size > 1000
    assert str(out / "lr_find.png") in capsys.readouterr().out


def test_quiet_prints_only_the_run_directory(image_folder: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "quiet"
    assert main(["train", str(image_folder), *TINY, "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out)


def test_flat_class_folders_are_split_by_valid_pct(make_image_folder, tmp_path: Path) -> None:
    root = make_image_folder(classes=("ant", "bee"), n_train=8, n_valid=2, flat=True)
    out = tmp_path / "flat"
    assert main(["train", str(root), *TINY, "--valid-pct", "0.25", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["data"]["valid"] == 5


def test_label_re_labels_by_file_name(make_image_folder, tmp_path: Path) -> None:
    root = make_image_folder(classes=("ant", "bee"), n_train=8, n_valid=2, flat=True)
    files = tmp_path / "pets"
    files.mkdir()
    for image in root.rglob("*.png"):
        image.rename(files / image.name)  # ant_3.png, bee_0.png, ...
    out = tmp_path / "re"
    assert main(["train", str(files), *TINY, "--label-re", r"^([a-z]+)_\d+\.png$", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["data"]["classes"] == ["ant", "bee"]


def test_csv_labels(make_image_folder, tmp_path: Path) -> None:
    root = make_image_folder(classes=("ant", "bee"), n_train=8, n_valid=2, flat=True)
    table = tmp_path / "labels.csv"
    lines = ["file,label"] + [f"{image.relative_to(root)},{image.parent.name}" for image in sorted(root.rglob("*.png"))]
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "csv"
    assert main(["train", str(root), *TINY, "--csv", str(table), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["data"]["train"] == 16


def test_lr_find_command_plots_and_suggests(image_folder: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "plots" / "lr.png"
    code = main(["lr-find", str(image_folder), "--arch", "test_resnet", "--no-pretrained", "--size", "16", "--bs", "4",
                 "--num-it", "20", "--plot", str(plot)])
    assert code == 0 and plot.stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "valley" in printed and "Train with: unfreeze train" in printed


def test_lr_find_with_fewer_than_six_iterations_is_a_one_line_error(image_folder: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # --num-it 3 used to pass the command line and end in lr_find's ValueError traceback.
    line = run_user_error(["lr-find", str(image_folder), "--arch", "test_resnet", "--no-pretrained", "--size", "16",
                           "--num-it", "3", "--plot", str(tmp_path / "lr.png")], capsys)
    assert "--num-it" in line and ">= 6" in line and "'3'" in line


def test_lr_find_with_a_plot_format_matplotlib_cannot_write_stops_before_the_test(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --plot lr.txt used to run the whole range test, then end in matplotlib's ValueError traceback.
    line = run_user_error(["lr-find", str(image_folder), "--arch", "test_resnet", "--no-pretrained", "--size", "16",
                           "--num-it", "6", "--plot", str(tmp_path / "lr.txt")], capsys)
    assert "lr.txt" in line and ".png" in line
    assert not (tmp_path / "lr.txt").exists()


def test_help_of_every_command_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("train", "lr-find", "predict", "interpret", "export", "demo"):
        assert main([command, "--help"]) == 0
        assert "examples:" in capsys.readouterr().out
    assert main(["train", "--help"]) == 0
    assert "--no-pretrained" in capsys.readouterr().out


def test_python_dash_m_help_runs_the_same_command() -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "unfreeze", "--help"], capture_output=True, text=True,
                            timeout=300, env=environment)
    assert result.returncode == 0
    for command in ("train", "lr-find", "predict", "interpret", "export", "demo"):
        assert command in result.stdout


def test_a_csv_is_valid_column_that_train_does_not_read_is_named(image_folder: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A CSV with fastai's is_valid column trained on a random --valid-pct split, saying nothing: the rows the
    user marked for validation were trained on. The column is named in a warning, with the split used."""
    rows = ["file,labels,is_valid", *(f"{path.relative_to(image_folder)},{path.parent.name},"
                                      f"{path.parent.parent.name == 'valid'}"
                                      for path in sorted(image_folder.rglob("*.png")))]
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    assert main(["train", str(image_folder), *TINY, "--csv", "labels.csv", "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "'is_valid'" in err and "--valid-pct 0.2" in err
