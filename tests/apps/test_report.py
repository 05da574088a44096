"""report.html: self-contained, every section, written by train and by `unfreeze report`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cli_helpers import run_user_error
from unfreeze.apps import AppError
from unfreeze.apps.report import SECTIONS, best_epoch, write_report
from unfreeze.cli import main


def test_train_writes_a_report_with_every_section(trained_app_run: Path) -> None:
    page = (trained_app_run / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    assert "actual → predicted" in page
    assert "unfreeze train " in page  # the rerun command


def test_the_report_is_self_contained(trained_app_run: Path, tmp_path: Path) -> None:
    page = write_report(trained_app_run, tmp_path / "report.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched from a network
    assert "<script" not in page
    embedded = re.findall(r'src="data:image/png;base64,', page)
    drawn = [name for name in ("loss.png", "sched.png", "lr_find.png", "confusion_matrix.png", "top_losses.png",
                               "reliability.png") if (trained_app_run / name).is_file()]
    assert len(embedded) == len(drawn) >= 4


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
