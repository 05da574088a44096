"""Case 5: `predict --tta` on a folder with one bad file; symlink loops and broken links in a folder."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from unfreeze.cli import main
from unfreeze.inference import iter_image_files


@pytest.fixture
def folder_with_a_bad_file(tmp_path: Path, write_image: Callable[..., Path]) -> Path:
    folder = tmp_path / "new"
    for index in range(3):
        write_image(folder / f"good_{index}.png", seed=index)
    (folder / "bad.png").write_bytes(b"not a png")
    return folder


@pytest.mark.parametrize("tta", [True, False])
@pytest.mark.parametrize("output_format", ["json", "csv"])
def test_predict_keeps_the_good_rows(tiny_run: Path, folder_with_a_bad_file: Path, output_format: str, tta: bool,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["predict", str(tiny_run), str(folder_with_a_bad_file), "--format", output_format, *["--tta"] * tta]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "Traceback" not in captured.err
    rows = json.loads(captured.out)["predictions"] if output_format == "json" else \
        list(csv.DictReader(io.StringIO(captured.out)))
    by_name = {Path(row["file"]).name: row for row in rows}
    assert sorted(by_name) == ["bad.png", "good_0.png", "good_1.png", "good_2.png"]
    assert by_name["bad.png"]["error"]
    assert all(not by_name[f"good_{index}.png"]["error"] for index in range(3))
    assert all(by_name[f"good_{index}.png"]["label"] in ("ant", "bee") for index in range(3))


def test_symlink_loops_and_broken_links_are_skipped(tmp_path: Path, write_image: Callable[..., Path]) -> None:
    root = tmp_path / "photos"
    write_image(root / "a.png")
    write_image(root / "sub" / "b.png")
    os.symlink(root, root / "sub" / "loop")  # sub/loop -> photos: a cycle
    os.symlink(root / "sub", root / "alias")  # a second way into sub: its files once
    os.symlink(tmp_path / "missing.png", root / "broken.png")
    os.symlink(tmp_path / "missing", root / "broken_dir")
    found = [path.relative_to(root).as_posix() for path in iter_image_files(root)]
    # broken.png is listed, for predict to give it a row that says so (it was skipped without a word)
    assert found in (["a.png", "broken.png", "sub/b.png"], ["a.png", "alias/b.png", "broken.png"])


def test_a_broken_link_named_like_an_image_gets_a_row_saying_so(tiny_run: Path, tmp_path: Path,
                                                               write_image: Callable[..., Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """predict over a folder skipped a broken link x.png without a word, while training names it as skipped."""
    root = tmp_path / "photos"
    write_image(root / "a.png")
    os.symlink(tmp_path / "moved.png", root / "x.png")
    assert main(["predict", str(tiny_run), str(root), "--format", "json"]) == 1
    rows = {Path(row["file"]).name: row for row in json.loads(capsys.readouterr().out)["predictions"]}
    assert rows["x.png"]["error"] == "broken symbolic link" and not rows["a.png"]["error"]


def test_predict_on_a_folder_with_a_symlink_loop(tiny_run: Path, tmp_path: Path, write_image: Callable[..., Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "photos"
    write_image(root / "a.png")
    os.symlink(root, root / "loop")
    assert main(["predict", str(tiny_run), str(root), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert [Path(row["file"]).name for row in json.loads(captured.out)["predictions"]] == ["a.png"]


def test_hidden_files_and_folders_are_not_predicted(tiny_run: Path, tmp_path: Path, write_image: Callable[..., Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A folder copied from a Mac holds ._name.jpg resource forks; a notebook leaves .ipynb_checkpoints/: neither
    is a photo to label, and training skips both silently, so predict must not report them as failures."""
    root = tmp_path / "photos"
    write_image(root / "a.png")
    (root / "._a.jpg").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    write_image(root / ".ipynb_checkpoints" / "a-checkpoint.png")
    assert [path.name for path in iter_image_files(root)] == ["a.png"]
    assert main(["predict", str(tiny_run), str(root), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert [Path(row["file"]).name for row in json.loads(captured.out)["predictions"]] == ["a.png"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_path_that_exists_but_is_no_file_is_not_called_missing(tiny_run: Path, tmp_path: Path,
                                                                  write_image: Callable[..., Path],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A named pipe (or device) named like an image got the row error 'file not found' though it is there."""
    pipe = tmp_path / "camera.jpg"
    os.mkfifo(pipe)
    assert main(["predict", str(tiny_run), str(write_image(tmp_path / "a.png")), str(pipe), "--format", "json"]) == 1
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert rows[1]["error"] == "not a regular file (a pipe, socket or device)"
