"""`unfreeze train`'s recipe options: parsing, config.json, the rerun line, the resume check, conflicts."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze.cli import build_parser, main
from unfreeze.cli.recipe_options import RECIPE_FLAGS, parse_duration, recipe_options

EVERY_OPTION = ["--augment", "strong", "--no-flip", "--mixup", "0.2", "--cutmix", "1.0", "--label-smoothing", "0.1",
                "--ema", "--wd", "0.05", "--lr-mult", "10", "--pct-start", "0.25", "--div", "10",
                "--patience", "2", "--progressive", "--time-budget", "1h", "--frozen-groups", "0"]


def test_a_plain_run_records_the_recommended_recipe(trained_run: Path) -> None:
    options = json.loads((trained_run / "config.json").read_text())["options"]
    assert {key: options[key] for key in RECIPE_FLAGS} == {
        "augment": "default", "flip": "auto", "frozen_groups": 1, "head": "linear", "mixup": 0.0, "cutmix": 0.0,
        "label_smoothing": 0.0, "ema": False,
        "wd": 0.01, "lr_mult": 10.0, "pct_start": 0.5, "div": 25.0, "patience": None, "progressive": False,
        "time_budget": None, "tensorboard": None, "mlflow": None, "probe": "auto", "imbalance": "auto",
        "noise": "auto"}
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["recipe"]["name"] == "fit_recipe" and summary["recipe"]["pct_start"] == 0.5


def test_every_option_reaches_config_the_rerun_line_and_the_fit(image_folder: Path, tmp_path: Path) -> None:
    out, board = tmp_path / "run", tmp_path / "tb"
    argv = ["train", str(image_folder), *TINY, *EVERY_OPTION, "--tensorboard", str(board), "--out", str(out),
            "--quiet"]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    options = config["options"]
    assert options["augment"] == "strong" and options["flip"] is False and options["ema"] is True
    assert (options["mixup"], options["cutmix"], options["label_smoothing"], options["wd"]) == (0.2, 1.0, 0.1, 0.05)
    assert (options["lr_mult"], options["pct_start"], options["div"]) == (10, 0.25, 10)
    assert options["patience"] == 2 and options["progressive"] is True and options["frozen_groups"] == 0
    assert options["time_budget"] == 3600 and options["epochs"] == 1 and options["tensorboard"] == str(board)
    recipe = json.loads((out / "summary.json").read_text())["recipe"]
    assert recipe["mixup"] == 0.2 and recipe["lr_mult"] == 10 and recipe["planned_epochs"] == 1
    assert any(board.rglob("events.out.tfevents.*"))
    # The rerun line parses back to the very same options.
    rerun = build_parser().parse_args(shlex.split(config["rerun"])[1:])
    rerun.argv = shlex.split(config["rerun"])[1:]  # as main() sets it: which flags were given
    assert recipe_options(rerun) == {key: options[key] for key in recipe_options(rerun)}


def test_resume_refuses_a_recipe_option_that_differs(image_folder: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", str(image_folder), *TINY, "--mixup", "0.2", "--out", str(run), "--quiet"]) == 0
    (run / "summary.json").unlink()  # as if it had been interrupted after its last checkpoint
    assert "--mixup 0.4 (the run used 0.2)" in run_user_error(["train", "--resume", str(run), "--mixup", "0.4"],
                                                              capsys)
    assert "--no-flip False (the run used 'auto')" in run_user_error(["train", "--resume", str(run), "--no-flip"],
                                                                     capsys)
    assert "--flip True (the run used 'auto')" in run_user_error(["train", "--resume", str(run), "--flip"], capsys)
    assert "--pct-start 0.3 (the run used 0.5)" in run_user_error(
        ["train", "--resume", str(run), "--pct-start", "0.3"], capsys)


@pytest.mark.parametrize("option,value,expected", [
    ("--time-budget", "soon", "duration such as 10m"),
    ("--time-budget", "0", "duration such as 10m"),
    ("--mixup", "-1", "--mixup takes a number >= 0"),
    ("--label-smoothing", "1", "--label-smoothing takes a number in [0, 1)"),
    ("--lr-mult", "0.5", "--lr-mult takes a number >= 1"),
    ("--pct-start", "1", "--pct-start takes a number in [0, 1)"),
    ("--div", "inf", "--div takes a number >= 1"),
    ("--patience", "0", "--patience takes a whole number"),
    ("--augment", "heavy", "invalid choice"),
])
def test_bad_recipe_values_are_one_line(image_folder: Path, option: str, value: str, expected: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert expected in run_user_error(["train", str(image_folder), *TINY, option, value], capsys)


def test_conflicting_options_fail_before_a_run_directory_exists(image_folder: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["file,labels", *(f"{path.relative_to(image_folder)},{path.parent.name}"
                             for path in sorted(image_folder.rglob("*.png")))]
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    line = run_user_error(["train", str(image_folder), *TINY, "--csv", "labels.csv", "--multi-label",
                           "--label-smoothing", "0.1", "--out", str(out)], capsys)
    assert "Drop --label-smoothing" in line
    line = run_user_error(["train", str(image_folder), *TINY, "--csv", "labels.csv", "--multi-label",
                           "--noise", "filter", "--out", str(tmp_path / "filter")], capsys)
    assert "noise='filter' applies to single-label data" in line
    line = run_user_error(["train", str(image_folder), *TINY, "--time-budget", "0.0001s", "--out", str(out)], capsys)
    assert line.startswith("unfreeze: error: --time-budget (0.0001 s) is shorter than one epoch")
    assert "Give at least" in line
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed here")
def test_mlflow_without_the_package_says_how_to_install_it(image_folder: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["train", str(image_folder), *TINY, "--mlflow", "pets", "--out", str(tmp_path / "r")],
                          capsys)
    assert "pip install 'unfreeze[mlflow]'" in line and not (tmp_path / "r").exists()


def test_durations() -> None:
    assert [parse_duration(text) for text in ("10m", "90s", "1.5h", "600")] == [600, 90, 5400, 600]


def test_a_run_from_before_the_recipe_options_resumes_with_fine_tune(image_folder: Path, tmp_path: Path) -> None:
    from unfreeze import ImageDataLoaders, vision_learner

    run = tmp_path / "run"
    assert main(["train", str(image_folder), *TINY, "--out", str(run), "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    config["options"] = {key: value for key, value in config["options"].items() if key not in RECIPE_FLAGS}
    (run / "config.json").write_text(json.dumps(config))
    # The checkpoint such a run wrote: fine_tune's, on the same data and model.
    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, seed=0)
    vision_learner(dls, "test_resnet", pretrained=False, seed=0, quiet=True).fine_tune(
        1, base_lr=config["options"]["lr"], checkpoint=run / "checkpoint.pt")
    (run / "summary.json").unlink()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["recipe"]["name"] == "fine_tune"


def test_a_long_tailed_run_says_its_plan_and_decisions_and_reports_balanced_scores(make_image_folder, tmp_path,
                                                                                    capsys) -> None:
    # Issue 27: nothing adapted to a lopsided folder, and the error alone hid the rare classes.
    root = make_image_folder(classes=("ant", "bee", "cat"), n_train=18, n_valid=4)
    for path in sorted((root / "train" / "cat").iterdir())[3:]:
        path.unlink()  # 18 / 18 / 3 images: 6x
    out = tmp_path / "run"
    assert main(["train", str(root), "--arch", "test_resnet", "--no-pretrained", "--size", "16", "--epochs", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "plan: 39 images, batch size 16" in printed and "imbalance='auto': logit adjustment" in printed
    assert "noise='auto': plain cross-entropy" in printed
    summary = json.loads((out / "summary.json").read_text())
    recipe = summary["recipe"]
    assert recipe["plan"]["batch_size"] == 16 and recipe["plan"]["probe"] is False  # the probe is asked for
    assert (recipe["imbalance_chosen"], recipe["noise_chosen"]) == ("logit_adjust", "none")
    assert set(summary["balanced"]) == {"balanced_accuracy", "macro_f1"}
    assert len(summary["disagreements"]) == 20 and {"path", "label", "loss"} <= set(summary["disagreements"][0])
    report = (out / "report.html").read_text()
    assert "plan: 39 images" in report and "most disagrees with" in report
    # --resume reuses the decisions: the checkpoint's recipe holds them, and a different one is refused.
    options = json.loads((out / "config.json").read_text())["options"]
    assert (options["batch_size"], options["probe"], options["imbalance"], options["noise"]) == (
        "auto", "auto", "auto", "auto")
    assert "--bs" not in json.loads((out / "config.json").read_text())["rerun"]


def test_evaluate_reports_balanced_scores_on_imbalanced_labels(trained_run, make_image_folder, capsys) -> None:
    root = make_image_folder(classes=("ant", "bee", "cat"), n_train=1, n_valid=9)
    for path in sorted((root / "valid" / "cat").iterdir())[2:]:
        path.unlink()
    assert main(["evaluate", str(trained_run / "model.unfreeze"), str(root / "valid")]) == 0
    assert "balanced_accuracy" in capsys.readouterr().out
