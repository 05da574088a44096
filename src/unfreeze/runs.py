"""Run directories of the `unfreeze` command: the `Run` object and its files, lock and JSON.

A run directory holds everything one `unfreeze train` produced:

    config.json        the arguments (enough to rerun), the library version, the rerun command line
    history.csv        one row per epoch (CSVLogger)
    model.unfreeze     the pickle-free export (load_learner)
    loss.png, sched.png, lr_find.png (with --lr auto), confusion_matrix.png, top_losses.png
    summary.json       final metrics, wall time, device, versions, the LR used
    report.html        all of the above on one page (the report hook that `unfreeze train` adds)
    run.lock           while a run writes here: the PID of its process (see `run_lock`)

An existing run directory is never overwritten by accident: `create_run_dir` picks `NAME-2`, `NAME-3`, ...
unless `overwrite=True`, and even then it only clears a folder that is itself a run directory.

A `Run` is one such directory with its lifecycle: create (or open) and lock it, write the config and
rerun line, read the checkpoint a resume continues, rebuild the history, write the summary and plots,
and call its report hooks (`Run.add_report_hook`: the command line adds the HTML report there, so a
finished, interrupted or resumed run gets one). Each CLI command is then a few calls on a `Run`. The
learner and interpretation it records are read through their public members only; this module imports
nothing of training at import time.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from unfreeze._io import atomic_path, remove_stale_temporaries

__all__ = ["CHECKPOINT", "LOCK_FILE", "RUN_FILES", "ReportHook", "Run", "RunConfigError", "RunDirError",
           "clear_stale_temporaries", "create_run_dir", "data_files", "environment", "json_safe", "model_file",
           "read_json", "rerun_argv", "run_lock", "write_json"]

LOCK_FILE = "run.lock"
CHECKPOINT = "checkpoint.pt"

# Every file a run writes: --overwrite removes exactly these (report.html: written by a report hook).
RUN_FILES = ("config.json", "history.csv", "checkpoint.pt", "model.unfreeze", "summary.json", "loss.png",
             "sched.png", "lr_find.png", "confusion_matrix.png", "top_losses.png", "examples.png", "report.html")
_MAX_SUFFIX = 10_000
# The folders whose run.lock this process holds (`run_lock`): a lock with this PID elsewhere is a dead one's.
_HELD: set[Path] = set()


class RunDirError(OSError):
    """The run directory cannot be created or written; the message says where and how to fix it."""


class RunConfigError(ValueError):
    """A run directory's config.json is not JSON, or lacks what a command needs from it."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _lock_holder(folder: Path) -> int | None:
    """The PID of a live process holding `folder`'s run.lock, or None (no lock, or a stale one).

    A lock naming this very process that `run_lock` did not take here is stale too: a killed process with
    the same PID left it (a container started again runs unfreeze as PID 1 again).
    """
    try:
        text = (folder / LOCK_FILE).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    pid = int(text) if text.isdigit() else None
    return pid if pid is not None and _pid_alive(pid) and (pid != os.getpid() or folder.resolve() in _HELD) \
        else None


def _refuse_if_locked(folder: Path) -> None:
    pid = _lock_holder(folder)
    if pid is not None:
        raise RunDirError(f"{folder} is in use by another unfreeze run (process {pid}, see {folder / LOCK_FILE}). "
                          "Wait for it to finish, or choose another --out")


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold `folder/run.lock` (holding this process's PID) while a run writes into `folder`.

    Two runs writing one folder would interleave their history.csv rows. A lock left by a process
    that no longer exists (killed, machine restarted) is taken over. The lock is removed on exit,
    also after an error or Ctrl-C.

    Raises:
        RunDirError: A live process holds the lock; the message names its PID.

    Example:
        >>> with run_lock("runs/pets"):  # doctest: +SKIP
        ...     learn.fine_tune(3, callbacks=[CSVLogger(Path("runs/pets/history.csv").absolute())])
    """
    path = Path(folder) / LOCK_FILE
    for _ in range(2):  # a second try after removing a stale lock
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            _refuse_if_locked(path.parent)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # stale: its process is gone
            continue
        with os.fdopen(handle, "w") as stream:
            stream.write(f"{os.getpid()}\n")
        break
    else:
        _refuse_if_locked(path.parent)
        raise RunDirError(f"cannot take {path}: another run keeps creating it. Choose another --out")
    held = path.parent.resolve()
    _HELD.add(held)
    try:
        yield path
    finally:
        _HELD.discard(held)
        # Only our own lock is removed (a takeover by another process would hold its own PID).
        with contextlib.suppress(OSError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


def clear_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files (`.checkpoint.pt.*.tmp`, ...) that a killed run left in `folder`.

    Nothing is removed while a live process holds the folder's run.lock: its writes in progress look
    the same.

    Example:
        >>> clear_stale_temporaries("runs/pets")  # doctest: +SKIP
        [PosixPath('runs/pets/.checkpoint.pt.k2j4x9.tmp')]
    """
    return [] if _lock_holder(Path(folder)) is not None else remove_stale_temporaries(folder, RUN_FILES)


def model_file(path: str | Path) -> Path:
    """The model a MODEL argument names: a run directory's model.unfreeze, or the file itself.

    Example:
        >>> model_file("runs/pets")  # doctest: +SKIP
        PosixPath('runs/pets/model.unfreeze')
    """
    path = Path(path).expanduser()
    return path / "model.unfreeze" if path.is_dir() else path


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
            names a file or a folder that is not a run directory.

    Example:
        >>> create_run_dir("runs/demo")  # doctest: +SKIP
        PosixPath('runs/demo-2')
    """
    requested = Path(requested).expanduser()
    if overwrite and requested.exists() and not requested.is_dir():
        raise RunDirError(f"{requested} is a file, not a run directory, so --overwrite cannot reuse it. Choose "
                          "another --out")
    try:
        if overwrite and requested.is_dir():
            if not _is_run_dir(requested) and any(requested.iterdir()):
                raise RunDirError(f"{requested} exists and is not a run directory (it has no config.json), so "
                                  "--overwrite will not clear it. Choose another --out")
            _refuse_if_locked(requested)  # never clear the files of a run still writing them
            clear_stale_temporaries(requested)
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
    """Write `content` as indented JSON (NaN and infinities as null, so any JSON reader accepts it).

    Written atomically: a full disk raises `OutputWriteError` and leaves an older file intact.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(content), indent=2) + "\n")
    return path


def read_json(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a JSON object written by `write_json`, with the top-level keys `required`.

    Raises:
        RunConfigError: The file is not a JSON object or lacks a required key.

    Example:
        >>> read_json(Path("runs/pets/config.json"), required=("options",))["options"]["arch"]  # doctest: +SKIP
        'resnet34'
    """
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunConfigError(f"{path} is not valid JSON ({error}). Restore it, or train the run again") from None
    if not isinstance(content, dict):
        raise RunConfigError(f"{path} holds a JSON {type(content).__name__}, expected an object. Restore it, or "
                             "train the run again")
    missing = [key for key in required if key not in content]
    if missing:
        raise RunConfigError(f"{path} lacks {', '.join(map(repr, missing))}. Restore it, or train the run again")
    return content


def json_safe(value: Any) -> Any:
    """`value` as strict JSON takes it: NaN and infinities as None, tuples as lists, paths as text.

    Example:
        >>> json_safe({"a": float("nan"), "b": (1, Path("x"))})
        {'a': None, 'b': [1, 'x']}
    """
    return _finite(value)


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


def data_files(root: str | Path, skip: Path | None = None) -> dict[str, Any]:
    """What a run records of the files under its DATA, so that a resume can tell the same files at another path.

    Every file's path relative to `root` and its size go into one SHA-256; hidden entries, run directories
    (`skip`, the run's own folder before its config.json exists, and any folder holding a config.json) and
    broken links are left out: they change while the run writes, or are no data.

    Example:
        >>> data_files("pets")  # doctest: +SKIP
        {'files': 7390, 'bytes': 790432123, 'sha256': '9f2c...'}
    """
    root, skip = Path(root), None if skip is None else Path(skip).resolve()
    entries = []
    for folder, names, files in os.walk(root):
        here = Path(folder)
        names[:] = sorted(name for name in names if not name.startswith(".")
                          and (here / name).resolve() != skip and not _is_run_dir(here / name))
        for name in files:
            if not name.startswith("."):
                with contextlib.suppress(OSError):
                    entries.append(((here / name).relative_to(root).as_posix(), (here / name).stat().st_size))
    entries.sort()
    digest = hashlib.sha256("".join(f"{name}\0{size}\n" for name, size in entries).encode("utf-8", "surrogateescape"))
    return {"files": len(entries), "bytes": sum(size for _, size in entries), "sha256": digest.hexdigest()}


# ---------------------------------------------------------------------------- the run object


def rerun_argv(options: dict[str, Any]) -> list[str]:
    """The `unfreeze train` command line that repeats a run described by its config options.

    Example:
        >>> rerun_argv({"data": "pets", "epochs": 2, "pretrained": True, "train_bn": None})
        ['train', 'pets', '--epochs', '2']
    """
    argv = ["train", options["data"]]
    for key in ("arch", "size", "bs", "valid_pct", "seed", "label_re", "csv", "weights", "epochs",
                "freeze_epochs", "lr", "out", "class_weights"):
        if key == "bs" and options.get("batch_size") == "auto":  # the plan chose the training batches
            continue
        if options.get(key) is not None and options.get(key) != "auto":  # "auto": the plan chooses, as it did
            argv += [f"--{key.replace('_', '-')}", str(options[key])]
    if options.get("multi_label"):
        argv += ["--multi-label", "--label-delim", options.get("label_delim", " ")]
    if options.get("task", "classification") != "classification":
        argv += ["--task", options["task"]]
    if options.get("sampler", "shuffle") != "shuffle":
        argv += ["--sampler", options["sampler"]]
    for key in ("augment", "mixup", "cutmix", "label_smoothing", "wd", "lr_mult", "pct_start", "div", "patience",
                "time_budget", "tensorboard", "mlflow", "frozen_groups", "head", "imbalance", "noise",
                "thresholds"):  # the recipe's options
        if options.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(options[key])]
    argv += {False: ["--no-flip"], True: ["--flip"]}.get(options.get("flip"), [])  # absent or "auto": the default
    argv += {False: ["--no-probe"], True: ["--probe"]}.get(options.get("probe"), [])
    argv += ["--ema"] * bool(options.get("ema"))
    argv += ["--progressive"] * bool(options.get("progressive"))
    argv += [] if options["pretrained"] else ["--no-pretrained"]
    if options.get("train_bn") is not None:
        argv += ["--train-bn" if options["train_bn"] else "--no-train-bn"]
    if options.get("keep", "best") != "best":
        argv += ["--keep", options["keep"]]
    if options.get("upscale") is False:
        argv += ["--no-upscale"]
    argv += [] if options.get("calibrate", True) else ["--no-calibrate"]
    if "unknown_rate" in options and options["unknown_rate"] != 0.05:  # None: trained with --unknown-rate 0
        argv += ["--unknown-rate", str(options["unknown_rate"] or 0)]
    return argv


# Called with a run after its summary.json is written; it may write more files into the run (report.html).
ReportHook = Callable[["Run"], Any]


@dataclass
class Run:
    """One run directory of `unfreeze train`, and what each step of a run writes into it.

    Args:
        folder: The directory (see the module docstring for its files).
        report_hooks: Called in order after every `write_summary` (see `add_report_hook`).

    Example:
        >>> run = Run.create("runs/pets", overwrite=False)  # doctest: +SKIP
        >>> with run.lock():  # doctest: +SKIP
        ...     run.write_config(options, argv)
    """

    folder: Path
    # Each run owns its hooks: the command that drives it decides which reports it writes (no global list).
    report_hooks: list[ReportHook] = field(default_factory=list, compare=False, repr=False)

    def add_report_hook(self, hook: ReportHook) -> Run:
        """Call `hook(self)` after each summary.json this run writes (finished or interrupted); once per hook.

        Returns:
            The run itself, so that a command can chain it after `Run.create` or `Run.open`.

        Example:
            >>> run = Run(Path("runs/pets")).add_report_hook(lambda run: print(run.folder))
            >>> len(run.report_hooks)
            1
        """
        if hook not in self.report_hooks:
            self.report_hooks.append(hook)
        return self

    @classmethod
    def create(cls, requested: str | Path, overwrite: bool = False) -> Run:
        """A fresh run directory at `requested` (or `requested-2`, ...); see `create_run_dir`."""
        return cls(create_run_dir(requested, overwrite=overwrite))

    @classmethod
    def open(cls, folder: str | Path, hint: str = "Pass a run directory written by 'unfreeze train'") -> Run:
        """An existing run directory; RunDirError (its message ending with `hint`) if it has no config.json."""
        run = cls(Path(folder).expanduser())
        if not run.config_file.is_file():
            raise RunDirError(f"{run.config_file} not found. {hint}")
        return run

    # ------------------------------------------------------------------ files

    def file(self, name: str) -> Path:
        """The path of one of the run's files (`RUN_FILES`, or a report's)."""
        return self.folder / name

    @property
    def config_file(self) -> Path:
        return self.file("config.json")

    @property
    def history_file(self) -> Path:
        return self.file("history.csv")

    @property
    def checkpoint_file(self) -> Path:
        return self.file(CHECKPOINT)

    @property
    def export_file(self) -> Path:
        return self.file("model.unfreeze")

    @property
    def summary_file(self) -> Path:
        return self.file("summary.json")

    def lock(self) -> contextlib.AbstractContextManager[Path]:
        """Hold the run's lock while writing into it (`run_lock`)."""
        return run_lock(self.folder)

    # ------------------------------------------------------------------ config

    def write_config(self, options: dict[str, Any], argv: list[str]) -> Path:
        """config.json: the options (enough to rerun), the version, the rerun line and the argv given."""
        from unfreeze._version import __version__

        rerun = " ".join(shlex.quote(word) for word in ["unfreeze", *rerun_argv(options)])
        return write_json(self.config_file, {"command": "train", "options": options, "unfreeze_version": __version__,
                                             "rerun": rerun, "argv": list(argv)})

    def update_options(self, options: dict[str, Any]) -> Path:
        """config.json with `options` in place of the recorded ones and its rerun line to match (a resume on
        moved data); the version and argv that started the run stay."""
        config = read_json(self.config_file)
        rerun = " ".join(shlex.quote(word) for word in ["unfreeze", *rerun_argv(options)])
        return write_json(self.config_file, {**config, "options": options, "rerun": rerun})

    def options(self, needed: tuple[str, ...] = (), purpose: str = "") -> dict[str, Any]:
        """The options in config.json; RunConfigError if it is not JSON or lacks one of `needed`."""
        options = read_json(self.config_file, required=("options",))["options"]
        missing = list(needed) if not isinstance(options, dict) else [key for key in needed if key not in options]
        if missing:
            end = f"; {purpose}" if purpose else ". Restore it, or train the run again"
            raise RunConfigError(f"{self.config_file} lacks the options {', '.join(missing)}{end}")
        return options

    # ------------------------------------------------------------------ resume

    def resume_checkpoint(self) -> Any:
        """The checkpoint an interrupted run continues from, as a `train.recipes.Resume` (read, not loaded).

        Raises:
            RunDirError: The run stopped before its first epoch ended, or it finished.
        """
        from unfreeze.train.recipes import Resume

        clear_stale_temporaries(self.folder)  # what a kill during a write left; the resumed run writes them anew
        # Finished first: a finished run whose checkpoint was deleted was not stopped mid-write. One whose
        # model.unfreeze is gone resumes: its last checkpoint holds the trained weights, and exports them again.
        if self.finished() and (self.export_file.is_file() or not self.checkpoint_file.is_file()):
            # A stop between summary.json and report.html leaves a finished run without its report.
            report = "" if self.file("report.html").is_file() else \
                f"; its report.html is missing: 'unfreeze report {self.folder}' writes it"
            raise RunDirError(f"{self.folder} finished (see {self.summary_file}); there is nothing to resume{report}")
        if not self.checkpoint_file.is_file():
            raise RunDirError(self._no_checkpoint_message())
        return Resume.read(self.checkpoint_file)

    def finished(self) -> bool:
        """Whether the run's summary.json says it finished (exists and is not marked interrupted)."""
        return self.summary_file.is_file() and not read_json(self.summary_file).get("interrupted", False)

    def _no_checkpoint_message(self) -> str:
        """Why a run without checkpoint cannot be resumed, as its files tell it."""
        try:
            with self.history_file.open(newline="") as handle:
                epochs = sum(1 for _ in csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error):
            epochs = 0
        rerun = read_json(self.config_file).get("rerun", "the same 'unfreeze train' command")
        why = (f" although {self.history_file} records {epochs} finished epoch(s): the process was stopped while "
               "writing the first checkpoint, so there is no state to continue from" if epochs else
               ": the run stopped before its first epoch ended")
        return f"{self.folder} has no {CHECKPOINT}{why}. Start it again with: {rerun} --overwrite"

    # ------------------------------------------------------------------ history, summary, plots

    def rewrite_history(self, history: list[dict[str, Any]]) -> None:
        """history.csv with exactly these rows (atomically); on a resume, the checkpoint's record.

        The CSV may hold a row written after the checkpoint (a kill in between): the resumed run
        continues the checkpoint's history, so the file is rebuilt from it.
        """
        if not history:
            if self.history_file.exists():
                self.history_file.unlink()
            return
        with atomic_path(self.history_file) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)

    def history_logger(self) -> Any:
        """A `CSVLogger` appending each epoch's row to history.csv."""
        from unfreeze.train.callbacks import CSVLogger

        return CSVLogger(self.history_file.absolute(), append=True)  # absolute: not under learn.path

    def write_plots(self, recorder: Any, interpretation: Any, single_label: bool) -> list[Path]:
        """loss.png, sched.png, then confusion_matrix.png and examples.png (single-label data), top_losses.png."""
        plots = [recorder.plot_loss(self.file("loss.png")), recorder.plot_sched(self.file("sched.png"))]
        if single_label:
            plots.append(interpretation.plot_confusion_matrix(self.file("confusion_matrix.png")))
            plots.append(interpretation.plot_confident_examples(6, path=self.file("examples.png")))
        plots.append(interpretation.plot_top_losses(9, path=self.file("top_losses.png")))
        return plots

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """summary.json, then every report hook (`add_report_hook`) of this run, in the order added."""
        path = write_json(self.summary_file, summary)
        for hook in self.report_hooks:
            hook(self)
        return path
