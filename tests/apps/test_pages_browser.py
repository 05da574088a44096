"""The pages in a real browser: Playwright driving Debian's chromium (never a downloaded browser).

Set UNFREEZE_SCREENSHOT_DIR to also save the pages' screenshots there (docs/serve.png, docs/report.png and
docs/clean.png in the README come from `UNFREEZE_SCREENSHOT_DIR=docs pytest tests/apps/test_pages_browser.py`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import app_helpers
import pytest
from app_helpers import folder_cleaner, multi_label_cleaner, serving

from unfreeze.apps.report import SECTIONS

pytestmark = pytest.mark.slow
TIMEOUT_MS = 20_000


def wait_until(page: Any, expression: str) -> None:
    app_helpers.wait_until(page, expression, TIMEOUT_MS)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that records console errors and failed requests in `page.problems`."""
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    new_page = context.new_page()
    new_page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    new_page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    new_page.on("pageerror", lambda error: problems.append(str(error)))
    new_page.problems = problems
    yield new_page
    context.close()


@pytest.fixture(scope="module")
def serve_url(trained_app_run: Path) -> Iterator[str]:
    from unfreeze.apps.serve import ServeSettings, create_app, load_model

    with serving(create_app(load_model(trained_app_run), "ant-bee-cat", ServeSettings(top_k=3))) as url:
        yield url


def test_uploading_an_image_shows_its_label_and_bars(page: Any, serve_url: str, trained_app_run: Path,
                                                     tmp_path: Path) -> None:
    page.goto(serve_url)
    wait_until(page, "document.getElementById('model-info').textContent.includes('3 classes')")
    images = [trained_app_run.parent / "images" / "valid" / name / f"{name}_0.png" for name in ("ant", "bee", "cat")]
    page.set_input_files("#files", [str(path) for path in images])
    page.wait_for_selector(".result:nth-child(3) .label")
    labels = page.locator(".result .label").all_inner_texts()
    assert len(labels) == 3 and all(label.split(" (")[0] in ("ant", "bee", "cat")
                                    or label.startswith("not one of the 3 classes") for label in labels)
    # In the order chosen (the page drew each request's answers last file first).
    assert page.locator(".result .file").all_inner_texts() == ["ant_0.png", "bee_0.png", "cat_0.png"]
    assert page.locator(".result").first.locator(".bars li").count() == 3
    assert page.locator(".result img").first.evaluate("image => image.naturalWidth") > 0
    screenshot = page.screenshot(path=str(tmp_path / "serve.png"))
    assert len(screenshot) > 1000
    if os.environ.get("UNFREEZE_SCREENSHOT_DIR"):
        shutil.copy(tmp_path / "serve.png", Path(os.environ["UNFREEZE_SCREENSHOT_DIR"]) / "serve.png")
    assert page.problems == []


def test_a_regression_model_is_described_and_answered_with_numbers_not_as_multi_label(page: Any,
                                                                                       tmp_path: Path) -> None:
    """The page called a regression model multi-label and showed its number with a "(0.0%)" probability."""
    import httpx

    from cli_helpers import TINY
    from unfreeze.apps.serve import ServeSettings, create_app, load_model
    from unfreeze.cli import main

    root = tmp_path / "grey"
    rows = ["file,bright"]
    for index in range(12):
        rows.append(f"{app_helpers.write_png(root / f'{index:02d}.png', (20 * index,) * 3, seed=index).name},"
                    f"{index / 11:.3f}")
    (root / "targets.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    assert main(["train", str(root), *TINY, "--task", "regression", "--csv", "targets.csv", "--out", str(run),
                 "--quiet"]) == 0
    with serving(create_app(load_model(run), "grey", ServeSettings())) as url:
        assert httpx.get(f"{url}/health", timeout=30).json()["multi_label"] is False
        page.goto(url)
        wait_until(page, "document.getElementById('model-info').textContent.includes('bright')")
        assert "multi-label" not in page.inner_text("#model-info") and "regression" in page.inner_text("#model-info")
        page.set_input_files("#files", [str(root / "03.png")])
        page.wait_for_selector(".result .label")
        label = page.inner_text(".result .label")
    assert label.startswith("bright=") and "%" not in label
    assert page.problems == []


def test_a_file_over_the_limit_gets_its_413_and_the_others_their_answers(page: Any, learner_for_pages: Any,
                                                                         trained_app_run: Path, tmp_path: Path) -> None:
    """One file over --max-upload-mb made the whole request 413: the page lost the other files' answers."""
    from app_helpers import write_png

    from unfreeze.apps.serve import ServeSettings, create_app

    big = write_png(tmp_path / "big.png", (10, 10, 10), size=(400, 400))
    small = [trained_app_run.parent / "images" / "valid" / name / f"{name}_1.png" for name in ("ant", "cat")]
    with serving(create_app(learner_for_pages, "tiny", ServeSettings(max_upload_mb=0.01))) as url:
        page.goto(url)
        wait_until(page, "document.getElementById('model-info').textContent.includes('3 classes')")
        page.set_input_files("#files", [str(small[0]), str(big), str(small[1])])
        page.wait_for_selector(".result:nth-child(3) .label")
        assert page.locator(".result .file").all_inner_texts() == ["ant_1.png", "big.png", "cat_1.png"]
        cards = page.locator(".result")
        assert cards.nth(1).get_attribute("data-status") == "413"
        assert cards.nth(1).locator(".label").inner_text().startswith("413: big.png: larger than the limit")
        for index in (0, 2):
            label = cards.nth(index).locator(".label").inner_text()
            assert label.split(" (")[0] in ("ant", "bee", "cat") or label.startswith("not one of the 3 classes")
            assert cards.nth(index).locator(".bars li").count() >= 1
        assert page.inner_text("#status") == ""
    assert page.problems == []


@pytest.fixture(scope="module")
def learner_for_pages(trained_app_run: Path) -> Any:
    from unfreeze.apps.serve import load_model

    return load_model(trained_app_run)


def test_a_non_image_shows_an_error_and_the_page_keeps_working(page: Any, serve_url: str, trained_app_run: Path,
                                                               tmp_path: Path) -> None:
    page.goto(serve_url)
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo")
    page.set_input_files("#files", str(notes))
    page.wait_for_selector(".result.error")
    assert "not a readable image" in page.inner_text(".result.error .label")
    assert "no uploaded file could be read" in page.inner_text("#status")
    page.set_input_files("#files", str(trained_app_run.parent / "images" / "valid" / "bee" / "bee_1.png"))
    page.wait_for_selector(".result:not(.error) .label")
    assert page.inner_text(".result:not(.error) .label").split(" (")[0] in ("ant", "bee", "cat")
    assert page.inner_text("#status") == ""
    # The server's 422 answer is logged by the browser as a failed resource; nothing else may fail.
    assert [problem for problem in page.problems if "422" not in problem] == []


def test_the_cleaning_page_relabels_removes_applies_and_undoes(page: Any,
                                                              run_copy: Callable[[], tuple[Path, Path]]) -> None:
    from unfreeze.apps.clean_app import create_clean_app

    run, images = run_copy()
    with serving(create_clean_app(folder_cleaner(run, images))) as url:
        page.goto(url)
        page.wait_for_selector(".tile")
        assert page.locator(".tile").count() == 36
        page.select_option("#split", "train")
        wait_until(page, "document.querySelectorAll('.tile').length === 24")
        page.locator(".tile", has=page.locator(".name", has_text="ant_0.png")).locator("select").select_option(
            "relabel:cat")
        page.locator(".tile", has=page.locator(".name", has_text="bee_1.png")).locator("select").select_option(
            "remove")
        assert page.inner_text("#apply") == "Apply 2 changes"
        page.click("#apply")
        wait_until(page, "document.getElementById('status').textContent.startsWith('applied')")
        assert (images / "train" / "cat" / "ant_0.png").is_file()
        assert not (images / "train" / "ant" / "ant_0.png").exists()
        assert (run / "removed" / "train" / "bee" / "bee_1.png").is_file()
        assert (run / "cleaning" / "log.csv").read_text().count("\n") == 3
        wait_until(page, "document.querySelectorAll('.tile').length === 23")
        page.click("#undo")
        wait_until(page, "document.getElementById('status').textContent.startsWith('undone')")
        assert (images / "train" / "ant" / "ant_0.png").is_file() and (images / "train" / "bee" / "bee_1.png").is_file()
        assert not (images / "train" / "cat" / "ant_0.png").exists()
        wait_until(page, "document.querySelectorAll('.tile').length === 24")
        page.click("#undo")  # nothing left to undo: said on the page, nothing breaks
        wait_until(page, "document.getElementById('status').textContent.includes('nothing to undo')")
    assert [problem for problem in page.problems if "400" not in problem] == []


def test_the_cleaning_page_edits_a_multi_label_set_and_filters_by_any_label(page: Any, tmp_path: Path) -> None:
    from unfreeze.apps.clean_app import create_clean_app

    cleaner, table = multi_label_cleaner(tmp_path)
    with serving(create_clean_app(cleaner)) as url:
        page.goto(url)
        wait_until(page, "document.querySelectorAll('.tile').length === 3")
        page.select_option("#label", "primary")  # a.png is "haze;primary": it matches
        wait_until(page, "document.querySelectorAll('.tile').length === 1")
        tile = page.locator(".tile", has=page.locator(".name", has_text="a.png"))
        assert [box.is_checked() for box in tile.locator("input[type=checkbox]").all()] == [False, True, True]
        assert tile.locator("select option").all_inner_texts() == ["keep", "remove"]  # no "relabel as X"
        tile.locator("label", has_text="primary").locator("input").uncheck()
        tile.locator("label", has_text="clear").locator("input").check()
        assert page.inner_text("#apply") == "Apply 1 change"
        tile.locator("label", has_text="clear").locator("input").uncheck()
        tile.locator("label", has_text="primary").locator("input").check()
        assert page.inner_text("#apply") == "Apply 0 changes"  # back to its own set: no change
        tile.locator("label", has_text="clear").locator("input").check()
        page.click("#apply")
        wait_until(page, "document.getElementById('status').textContent.startsWith('applied')")
        assert table.with_name("labels.cleaned.csv").read_text().splitlines() == [
            "image,tags", "a.png,clear;haze;primary", "b.png,clear", "c.png,"]  # in class order
        page.select_option("#label", "clear")
        wait_until(page, "document.querySelectorAll('.tile').length === 2")
    assert page.problems == []


def test_the_report_opens_without_console_errors_and_shows_every_section(page: Any, trained_app_run: Path) -> None:
    page.goto((trained_app_run / "report.html").as_uri())
    for section in SECTIONS:
        assert page.locator(f"#{section}").is_visible(), section
    widths = page.locator("img.plot").evaluate_all("images => images.map(image => image.naturalWidth)")
    assert len(widths) >= 4 and all(width > 100 for width in widths)
    assert "unfreeze train" in page.inner_text("#rerun")
    assert page.locator("#history tbody tr").count() >= 2
    assert page.problems == []


def test_every_automatic_decision_is_readable_beside_its_long_name(page: Any, trained_app_run: Path) -> None:
    """The decisions' names sat in a max-content column: the long name of the disagreements entry took the
    whole width, and every decision's text wrapped one syllable per line (a section 20 000 px tall)."""
    page.goto((trained_app_run / "report.html").as_uri())
    assert page.locator("#decisions dt").all_inner_texts()[-1].startswith("training images the model most disagrees")
    list_width = page.locator("dl.decisions").bounding_box()["width"]
    text_widths = page.locator("dl.decisions > dd").evaluate_all("items => items.map(item => item.offsetWidth)")
    assert text_widths and min(text_widths) > list_width / 2, (text_widths, list_width)


def test_the_rerun_command_is_copied_with_one_click(browser: Any, trained_app_run: Path, tmp_path: Path) -> None:
    """The rerun command scrolled sideways with no copy button; the button copies it to the clipboard."""
    from unfreeze.apps.report import write_report

    report = write_report(trained_app_run, tmp_path / "report.html")
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    try:
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        copy_page = context.new_page()
        problems: list[str] = []
        copy_page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        copy_page.on("pageerror", lambda error: problems.append(str(error)))
        copy_page.goto(report.as_uri())
        if os.environ.get("UNFREEZE_SCREENSHOT_DIR"):  # the top of the page: outcome, decisions, curves
            copy_page.set_viewport_size({"width": 1100, "height": 1000})
            copy_page.screenshot(path=str(Path(os.environ["UNFREEZE_SCREENSHOT_DIR"]) / "report.png"))
        command = copy_page.inner_text("#rerun-command")
        assert command.startswith("unfreeze train ")
        # The block wraps instead of scrolling sideways.
        assert copy_page.evaluate("(() => { const e = document.getElementById('rerun-command');"
                                  " return e.scrollWidth <= e.clientWidth; })()")
        copy_page.click("#copy-rerun")
        wait_until(copy_page, "document.getElementById('copy-rerun').textContent !== 'Copy'")
        assert copy_page.inner_text("#copy-rerun") == "Copied"
        assert copy_page.evaluate("window.getSelection().toString()") == command
        assert copy_page.evaluate("navigator.clipboard.readText()") == command
        assert problems == []
    finally:
        context.close()


def test_the_comparison_page_shows_the_runs_side_by_side(page: Any, trained_app_run: Path, tmp_path: Path) -> None:
    from unfreeze.apps.compare import write_comparison

    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(trained_app_run, first)
    shutil.copytree(trained_app_run, second)
    page.goto(write_comparison([first, second], tmp_path / "compare.html").as_uri())
    assert page.locator("table.compare thead th").all_inner_texts() == ["", "first", "second"]
    assert page.locator("table.compare tbody tr").count() >= 8
    assert page.locator("img.plot").evaluate("image => image.naturalWidth") > 100
    assert page.problems == []


def tile_facts(page: Any) -> list[dict[str, str]]:
    """Each tile's name, label, guess and loss as the page shows them, in grid order."""
    return page.locator(".tile").evaluate_all("""tiles => tiles.map(tile => ({
        name: tile.querySelector('.name').textContent, label: tile.querySelector('.now').textContent,
        guess: tile.querySelector('.guess').textContent.split(' ')[1],
        loss: Number(tile.querySelector('.facts').textContent.split('loss ')[1]),
        accept: !tile.querySelector('.accept').disabled, current: tile.classList.contains('current')}))""")


def test_the_cleaning_page_works_from_the_keyboard(page: Any, run_copy: Callable[[], tuple[Path, Path]]) -> None:
    """Issue 25: remove, relabel by digit and accept the guess with keys only, apply with Ctrl+Enter; the files
    move on disk, the grid is re-sorted by the new losses, undo restores everything and leaves no empty
    folder under removed/, and the server logs one line per apply and undo."""
    from unfreeze.apps.clean_app import create_clean_app

    run, images = run_copy()
    lines: list[str] = []
    with serving(create_clean_app(folder_cleaner(run, images), log=lines.append)) as url:
        page.goto(url)
        page.select_option("#split", "train")
        wait_until(page, "document.querySelectorAll('.tile').length === 24")
        page.locator("body").click(position={"x": 5, "y": 5})  # the keys go to the page, not a control
        tiles = tile_facts(page)
        assert tiles[0]["current"] and page.inner_text("#apply") == "Apply 0 changes"
        assert page.locator("#apply").is_disabled()
        # Disabled looks disabled: grey text and the not-allowed cursor, not the primary blue.
        assert page.eval_on_selector("#apply", "b => getComputedStyle(b).cursor") == "not-allowed"
        classes = ["ant", "bee", "cat"]
        removed = tiles[0]
        page.keyboard.press("x")  # remove the worst one; the next tile becomes current
        relabelled = tiles[1]
        new_class = next(name for name in classes if name != relabelled["label"])
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press(str(classes.index(new_class) + 1))  # a digit relabels as that class
        accepted_at = next(index for index, tile in enumerate(tiles) if index >= 2 and tile["accept"])
        for _ in range(accepted_at - 2):
            page.keyboard.press("j")
        accepted = tiles[accepted_at]
        page.keyboard.press("a")  # accept the model's guess
        page.keyboard.press("x")  # mark the next one, then take it back with Space
        page.keyboard.press("k")
        page.keyboard.press(" ")
        assert page.inner_text("#apply") == "Apply 3 changes"
        assert not page.locator("#apply").is_disabled()
        if os.environ.get("UNFREEZE_SCREENSHOT_DIR"):
            page.set_viewport_size({"width": 1100, "height": 800})
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(Path(os.environ["UNFREEZE_SCREENSHOT_DIR"]) / "clean.png"))
        loaded = page.evaluate("document.getElementById('grid').dataset.loaded")
        page.keyboard.press("Control+Enter")
        wait_until(page, "document.getElementById('status').textContent.startsWith('applied')")
        wait_until(page, f"document.getElementById('grid').dataset.loaded !== '{loaded}'")
        removed_label = removed["label"]
        assert (run / "removed" / "train" / removed_label / removed["name"]).is_file()
        assert not (images / "train" / removed_label / removed["name"]).exists()
        assert (images / "train" / new_class / relabelled["name"]).is_file()
        assert (images / "train" / accepted["guess"] / accepted["name"]).is_file()
        after = tile_facts(page)
        assert len(after) == 23
        assert [tile["loss"] for tile in after] == sorted((tile["loss"] for tile in after), reverse=True)
        moved = {tile["name"]: tile for tile in after}
        assert moved[accepted["name"]]["label"] == accepted["guess"]
        assert moved[accepted["name"]]["loss"] < accepted["loss"]  # the guess is likelier: a smaller loss
        loaded = page.evaluate("document.getElementById('grid').dataset.loaded")
        page.click("#undo")
        wait_until(page, "document.getElementById('status').textContent.startsWith('undone')")
        wait_until(page, f"document.getElementById('grid').dataset.loaded !== '{loaded}'")
        for tile in (removed, relabelled, accepted):
            assert (images / "train" / tile["label"] / tile["name"]).is_file(), tile
        assert not (run / "removed").exists()  # its emptied folders are gone too
        assert [(tile["name"], tile["loss"]) for tile in tile_facts(page)] == [
            (tile["name"], tile["loss"]) for tile in tiles]  # the old order and losses are back
    assert len(lines) == 2
    assert lines[0].startswith("unfreeze clean: apply of 3 change(s): 2 relabelled, 1 removed; log ")
    assert lines[1].startswith("unfreeze clean: undo: 3 change(s) reversed")
    assert page.problems == []


LONG_NAME = "ünïcødé_" + "x" * 160  # one word, no place to break: a class or file name as users make them
SCROLLS_SIDEWAYS = "document.documentElement.scrollWidth > document.documentElement.clientWidth"


def test_a_long_class_name_does_not_push_the_report_sideways(page: Any, trained_app_run: Path, tmp_path: Path) -> None:
    """A 160-letter class name (and a history column as long) widened the per-class and history tables and the
    outcome's "most confused" line past the window: the whole report scrolled sideways. Such a name now breaks."""
    import json

    from unfreeze.apps.report import write_report

    run = tmp_path / "run"
    shutil.copytree(trained_app_run, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["report"] = {(LONG_NAME if name == "cat" else name): value for name, value in summary["report"].items()}
    summary["most_confused"] = [[LONG_NAME, "ant", 2]]
    (run / "summary.json").write_text(json.dumps(summary))
    history = (run / "history.csv").read_text().splitlines()
    (run / "history.csv").write_text("\n".join([f"{history[0]},{LONG_NAME}"] + [f"{row},1" for row in history[1:]]))
    page.goto(write_report(run, tmp_path / "report.html").as_uri())
    assert all(LONG_NAME in page.inner_text(f"#{section}") for section in ("outcome", "per-class", "history"))
    assert not page.evaluate(SCROLLS_SIDEWAYS)
    assert page.problems == []


def test_a_long_class_or_file_name_does_not_push_the_upload_page_sideways(page: Any, serve_url: str,
                                                                          trained_app_run: Path) -> None:
    """A long class name overflowed the answer's label and its bar: the upload page scrolled sideways. It now
    wraps, and the bar grows to hold it."""
    import json

    image = trained_app_run.parent / "images" / "valid" / "ant" / "ant_0.png"
    answer = {"predictions": [{"file": f"{LONG_NAME}.png", "label": LONG_NAME, "probability": 0.9, "unknown": False,
                               "top_k": [{"label": LONG_NAME, "probability": 0.9}]}]}
    page.route("**/predict", lambda route: route.fulfill(status=200, content_type="application/json",
                                                         body=json.dumps(answer)))
    page.goto(serve_url)
    wait_until(page, "document.getElementById('model-info').textContent.includes('3 classes')")
    page.set_input_files("#files", [str(image)])
    page.wait_for_selector(".result .label")
    assert LONG_NAME in page.inner_text(".result .label")
    assert not page.evaluate(SCROLLS_SIDEWAYS)
    bar, text = page.locator(".bars li").bounding_box(), page.locator(".bar-text").bounding_box()
    assert text["y"] + text["height"] <= bar["y"] + bar["height"] + 1, (text, bar)
    assert page.problems == []


def test_a_long_class_name_leaves_the_cleaning_tiles_readable(page: Any, tmp_path: Path) -> None:
    """A guess with a long class name took the whole tile line: the image's own label, squeezed beside it,
    stood one letter per line ("a", "&", "b"...), and the Class filter, as wide as that name, pushed the page
    sideways. The guess now moves under the label, and the filter keeps a bounded width."""
    from app_helpers import write_png

    from unfreeze.apps.clean import Cleaner, CleanItem
    from unfreeze.apps.clean_app import create_clean_app

    root = tmp_path / "images"
    items = [CleanItem(index, write_png(root / "train" / "a&b" / f"{index}.png", (200, 40, 40), seed=index), "train",
                       "a&b", LONG_NAME, 0.8, 2.0 - index) for index in range(2)]
    cleaner = Cleaner(tmp_path / "run", {"data": str(root)}, items, classes=["a&b", LONG_NAME])
    with serving(create_clean_app(cleaner)) as url:
        page.goto(url)
        wait_until(page, "document.querySelectorAll('.tile').length === 2")
        label = page.locator(".tile .now").first
        assert label.inner_text() == "a&b"
        one_line = page.locator(".tile .name").first.bounding_box()["height"]  # bold, the same size, one line
        assert label.bounding_box()["height"] <= one_line + 1
        assert not page.evaluate(SCROLLS_SIDEWAYS)
    assert page.problems == []


def json_answer(body: str) -> Callable[[Any], None]:
    """A Playwright route handler that answers with `body` as JSON (the page's view of a server answer)."""
    return lambda route: route.fulfill(status=200, content_type="application/json", body=body)


def test_one_output_or_one_class_is_said_in_the_singular(page: Any, serve_url: str) -> None:
    """A regression model of one output was described as "1 outputs: bright"."""
    import json

    for task, expected in (("regression", "regression, 1 output: bright"),
                           ("single_label", "single-label, 1 class: bright")):
        health = {"model": "grey", "arch": "resnet18", "classes": ["bright"], "task": task, "top_k": 1}
        page.route("**/health", json_answer(json.dumps(health)))
        page.goto(serve_url)
        wait_until(page, "document.getElementById('model-info').textContent.includes('bright')")
        assert page.inner_text("#model-info") == f"resnet18, {expected}"
        page.unroute("**/health")
    assert page.problems == []


def test_a_file_name_with_quotes_and_markup_is_shown_as_chosen(page: Any, serve_url: str, trained_app_run: Path,
                                                              tmp_path: Path) -> None:
    """The browser sends a '"' in a file name as %22 (the HTML form encoding): the card titled the image
    '<b>%22&.png' instead of the name the user chose. Markup in the name stays text."""
    name = '<b onmouseover=alert(1)>"it\'s" & more.png'
    image = tmp_path / name
    shutil.copy(trained_app_run.parent / "images" / "valid" / "bee" / "bee_0.png", image)
    page.goto(serve_url)
    wait_until(page, "document.getElementById('model-info').textContent.includes('3 classes')")
    page.set_input_files("#files", [str(image)])
    page.wait_for_selector(".result .label")
    assert page.inner_text(".result .file") == name
    assert page.locator(".result .file b").count() == 0 and page.get_attribute(".result img", "alt") == name
    assert page.problems == []


def test_the_report_fits_a_phone_wide_window(browser: Any, trained_app_run: Path) -> None:
    """The two plots side by side (loss per step, schedule) had columns of at least 420 px: in a window under
    460 px wide (a phone) the whole report scrolled sideways. They now stack in one column there."""
    context = browser.new_context(viewport={"width": 375, "height": 700})
    try:
        narrow = context.new_page()
        narrow.goto((trained_app_run / "report.html").as_uri())
        assert narrow.locator(".pair img.plot").count() == 2
        assert not narrow.evaluate(SCROLLS_SIDEWAYS)
    finally:
        context.close()


def test_more_images_than_one_request_takes_are_all_answered_in_order(page: Any, serve_url: str,
                                                                      trained_app_run: Path, tmp_path: Path) -> None:
    """Choosing 70 photos at once got no answer at all: the page sent them in one request, which the server
    refuses over 64 files ("Send fewer per request"). The page now sends them in several requests."""
    source = trained_app_run.parent / "images" / "valid" / "ant" / "ant_0.png"
    images = [tmp_path / f"photo_{index:02d}.png" for index in range(70)]
    for image in images:
        shutil.copy(source, image)
    page.goto(serve_url)
    wait_until(page, "document.getElementById('model-info').textContent.includes('3 classes')")
    page.set_input_files("#files", [str(image) for image in images])
    wait_until(page, "document.querySelectorAll('.result .label').length === 70")
    assert page.locator(".result .file").all_inner_texts() == [image.name for image in images]
    assert page.locator(".result.error").count() == 0
    wait_until(page, "document.getElementById('status').textContent === ''")
    assert page.problems == []


def test_a_filter_that_matches_no_image_says_so(page: Any, tmp_path: Path) -> None:
    """A split or class with no image left the page blank under the toolbar, as if it had not loaded."""
    from unfreeze.apps.clean_app import create_clean_app

    cleaner, _ = multi_label_cleaner(tmp_path)  # its three images are all in the training split
    with serving(create_clean_app(cleaner)) as url:
        page.goto(url)
        wait_until(page, "document.querySelectorAll('.tile').length === 3")
        assert not page.locator("#empty").is_visible()
        page.select_option("#split", "valid")
        wait_until(page, "document.querySelectorAll('.tile').length === 0")
        assert page.locator("#empty").is_visible()
        assert page.inner_text("#empty") == "No image in this split and class."
        page.keyboard.press("x")  # nothing to act on: nothing breaks
        page.select_option("#split", "")
        wait_until(page, "document.querySelectorAll('.tile').length === 3")
        assert not page.locator("#empty").is_visible()
    assert page.problems == []


def test_an_error_page_that_is_not_json_is_named_by_its_status(page: Any, serve_url: str,
                                                              trained_app_run: Path) -> None:
    """A proxy's or server's HTML error page (a 502) was reported as "the server did not answer (SyntaxError:
    ...)" on upload, and left "loading the model description…" with an uncaught error in the console."""
    html = "<html><body>Bad Gateway</body></html>"
    page.route("**/health", lambda route: route.fulfill(status=502, content_type="text/html", body=html))
    page.route("**/predict", lambda route: route.fulfill(status=502, content_type="text/html", body=html))
    page.goto(serve_url)
    wait_until(page, "document.getElementById('model-info').textContent.includes('502')")
    assert page.inner_text("#model-info") == "the server answered 502"
    page.set_input_files("#files", str(trained_app_run.parent / "images" / "valid" / "ant" / "ant_0.png"))
    wait_until(page, "document.getElementById('status').textContent.includes('502')")
    assert page.inner_text("#status") == "the server answered 502"
    assert [problem for problem in page.problems if "502" not in problem] == []


def test_an_unknown_image_of_a_one_class_model_is_not_one_of_1_classes(page: Any, serve_url: str,
                                                                     trained_app_run: Path) -> None:
    """A one-class model's unknown answer read "not one of the 1 classes"."""
    import json

    health = {"model": "x", "arch": "resnet18", "classes": ["bright"], "task": "multi_label", "top_k": 1}
    answer = {"predictions": [{"file": "a.png", "label": ["bright"], "probability": 0.7, "unknown": True,
                               "top_k": [{"label": "bright", "probability": 0.7}]}]}
    page.route("**/health", json_answer(json.dumps(health)))
    page.route("**/predict", json_answer(json.dumps(answer)))
    page.goto(serve_url)
    wait_until(page, "document.getElementById('model-info').textContent.includes('bright')")
    page.set_input_files("#files", [str(trained_app_run.parent / "images" / "valid" / "ant" / "ant_0.png")])
    page.wait_for_selector(".result .label")
    assert page.inner_text(".result .label").startswith("not the model's one class (closest: bright")
    assert page.problems == []


def test_the_cleaning_page_names_a_non_json_error_by_its_status(page: Any, tmp_path: Path) -> None:
    """A proxy's HTML 502 for /api/items read "cannot load the images: Unexpected token '<' ..."."""
    from unfreeze.apps.clean_app import create_clean_app

    cleaner, _ = multi_label_cleaner(tmp_path)
    html = "<html><body>Bad Gateway</body></html>"
    with serving(create_clean_app(cleaner)) as url:
        page.route("**/api/items*", lambda route: route.fulfill(status=502, content_type="text/html", body=html))
        page.goto(url)
        wait_until(page, "document.body.innerText.includes('502')")
        assert "the server answered 502" in page.inner_text("body") and "Unexpected token" not in page.inner_text(
            "body")
    assert [problem for problem in page.problems if "502" not in problem] == []
