"""Run directories of the `unfreeze` command: fresh names, config.json and summary.json.

A run directory holds everything one `unfreeze train` produced:

    config.json        the arguments (enough to rerun), the library version, the rerun command line
    history.csv        one row per epoch (CSVLogger)
    model.unfreeze     the pickle-free export (load_learner)
    loss.png, sched.png, lr_find.png (with --lr auto), confusion_matrix.png, top_losses.png
    summary.json       final metrics, wall time, device, versions, the LR used

An existing run directory is never overwritten by accident: `create_run_dir` picks `NAME-2`, `NAME-3`, ...
unless `overwrite=True`, and even then it only clears a folder that is itself a run directory.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["RUN_FILES", "RunDirError", "create_run_dir", "environment", "read_json", "write_json"]

RUN_FILES = ("config.json", "history.csv", "model.unfreeze", "summary.json", "loss.png", "sched.png",
             "lr_find.png", "confusion_matrix.png", "top_losses.png")
_MAX_SUFFIX = 10_000


class RunDirError(OSError):
    """The run directory cannot be created or written; the message says where and how to fix it."""


def _is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def create_run_dir(requested: str | Path, overwrite: bool = False) -> Path:
    """Create the run directory `requested`, or `requested-2`, `-3`, ... if it already exists.

    Args:
        requested: The folder the user asked for, e.g. `runs/pets-resnet34`.
        overwrite: Reuse `requested` even if it exists. Only a run directory (one holding config.json)
            or an empty folder is reused, and only the files a run writes are removed from it, so a
            mistyped `--out ~` can never wipe a home folder.

    Returns:
        The folder created (or reused), empty of run files.

    Raises:
        RunDirError: It cannot be created (read-only parent, a file in the way, ...), or `overwrite`
            names a folder that is not a run directory.

    Example:
        >>> create_run_dir("runs/demo")  # doctest: +SKIP
        PosixPath('runs/demo-2')
    """
    requested = Path(requested).expanduser()
    try:
        if overwrite and requested.is_dir():
            if not _is_run_dir(requested) and any(requested.iterdir()):
                raise RunDirError(f"{requested} exists and is not a run directory (it has no config.json), so "
                                  "--overwrite will not clear it. Choose another --out")
            for name in RUN_FILES:
                target = requested / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            return requested
        requested.parent.mkdir(parents=True, exist_ok=True)
        for index in range(1, _MAX_SUFFIX):
            candidate = requested if index == 1 else requested.with_name(f"{requested.name}-{index}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            # Fail now, not after training, if the folder cannot be written to.
            probe = candidate / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
            return candidate
    except RunDirError:
        raise
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise RunDirError(f"cannot create the run directory {requested} ({reason}). Choose another --out "
                          "in a folder you can write to") from None
    raise RunDirError(f"{requested} and {_MAX_SUFFIX} numbered variants exist. Choose another --out")


def write_json(path: Path, content: dict[str, Any]) -> Path:
    """Write `content` as indented JSON (NaN and infinities as null, so any JSON reader accepts it)."""
    path.write_text(json.dumps(_finite(content), indent=2) + "\n")
    return path


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object written by `write_json`."""
    return json.loads(path.read_text())


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: Any) -> dict[str, Any]:
    """Versions and hardware a run used: unfreeze, torch, timm, Python, the device and CPU threads."""
    import torch

    from unfreeze._version import __version__

    device_name = platform.processor() or platform.machine()
    if getattr(device, "type", str(device)) == "cuda":
        device_name = torch.cuda.get_device_name(device)
    return {
        "device": str(device),
        "device_name": device_name,
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "unfreeze": __version__,
            "torch": torch.__version__,
            "timm": _version("timm"),
            "python": platform.python_version(),
        },
    }
