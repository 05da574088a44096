"""report.html: self-contained, every section, written by train and by `unfreeze report`."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from cli_helpers import run_user_error
from unfreeze.apps import AppError
from unfreeze.apps.compare import write_comparison
from unfreeze.apps.report import SECTIONS, best_epoch, format_seconds, write_report
from unfreeze.cli import main
from unfreeze.plots import sched_figure
from unfreeze.train.callbacks import Recorder


def test_train_writes_a_report_with_every_section(trained_app_run: Path) -> None:
    page = (trained_app_run / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    assert "actual → predicted" in page
    assert "unfreeze train " in page  # the rerun command
    calibration = json.loads((trained_app_run / "summary.json").read_text())["calibration"]
    assert f"temperature {calibration['temperature']:.4g} ± {calibration['temperature_se']:.4g} (one standard" in page


def test_the_report_is_self_contained(trained_app_run: Path, tmp_path: Path) -> None:
    page = write_report(trained_app_run, tmp_path / "report.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched from a network
    assert page.count("<script") == 1 and "<script src" not in page  # the copy button's, inline
    embedded = re.findall(r'src="data:image/png;base64,', page)
    drawn = [name for name in ("loss.png", "sched.png", "lr_find.png", "confusion_matrix.png", "examples.png",
                               "top_losses.png", "reliability.png") if (trained_app_run / name).is_file()]
    # The stored plots, and the curves per epoch drawn from the history (the confusion matrix is redrawn).
    assert len(embedded) == len(drawn) + 1 >= 6


def test_the_report_reads_only_the_run_directory(trained_app_run: Path, tmp_path: Path) -> None:
    """A copied run directory, without its data or anything else, gives the same report."""
    copy = tmp_path / "copied-run"
    shutil.copytree(trained_app_run, copy)
    (copy / "model.unfreeze").unlink()
    (copy / "lr_find.png").unlink(missing_ok=True)
    page = write_report(copy).read_text()
    assert "lr_find.png was not drawn for this run" in page
    history = (copy / "history.csv").read_text().splitlines()
    assert page.count("<tr>") >= len(history)  # the history rows (header included) are all there


def test_the_report_command_prints_the_path(trained_app_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(trained_app_run, copy)
    (copy / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    assert capsys.readouterr().out.strip() == str(copy / "report.html")
    assert (copy / "report.html").stat().st_size > 10_000


def test_a_folder_that_is_not_a_finished_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "not a run directory" in run_user_error(["report", str(tmp_path)], capsys)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(AppError, match="has not finished"):
        write_report(tmp_path)


def test_best_epoch_follows_the_metric_direction() -> None:
    rows = [{"epoch": "0", "valid_loss": "0.9", "accuracy": "0.6"}, {"epoch": "1", "valid_loss": "0.8",
                                                                      "accuracy": "0.5"}]
    assert best_epoch(rows) == ("accuracy", rows[0])
    errors = [{"epoch": 0, "valid_loss": 0.9, "error_rate": 0.4}, {"epoch": 1, "valid_loss": 1.0, "error_rate": 0.3}]
    assert best_epoch(errors) == ("error_rate", errors[1])
    no_metric = [{"epoch": 0, "train_loss": 1.0, "valid_loss": 0.5, "time": 3}]
    assert best_epoch(no_metric) == ("valid_loss", no_metric[0])
    assert best_epoch([]) is None


def test_the_best_epoch_of_a_regression_run_has_the_lowest_error() -> None:
    """A regression run's first metric is mae (mse, rmse): the report called the epoch with the largest error
    the best, while training kept (and the report's decisions named) the epoch with the smallest."""
    for metric in ("mae", "mse", "rmse"):
        rows = [{"epoch": 0, "valid_loss": 15.3, metric: 3.2, "r2_score": -2.1},
                {"epoch": 1, "valid_loss": 14.3, metric: 3.0, "r2_score": -1.9}]
        assert best_epoch(rows) == (metric, rows[1])
    scores = [{"epoch": 0, "valid_loss": 0.5, "r2_score": 0.7}, {"epoch": 1, "valid_loss": 0.6, "r2_score": 0.6}]
    assert best_epoch(scores) == ("r2_score", scores[0])


def section(page: str, name: str) -> str:
    found = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert found is not None, name
    return found.group(1)


def test_the_report_explains_the_run(trained_app_run: Path, tmp_path: Path) -> None:
    """Issue 25: phases named, decisions in their own section, rounded times, versions, both confusion
    matrices, the confident examples; the old page had none of these."""
    page = write_report(trained_app_run, tmp_path / "report.html").read_text()
    curves = section(page, "curves")
    assert "1. frozen (head only), epoch 0" in curves and "2. unfrozen (group 1 + head), epoch 1" in curves
    assert 'alt="losses beside the metrics per epoch, phases marked"' in curves
    decisions = section(page, "decisions")
    for decision in ("horizontal flip", "input size", "learning rate", "epoch exported"):
        assert f"<dt>{decision}</dt>" in decisions, decision
    assert "<dt>training plan</dt>" in decisions and "batch size" in decisions  # the plan line, from the notes
    history = section(page, "history")
    times = re.findall(r"<td>([0-9.]+ s)</td>", history)
    assert len(times) == 2 and all(re.fullmatch(r"\d+\.\d s", time) for time in times)
    assert not re.search(r"\d+\.\d{4} s", page)  # no "51.6400 s"
    versions = section(page, "versions")
    assert "<td>torch</td>" in versions and "<td>python</td>" in versions
    assert "counts, and normalised by actual class" in section(page, "confusion-matrix")
    assert "most confident right and wrong" in section(page, "examples")
    assert "most confused (actual → predicted)" in section(page, "outcome")
    assert 'id="copy-rerun"' in section(page, "rerun")


def test_decisions_that_other_parts_add_are_shown_whatever_their_fields(trained_app_run: Path,
                                                                      tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_app_run, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["plan"] = {"recipe": "long", "why": {"images": 24, "classes": 3}, "steps": ["freeze", "unfreeze"]}
    summary["calibration"] = {"temperature": 1.3712, "ece_before": 0.12, "ece_after": 0.03}
    summary["decisions"] = {"class_weights": "balanced", "nested": [{"a": True}]}
    (run / "summary.json").write_text(json.dumps(summary))
    decisions = section(write_report(run).read_text(), "decisions")
    for text in ("<dt>plan</dt>", "recipe</span>: long", "images</span>: 24", "freeze, unfreeze",
                 "<dt>calibration</dt>", "temperature</span>: 1.371",
                 "class_weights</span>: balanced", "a</span>: yes"):
        assert text in decisions, text


def test_format_seconds_rounds_for_people() -> None:
    assert [format_seconds(value) for value in (0.0923, 51.64, "51.64", 185.2, 7450, None, "x")] == [
        "0.1 s", "51.6 s", "51.6 s", "3 min 5 s", "2 h 4 min", "", "x"]


def test_the_schedule_draws_only_the_groups_that_trained(tmp_path: Path) -> None:
    """frozen_groups=1 keeps group 0 frozen in every phase: the old schedule drew its LR curve anyway."""
    recorder = Recorder()
    recorder.phases = [{"start_step": 0, "start_epoch": 0, "frozen_to": 2, "n_groups": 3},
                       {"start_step": 4, "start_epoch": 1, "frozen_to": 1, "n_groups": 3}]
    recorder.lrs = [[1e-3, 1e-3, 1e-2]] * 8
    recorder.moms = [0.9] * 8
    axis = sched_figure(recorder).axes[0]
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["group 1", "head"]
    group_1 = axis.get_lines()[0].get_ydata()
    assert [math.isnan(value) for value in group_1] == [True] * 4 + [False] * 4  # it trained from step 4 on


def test_report_with_several_runs_writes_a_comparison_page(trained_app_run: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "runs" / "first", tmp_path / "runs" / "second"
    shutil.copytree(trained_app_run, first)
    shutil.copytree(trained_app_run, second)
    summary = json.loads((second / "summary.json").read_text())
    summary["wall_time_s"] = 185.2
    (second / "summary.json").write_text(json.dumps(summary))
    assert main(["report", str(first), str(second)]) == 0
    page_path = Path(capsys.readouterr().out.strip())
    assert page_path == tmp_path / "runs" / "comparison.html"
    page = page_path.read_text()
    assert "<th>first</th><th>second</th>" in page and "3 min 5 s on cpu" in page
    assert page.count("unfreeze train ") == 2 and "<script" not in page
    assert main(["report", str(first), str(second), "--out", str(tmp_path / "c.html")]) == 0
    assert (tmp_path / "c.html").is_file()
    with pytest.raises(AppError, match="two or more"):
        write_comparison([first])
    assert "not a run directory" in run_user_error(["report", str(first), str(tmp_path)], capsys)


def test_runs_of_the_same_name_in_two_projects_get_distinct_columns_and_curves(
        trained_app_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """project_a/runs/pets beside project_b/runs/pets were both headed 'runs/pets', and one run's curves
    replaced the other's (the plot's runs were keyed by that name)."""
    import unfreeze.plots

    runs = [tmp_path / project / "runs" / "pets" for project in ("project_a", "project_b")]
    for run in runs:
        shutil.copytree(trained_app_run, run)
    drawn: list[list[str]] = []
    compare_figure = unfreeze.plots.compare_figure
    monkeypatch.setattr(unfreeze.plots, "compare_figure",
                        lambda histories: drawn.append(list(histories)) or compare_figure(histories))
    page = write_comparison(runs, tmp_path / "c.html").read_text()
    assert "<th>project_a/runs/pets</th><th>project_b/runs/pets</th>" in page
    assert drawn == [["project_a/runs/pets", "project_b/runs/pets"]]
    write_comparison([runs[0], runs[0]], tmp_path / "c.html")  # the same run twice: still two columns
    assert drawn[-1] == ["pets (1)", "pets (2)"]


def test_an_out_path_that_is_a_folder_is_one_line(trained_app_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """'--out reports/' (an existing folder), or a folder named report.html in the run: os.replace's
    IsADirectoryError came out as a traceback."""
    folder = tmp_path / "reports"
    folder.mkdir()
    line = run_user_error(["report", str(trained_app_run), "--out", str(folder)], capsys)
    assert f"{folder} is a folder" in line and str(folder / "report.html") in line
    line = run_user_error(["report", str(trained_app_run), str(trained_app_run), "--out", str(folder)], capsys)
    assert f"{folder} is a folder" in line and str(folder / "comparison.html") in line
    run = tmp_path / "run"
    shutil.copytree(trained_app_run, run)
    (run / "report.html").unlink()
    (run / "report.html").mkdir()
    assert f"{run / 'report.html'} is a folder" in run_user_error(["report", str(run)], capsys)
    assert list(folder.iterdir()) == []


def test_a_regression_run_counts_outputs_not_classes(trained_app_run: Path, tmp_path: Path) -> None:
    """A regression run's data "classes" are its output names: the report and the comparison said "1 classes"."""
    run = tmp_path / "value_run"
    shutil.copytree(trained_app_run, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["data"]["classes"], summary["task"] = ["value"], {"name": "regression", "points": False, "loss": "mse"}
    (run / "summary.json").write_text(json.dumps(summary))
    page = write_report(run, tmp_path / "report.html").read_text()
    assert "validation images, 1 output" in page and "1 classes" not in page
    comparison = write_comparison([run, trained_app_run], tmp_path / "comparison.html").read_text()
    assert "valid, 1 output" in comparison and "valid, 3 classes" in comparison
    assert "see Calibration below" not in comparison


def test_a_regression_report_speaks_of_outputs_and_errors_not_classes_and_probabilities(trained_app_run: Path,
                                                                                       tmp_path: Path) -> None:
    """A regression run's report headed its table "Per class", its top losses "actual → predicted (probability)"
    and its examples "Most confident", and linked "confusion" and "per class": words of a classifier, for a
    model that predicts numbers."""
    run = tmp_path / "value_run"
    shutil.copytree(trained_app_run, run)
    config = json.loads((run / "config.json").read_text())
    config["options"]["task"] = "regression"
    (run / "config.json").write_text(json.dumps(config))
    page = write_report(run, tmp_path / "report.html").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", page) + re.findall(r'<a href="#[^"]+">([^<]+)</a>', page)
    words = " ".join(headings).lower()
    assert not any(word in words for word in ("class", "probability", "confiden", "confusion")), headings
    assert "Per output" in headings
    classifier_page = write_report(trained_app_run, tmp_path / "classifier.html").read_text()
    assert "<h2>Per class</h2>" in classifier_page and "(probability)" in classifier_page


def test_a_multi_label_calibration_names_no_softmax_and_no_missing_accuracy(trained_app_run: Path,
                                                                           tmp_path: Path) -> None:
    """A multi-label run's calibration section called its sigmoid probabilities "raw softmax" and ended with
    "accuracy on all of them -, on those not flagged -" (a multi-label run has no such accuracy)."""
    run = tmp_path / "tags_run"
    shutil.copytree(trained_app_run, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["task"] = {"name": "multi_label", "threshold": 0.5}
    for key in ("accuracy_all", "accuracy_unflagged"):
        summary["calibration"]["unknown"].pop(key, None)
    (run / "summary.json").write_text(json.dumps(summary))
    page = write_report(run, tmp_path / "report.html").read_text()
    section = re.sub(r"<[^>]+>", " ", page.split('<section id="calibration">')[1].split("</section>")[0])
    section = " ".join(section.split())
    assert "softmax" not in section and " -" not in section, section
    assert "Unknown flag: method knn" in section and "of the validation images." in section
    single = write_report(trained_app_run, tmp_path / "single.html").read_text()
    assert "accuracy on all of them" in single  # a single-label run still says it


def test_a_run_interrupted_before_its_first_epoch_shows_no_placeholders(trained_app_run: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the first epoch left a summary without device, recipe or LR source: the report read "0.4 s in
    all on ?", "horizontal flip: none (asked: none): flip='auto': flips on" and "chosen by ?"."""
    from cli_helpers import TINY
    from unfreeze.train.callbacks import Recorder

    def interrupt(callback: object, epoch: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Recorder, "before_epoch", interrupt)
    run = tmp_path / "cut"
    assert main(["train", str(trained_app_run.parent / "images"), *TINY, "--quiet", "--out", str(run)]) == 130
    main_part = (run / "report.html").read_text().split("<main>")[1].split("</main>")[0]
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main_part)).split())
    assert "interrupted before the planned epochs ended" in text
    assert " ?" not in text and "(asked: none)" not in text and "none (asked" not in text, text[:1500]
    assert "horizontal flip flip='auto'" in text and "learning rate 4.00e-03" in text


def test_a_multi_label_report_says_why_it_has_no_confusion_matrix(trained_app_run: Path, tmp_path: Path) -> None:
    """A multi-label run's confusion section read 'confusion_matrix.png was not drawn for this run', as if a
    plot had failed; such a run never has one."""
    run = tmp_path / "tags_run"
    shutil.copytree(trained_app_run, run)
    (run / "confusion_matrix.png").unlink()
    summary = json.loads((run / "summary.json").read_text())
    summary["task"], summary["confusion_matrix"] = {"name": "multi_label", "threshold": 0.5}, None
    (run / "summary.json").write_text(json.dumps(summary))
    page = write_report(run, tmp_path / "report.html").read_text()
    section = page.split('<section id="confusion-matrix">')[1].split("</section>")[0]
    assert "was not drawn" not in section and "multi-label" in section and "per-class" in section


def test_per_class_thresholds_are_named_by_their_class(trained_app_run: Path, tmp_path: Path) -> None:
    """A --thresholds per-class run's decisions read 'one per class' and then 'threshold: 0.5, 0.02, 0.48':
    which class decided at 0.02 was left to the reader's guess of the order."""
    run = tmp_path / "tags_run"
    shutil.copytree(trained_app_run, run)
    summary = json.loads((run / "summary.json").read_text())
    thresholds = [0.5, 0.02, 0.48]
    summary["task"] = {"name": "multi_label", "threshold": thresholds}
    summary["threshold"] = {"threshold": thresholds, "chosen_by": "F1 on the validation set", "f1": 0.74,
                            "previous": 0.5, "previous_f1": 0.55}
    (run / "summary.json").write_text(json.dumps(summary))
    page = write_report(run, tmp_path / "report.html").read_text()
    assert summary["data"]["classes"] == ["ant", "bee", "cat"]
    assert "ant 0.5, bee 0.02, cat 0.48" in page
