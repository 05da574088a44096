"""Find (path, label) items: class folders, a regex or a function on file names, a CSV or table, idx files.

Listing does only cheap checks (hidden names, extensions, zero-byte files, links, directories). A file
that passes them but cannot be decoded is found later, during the first pass over the data.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "DataWarning",
    "SkippedFiles",
    "check_file",
    "check_root",
    "csv_items",
    "csv_separator",
    "folder_items",
    "is_hidden",
    "is_run_directory",
    "list_image_files",
    "name_func_items",
    "name_re_items",
    "read_csv_text",
    "read_idx",
    "sample_path",
    "table_items",
    "warn_empty_classes",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
Item = tuple[Path, str]
# What makes a folder an unfreeze run directory (runs.RUN_FILES; data sits below runs and cannot import it):
# its config.json and a file training writes. Its plots are not images of a class.
_RUN_CONFIG, _RUN_OUTPUTS = "config.json", ("checkpoint.pt", "model.unfreeze", "history.csv")
_MAX_NAMED = 10  # a warning names this many files, then counts the rest
_MISSING_LABELS = frozenset({"nan", "none", "null", "na", "n/a"})  # how pandas and friends write no value
# An is-valid column's cells, as spreadsheets, pandas (True, 1.0) and people write them; an empty cell is training.
_VALID_MARKS = {"1": True, "true": True, "yes": True, "y": True, "t": True, "valid": True, "validation": True,
                "val": True, "0": False, "false": False, "no": False, "n": False, "f": False, "train": False,
                "training": False, "": False}


class DataError(ValueError):
    """A dataset that cannot be trained on: the message names the path and what was expected."""


class DataWarning(UserWarning):
    """Something in the data was skipped or looks wrong, but training can go on."""


class SkippedFiles:
    """Collects files that were skipped, so that one warning can name and count them all.

    Example:
        >>> skipped = SkippedFiles()
        >>> skipped.add(Path("a.jpg"), "empty file (0 bytes)")
        >>> len(skipped)
        1
    """

    def __init__(self) -> None:
        self.entries: list[tuple[Path, str]] = []

    def add(self, path: Path, reason: str) -> None:
        self.entries.append((Path(path), reason))

    def __len__(self) -> int:
        return len(self.entries)

    def message(self, what: str = "files that are not decodable images") -> str:
        lines = [f"{path} ({reason})" for path, reason in self.entries[:_MAX_NAMED]]
        more = len(self.entries) - _MAX_NAMED
        if more > 0:
            lines.append(f"... and {more} more")
        return f"Skipped {len(self.entries)} {what}:\n  " + "\n  ".join(lines)

    def warn(self, what: str = "files that are not decodable images") -> None:
        """Issue one DataWarning naming and counting every skipped file (nothing if none)."""
        if self.entries:
            warnings.warn(self.message(what), DataWarning, stacklevel=3)


def is_hidden(name: str) -> bool:
    """True for a file or folder name that is never data (a dot name); training and predict both skip these."""
    # .DS_Store, ._foo.jpg (macOS resource forks), .ipynb_checkpoints: never data, skipped silently.
    return name.startswith(".")


def is_run_directory(folder: Path) -> bool:
    """True for a run directory that `unfreeze train` wrote (config.json beside a checkpoint, export or history).

    Example:
        >>> is_run_directory(Path("runs/pets-resnet34"))  # doctest: +SKIP
        True
    """
    return (folder / _RUN_CONFIG).is_file() and any((folder / name).is_file() for name in _RUN_OUTPUTS)


def check_file(path: Path, skipped: SkippedFiles) -> bool:
    """True if `path` may be an image; otherwise record why not in `skipped`."""
    if path.is_symlink() and not path.exists():
        skipped.add(path, "broken symbolic link")
    elif not path.exists():
        skipped.add(path, "file does not exist")
    elif path.is_dir():
        skipped.add(path, "a directory, not an image file")
    elif not path.is_file():
        skipped.add(path, "not a regular file")
    elif path.suffix.lower() not in IMAGE_EXTENSIONS:
        skipped.add(path, f"not an image extension ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    elif path.stat().st_size == 0:
        skipped.add(path, "empty file (0 bytes)")
    else:
        return True
    return False


def list_image_files(folder: Path, skipped: SkippedFiles) -> list[Path]:
    """Image files under `folder` (recursively, sorted); everything else goes to `skipped`.

    Symbolic links to folders are followed, as predict's `iter_image_files` follows them; each folder is
    listed once (by device and inode), so a link back up the tree ends instead of looping. An unfreeze run
    directory (`--out` inside the data, or `runs/` when training from inside it) is skipped: its plots are
    not images of a class.

    Example:
        >>> files = list_image_files(Path("pets/images"), SkippedFiles())
    """
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    real_folder = Path(os.path.realpath(folder))
    for directory, subdirectories, names in os.walk(folder, followlinks=True):
        info = os.stat(directory)
        if (info.st_dev, info.st_ino) in visited:
            subdirectories[:] = []
            continue
        visited.add((info.st_dev, info.st_ino))
        base = Path(directory)
        if is_run_directory(base):
            skipped.add(base, "an unfreeze run directory, not images of a class; move it out of the data folder")
            subdirectories[:] = []
            continue
        kept = []
        for name in sorted(subdirectories):
            if is_hidden(name):
                continue
            target = Path(os.path.realpath(base / name))
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                skipped.add(base / name, "a directory, not an image file")
            elif (base / name).is_symlink() and target != real_folder and real_folder.is_relative_to(target):
                # A link to a folder above `folder` (the data root) would list the other classes' images
                # again under this one's label; a link within `folder` is stopped by `visited` instead.
                skipped.add(base / name, f"a link back up to {target}, which holds this folder; its images "
                                         "would be listed twice")
            else:
                kept.append(name)
        subdirectories[:] = kept  # os.walk descends only into what is left here
        found.extend(base / name for name in names if not is_hidden(name) and check_file(base / name, skipped))
    return sorted(found)


def check_root(path: str | Path, expected: str) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        found = "a file" if root.exists() else "nothing"
        raise DataError(f"Dataset root {root} is not a directory (found {found}). Expected {expected}.")
    return root


def folder_items(folder: Path, skipped: SkippedFiles, empty_classes: list[str]) -> list[Item]:
    """(path, class) items from `folder/<class>/*`; class folders without images go to `empty_classes`."""
    items: list[Item] = []
    for class_dir in sorted(folder.iterdir()):
        if is_hidden(class_dir.name) or not class_dir.is_dir():
            continue
        files = list_image_files(class_dir, skipped)
        if not files and not is_run_directory(class_dir):  # a run directory is named once, by `skipped`
            empty_classes.append(str(class_dir))
        items.extend((file, class_dir.name) for file in files)
    return items


def _resolve(path: Path, fnames: Iterable[str | Path] | None, skipped: SkippedFiles) -> list[Path]:
    if fnames is None:
        return list_image_files(path, skipped)
    files = [Path(name) if Path(name).is_absolute() else path / name for name in fnames]
    return [file for file in files if check_file(file, skipped)]


def name_re_items(
    path: Path, fnames: Iterable[str | Path] | None, pattern: str, skipped: SkippedFiles
) -> list[Item]:
    """Items labelled by group 1 of `pattern` searched in each file name (Pets: `great_pyrenees_173.jpg`)."""
    regex = re.compile(pattern)
    if regex.groups == 0:  # checked before listing: a large folder would be read for nothing
        raise DataError(f"The pattern {pattern!r} has no capture group, so it cannot pick the label out of a file "
                        r"name. Put the label part in parentheses, such as r'^(.+)_\d+\.jpg$'.")
    files = _resolve(path, fnames, skipped)
    items: list[Item] = []
    unmatched = SkippedFiles()
    for file in files:
        match = regex.search(file.name)
        if match and match.groups() and match.group(1):
            items.append((file, match.group(1)))
        else:
            unmatched.add(file, f"name does not match {pattern!r}")
    if files and not items:
        examples = ", ".join(file.name for file in files[:3])
        raise DataError(
            f"The pattern {pattern!r} matched none of the {len(files)} file names under {path} "
            f"(for example {examples}). Expected a regex whose group 1 is the label, "
            r"such as r'^(.+)_\d+\.jpg$' for great_pyrenees_173.jpg."
        )
    unmatched.warn("files whose names the pattern does not match")
    return items


def name_func_items(
    path: Path, fnames: Iterable[str | Path] | None, label_func: Callable[[Path], str], skipped: SkippedFiles
) -> list[Item]:
    """Items labelled by `label_func(path)` (from_name_func wraps its function to pass the name)."""
    return [(file, str(label_func(file))) for file in _resolve(path, fnames, skipped)]


def _column(header: list[str], column: int | str, csv_path: Path | str) -> int:
    if isinstance(column, int) and not isinstance(column, bool):
        if -len(header) <= column < len(header):
            return column % len(header)
    elif column in header:
        return header.index(column)
    elif isinstance(column, str) and column.strip() in (stripped := [name.strip() for name in header]):
        return stripped.index(column.strip())  # 'label ' in a header written by hand
    raise DataError(f"{csv_path} has no column {column!r}; its columns are {header}. Pass one of these names "
                    f"or a position from 0 to {len(header) - 1}.")


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32 first: its little-endian mark starts with UTF-16's
_MAX_CONTROL_SHARE = 0.01  # a text CSV holds no control characters besides line breaks and tabs
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f]")  # C0 controls other than tab, line and page breaks


def read_csv_text(csv_path: Path) -> str:
    """The text of a CSV file in whichever encoding it was saved: UTF-8 (with or without BOM), UTF-16 or
    UTF-32 with a BOM (Excel's "Unicode text"), else Windows-1252 / Latin-1, which any byte decodes to.

    Raises:
        DataError: The file is binary (NUL bytes, or control characters that no text file holds).

    Example:
        >>> read_csv_text(Path("planes/labels.csv")).splitlines()[0]  # doctest: +SKIP
        'file,label'
    """
    raw = csv_path.read_bytes()
    encoding = next((name for bom, name in _BOMS if raw.startswith(bom)), None)
    text = None
    for candidate in ([encoding] if encoding else ["utf-8-sig", "cp1252", "latin-1"]):
        try:
            text = raw.decode(candidate)
            break
        except UnicodeDecodeError:
            continue
    controls = len(_CONTROL.findall(text)) if text is not None else len(raw)
    if text is None or "\0" in text or controls > _MAX_CONTROL_SHARE * len(text):
        raise DataError(f"{csv_path} is not a text CSV: it holds binary data ({controls} control characters in "
                        f"{len(raw)} bytes). Expected a CSV of file names and labels (UTF-8 or Latin-1); pass the "
                        "CSV file itself.")
    return text


_SEPARATORS = (",", ";", "\t", "|")  # what spreadsheets save: ',' or, where ',' is the decimal mark, ';'


def csv_separator(text: str) -> str:
    r"""The cell separator of a CSV's text, read from its header row: the first of `_SEPARATORS` that splits
    it into several cells (',' when none does: a one-column CSV is then reported as such).

    Example:
        >>> csv_separator("file;label\nimg_0.png;cat\n")
        ';'
    """
    header = next((line for line in text.splitlines() if line.strip()), "")
    for separator in _SEPARATORS:
        if len(next(csv.reader([header], delimiter=separator), [])) > 1:
            return separator
    return ","


def _valid_mark(cell: str) -> bool | None:
    """Whether an is-valid cell marks a validation row (None: neither a yes nor a no, such as 'maybe')."""
    text = cell.strip().lower()
    if text in _VALID_MARKS:
        return _VALID_MARKS[text]
    try:
        number = float(text)  # '1.0', '0.00'
    except ValueError:
        return None
    return {1.0: True, 0.0: False}.get(number)


def _outside(root: Path, file: Path) -> bool:
    """Whether `file` lies outside `root`, by its path alone (a symbolic link inside root stays inside)."""
    root_text = os.path.normpath(os.path.abspath(root))
    return os.path.commonpath([root_text, os.path.normpath(os.path.abspath(file))]) != root_text


def csv_items(
    path: Path, csv_fname: str, fn_col: int | str, label_col: int | str, valid_col: int | str | None,
    skipped: SkippedFiles, empty_is_label: bool = False, *, folder: str | None = None, suffix: str = "",
    delimiter: str | None = None,
) -> tuple[list[Item], list[bool] | None]:
    """Items from a CSV with a header row; file names are relative to `path` (or `path/folder`), plus
    `suffix`. Returns (items, is_valid); see `table_items`. The CSV may be in any common encoding
    (`read_csv_text`); its cells are separated by `delimiter`, or without one by whichever of ',', ';',
    tab or '|' splits the header row.

    Raises:
        DataError: No such CSV, not a text file, no data rows, no such column, or files that do not exist.
    """
    csv_path = path / csv_fname
    if csv_path.is_dir():
        raise DataError(f"{csv_path} is a folder. Expected a CSV file with file and label columns: name the file "
                        "itself, e.g. labels.csv.")
    if not csv_path.is_file():
        raise DataError(f"CSV file {csv_path} does not exist. Expected a CSV with file and label columns.")
    text = read_csv_text(csv_path)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter or csv_separator(text)))
    if len(rows) < 2:
        raise DataError(f"{csv_path} has no data rows. Expected a header row, then one row per image.")
    return table_items(rows[0], rows[1:], path / folder if folder else path, csv_path, fn_col, label_col,
                       valid_col, skipped, empty_is_label, suffix=suffix)


def table_items(
    header: list[str], rows: Sequence[list[str]], folder: Path, source: Path | str, fn_col: int | str,
    label_col: int | str, valid_col: int | str | None, skipped: SkippedFiles, empty_is_label: bool = False,
    *, suffix: str = "",
) -> tuple[list[Item], list[bool] | None]:
    """Items from the rows of a table (a CSV, a DataFrame): `folder / (file cell + suffix)` and the label
    cell. Returns (items, is_valid), is_valid from `valid_col` (True/False, 1/0, 1.0/0.0, yes/no, valid/train;
    an empty cell is training) or None without it.

    A row with an empty label is dropped (with one warning), unless `empty_is_label`: for multi-label
    data an empty cell is a real label, "none of the classes". Rows naming files that do not exist stop
    with a DataError (a wrong folder or column would otherwise train on what is left); rows naming
    files outside `folder` (`../x.jpg`, `/abs/x.jpg`) are used, with one warning; a row with more
    (non-empty) cells than the header has columns stops with a DataError (an unquoted separator inside a
    cell, whose rest would be lost). `source` names the table in messages.

    Example:
        >>> items, _ = table_items(["file", "label"], [["cat_1.jpg", "cat"]], Path("pets"), "labels.csv",
        ...                        "file", "label", None, SkippedFiles())  # doctest: +SKIP
    """
    # Several label columns (regression values: label_col=["x", "y"]) give a tuple of cells per item.
    label_cols = list(label_col) if isinstance(label_col, (list, tuple)) else [label_col]
    columns = [_column(header, column, source) for column in (fn_col, *label_cols)]
    valid_index = None if valid_col is None else _column(header, valid_col, source)
    items: list[Item] = []
    is_valid: list[bool] = []
    unlabelled, duplicates, missing, outside, unmarked = SkippedFiles(), [], [], [], []
    seen: dict[str, Any] = {}  # file name -> its first row's label
    conflicting: dict[str, list[Any]] = {}  # file name -> its different labels, in the order listed
    width = max(*columns, -1 if valid_index is None else valid_index) + 1
    for number, row in enumerate(rows, start=2):  # line numbers as an editor shows them (1 is the header)
        if not any(cell.strip() for cell in row):
            continue
        if any(cell.strip() for cell in row[len(header):]):  # cells no column names would be dropped unseen
            raise DataError(f"{source}'s line {number} has {len(row)} cells, but its header names {len(header)} "
                            f"columns ({', '.join(map(repr, header))}): the cells after the last column would be "
                            "lost. A cell holding the CSV's separator must be quoted (\"odd;red\"); for multi-label "
                            "cells, separate the classes with another character (--label-delim / label_delim) or "
                            "the CSV's cells with another separator.")
        row = row + [""] * (width - len(row))  # a short row has empty cells, not an IndexError
        cells = [row[column].strip() for column in columns[1:]]
        label: Any = cells[0] if len(cells) == 1 else tuple(cells)
        if any((not cell and not empty_is_label) or cell.lower() in _MISSING_LABELS for cell in cells):
            unlabelled.add(Path(row[columns[0]] or f"<row {number}>"), f"line {number}: no label")
            continue
        name = row[columns[0]]
        if name != name.strip() and not (folder / (name + suffix)).exists():
            name = name.strip()  # 'cat_1.jpg ' from a spreadsheet: spaces no file name is meant to end with
        if name in seen and seen[name] != label:
            known = conflicting.setdefault(name, [seen[name]])
            known.extend([] if label in known else [label])
        elif name in seen:
            duplicates.append(f"{name} (line {number})")
        seen.setdefault(name, label)
        file = folder / (name + suffix)
        if not file.exists() and not file.is_symlink():  # a broken link is skipped below, like in folders
            missing.append(f"{name} (line {number})")
            continue
        if _outside(folder, file):
            outside.append(name)
        if check_file(file, skipped):
            items.append((file, label))
            if valid_index is not None:
                mark = _valid_mark(row[valid_index])
                if mark is None:
                    unmarked.append(f"{row[valid_index]!r} (line {number})")
                is_valid.append(bool(mark))
    if unlabelled and not seen:
        raise DataError(f"Every row of {source} has an empty label in column {label_col!r}. Expected a label per "
                        "image; check the label column (label_col / the CSV's second column).")
    if missing:
        raise DataError(f"{source} names {len(missing)} file(s) that do not exist under {folder}, for example "
                        f"{', '.join(missing[:3])}. File names in the table are relative to the data folder "
                        f"{folder}: fix the folder or the names, or remove those rows.")
    if unmarked:
        raise DataError(f"{source}'s column {valid_col!r} marks the validation rows, but {len(unmarked)} of its cells "
                        f"are neither a yes nor a no, for example {', '.join(unmarked[:3])}. Expected True/False, "
                        "1/0, yes/no or valid/train (an empty cell is training): fix those cells, or pass the right "
                        "valid_col.")
    if valid_index is not None and items and len(set(is_valid)) == 1:
        found = "validation" if is_valid[0] else "training"
        raise DataError(f"{source}'s column {valid_col!r} marks every row as {found}. Expected some training and some "
                        "validation rows (True/1/yes/valid for validation): fix the column, or leave out valid_col "
                        "to hold out valid_pct of the images at random.")
    if outside:
        warnings.warn(f"{source} names {len(outside)} file(s) outside the data folder {folder}, for example "
                      f"{', '.join(outside[:3])}; they are used as given. Move them under {folder} if that is "
                      "not what you meant.", DataWarning, stacklevel=3)
    unlabelled.warn(f"rows of {source} with an empty or NaN label")
    if duplicates:
        warnings.warn(f"{source} lists {len(duplicates)} file(s) more than once; each row is used, so these "
                      f"images count twice (for example {', '.join(duplicates[:3])}). Remove the repeated rows.",
                      DataWarning, stacklevel=3)
    if conflicting:
        named = [f"{name} ({', '.join(repr(label) for label in labels)})" for name, labels in conflicting.items()]
        warnings.warn(f"{source} lists {len(conflicting)} file(s) under different labels, for example "
                      f"{', '.join(named[:3])}; each row is used, so the model is taught two answers for one image. "
                      "Keep the row with the right label and remove the others.", DataWarning, stacklevel=3)
    return items, (is_valid if valid_index is not None else None)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (the MNIST / Fashion-MNIST format), gzipped or not, into a numpy array.

    Example:
        >>> images = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
        >>> images.shape, images.dtype
        ((60000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in dtypes:
        raise DataError(f"{path} is not an idx file (expected the magic bytes 00 00 <type> <ndim>).")
    n_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    array = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * n_dims)
    return array.reshape(shape).astype(np.dtype(dtypes[data[2]]).newbyteorder("="))


def sample_path() -> Path:
    """Path of the committed Fashion-MNIST sample (train/ and valid/, 10 classes, 28 px PNGs).

    Example:
        >>> from unfreeze.data import ImageDataLoaders, sample_path
        >>> dls = ImageDataLoaders.from_folder(sample_path(), size=64)
    """
    return Path(str(resources.files("unfreeze") / "assets" / "fashion_mnist_sample"))


def warn_empty_classes(empty_classes: Sequence[str]) -> None:
    if empty_classes:
        warnings.warn(
            f"Ignored {len(empty_classes)} class folder(s) with no images (not classes): "
            + ", ".join(empty_classes),
            DataWarning,
            stacklevel=3,
        )
