"""runs.Run: a run directory's lifecycle, on real files (the CLI tests run it end to end)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from unfreeze import runs

OPTIONS = {"data": "/data/pets", "arch": "resnet18", "size": 64, "bs": 8, "valid_pct": 0.2, "seed": 0, "epochs": 2,
           "freeze_epochs": 1, "lr": "auto", "pretrained": False, "train_bn": None}


def test_a_new_run_gets_a_fresh_folder_and_its_config(tmp_path: Path) -> None:
    first = runs.Run.create(tmp_path / "pets")
    first.write_config(OPTIONS, ["train", "/data/pets"])
    second = runs.Run.create(tmp_path / "pets")
    assert second.folder == tmp_path / "pets-2"
    config = json.loads(first.config_file.read_text())
    assert config["rerun"].startswith("unfreeze train /data/pets --arch resnet18")
    assert "--no-pretrained" in config["rerun"]
    assert runs.Run.open(first.folder).options(("data", "epochs"))["epochs"] == 2


def test_opening_a_folder_that_is_no_run_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(runs.RunDirError, match=r"config\.json not found\. --resume takes"):
        runs.Run.open(tmp_path, "--resume takes a run directory written by 'unfreeze train'")
    run = runs.Run(tmp_path)
    runs.write_json(run.config_file, {"options": {"data": "x"}})
    with pytest.raises(runs.RunConfigError, match="lacks the options epochs; it cannot be resumed"):
        run.options(("data", "epochs"), "it cannot be resumed")


def test_a_resume_needs_a_checkpoint_and_an_unfinished_run(tmp_path: Path) -> None:
    run = runs.Run(tmp_path)
    run.write_config(OPTIONS, ["train", "/data/pets"])
    with pytest.raises(runs.RunDirError, match=r"before its first epoch ended\. Start it again with: unfreeze train"):
        run.resume_checkpoint()
    run.checkpoint_file.write_bytes(b"not a checkpoint")
    runs.write_json(run.summary_file, {"interrupted": False})
    run.export_file.write_bytes(b"its model")  # without it, the checkpoint would export the model again
    with pytest.raises(runs.RunDirError, match="there is nothing to resume"):
        run.resume_checkpoint()
    run.checkpoint_file.unlink()  # a finished run whose checkpoint was deleted to save space: still finished
    run.history_file.write_text("epoch,train_loss\n0,1.0\n1,0.9\n")
    with pytest.raises(runs.RunDirError, match=r"finished.*there is nothing to resume") as finished:
        run.resume_checkpoint()
    assert "stopped while writing" not in str(finished.value)


def test_the_history_is_rebuilt_from_the_given_rows(tmp_path: Path) -> None:
    run = runs.Run(tmp_path)
    run.history_file.write_text("epoch,train_loss\n0,1.0\n1,0.9\n2,0.8\n")  # a row after the checkpoint
    run.rewrite_history([{"epoch": 0, "train_loss": 1.0}, {"epoch": 1, "train_loss": 0.9}])
    rows = list(csv.DictReader(run.history_file.open()))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    run.rewrite_history([])
    assert not run.history_file.exists()


def test_report_hooks_run_after_each_summary_of_their_own_run(tmp_path: Path) -> None:
    seen: list[tuple[str, dict]] = []
    hook = lambda run: seen.append((run.folder.name, json.loads(run.summary_file.read_text())))  # noqa: E731
    first = runs.Run.create(tmp_path / "first").add_report_hook(hook)
    first.add_report_hook(hook)  # once per hook
    first.write_summary({"interrupted": True})
    first.write_summary({"final": {"error_rate": 0.1}})  # a resumed run writes its summary again
    runs.Run.create(tmp_path / "other").write_summary({"final": {}})  # hooks belong to a run, not to all runs
    assert seen == [("first", {"interrupted": True}), ("first", {"final": {"error_rate": 0.1}})]


def test_overwrite_clears_every_file_a_run_writes_and_nothing_else(tmp_path: Path) -> None:
    run = runs.Run.create(tmp_path / "pets")
    run.write_config(OPTIONS, ["train", "/data/pets"])
    for name in ("report.html", "history.csv", "top_losses.png"):
        run.file(name).write_text("old")
    (run.folder / "notes.txt").write_text("mine")
    assert runs.Run.create(run.folder, overwrite=True).folder == run.folder
    assert sorted(path.name for path in run.folder.iterdir()) == ["notes.txt"]
