"""File moves and small writes that survive a kill -9 or a power cut at any point (the cleaner's journal).

`write_durably` writes a whole file next to its target, fsyncs it, renames it into place and fsyncs the
folder, so a reader finds the old or the new content, never a mix. `move_file` is `os.rename` on one file
system; across file systems it copies into a partial file beside the target, fsyncs it, renames it into
place and only then unlinks the source: at no point is there a half-written file under the target's
name, and a source that cannot be unlinked (a read-only folder) takes its copy back.

Example:
    >>> write_durably(Path("run/cleaning/journal.json"), json.dumps(journal))  # doctest: +SKIP
    >>> move_file(Path("data/ant/a.png"), Path("run/removed/ant/a.png"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

__all__ = ["free_name", "fsync_folder", "move_file", "partial_path", "write_durably"]


def fsync_folder(folder: Path) -> None:
    """Make a rename or an unlink in `folder` durable (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_durably(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically and durably: the old or the new file after any crash.

    Example:
        >>> write_durably(Path("journal.json"), "{}")  # doctest: +SKIP
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    fsync_folder(path.parent)


def free_name(target: Path, taken: set[Path] | None = None) -> Path:
    """`target`, or `stem-2.ext`, `stem-3.ext`, ... if a file (or a name in `taken`) already has that name.

    Example:
        >>> free_name(Path("data/cat/a.png"))  # doctest: +SKIP
        PosixPath('data/cat/a-2.png')
    """
    taken = taken or set()
    candidate, number = target, 2
    while candidate.exists() or candidate.is_symlink() or candidate in taken:
        candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
        number += 1
    return candidate


def partial_path(target: Path) -> Path:
    """Where a copy across file systems is written before it is renamed to `target`."""
    return target.with_name(f".{target.name}.unfreeze-partial")


def move_file(source: Path, target: Path) -> None:
    """Move `source` to `target` (which must not exist) so that no crash leaves a partial file at `target`.

    Raises:
        OSError: The move failed; `source` is where it was and nothing was left at `target` (a copy made
            across file systems is removed again when the source cannot be unlinked).

    Example:
        >>> move_file(Path("data/ant/a.png"), Path("data/cat/a.png"))  # doctest: +SKIP
    """
    if target.exists() or target.is_symlink():
        raise FileExistsError(errno.EEXIST, "the target exists already", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    else:
        fsync_folder(target.parent)
        if source.parent != target.parent:
            fsync_folder(source.parent)
        return
    partial = partial_path(target)
    try:
        with source.open("rb") as reader, partial.open("wb") as writer:
            shutil.copyfileobj(reader, writer, 2**20)
            writer.flush()
            os.fsync(writer.fileno())
        shutil.copystat(source, partial)
        os.rename(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    fsync_folder(target.parent)
    try:
        source.unlink()
    except OSError:
        target.unlink()  # the source stays (a read-only folder): no second copy is left behind
        fsync_folder(target.parent)
        raise
    fsync_folder(source.parent)
