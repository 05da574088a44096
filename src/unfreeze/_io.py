"""Small file-system helpers shared by exports, checkpoints, plots and run directories."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads when a tensor is written: the command line's --help must not wait for it
    import torch

__all__ = ["OUTPUT_ERRNOS", "OutputWriteError", "atomic_path", "cpu_state_dict", "free_bytes", "output_error",
           "remove_stale_temporaries", "save_safetensors", "save_torch", "stop_signals_held", "stream_path"]

# Signals that ask a process to stop; an atomic write holds them until its file is complete.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Write failures that the user fixes (free space, another folder, permissions), not bugs to report.
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM})


class OutputWriteError(OSError):
    """A file could not be written (disk full, read-only file system, no permission, quota).

    Attributes:
        path: The file that was being written.
        free_bytes: Free space on the file system of its nearest existing folder (None if unknown).
    """

    def __init__(self, path: Path, free: int | None, reason: str, code: int | None = None,
                 advice: str | None = None) -> None:
        if advice is None:  # a full or read-only disk: the free space tells which
            free_text = "unknown" if free is None else _human(free)
            message = (f"cannot write {path} ({reason}; {free_text} free there). Free some space or choose a folder "
                       "you can write to, then run again")
        else:
            message = f"cannot write {path} ({reason}). {advice}"
        super().__init__(code, message)
        self.path, self.free_bytes = path, free

    def __str__(self) -> str:
        return str(self.strerror)


def _human(n_bytes: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system holding `path`, or its nearest existing parent (None if unknown).

    Example:
        >>> free_bytes("/tmp/not/yet/created") > 0  # doctest: +SKIP
        True
    """
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def output_error(error: OSError, path: str | Path) -> OutputWriteError | None:
    """The OutputWriteError for a failed write to `path`, or None if `error` is not a user-fixable one.

    Example:
        >>> output_error(OSError(errno.ENOSPC, "No space left on device"), "model.unfreeze")  # doctest: +SKIP
        OutputWriteError(28, 'cannot write model.unfreeze (No space left on device; 1.2 GiB free there). ...')
    """
    if isinstance(error, OutputWriteError):
        return error
    if error.errno not in OUTPUT_ERRNOS:
        return None
    reason = error.strerror or os.strerror(error.errno)
    return OutputWriteError(Path(path), free_bytes(path), reason, error.errno)


def _path_in_the_way(target: Path) -> OutputWriteError | None:
    """The error for a `target` that names a folder or lies under a file, before any write is tried."""
    if target.is_dir():
        return OutputWriteError(target, None, f"{target} is a folder", errno.EISDIR,
                                "Name a file, such as a file inside that folder")
    for parent in target.parents:  # the nearest existing one decides
        if parent.exists():
            if parent.is_dir():
                return None
            return OutputWriteError(target, None, f"{parent} is a file, not a folder", errno.ENOTDIR,
                                    "Choose a path whose folders are folders")
    return None


def _umask() -> int:
    # os.umask can only be read by setting it; restored at once (the CLI is single-threaded here).
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver the first one that arrived.

    Ctrl-C in the middle of a checkpoint write would throw the whole file away (the write is atomic),
    leaving history.csv ahead of the last checkpoint. Held, the signal takes effect once the file is in
    place. Python only lets the main thread set handlers; elsewhere the block runs unguarded.

    Example:
        >>> with stop_signals_held():  # doctest: +SKIP
        ...     history.append(row)
        ...     save_checkpoint(learn, "checkpoint.pt")  # Ctrl-C here stops after this line
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {number: signal.signal(number, lambda number, frame: arrived.append(number))
                for number in _STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        if arrived:
            signal.raise_signal(arrived[0])  # the restored handler acts on it now (KeyboardInterrupt for Ctrl-C)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` only if the block succeeds.

    The temporary file lives in the same folder, so the final `os.replace` is atomic: an interrupted
    write never leaves a half-written file at `target`, and an existing file stays intact. The
    temporary file is always removed. The file gets the permissions of any new file (0o666 less the
    umask), not mkstemp's private 0o600. Ctrl-C or SIGTERM during the block takes effect when it ends,
    so a stop request never costs the file being written.

    Raises:
        OutputWriteError: The disk is full, the file system read-only, the folder not writable or
            the quota exceeded (during the block or the rename); it names the path and the free space.
            Also, before the block, when `target` is a folder or a file stands where a folder should be.

    Example:
        >>> with atomic_path("model.unfreeze") as tmp:  # doctest: +SKIP
        ...     tmp.write_bytes(data)
    """
    target = Path(target)
    in_the_way = _path_in_the_way(target)
    if in_the_way is not None:
        raise in_the_way
    tmp: Path | None = None
    with stop_signals_held():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(handle)
            tmp = Path(name)
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
        except OSError as error:
            converted = output_error(error, target)
            if converted is None:
                raise
            raise converted from error
        finally:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()


def remove_stale_temporaries(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files `atomic_path` left for `names` in `folder` when its process was killed.

    Only call it while no other process can be writing there (a run directory's lock is held):
    a live write's temporary file looks the same.

    Returns:
        The files removed.

    Example:
        >>> remove_stale_temporaries("runs/pets", ["checkpoint.pt", "model.unfreeze"])  # doctest: +SKIP
        [PosixPath('runs/pets/.checkpoint.pt.k2j4x9.tmp')]
    """
    removed = []
    for name in names:
        for stale in sorted(Path(folder).glob(f".{name}.*.tmp")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed


def save_torch(content: Any, path: str | Path) -> None:
    """`torch.save(content, path)` through a Python file, so that a full disk raises OSError (ENOSPC).

    Given a path, torch writes from C++ and reports a full disk as a RuntimeError ("enforce fail at
    inline_container.cc ... unexpected pos"), which `atomic_path` could not tell from a bug.

    Example:
        >>> with atomic_path("checkpoint.pt") as tmp:  # doctest: +SKIP
        ...     save_torch(state, tmp)
    """
    import torch

    try:
        with Path(path).open("wb") as handle:
            torch.save(content, handle)
    except RuntimeError as error:
        # After a failed write torch's zip writer fails again while closing, hiding the OSError behind
        # its own RuntimeError: the OSError is what happened.
        if isinstance(error.__context__, OSError):
            raise error.__context__ from None
        raise


def stream_path(stream: IO[Any]) -> str:
    """The file an output stream writes to (stdout redirected to a file), for error messages.

    Example:
        >>> stream_path(sys.stdout)  # doctest: +SKIP
        '/data/predictions.csv'
    """
    with contextlib.suppress(AttributeError, OSError, ValueError):
        return os.readlink(f"/proc/self/fd/{stream.fileno()}")  # Linux; elsewhere the stream's own name
    return str(getattr(stream, "name", "<output>"))


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of `module`'s state for writing to disk.

    `clone()` gives every tensor its own storage: safetensors refuses tensors that share storage, and
    a file must never alias the live model.
    """
    return {name: tensor.detach().cpu().contiguous().clone() for name, tensor in module.state_dict().items()}


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, with its I/O errors (a Rust message) raised as OSError, so that
    atomic_path reports a full disk as such (exports, weights files and KeepBest's file alike)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(state, str(path), metadata=metadata)
    except SafetensorError as error:
        code = re.search(r"\(os error (\d+)\)|\bcode: (\d+)", str(error))  # Display and Debug forms
        if code is None:
            raise
        number = int(code.group(1) or code.group(2))
        raise OSError(number, os.strerror(number), str(path)) from error
