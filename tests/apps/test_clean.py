"""Cleaning a run's data: relabel and remove move files (or write a CSV), a log, undo, never an overwrite."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from app_helpers import folder_cleaner, multi_label_cleaner

from cli_helpers import run_user_error
from unfreeze.apps import AppError
from unfreeze.apps.clean import Change, Cleaner, CleanItem
from unfreeze.cli import main


def item_named(cleaner: Cleaner, split: str, name: str) -> CleanItem:
    return next(item for item in cleaner.items.values() if item.split == split and item.path.name == name)


def log_rows(run: Path) -> list[list[str]]:
    with (run / "cleaning" / "log.csv").open(newline="") as handle:
        return list(csv.reader(handle))


def test_items_cover_both_splits_worst_loss_first(run_copy: Callable[[], tuple[Path, Path]]) -> None:
    run, images = run_copy()
    cleaner = folder_cleaner(run, images)
    assert len(cleaner.visible("train")) == 24 and len(cleaner.visible("valid")) == 12
    losses = [item.loss for item in cleaner.visible()]
    assert losses == sorted(losses, reverse=True)
    assert {item.label for item in cleaner.visible(label="bee")} == {"bee"}
    assert all(item.predicted in ("ant", "bee", "cat") for item in cleaner.visible())


def test_apply_moves_files_logs_and_undo_puts_them_back(run_copy: Callable[[], tuple[Path, Path]]) -> None:
    run, images = run_copy()
    cleaner = folder_cleaner(run, images)
    relabel, remove = item_named(cleaner, "train", "ant_0.png"), item_named(cleaner, "valid", "bee_1.png")
    done = cleaner.apply([Change(relabel.id, "cat"), Change(remove.id, None)])
    assert done["relabelled"] == 1 and done["removed"] == 1
    assert not (images / "train" / "ant" / "ant_0.png").exists()
    assert (images / "train" / "cat" / "ant_0.png").is_file()
    assert (run / "removed" / "valid" / "bee" / "bee_1.png").is_file()
    assert not (images / "valid" / "bee" / "bee_1.png").exists()
    header, first, second = log_rows(run)
    assert header == ["file", "old_label", "new_label", "time"]
    assert first[:3] == [str(images / "train" / "ant" / "ant_0.png"), "ant", "cat"]
    assert second[:3] == [str(images / "valid" / "bee" / "bee_1.png"), "bee", "removed"]
    assert remove.id not in {item.id for item in cleaner.visible()} and relabel.label == "cat"

    undone = Cleaner(run, json.loads((run / "config.json").read_text())["options"]).undo()
    assert undone == {"restored": 2, "renamed": []}
    assert (images / "train" / "ant" / "ant_0.png").is_file() and (images / "valid" / "bee" / "bee_1.png").is_file()
    assert not (images / "train" / "cat" / "ant_0.png").exists()
    assert len(log_rows(run)) == 5  # the undo is logged too
    with pytest.raises(AppError, match="nothing to undo"):
        cleaner.undo()


def test_a_name_clash_never_overwrites_a_file(run_copy: Callable[[], tuple[Path, Path]]) -> None:
    run, images = run_copy()
    cleaner = folder_cleaner(run, images)
    occupant = images / "train" / "cat" / "ant_1.png"
    occupant.write_bytes(b"someone else's file")
    item = item_named(cleaner, "train", "ant_1.png")
    cleaner.apply([Change(item.id, "cat")])
    assert occupant.read_bytes() == b"someone else's file"
    assert (images / "train" / "cat" / "ant_1-2.png").is_file()
    # The original place taken meanwhile: undo brings the file back under a new name, again overwriting nothing.
    newcomer = images / "train" / "ant" / "ant_1.png"
    newcomer.write_bytes(b"a newcomer")
    assert cleaner.undo()["renamed"] == [str(images / "train" / "ant" / "ant_1-2.png")]
    assert newcomer.read_bytes() == b"a newcomer"


def test_bad_marks_change_nothing(run_copy: Callable[[], tuple[Path, Path]]) -> None:
    run, images = run_copy()
    cleaner = folder_cleaner(run, images)
    before = sorted(path for path in images.rglob("*") if path.is_file())
    with pytest.raises(AppError, match="'dog' is not a class"):
        cleaner.apply([Change(0, "dog")])
    with pytest.raises(AppError, match="not in this run's data"):
        cleaner.apply([Change(10_000, None)])
    with pytest.raises(AppError, match="no changes"):
        cleaner.apply([])
    assert sorted(path for path in images.rglob("*") if path.is_file()) == before
    assert not (run / "cleaning").exists()


def csv_cleaner(tmp_path: Path, labels: list[tuple[str, str]]) -> tuple[Cleaner, list[CleanItem], Path]:
    """A Cleaner over data/labels.csv (name,label rows), its items, and the CSV; no model."""
    root = tmp_path / "data"
    root.mkdir()
    table = root / "labels.csv"
    table.write_text("name,label\n" + "".join(f"{name},{label}\n" for name, label in labels))
    items = [CleanItem(index, root / name, "train", label, label, 0.9, 0.1)
             for index, (name, label) in enumerate(labels)]
    for item in items:
        item.path.write_bytes(b"image")
    return Cleaner(tmp_path / "run", {"data": str(root), "csv": "labels.csv"}, items), items, table


def test_a_csv_dataset_gets_a_corrected_csv_beside_the_original(tmp_path: Path) -> None:
    cleaner, items, table = csv_cleaner(tmp_path, [("a.png", "cat"), ("b.png", "dog"), ("c.png", "cat")])
    root = table.parent
    assert cleaner.kind == "csv"
    done = cleaner.apply([Change(0, "dog"), Change(1, None)])
    cleaned = root / "labels.cleaned.csv"
    assert done["csv"] == str(cleaned)
    assert cleaned.read_text().splitlines() == ["name,label", "a.png,dog", "c.png,cat"]
    assert table.read_text() == "name,label\na.png,cat\nb.png,dog\nc.png,cat\n"  # the original is untouched
    assert all(item.path.is_file() for item in items)  # no image moves
    cleaner.apply([Change(2, "dog")])  # a second apply builds on the first
    assert cleaned.read_text().splitlines() == ["name,label", "a.png,dog", "c.png,dog"]
    cleaner.undo()
    assert cleaned.read_text().splitlines() == ["name,label", "a.png,dog", "c.png,cat"]
    cleaner.undo()
    assert not cleaned.exists() and list((tmp_path / "run" / "cleaning").glob("labels.cleaned.undone*.csv"))


def test_a_change_whose_csv_row_is_gone_changes_nothing_and_says_so(tmp_path: Path) -> None:
    # The row was removed from the CSV after training: the apply answered "1 relabelled" and logged it,
    # while the corrected CSV held no such row.
    from unfreeze.data import DataError

    cleaner, _, table = csv_cleaner(tmp_path, [("a.png", "cat"), ("b.png", "dog")])
    root = table.parent
    table.write_text("name,label\na.png,cat\n")  # b.png's row removed by hand meanwhile
    with pytest.raises(DataError, match=r"b\.png has no row in .*labels\.csv"):
        cleaner.apply([Change(0, "dog"), Change(1, "cat")])
    assert not (root / "labels.cleaned.csv").exists()
    assert not (tmp_path / "run" / "cleaning" / "log.csv").exists() or \
        "b.png" not in (tmp_path / "run" / "cleaning" / "log.csv").read_text()
    with pytest.raises(AppError, match="nothing to undo"):
        cleaner.undo()
    assert cleaner.apply([Change(0, "dog")])["relabelled"] == 1  # the other change alone goes through


def test_clean_undo_from_the_command_line(run_copy: Callable[[], tuple[Path, Path]],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    run, images = run_copy()
    assert "nothing to undo" in run_user_error(["clean", str(run), "--undo"], capsys)
    cleaner = folder_cleaner(run, images)
    cleaner.apply([Change(item_named(cleaner, "valid", "cat_0.png").id, None)])
    assert main(["clean", str(run), "--undo"]) == 0
    assert "1 change(s)" in capsys.readouterr().out
    assert (images / "valid" / "cat" / "cat_0.png").is_file()


def test_a_multi_label_relabel_sets_the_label_set_and_the_filter_matches_any_label(tmp_path: Path) -> None:
    cleaner, table = multi_label_cleaner(tmp_path)
    assert [item.path.name for item in cleaner.visible(label="primary")] == ["a.png"]
    assert [item.path.name for item in cleaner.visible(label="haze")] == ["a.png"]
    assert [item.path.name for item in cleaner.visible(label="clear")] == ["b.png"]
    # a.png: "primary" removed, "clear" added; b.png: "haze" added; c.png (no labels) removed from the data.
    cleaner.apply([Change(0, ("haze", "clear")), Change(1, ("clear", "haze")), Change(2, None)])
    cleaned = table.with_name("labels.cleaned.csv")
    assert cleaned.read_text().splitlines() == ["image,tags", "a.png,haze;clear", "b.png,clear;haze"]
    assert [item.path.name for item in cleaner.visible(label="primary")] == []
    assert [item.path.name for item in cleaner.visible(label="haze")] == ["a.png", "b.png"]
    assert log_rows(tmp_path / "run")[1][1:3] == ["haze;primary", "haze;clear"]
    cleaner.apply([Change(0, ())])  # every label taken away: a row with an empty label set
    assert cleaned.read_text().splitlines() == ["image,tags", "a.png,", "b.png,clear;haze"]
    cleaner.undo()
    cleaner.undo()
    assert not cleaned.exists() and cleaner.items[0].label == ("haze", "primary")
    assert [row[1:3] for row in log_rows(tmp_path / "run")[-3:]] == [
        ["haze;clear", "haze;primary"], ["clear;haze", "clear"], ["removed", ""]]


def test_multi_label_marks_must_be_label_sets_of_known_classes(tmp_path: Path) -> None:
    cleaner, _ = multi_label_cleaner(tmp_path)
    with pytest.raises(AppError, match=r"labels are a list of classes \(the new label set\), got 'haze'"):
        cleaner.apply([Change(0, "haze")])
    with pytest.raises(AppError, match="'cloudy' is not a class"):
        cleaner.apply([Change(0, ("haze", "cloudy"))])
    with pytest.raises(AppError, match="names a class twice"):
        cleaner.apply([Change(0, ("haze", "haze"))])
    single = Cleaner(tmp_path / "single", {"data": str(tmp_path)}, [CleanItem(0, tmp_path / "cat" / "a.png", "train",
                                                                              "cat", "cat", 0.9, 0.1)], ["cat", "dog"])
    with pytest.raises(AppError, match="labels are one class name"):
        single.apply([Change(0, ("dog",))])
    assert not (tmp_path / "run" / "cleaning").exists() and not (tmp_path / "single" / "cleaning").exists()


def test_a_move_that_fails_midway_keeps_the_moves_done_undoable(run_copy: Callable[[], tuple[Path, Path]]) -> None:
    run, images = run_copy()
    cleaner = folder_cleaner(run, images)
    (run / "removed").write_text("a file where the removed/ folder would go")
    relabel, remove = item_named(cleaner, "train", "ant_2.png"), item_named(cleaner, "valid", "bee_2.png")
    with pytest.raises(AppError, match=r"moved 1 of 2 files, then could not move .*bee_2\.png"):
        cleaner.apply([Change(relabel.id, "cat"), Change(remove.id, None)])
    assert (images / "train" / "cat" / "ant_2.png").is_file() and (images / "valid" / "bee" / "bee_2.png").is_file()
    assert relabel.label == "cat" and remove.id not in cleaner.hidden
    assert cleaner.undo() == {"restored": 1, "renamed": []}
    assert (images / "train" / "ant" / "ant_2.png").is_file()


def test_a_journal_that_is_not_one_is_named(tmp_path: Path) -> None:
    cleaner = Cleaner(tmp_path / "run", {"data": str(tmp_path)})
    cleaner.journal_path.parent.mkdir(parents=True)
    cleaner.journal_path.write_text("[]")
    with pytest.raises(AppError, match="is not a cleaning journal"):
        cleaner.undo()


def test_the_cleaning_api_answers_user_and_file_errors_without_a_500(tmp_path: Path) -> None:
    import httpx
    from app_helpers import serving

    from unfreeze.apps.clean_app import create_clean_app

    cleaner, table = multi_label_cleaner(tmp_path)
    with serving(create_clean_app(cleaner)) as url:
        token = re.search(r'name="unfreeze-token" content="([^"]+)"', httpx.get(url, timeout=30).text).group(1)
        headers = {"X-Unfreeze-Token": token}

        def apply(changes: list[dict]) -> httpx.Response:
            return httpx.post(f"{url}/api/apply", json={"changes": changes}, headers=headers, timeout=30)

        assert [item["name"] for item in httpx.get(f"{url}/api/items?label=haze", timeout=30).json()["items"]] == \
            ["a.png"]
        assert httpx.get(f"{url}/api/items?split=test", timeout=30).status_code == 400
        assert "'cloudy' is not a class" in apply([{"item": 0, "new_label": ["cloudy"]}]).json()["detail"]
        assert apply([{"item": "x", "new_label": None}]).status_code == 422  # not an item id
        assert httpx.post(f"{url}/api/undo", headers=headers, timeout=30).status_code == 400
        table.write_bytes(b"image,tags\x00\x00\x01binary")  # the CSV replaced by something else meanwhile
        refused = apply([{"item": 1, "new_label": ["haze"]}])
        assert refused.status_code == 409 and str(table) in refused.json()["detail"]
        assert httpx.get(f"{url}/api/items", timeout=30).status_code == 200  # the server keeps serving
    assert not table.with_name("labels.cleaned.csv").exists()


def test_a_cleaned_csv_that_no_apply_wrote_is_kept_and_not_built_on(tmp_path: Path) -> None:
    cleaner, table = multi_label_cleaner(tmp_path)
    foreign = table.with_name("labels.cleaned.csv")
    foreign.write_text("someone's own file\n")
    cleaner.apply([Change(1, ("haze",))])
    assert foreign.read_text().splitlines() == ["image,tags", "a.png,haze;primary", "b.png,haze", "c.png,"]
    (backup,) = (tmp_path / "run" / "cleaning").glob("labels.cleaned.before-*.csv")
    assert backup.read_text() == "someone's own file\n"
    cleaner.undo()
    assert foreign.read_text() == "someone's own file\n"


def test_a_relabelled_item_is_sorted_by_its_loss_under_the_new_label(run_copy: Callable[[], tuple[Path, Path]]) -> None:
    """Issue 25: after an apply the relabelled tile stayed first with its old loss."""
    run, images = run_copy()
    cleaner = folder_cleaner(run, images)
    worst = cleaner.visible("train")[0]
    old_loss = worst.loss
    cleaner.apply([Change(worst.id, worst.guess[0])])  # the model's guess: the likeliest label
    assert worst.loss < old_loss
    assert worst.loss == pytest.approx(-math.log(worst.probability), rel=1e-5)
    losses = [item.loss for item in cleaner.visible("train")]
    assert losses == sorted(losses, reverse=True) and cleaner.visible("train")[0] is not worst
    cleaner.undo()
    assert worst.loss == pytest.approx(old_loss, rel=1e-5)


def test_undo_leaves_no_empty_folder_under_removed(run_copy: Callable[[], tuple[Path, Path]]) -> None:
    run, images = run_copy()
    cleaner = folder_cleaner(run, images)
    first, second = item_named(cleaner, "train", "ant_0.png"), item_named(cleaner, "valid", "cat_2.png")
    cleaner.apply([Change(first.id, None)])
    cleaner.apply([Change(second.id, None)])
    (run / "removed" / "notes.txt").write_text("the user's own file")
    cleaner.undo()
    assert not (run / "removed" / "valid").exists() and (run / "removed" / "train" / "ant" / "ant_0.png").is_file()
    cleaner.undo()
    assert not (run / "removed" / "train").exists()
    assert (run / "removed" / "notes.txt").is_file()  # a folder that still holds a file stays
    assert (images / "train" / "ant" / "ant_0.png").is_file() and (images / "valid" / "cat" / "cat_2.png").is_file()


def test_collect_items_reports_progress(run_copy: Callable[[], tuple[Path, Path]]) -> None:
    from unfreeze.apps.clean import collect_items
    from unfreeze.apps.serve import load_model
    from unfreeze.data import ImageDataLoaders

    run, images = run_copy()
    learn = load_model(run)
    dls = ImageDataLoaders.from_folder(images, size=16, bs=4, seed=0, num_workers=0)
    lines: list[str] = []
    items = collect_items(learn, dls, lines.append)
    assert lines[0] == "computing the losses: train, 24 images ..."
    assert lines[1] == "computing the losses: valid, 12 images ..."
    assert re.fullmatch(r"computed the losses of 36 images in \d+\.\d s", lines[2])
    assert all(len(item.probs) == 3 and item.guess == (item.predicted,) for item in items)


def test_an_image_asked_for_while_its_file_moves_is_served_never_a_500(
        run_copy: Callable[[], tuple[Path, Path]]) -> None:
    # The page fetches thumbnails while an apply or undo moves their files: without one lock around moving
    # and reading, a request landing between the move and the item's new path answered 500 (seen in CI).
    import threading

    import httpx
    from app_helpers import serving

    from unfreeze.apps.clean_app import create_clean_app

    run, images = run_copy()
    cleaner = folder_cleaner(run, images)
    moving = item_named(cleaner, "train", "ant_0.png")
    with serving(create_clean_app(cleaner)) as url:
        token = re.search(r'name="unfreeze-token" content="([^"]+)"', httpx.get(url, timeout=30).text).group(1)
        headers, done, statuses = {"X-Unfreeze-Token": token}, threading.Event(), []

        def fetch_images() -> None:
            with httpx.Client(timeout=30) as client:
                while not done.is_set():
                    statuses.append(client.get(f"{url}/image/{moving.id}").status_code)

        fetchers = [threading.Thread(target=fetch_images) for _ in range(2)]
        for fetcher in fetchers:
            fetcher.start()
        try:
            for _ in range(12):
                changed = httpx.post(f"{url}/api/apply", headers=headers, timeout=30,
                                     json={"changes": [{"item": moving.id, "new_label": "cat"}]})
                assert changed.status_code == 200, changed.text
                assert httpx.post(f"{url}/api/undo", headers=headers, timeout=30).status_code == 200
        finally:
            done.set()
            for fetcher in fetchers:
                fetcher.join()
    assert len(statuses) > 20 and set(statuses) == {200}, sorted(set(statuses))
    assert (images / "train" / "ant" / "ant_0.png").is_file()


@pytest.mark.parametrize("body", [b'{"changes": [{"item": NaN, "new_label": null}]}',
                                  b'{"changes": [{"item": 1e999, "new_label": null}]}',
                                  b'{"changes": [{"item": 0, "new_label": -Infinity}]}',
                                  b'{"changes": [{"item": 0}]}',
                                  b'{"changes": [{"item": true, "new_label": null}]}',  # was item 1
                                  b'{"changes": [{"item": "1", "new_label": null}]}'])
def test_a_body_the_api_cannot_read_is_a_422_that_names_the_field(tmp_path: Path, body: bytes) -> None:
    """Python's JSON reader takes NaN and Infinity; FastAPI's own 422 echoed them back and could not write
    them as JSON: a 500. The answer is one sentence naming the field and the body expected."""
    import httpx
    from app_helpers import serving

    from unfreeze.apps.clean_app import create_clean_app

    cleaner, table = multi_label_cleaner(tmp_path)
    with serving(create_clean_app(cleaner)) as url:
        token = re.search(r'name="unfreeze-token" content="([^"]+)"', httpx.get(url, timeout=30).text).group(1)
        refused = httpx.post(f"{url}/api/apply", content=body, timeout=30,
                             headers={"X-Unfreeze-Token": token, "Content-Type": "application/json"})
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert isinstance(detail, str) and "changes.0." in detail and '"new_label"' in detail
        assert httpx.get(f"{url}/api/items", timeout=30).status_code == 200
    assert not table.with_name("labels.cleaned.csv").exists()


@pytest.mark.parametrize("journal", [
    '{"applies": [1]}', '{"applies": [{}]}', '{"applies": [{"moves": 5}]}',
    '{"applies": [{"moves": [["a"]], "changes": [], "csv": null}]}',
    '{"applies": [{"moves": [], "changes": [[[0], "a.png", "x", null]], "csv": null}]}',
    '{"applies": [{"moves": [], "changes": [[0, "a.png", 7, null]], "csv": null}]}',
    '{"applies": [{"moves": [], "changes": [], "csv": {"written": 3}}]}',
    '{"applies": [{"moves": [], "changes": [], "csv": null, "done": "all"}]}',
    '{"applies": [{"moves": [], "changes": [], "csv": null}], "undone": 5}'])
def test_a_damaged_journal_entry_is_a_400_naming_the_journal(tmp_path: Path, journal: str) -> None:
    """A journal edited by hand or damaged: apply and undo read each entry, and answered a 500 (KeyError,
    TypeError, ...) where they should say which file is wrong and change nothing."""
    import httpx
    from app_helpers import serving

    from unfreeze.apps.clean_app import create_clean_app

    cleaner, table = multi_label_cleaner(tmp_path)
    cleaner.journal_path.parent.mkdir(parents=True)
    cleaner.journal_path.write_text(journal)
    with serving(create_clean_app(cleaner)) as url:
        token = re.search(r'name="unfreeze-token" content="([^"]+)"', httpx.get(url, timeout=30).text).group(1)
        headers = {"X-Unfreeze-Token": token}
        applied = httpx.post(f"{url}/api/apply", headers=headers, timeout=30,
                             json={"changes": [{"item": 1, "new_label": ["haze"]}]})
        undone = httpx.post(f"{url}/api/undo", headers=headers, timeout=30)
    for answer in (applied, undone):
        assert answer.status_code == 400, answer.text
        assert str(cleaner.journal_path) in answer.json()["detail"]
    assert not table.with_name("labels.cleaned.csv").exists() and cleaner.journal_path.read_text() == journal


def test_a_csv_that_python_cannot_parse_any_more_is_a_409_naming_it(tmp_path: Path) -> None:
    """A CSV replaced meanwhile by one with a field over the csv module's 128 KiB limit: apply answered 500."""
    import httpx
    from app_helpers import serving

    from unfreeze.apps.clean_app import create_clean_app

    cleaner, table = multi_label_cleaner(tmp_path)
    with serving(create_clean_app(cleaner)) as url:
        token = re.search(r'name="unfreeze-token" content="([^"]+)"', httpx.get(url, timeout=30).text).group(1)
        table.write_text("image,tags\na.png," + "haze " * 40_000 + "\nb.png,clear\n")
        refused = httpx.post(f"{url}/api/apply", headers={"X-Unfreeze-Token": token}, timeout=30,
                             json={"changes": [{"item": 1, "new_label": ["haze"]}]})
        assert refused.status_code == 409, refused.text
        assert str(table) in refused.json()["detail"] and "field larger than field limit" in refused.json()["detail"]
    assert not table.with_name("labels.cleaned.csv").exists()
    assert not cleaner.journal_path.exists() or json.loads(cleaner.journal_path.read_text())["applies"] == []


def test_an_item_is_served_as_an_image_whatever_its_file_name(tmp_path: Path) -> None:
    """A CSV dataset may name any file: an image saved as page.html (or app.js) went out as text/html (or
    JavaScript), which the browser runs as a page (or a script allowed by script-src 'self') of this origin."""
    import httpx
    from app_helpers import serving, write_png

    from unfreeze.apps.clean_app import create_clean_app

    paths = [write_png(tmp_path / "data" / f"{index}.png", (200, 30, 30)).rename(tmp_path / "data" / name)
             for index, name in enumerate(["page.html", "app.js", "photo.png", "scan.svg"])]
    items = [CleanItem(index, path, "train", "cat", "cat", 0.9, 0.1) for index, path in enumerate(paths)]
    cleaner = Cleaner(tmp_path / "run", {"data": str(tmp_path / "data")}, items, classes=["cat", "dog"])
    with serving(create_clean_app(cleaner)) as url:
        types = [httpx.get(f"{url}/image/{item.id}", timeout=30).headers["content-type"] for item in items]
    assert types == ["application/octet-stream", "application/octet-stream", "image/png", "application/octet-stream"]


def test_a_model_that_predicts_nan_still_lists_and_relabels_its_items(
        run_copy: Callable[[], tuple[Path, Path]]) -> None:
    """A diverged run (NaN weights) gave every item a NaN probability and loss: /api/items sent them as null,
    the page's tiles (item.loss.toFixed) failed on null so it showed no image, and a relabel scored NaN again."""
    import httpx
    import torch
    from app_helpers import serving

    from unfreeze.apps.clean import collect_items
    from unfreeze.apps.clean_app import create_clean_app
    from unfreeze.apps.serve import load_model
    from unfreeze.data import ImageDataLoaders

    run, images = run_copy()
    learn = load_model(run)
    with torch.no_grad():
        for parameter in learn.model.parameters():
            parameter.fill_(math.nan)
    dls = ImageDataLoaders.from_folder(images, size=16, bs=4, seed=0, num_workers=0)
    dls.set_normalization(learn.dls.valid.mean, learn.dls.valid.std)
    options = json.loads((run / "config.json").read_text())["options"]
    cleaner = Cleaner(run, options, collect_items(learn, dls), classes=list(dls.vocab))
    with serving(create_clean_app(cleaner)) as url:
        listed = httpx.get(f"{url}/api/items", timeout=30)
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["items"]) == 36
        assert all(isinstance(item["loss"], float) and isinstance(item["probability"], float)
                   for item in listed.json()["items"])
        token = re.search(r'name="unfreeze-token" content="([^"]+)"', httpx.get(url, timeout=30).text).group(1)
        moving = item_named(cleaner, "train", "ant_0.png")
        done = httpx.post(f"{url}/api/apply", headers={"X-Unfreeze-Token": token}, timeout=30,
                          json={"changes": [{"item": moving.id, "new_label": "cat"}]})
        assert done.status_code == 200, done.text
        assert httpx.get(f"{url}/api/items", timeout=30).status_code == 200
    assert all(math.isfinite(item.loss) and math.isfinite(item.probability) for item in cleaner.items.values())


def test_a_relabel_to_the_class_an_image_has_is_refused_not_a_rename(run_copy: Callable[[], tuple[Path, Path]],
                                                                      tmp_path: Path) -> None:
    """The page offers only other classes, but the API took {"new_label": "ant"} for an ant: the file was
    moved onto its own name's clash and came out as ant_0-2.png, logged as a relabel ant → ant."""
    import httpx
    from app_helpers import serving

    from unfreeze.apps.clean_app import create_clean_app

    run, images = run_copy()
    cleaner = folder_cleaner(run, images)
    ant = item_named(cleaner, "train", "ant_0.png")
    multi, table = multi_label_cleaner(tmp_path / "multi")
    for app, change in ((create_clean_app(cleaner), {"item": ant.id, "new_label": "ant"}),
                        (create_clean_app(multi), {"item": 0, "new_label": ["primary", "haze"]})):
        with serving(app) as url:
            token = re.search(r'name="unfreeze-token" content="([^"]+)"', httpx.get(url, timeout=30).text).group(1)
            refused = httpx.post(f"{url}/api/apply", headers={"X-Unfreeze-Token": token}, timeout=30,
                                 json={"changes": [change]})
        assert refused.status_code == 400 and "already" in refused.json()["detail"], refused.text
    assert (images / "train" / "ant" / "ant_0.png").is_file() and not (run / "cleaning").exists()
    assert not table.with_name("labels.cleaned.csv").exists()


def test_a_mark_on_an_image_another_tab_removed_says_to_reload(tmp_path: Path) -> None:
    """Two tabs: one removes an image, the other (not reloaded) relabels it. The refusal said the image 'is
    not in this run's data' and to fix the marks; the image is in the data, removed since the page loaded."""
    cleaner, items, _ = csv_cleaner(tmp_path, [("a.png", "cat"), ("b.png", "dog")])
    cleaner.apply([Change(items[0].id, None)])
    with pytest.raises(AppError, match=r"a\.png was removed by an apply since the page showed it .*reload the page"):
        cleaner.apply([Change(items[0].id, "dog")])
    cleaner.undo()
    assert cleaner.apply([Change(items[0].id, "dog")])["relabelled"] == 1  # shown again by the undo
