"""report.html and a hostile or damaged run directory: nothing from the run's files runs as script,
a damaged file is one line naming it, and only regular PNG files inside the run are embedded."""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import run_user_error
from unfreeze.apps.compare import write_comparison
from unfreeze.apps.report import write_report
from unfreeze.apps.templates import report_script

# Each one sets window.__pwned or opens a dialog if it ever runs.
ATTACKS = ['<img src=x onerror="window.__pwned=1;alert(1)">', "<script>window.__pwned=2;alert(2)</script>",
           '"><svg onload="window.__pwned=3">', "</pre><script>window.__pwned=4</script>",
           "</style><script>window.__pwned=5</script>", "javascript:window.__pwned=6"]
HOSTILE = " ".join(ATTACKS)


@pytest.fixture
def copied_run(trained_app_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained_app_run, run)
    return run


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


def hostile_run(run: Path) -> Path:
    """Every data field of summary.json, config.json and history.csv that the report shows, set to markup."""
    def summary(content: dict) -> None:
        content["data"] = {"train": HOSTILE, "valid": HOSTILE, "classes": [HOSTILE]}
        content["device"] = HOSTILE
        content["lr_retry"] = HOSTILE
        content["threshold"] = {"threshold": HOSTILE}
        content["kept"] = {"best_epoch": 1, "monitor": HOSTILE, "kept": "best", "best_value": 0.5}
        content["final"] = {HOSTILE: 0.5}
        content["report"] = {HOSTILE: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}}
        content["versions"] = {"unfreeze": HOSTILE}
        # The decisions-like sections are rendered generically, keys and values alike.
        content["plan"] = {HOSTILE: HOSTILE, "steps": [HOSTILE, {"why": HOSTILE}]}
        content["notes"] = [f"flip {HOSTILE}"]
        content["most_confused"] = [[HOSTILE, HOSTILE, 3]]
        content["phases"] = [{"name": HOSTILE, "start_epoch": 0, "end_epoch": 0, "frozen_to": 0, "n_groups": 1}]
        content["confusion_matrix"] = [[1]]

    def config(content: dict) -> None:
        content["options"]["arch"] = HOSTILE
        content["options"]["data"] = HOSTILE
        content["rerun"] = HOSTILE

    edit_json(run / "summary.json", summary)
    edit_json(run / "config.json", config)
    column = HOSTILE.replace(",", " ")
    (run / "history.csv").write_text(f"epoch,train_loss,valid_loss,{column}\n0,1.0,0.9,{HOSTILE!r}\n")
    hostile = run.parent / HOSTILE.replace("/", "_")[:120]
    run.rename(hostile)  # the folder name is the page's title
    return hostile


def test_markup_in_every_run_file_field_is_shown_as_text(copied_run: Path) -> None:
    """The data counts of summary.json went into the page unescaped: an <img onerror> ran when it was opened."""
    run = hostile_run(copied_run)
    page = write_report(run).read_text()
    assert "<script>window" not in page and "<img src=x" not in page and "<svg onload" not in page
    assert "&lt;img src=x onerror=" in page  # shown, as text
    found = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert found is not None
    policy = html.unescape(found.group(1))
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy
    # The one script allowed is the package's copy button, by its hash.
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/]+=*';", policy)
    assert page.count("<script>") == 1 and report_script() in page


def test_markup_in_two_runs_is_shown_as_text_on_the_comparison_page(copied_run: Path, tmp_path: Path) -> None:
    second = tmp_path / "second"
    shutil.copytree(copied_run, second)
    page = write_comparison([hostile_run(copied_run), second], tmp_path / "compare.html").read_text()
    assert "<script" not in page and "<img src=x" not in page and "<svg onload" not in page
    assert "&lt;img src=x onerror=" in page
    assert "script-src 'none'" in html.unescape(page)


@pytest.mark.slow
def test_a_hostile_report_runs_no_script_in_a_browser(copied_run: Path, browser: Any) -> None:
    report = write_report(hostile_run(copied_run))
    dialogs: list[str] = []
    page = browser.new_page()
    try:
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)  # an onerror handler runs after the failed image load
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert HOSTILE.split(" ")[0] in page.inner_text("#outcome")  # the markup is there, as text
        # The plots still show under the policy (data: images and the hashed stylesheet are allowed).
        widths = page.locator("img.plot").evaluate_all("images => images.map(image => image.naturalWidth)")
        assert len(widths) >= 4 and all(width > 100 for width in widths)
        # style.css's body colour (#101828), not the browser's black: the hashed inline style applies.
        assert page.evaluate("getComputedStyle(document.body).color") == "rgb(16, 24, 40)"
    finally:
        page.close()
    assert dialogs == []


@pytest.mark.parametrize(("damage", "named"), [
    (lambda run: (run / "history.csv").write_bytes(b"epoch,valid_loss\n0,\xff\xfe0.5\n"), "history.csv"),
    (lambda run: (run / "history.csv").write_text("epoch,valid_loss\n0,0.5,0.7,extra\n"), "history.csv"),
    (lambda run: edit_json(run / "summary.json", lambda content: content.update(final=[1, 2])), "summary.json"),
    (lambda run: edit_json(run / "summary.json", lambda content: content.update(data="many")), "summary.json"),
    (lambda run: edit_json(run / "summary.json", lambda content: content.update(report={"cat": 3})), "summary.json"),
    (lambda run: edit_json(run / "summary.json", lambda content: content.update(kept={"best_epoch": "x"})),
     "summary.json"),
    (lambda run: edit_json(run / "summary.json", lambda content: content.update(interrupted="yes")), "summary.json"),
    (lambda run: edit_json(run / "summary.json", lambda content: content["data"].update(classes=[1, None])),
     "summary.json"),
    (lambda run: edit_json(run / "config.json", lambda content: content.update(options=[])), "config.json"),
    (lambda run: edit_json(run / "config.json", lambda content: content.update(rerun={"a": 1})), "config.json"),
    (lambda run: (run / "config.json").write_bytes(b"\xff\xfe{}"), "config.json"),
    (lambda run: (run / "summary.json").write_text("[" * 100_000), "summary.json"),
    (lambda run: edit_json(run / "summary.json", lambda content: content.update(notes=5)), "summary.json"),
], ids=["history-not-utf8", "history-long-row", "final-list", "data-text", "report-number",
        "kept-text", "interrupted-text", "classes-numbers", "options-list", "rerun-object", "config-not-utf8",
        "summary-deep", "notes-number"])
def test_a_damaged_run_file_is_one_line_naming_it(copied_run: Path, damage: Callable[[Path], None], named: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Each of these gave a traceback (UnicodeDecodeError, TypeError, AttributeError, RecursionError)."""
    damage(copied_run)
    line = run_user_error(["report", str(copied_run)], capsys)
    assert str(copied_run / named) in line


def test_a_plot_linked_to_a_file_outside_the_run_is_not_embedded(copied_run: Path, tmp_path: Path) -> None:
    """A symbolic link loss.png → a secret file elsewhere put that file's bytes into the shared page."""
    secret = tmp_path / "secret.png"
    shutil.copy(copied_run / "loss.png", secret)  # even a real PNG: it is not the run's
    secret.write_bytes(secret.read_bytes() + b"SECRET-TOKEN-1234")
    (copied_run / "loss.png").unlink()
    (copied_run / "loss.png").symlink_to(secret)
    (copied_run / "sched.png").unlink()
    (copied_run / "sched.png").symlink_to("/etc/passwd")
    page = write_report(copied_run).read_text()
    assert "loss.png is a link to a file outside the run directory" in page
    assert "sched.png is a link to a file outside the run directory" in page
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    import base64

    assert all(b"SECRET-TOKEN" not in base64.b64decode(data) for data in embedded)
    assert all(b"root:" not in base64.b64decode(data) for data in embedded)


def test_only_regular_png_files_are_embedded(copied_run: Path) -> None:
    import os

    (copied_run / "lr_find.png").unlink(missing_ok=True)
    os.mkfifo(copied_run / "lr_find.png")  # reading a FIFO would hang the report
    (copied_run / "sched.png").write_text("not an image at all")
    inside = copied_run / "plots-copy.png"
    shutil.copy(copied_run / "loss.png", inside)
    (copied_run / "loss.png").unlink()
    (copied_run / "loss.png").symlink_to(inside)  # a link inside the run directory is fine
    page = write_report(copied_run).read_text()
    assert "lr_find.png is not a regular file" in page
    assert "sched.png is not a PNG image" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= 2  # loss (through the link) and others


@pytest.mark.parametrize("rows", ["0,1,-1e308,0.5,0.5,1\n1,1,1e308,0.5,0.5,1\n",  # a span that overflows
                                  "0,nan,nan,nan,nan,nan\n1,inf,-inf,inf,1e308,1e999\n",
                                  "-1e308,1,1,0.5,0.5,1\n1e308,1,1,0.5,0.5,1\n"], ids=["loss", "metric", "epoch"])
def test_numbers_too_large_to_draw_in_the_history_leave_the_curves_out_not_the_report(
        copied_run: Path, tmp_path: Path, rows: str, capsys: pytest.CaptureFixture[str]) -> None:
    """matplotlib cannot scale an axis from -1e308 to 1e308 (LinAlgError, or arange's ValueError): a history.csv
    holding such numbers gave `unfreeze report` a traceback, and the comparison page too."""
    (copied_run / "history.csv").write_text("epoch,train_loss,valid_loss,error_rate,accuracy,time\n" + rows)
    from unfreeze.cli import main

    assert main(["report", str(copied_run)]) == 0, capsys.readouterr().err
    assert 'id="curves"' in (copied_run / "report.html").read_text()
    other = tmp_path / "other"
    shutil.copytree(copied_run, other)
    assert main(["report", str(copied_run), str(other), "--out", str(tmp_path / "compare.html")]) == 0, \
        capsys.readouterr().err
