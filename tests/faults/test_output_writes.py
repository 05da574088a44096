"""Case 1 (disk full / read-only output) and case 3 (written files follow the umask)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze import load_learner
from unfreeze._io import OutputWriteError, atomic_path

DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


def leftovers(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.name.endswith(".tmp")]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_atomic_path_turns_write_failures_into_one_error(tmp_path: Path, code: int) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    with pytest.raises(OutputWriteError) as caught, atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(code, os.strerror(code))
    assert caught.value.path == target and caught.value.free_bytes is not None
    assert str(target) in str(caught.value) and "free there" in str(caught.value)
    assert target.read_bytes() == b"previous"  # the previous file stays intact
    assert leftovers(tmp_path) == []  # the temp file is removed


def test_atomic_path_lets_other_errors_through_and_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.bin"):
        raise RuntimeError("a bug, not a full disk")
    assert list(tmp_path.iterdir()) == []


def test_an_export_onto_a_folder_or_under_a_file_says_which(tiny_run: Path, tmp_path: Path) -> None:
    # Both were bare IsADirectoryError / FileExistsError from the Python API (the CLI checks its own options).
    learn = load_learner(tiny_run / "model.unfreeze")
    (tmp_path / "models").mkdir()
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(OutputWriteError, match=r"models.*is a folder.*Name a file") as onto_folder:
        learn.export(tmp_path / "models")
    with pytest.raises(OutputWriteError, match=r"notes\.txt is a file, not a folder") as under_file:
        learn.export(tmp_path / "notes.txt" / "model.unfreeze")
    assert "space" not in str(onto_folder.value) + str(under_file.value)  # not the full-disk advice
    assert (tmp_path / "notes.txt").read_text() == "keep me" and list((tmp_path / "models").iterdir()) == []


def test_export_on_a_full_disk_keeps_the_previous_model(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    model = tiny_run / "model.unfreeze"
    before = model.read_bytes()
    learn = load_learner(model)

    def full_disk(*args: object, **kwargs: object) -> None:
        Path(args[1]).write_bytes(b"partial")  # as a real write that ran out of space half-way
        raise DISK_FULL

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OutputWriteError, match=r"model\.unfreeze"):
        learn.export(model)
    assert model.read_bytes() == before
    assert leftovers(tiny_run) == []


@pytest.mark.parametrize("victim", ["summary.json", "config.json", "loss.png", "history.csv"])
def test_train_on_a_full_disk_is_a_user_error(victim: str, tiny_data: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from matplotlib.figure import Figure

    real_write_text, real_open, real_savefig = Path.write_text, Path.open, Figure.savefig

    def write_text(self: Path, *args: object, **kwargs: object) -> int:
        if self.name.startswith(f".{victim}."):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_text(self, *args, **kwargs)

    def open_(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        if self.name == victim and "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")  # no file name, like a failed write()
        return real_open(self, mode, *args, **kwargs)

    def savefig(self: Figure, path: object, *args: object, **kwargs: object) -> None:
        if Path(str(path)).name.startswith(f".{victim}."):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_savefig(self, path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(Path, "open", open_)
    monkeypatch.setattr(Figure, "savefig", savefig)
    out = tmp_path / "run"
    line = run_user_error(["train", str(tiny_data), *TINY, "--out", str(out), "--quiet"], capsys)
    assert victim in line and "No space left on device" in line and "free there" in line
    assert leftovers(out) == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        with atomic_path(tmp_path / "model.unfreeze") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "model.unfreeze").stat().st_mode & 0o777 == mode


def test_a_run_directory_follows_the_umask(tiny_run: Path) -> None:
    # The shared run was written under the test process's umask (022 in CI and here).
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("model.unfreeze", "summary.json", "config.json", "loss.png"):
        assert (tiny_run / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


@pytest.fixture
def tiny_tmpfs(make_tmpfs: Callable[[str, str], Path]) -> Path:
    """A 32 KiB tmpfs: a real full disk."""
    return make_tmpfs("small", "32k")


def test_export_to_a_really_full_disk(tiny_run: Path, tiny_tmpfs: Path) -> None:
    previous = tiny_tmpfs / "model.unfreeze"
    previous.write_bytes(b"previous export")
    learn = load_learner(tiny_run / "model.unfreeze")
    with pytest.raises(OutputWriteError, match=r"No space left on device; .* free there") as caught:
        learn.export(previous)  # safetensors reports ENOSPC in its own (Rust) error; it must arrive as ENOSPC
    assert caught.value.errno == errno.ENOSPC
    assert previous.read_bytes() == b"previous export"
    assert leftovers(tiny_tmpfs) == []


def test_a_checkpoint_on_a_full_disk_keeps_the_previous_one(tiny_data: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The second epoch's checkpoint cannot be written: exit 2 naming it, the first one intact and resumable."""
    import torch

    real_save, calls = torch.save, []

    def save(obj: object, path: object, *args: object, **kwargs: object) -> None:
        calls.append(path)
        if len(calls) == 2:
            # torch.save gets the open temporary file (a path before issue 18's fix)
            Path(path if isinstance(path, (str, os.PathLike)) else path.name).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, path, *args, **kwargs)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", save)
        line = run_user_error(["train", str(tiny_data), *TINY, "--out", str(out), "--quiet"], capsys)
    assert "checkpoint.pt" in line and "free there" in line
    assert leftovers(out) == [] and not (out / "model.unfreeze").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["progress"]["epoch"] == 0  # the first epoch's checkpoint, whole
    (out / "summary.json").unlink(missing_ok=True)
    from unfreeze.cli import main

    assert main(["train", "--resume", str(out), "--quiet"]) == 0 and (out / "model.unfreeze").is_file()


@pytest.fixture
def full_disk_for(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make the temporary file of one target a link to /dev/full, where every write fails with ENOSPC:
    the real error of a full disk, raised by whatever writes it (torch's C++ writer included)."""
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def arm(target_name: str) -> None:
        def mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
            handle, name = real_mkstemp(*args, **kwargs)  # type: ignore[call-overload]
            if Path(name).name.startswith(f".{target_name}."):
                os.unlink(name)
                os.symlink("/dev/full", name)
            return handle, name

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    return arm


def test_a_checkpoint_on_a_full_device(tiny_data: Path, tmp_path: Path, full_disk_for: Callable[[str], None],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """torch.save given a path reported a full disk as `RuntimeError: [enforce fail at inline_container.cc...]`."""
    full_disk_for("checkpoint.pt")
    out = tmp_path / "run"
    line = run_user_error(["train", str(tiny_data), *TINY, "--out", str(out), "--quiet"], capsys)
    assert "checkpoint.pt" in line and "No space left on device" in line and "free there" in line
    assert "enforce fail" not in line
    assert leftovers(out) == [] and not (out / "checkpoint.pt").exists()
    assert not (out / "run.lock").exists()


def test_a_checkpoint_on_a_really_full_disk(tiny_data: Path, tiny_tmpfs: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tiny_tmpfs / "run"  # 32 KiB: config.json and history.csv fit, the weights files do not
    line = run_user_error(["train", str(tiny_data), *TINY, "--out", str(out), "--quiet"], capsys)
    # The first weights file of an epoch is the best epoch's (best.safetensors), then checkpoint.pt.
    assert ("best.safetensors" in line or "checkpoint.pt" in line) and "No space left on device" in line
    assert "free there" in line
    assert leftovers(out) == []


def test_predict_csv_onto_a_full_disk(tiny_run: Path, write_image: Callable[..., Path], tmp_path: Path) -> None:
    """`unfreeze predict ... --format csv > out.csv` on a full disk gave an OSError traceback."""
    import subprocess
    import sys

    images = [write_image(tmp_path / "new" / f"image_{index}.png", seed=index) for index in range(3)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "UNFREEZE_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "unfreeze", "predict", str(tiny_run), *map(str, images),
                               "--format", "csv"], stdout=full, stderr=subprocess.PIPE, text=True, env=env,
                              timeout=300)
    # A runtime passed over for the tiny model may add one warning line; the failure itself is one error line.
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("unfreeze: warning:")]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("unfreeze: error: cannot write /dev/full (No space left on device;")
    assert "free there" in lines[0]
