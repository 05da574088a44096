"""kill -9 during a write: stale temporaries are cleared, and --resume says what the files hold."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze import runs
from unfreeze.cli import main
from unfreeze.train.callbacks import CSVLogger

# Run by a child process: train, and kill -9 itself in the middle of the first checkpoint write.
KILLED_IN_FIRST_CHECKPOINT = """
import os, signal, sys
from pathlib import Path
from unfreeze.cli import main
from unfreeze.train import checkpoint

def save_torch(content, path):
    Path(path).write_bytes(b"PK\\x03\\x04 half a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)

checkpoint.save_torch = save_torch
main(sys.argv[1:])
"""


def stale(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_kill_during_the_first_checkpoint_write(tiny_data: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--resume said the run 'stopped before its first epoch ended' though history.csv had the epoch."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "UNFREEZE_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", KILLED_IN_FIRST_CHECKPOINT, "train", str(tiny_data), *TINY,
                           "--out", str(out), "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with (out / "history.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 1
    assert not (out / "checkpoint.pt").exists() and stale(out) != []
    line = run_user_error(["train", "--resume", str(out)], capsys)
    assert "has no checkpoint.pt although" in line and "history.csv records 1 finished epoch(s)" in line
    assert "while writing the first checkpoint" in line and "--overwrite" in line
    assert stale(out) == []  # its process is gone: nothing writes them any more
    rerun = line.split("Start it again with: unfreeze ")[1].rstrip(".").split()
    assert main([*rerun, "--quiet"]) == 0  # the command it names works
    assert (out / "model.unfreeze").is_file() and stale(out) == []


def test_stale_temporaries_go_at_a_successful_resume(tiny_data: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = CSVLogger.after_epoch

    def after_epoch(self: CSVLogger, epoch: int, logs: dict[str, float]) -> object:
        result = real(self, epoch, logs)
        os.kill(os.getpid(), signal.SIGINT)  # held until the epoch's checkpoint is written
        return result

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(CSVLogger, "after_epoch", after_epoch)
        assert main(["train", str(tiny_data), *TINY, "--out", str(out), "--quiet"]) == 130
    for name in (".checkpoint.pt.k2j4x9.tmp", ".model.unfreeze.a8b7c6.tmp", ".history.csv.zz.tmp"):
        (out / name).write_bytes(b"left by a kill -9")
    (out / "notes.tmp").write_text("the user's own file")
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert stale(out) == ["notes.tmp"]


def test_a_live_run_keeps_its_temporaries(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / ".checkpoint.pt.abc.tmp").write_bytes(b"being written")
    with runs.run_lock(tmp_path):  # this live process holds the run
        (tmp_path / ".checkpoint.pt.abc.tmp").write_bytes(b"being written")
        assert runs.clear_stale_temporaries(tmp_path) == []
        assert stale(tmp_path) == [".checkpoint.pt.abc.tmp"]
    assert runs.clear_stale_temporaries(tmp_path) == [tmp_path / ".checkpoint.pt.abc.tmp"]


def test_overwrite_clears_stale_temporaries(tiny_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / ".model.unfreeze.q1w2e3.tmp").write_bytes(b"left by a kill -9")
    assert runs.create_run_dir(folder, overwrite=True) == folder
    assert stale(folder) == []
