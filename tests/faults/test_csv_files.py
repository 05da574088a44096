"""CSV files: any common encoding is read, binary garbage is one line, missing files stop (as the README
says), and files outside DATA are named in a warning."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze import ImageDataLoaders
from unfreeze.cli import main
from unfreeze.data import DataError, DataWarning

LABELS = ("café", "crème")  # not ASCII: the encoding matters


@pytest.fixture
def folder(tmp_path: Path, write_image: Callable[..., Path]) -> Path:
    root = tmp_path / "data"
    for index in range(12):
        write_image(root / f"img_{index}.png", seed=index, color=(200, 30, 30) if index % 2 else (30, 30, 200))
    return root


def rows(count: int = 12) -> list[str]:
    return ["file,label", *(f"img_{index}.png,{LABELS[index % 2]}" for index in range(count))]


def write(root: Path, lines: list[str], encoding: str = "utf-8") -> None:
    (root / "labels.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"])
def test_csv_encodings_are_detected(folder: Path, encoding: str) -> None:
    """A Latin-1 CSV gave a UnicodeDecodeError traceback; a BOM made the first column '\\ufefffile'."""
    write(folder, rows(), encoding)
    dls = ImageDataLoaders.from_csv(folder, "labels.csv", fn_col="file", label_col="label", size=16, bs=4, seed=0)
    assert sorted(dls.vocab) == sorted(LABELS)


def test_windows_1252_punctuation_is_kept(folder: Path) -> None:
    lines = rows()
    lines[1] = "img_0.png,“quoted”"  # bytes 0x93 / 0x94 in Windows-1252, control characters in Latin-1
    write(folder, lines, "cp1252")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dls = ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0)
    assert "“quoted”" in dls.vocab


@pytest.mark.parametrize("content", [bytes(range(256)) * 40, b"file,label\n\x00\x00\x01img.png,a\n",
                                     b"\x89PNG\r\n\x1a\n" + bytes(range(32)) * 8],
                         ids=["every byte", "NUL bytes", "a PNG"])
def test_binary_garbage_is_one_line(folder: Path, content: bytes, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "labels.csv").write_bytes(content)
    line = run_user_error(["train", str(folder), *TINY, "--csv", "labels.csv", "--out", str(tmp_path / "run")], capsys)
    assert "labels.csv is not a text CSV" in line and "binary data" in line


def test_missing_files_stop_as_the_readme_says(folder: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Training went on without them; the README says a CSV naming missing files stops with an error."""
    write(folder, [*rows(), "ghost.png,café", "sub/also_gone.png,crème"])
    with pytest.raises(DataError, match=r"names 2 file\(s\) that do not exist") as caught:
        ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4)
    assert "ghost.png (line 14)" in str(caught.value) and str(folder) in str(caught.value)
    line = run_user_error(["train", str(folder), *TINY, "--csv", "labels.csv", "--out", str(tmp_path / "run")], capsys)
    assert "ghost.png" in line and "relative to the data folder" in line
    assert not (tmp_path / "run").exists()  # stopped before a run directory was made


def test_unreadable_files_are_still_skipped_with_a_warning(folder: Path) -> None:
    (folder / "empty.png").write_bytes(b"")
    write(folder, [*rows(), "empty.png,café"])
    with pytest.warns(DataWarning, match=r"empty.png \(empty file"):
        dls = ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0)
    assert len(dls.train.dataset) + len(dls.valid.dataset) == 12


@pytest.mark.parametrize("kind", ["parent", "absolute"])
def test_files_outside_data_are_named_in_a_warning(kind: str, folder: Path, tmp_path: Path,
                                                   write_image: Callable[..., Path]) -> None:
    """`../` and absolute paths were used silently."""
    outside = write_image(tmp_path / "elsewhere" / "stray.png")
    name = "../elsewhere/stray.png" if kind == "parent" else str(outside)
    write(folder, [*rows(), f"{name},café"])
    with pytest.warns(DataWarning, match=r"names 1 file\(s\) outside the data folder") as caught:
        dls = ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0)
    assert any(name in str(warning.message) for warning in caught)
    assert len(dls.train.dataset) + len(dls.valid.dataset) == 13


def test_a_link_inside_data_is_not_outside(folder: Path, tmp_path: Path, write_image: Callable[..., Path]) -> None:
    (folder / "linked.png").symlink_to(write_image(tmp_path / "store" / "real.png"))
    write(folder, [*rows(), "linked.png,café", "./img_1.png,crème"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0)


@pytest.mark.parametrize("separator", [";", "\t", "|"], ids=["semicolon", "tab", "bar"])
def test_the_separator_is_detected_from_the_header(folder: Path, separator: str) -> None:
    """Excel in many locales saves ';' CSVs, "Text (tab delimited)" tabs: with ',' the header was one column,
    'file;label', and the CLI (which has no --delimiter) stopped with "no column 1"."""
    lines = [line.replace(",", separator) for line in rows()]
    lines[1] = f'"img_0.png"{separator}"café, au lait"'  # a quoted cell holding a comma stays one cell
    write(folder, lines)
    dls = ImageDataLoaders.from_csv(folder, "labels.csv", fn_col="file", label_col="label", size=16, bs=4, seed=0)
    assert sorted(dls.vocab) == sorted({"café, au lait", *LABELS})


def test_a_semicolon_csv_trains_from_the_command_line(folder: Path, tmp_path: Path) -> None:
    write(folder, [line.replace(",", ";") for line in rows()])
    assert main(["train", str(folder), *TINY, "--csv", "labels.csv", "--out", str(tmp_path / "run"), "--quiet"]) == 0
