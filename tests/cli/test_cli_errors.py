"""User errors: one line on stderr, `unfreeze: error: <what>. <fix>`, exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze.cli import main


def test_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["train", str(tmp_path / "nowhere"), *TINY], capsys)
    assert "nowhere" in line and "is not a directory" in line
    assert not (tmp_path / "runs").exists()


def test_folder_without_class_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    run_user_error(["train", str(tmp_path / "empty"), *TINY, "--out", str(tmp_path / "out")], capsys)
    assert not (tmp_path / "out").exists()  # no run directory for a run that never started


def test_bad_regex(image_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["train", str(image_folder / "train" / "ant"), *TINY, "--label-re", "([a-z+"], capsys)
    assert "--label-re is not a valid regular expression" in line


def test_unknown_architecture(image_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["train", str(image_folder), "--arch", "resnet5000", "--no-pretrained"], capsys)
    assert "Unknown architecture 'resnet5000'" in line and "resnet50" in line


def test_missing_weights_file(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "resnet.safetensors"
    line = run_user_error(["train", str(image_folder), "--arch", "test_resnet", "--weights", str(missing)], capsys)
    assert str(missing) in line and "--weights" in line


def test_weights_that_are_a_folder_or_no_state_dict(image_folder: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--weights DIR said 'Weights file not found' though DIR is there; a .pth of a list said only that."""
    import torch

    tiny = [flag for flag in TINY if flag != "--no-pretrained"]
    line = run_user_error(["train", str(image_folder), *tiny, "--weights", str(tmp_path)], capsys)
    assert "is a folder, not a weights file" in line and "not found" not in line
    torch.save([1, 2], tmp_path / "list.pth")
    line = run_user_error(["train", str(image_folder), *tiny, "--weights", str(tmp_path / "list.pth")], capsys)
    assert "holds a list, not a state dict" in line and "torch.save(model.state_dict()" in line


def test_no_pretrained_weights_available(image_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # test_resnet has no bundled weights and the machine is offline (the offline fixture).
    line = run_user_error(["train", str(image_folder), "--arch", "test_resnet", "--size", "16"], capsys)
    assert "No pretrained weights found" in line and "--no-pretrained" in line


def test_output_under_a_regular_file(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    line = run_user_error(["train", str(image_folder), *TINY, "--out", str(blocker / "run")], capsys)
    assert "cannot create the run directory" in line and "--out" in line


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root ignores file permissions")
def test_output_in_a_read_only_folder(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = run_user_error(["train", str(image_folder), *TINY, "--out", str(locked / "run")], capsys)
    finally:
        locked.chmod(0o700)
    assert "cannot create the run directory" in line


def test_bad_command_line_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["train", "data", "--lr", "fast"], capsys)
    assert "--lr must be 'auto' or a number" in line and "--help" in line
    run_user_error(["train", "data", "--label-re", "x", "--csv", "y.csv"], capsys)
    run_user_error(["train"], capsys)
    run_user_error([], capsys)


def test_predict_with_a_bad_model_file(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "model.unfreeze"
    fake.write_bytes(b"\x80\x04not really a pickle")
    image = next((image_folder / "valid" / "ant").iterdir())
    line = run_user_error(["predict", str(fake), str(image)], capsys)
    assert "pickle" in line


def test_predict_with_a_missing_model(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = next((image_folder / "valid" / "ant").iterdir())
    line = run_user_error(["predict", str(tmp_path / "nothing.unfreeze"), str(image)], capsys)
    assert "nothing.unfreeze" in line


def test_predict_missing_image(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["predict", str(trained_run), str(tmp_path / "ghost.png")], capsys)
    assert "ghost.png not found" in line


@pytest.mark.parametrize("before", [[], ["a.png"]])
def test_an_image_whose_name_starts_with_a_dash_is_named_with_the_fix(before: list[str], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # `unfreeze predict run -photo.png` said 'the following arguments are required: IMAGE_OR_FOLDER': argparse
    # reads the file name as an option, and the user, who gave an image, could not tell why.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-photo.png").write_bytes(b"x")
    line = run_user_error(["predict", "run", *before, "-photo.png"], capsys)
    assert "'-photo.png' is a file whose name starts with '-'" in line and "./-photo.png" in line


def test_predict_folder_without_images(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("no images here")
    line = run_user_error(["predict", str(trained_run), str(tmp_path / "docs")], capsys)
    assert "no image files" in line


def test_interpret_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["interpret", str(tmp_path)], capsys)
    assert "config.json not found" in line


def test_export_a_folder_without_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["export", str(tmp_path), "--onnx"], capsys)
    assert "model.unfreeze" in line


@pytest.mark.parametrize("command", ["evaluate", "report", "lr-find"])
@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_an_output_file_under_a_file_or_onto_a_folder(command: str, where: str, image_folder: Path, trained_run: Path,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """evaluate --json, report --out and lr-find --plot ended in a FileExistsError or IsADirectoryError traceback,
    evaluate and lr-find only after all their work; now one line before it."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    folder = tmp_path / "existing"
    folder.mkdir()
    target = blocker / "out.json" if where == "under a file" else folder
    option, argv = {"evaluate": ("--json", ["evaluate", str(trained_run), str(image_folder / "valid")]),
                    "report": ("--out", ["report", str(trained_run)]),
                    "lr-find": ("--plot", ["lr-find", str(image_folder), *TINY[:7]])}[command]
    line = run_user_error([*argv, option, str(target)], capsys)
    assert str(target if where == "a folder" else blocker) in line and f"Choose another {option}" in line
    assert blocker.read_text() == "a file, not a folder" and not any(folder.iterdir())


def test_evaluate_on_a_training_layout_names_the_split_to_pass(image_folder: Path, trained_run: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """evaluate on DATA itself (train/ and valid/) said the labels name classes "train, valid" the model does
    not know, with no fix."""
    line = run_user_error(["evaluate", str(trained_run), str(image_folder)], capsys)
    assert "train/ and valid/" in line and f"Pass {image_folder / 'valid'}" in line


def test_tensorboard_folder_under_a_file(image_folder: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--tensorboard's folder was first created by the writer as the first fit began: a NotADirectoryError
    traceback."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    argv = ["train", str(image_folder), *TINY, "--out", str(tmp_path / "run"), "--tensorboard", str(blocker / "tb")]
    line = run_user_error(argv, capsys)
    assert str(blocker) in line and "Choose another --tensorboard" in line
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.parametrize("flags", [["--label-delim", ";"], ["--thresholds", "per-class"],
                                   ["--label-delim=,", "--thresholds", "global"]])
def test_multi_label_options_without_multi_label_are_refused(image_folder: Path, tmp_path: Path, flags: list[str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--label-delim ';' without --multi-label trained a single-label model with a class named 'bee;ant'."""
    line = run_user_error(["train", str(image_folder), *TINY, *flags, "--out", str(tmp_path / "run")], capsys)
    assert "go" in line and "with --multi-label" in line and "single-label" in line
    assert flags[0].split("=")[0] in line and not (tmp_path / "run").exists()


def test_evaluate_with_an_empty_label_delim_is_one_line(image_folder: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`unfreeze evaluate MODEL DATA --csv labels.csv --label-delim ''` on a multi-label model ended in a
    traceback (ValueError: empty separator); train refuses the same option in one line."""
    rows = ["file,labels", *(f"{path.relative_to(image_folder)},{path.parent.name}"
                             for path in sorted(image_folder.rglob("*.png")))]
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "ml"
    assert main(["train", str(image_folder), *TINY, "--csv", "labels.csv", "--multi-label", "--out", str(run),
                 "--quiet"]) == 0
    capsys.readouterr()
    line = run_user_error(["evaluate", str(run), str(image_folder), "--csv", "labels.csv", "--label-delim", "",
                           "--quiet"], capsys)
    assert "--label-delim" in line and "non-empty" in line


def test_evaluate_refuses_a_label_delim_for_a_single_label_model(trained_run: Path, image_folder: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """evaluate --label-delim ';' on a single-label model was silently ignored: 'ant;bee' cells were read as a
    class named 'ant;bee'. It is refused as train refuses --label-delim without --multi-label."""
    rows = ["file,labels", *(f"{path.relative_to(image_folder)},{path.parent.name}"
                             for path in sorted(image_folder.rglob("*.png")))]
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    line = run_user_error(["evaluate", str(trained_run), str(image_folder), "--csv", "labels.csv",
                           "--label-delim", ";", "--quiet"], capsys)
    assert "--label-delim" in line and "single-label" in line
