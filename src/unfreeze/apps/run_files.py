"""Reading a run directory's files as untrusted input: types and encodings checked, one line per damage.

A run directory is handed around (shared, copied, downloaded), so config.json, summary.json,
history.csv and the plots in it may be damaged or crafted. The readers here check what they return:
JSON objects of the expected shape, UTF-8 CSV with rows no longer than the header, plots that are
regular PNG files inside the run directory (a symbolic link to a file elsewhere is never embedded) and
of a bounded size. A damaged file raises `RunFileError`, whose one-line message names the file and the
field, and says how to fix it.

Example:
    >>> summary = RunFile.read(Path("runs/pets/summary.json"))  # doctest: +SKIP
    >>> summary.number("wall_time_s"), summary.section("data").texts("classes")  # doctest: +SKIP
    (12.5, ['cat', 'dog'])
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from unfreeze.apps.errors import AppError

__all__ = ["MAX_PLOT_BYTES", "MAX_RUN_FILE_BYTES", "RunFile", "RunFileError", "read_history", "read_plot"]

MAX_RUN_FILE_BYTES = 32 * 2**20  # a summary or a history of a very long run is well below 1 MiB
MAX_PLOT_BYTES = 32 * 2**20  # the plots are a few hundred KiB
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FIX = "Restore it, or train the run again"


class RunFileError(AppError):
    """A file of a run directory is damaged or not what `unfreeze train` writes (the message names it).

    Example:
        >>> raise RunFileError("runs/pets/summary.json: 'final' is a list, expected an object. ...")  # doctest: +SKIP
    """


def _read_bytes(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the reader
    except OSError as error:
        raise RunFileError(f"{path} cannot be read ({error.strerror or error}). {_FIX}") from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise RunFileError(f"{path} is not a regular file. {_FIX}")
        if info.st_size > limit:
            raise RunFileError(f"{path} is {info.st_size} bytes, more than a run writes ({limit} at most). {_FIX}")
        return handle.read(limit + 1)[:limit]


def _text(path: Path, limit: int = MAX_RUN_FILE_BYTES) -> str:
    try:
        return _read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError as error:
        raise RunFileError(f"{path} is not UTF-8 text (byte {error.start}). {_FIX}") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RunFile:
    """A JSON object of a run directory (or a section of one) with typed, checked access to its fields.

    Each accessor returns the field's value, a default when it is missing or null, or raises
    `RunFileError` naming the file and the field when it has another type.

    Example:
        >>> RunFile(Path("summary.json"), {"data": {"train": 8}}).section("data").number("train")
        8
    """

    def __init__(self, path: Path, content: dict[str, Any], where: str = "") -> None:
        self.path, self.content, self.where = path, content, where

    @classmethod
    def read(cls, path: Path) -> RunFile:
        """Read and parse a JSON object (UTF-8, bounded size); any damage is one `RunFileError`."""
        try:
            content = json.loads(_text(path))
        except (json.JSONDecodeError, RecursionError) as error:
            raise RunFileError(f"{path} is not valid JSON ({error}). {_FIX}") from None
        if not isinstance(content, dict):
            raise RunFileError(f"{path} holds {_kind(content)}, expected a JSON object. {_FIX}")
        return cls(path, content)

    def _wrong(self, key: str, value: Any, expected: str) -> RunFileError:
        return RunFileError(f"{self.path}: '{self.where}{key}' is {_kind(value)}, expected {expected}. {_FIX}")

    def get(self, key: str) -> Any:
        """The raw value (None when missing): only for values shown as text, which the templates escape."""
        return self.content.get(key)

    def section(self, key: str) -> RunFile:
        """A nested object (empty when missing or null)."""
        value = self.content.get(key)
        if value is None:
            return RunFile(self.path, {}, f"{self.where}{key}.")
        if not isinstance(value, dict):
            raise self._wrong(key, value, "an object")
        return RunFile(self.path, value, f"{self.where}{key}.")

    def number(self, key: str) -> int | float | None:
        """A number, or None when missing, null or not finite."""
        value = self.content.get(key)
        if value is None:
            return None
        if not _is_number(value):
            raise self._wrong(key, value, "a number")
        return value if math.isfinite(value) else None

    def text(self, key: str, default: str = "") -> str:
        """Text (a number is shown as written)."""
        value = self.content.get(key)
        if value is None:
            return default
        if not isinstance(value, str) and not _is_number(value):
            raise self._wrong(key, value, "text")
        return str(value)

    def flag(self, key: str) -> bool:
        """true/false (false when missing)."""
        value = self.content.get(key, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._wrong(key, value, "true or false")
        return value

    def texts(self, key: str) -> list[str]:
        """A list of text (class names)."""
        value = self.content.get(key) or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._wrong(key, value, "a list of text")
        return value

    def numbers(self) -> dict[str, int | float | None]:
        """This whole object as name → number (final metrics, a per-class row)."""
        return {key: self.number(key) for key in self.content}

    def rows(self, key: str) -> list[dict[str, Any]]:
        """A list of objects of numbers or text (the history summary.json keeps)."""
        value = self.content.get(key) or []
        if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
            raise self._wrong(key, value, "a list of objects")
        for row in value:
            for name, cell in row.items():
                if cell is not None and not isinstance(cell, str) and not _is_number(cell):
                    raise self._wrong(f"{key}[].{name}", cell, "a number or text")
        return value


def read_history(path: Path) -> list[dict[str, str]]:
    """history.csv's rows (empty when the file is missing): UTF-8, each row no longer than the header.

    Example:
        >>> read_history(Path("runs/pets/history.csv"))[0]["epoch"]  # doctest: +SKIP
        '0'
    """
    if not path.exists() and not path.is_symlink():
        return []
    text = _text(path)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise RunFileError(f"{path} is not a CSV file ({error}). {_FIX}") from None
    if not rows:
        return []
    header = rows[0]
    if len(set(header)) != len(header) or "" in header:
        raise RunFileError(f"{path} has an empty or repeated column name in its header. {_FIX}")
    history = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) > len(header):
            raise RunFileError(f"{path}: line {number} has {len(row)} fields, the header {len(header)}. {_FIX}")
        if row:
            history.append(dict(zip(header, row + [""] * (len(header) - len(row)), strict=True)))
    return history


def read_plot(run_dir: Path, name: str) -> tuple[bytes | None, str]:
    """A plot of the run as PNG bytes, or None and why it is not shown.

    Only a regular PNG file whose real path is inside the run directory is read: a symbolic link out of
    it (or anything but a file) would put another file's content into a page meant to be shared.

    Example:
        >>> data, why = read_plot(Path("runs/pets"), "loss.png")  # doctest: +SKIP
    """
    path = run_dir / name
    if not path.exists() and not path.is_symlink():
        return None, f"{name} was not drawn for this run."
    real, root = path.resolve(), run_dir.resolve()
    if not real.is_relative_to(root):
        return None, f"{name} is a link to a file outside the run directory; it is not embedded."
    try:
        descriptor = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        return None, f"{name} cannot be read ({error.strerror or error}); it is not embedded."
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, f"{name} is not a regular file; it is not embedded."
        if info.st_size > MAX_PLOT_BYTES:
            return None, f"{name} is larger than {MAX_PLOT_BYTES // 2**20} MiB; it is not embedded."
        data = handle.read(MAX_PLOT_BYTES + 1)
    if len(data) > MAX_PLOT_BYTES or not data.startswith(_PNG_SIGNATURE):
        return None, f"{name} is not a PNG image; it is not embedded."
    return data, ""
