"""Case 2: two runs with the same --out --overwrite; the second refuses while the first is alive."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze import runs
from unfreeze.cli import main


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The PID of a process that stays alive during the test."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


def dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def fake_run_dir(path: Path, lock_pid: int) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"options": {}}))
    (path / "history.csv").write_text("epoch,train_loss\n0,1.0\n")
    (path / runs.LOCK_FILE).write_text(f"{lock_pid}\n")
    return path


def test_a_live_lock_refuses_overwrite(tiny_data: Path, tmp_path: Path, live_pid: int,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = fake_run_dir(tmp_path / "run", live_pid)
    line = run_user_error(["train", str(tiny_data), *TINY, "--out", str(out), "--overwrite"], capsys)
    assert str(live_pid) in line and "--out" in line
    assert (out / "history.csv").read_text() == "epoch,train_loss\n0,1.0\n"  # the other run's files untouched
    assert (out / runs.LOCK_FILE).read_text().strip() == str(live_pid)


def test_a_stale_lock_is_taken_over_and_released(tiny_data: Path, tmp_path: Path) -> None:
    out = fake_run_dir(tmp_path / "run", dead_pid())
    assert main(["train", str(tiny_data), *TINY, "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert (out / "model.unfreeze").is_file()
    assert not (out / runs.LOCK_FILE).exists()
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # header, one frozen and one unfrozen epoch: none of the old rows


def test_the_lock_is_released_after_an_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(RuntimeError), runs.run_lock(out):
        assert (out / runs.LOCK_FILE).read_text().strip() == str(__import__("os").getpid())
        raise RuntimeError("training failed")
    assert not (out / runs.LOCK_FILE).exists()


def test_run_lock_refuses_a_live_holder(tmp_path: Path, live_pid: int) -> None:
    (tmp_path / runs.LOCK_FILE).write_text(f"{live_pid}\n")
    with pytest.raises(runs.RunDirError, match=str(live_pid)), runs.run_lock(tmp_path):
        pass
    assert (tmp_path / runs.LOCK_FILE).read_text().strip() == str(live_pid)  # not removed: not ours


def test_a_lock_left_under_this_process_id_is_stale(tiny_data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A container killed and started again (`docker kill`, then `docker run ... --resume`) runs unfreeze
    under the same PID, often 1: the killed run's lock then named this very process, and --resume
    refused the run as "in use by another unfreeze run (process 1)"."""
    import os

    from unfreeze.train.callbacks import Recorder

    started: list[int] = []

    def interrupted(callback: object, epoch: int) -> None:
        started.append(epoch)
        if len(started) == 2:  # as the unfrozen epoch starts: the frozen one's checkpoint is kept
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Recorder, "before_epoch", interrupted)
        assert main(["train", str(tiny_data), *TINY, "--out", str(out), "--quiet"]) == 130
    (out / runs.LOCK_FILE).write_text(f"{os.getpid()}\n")  # as the killed process left it
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert (out / "model.unfreeze").is_file() and not (out / runs.LOCK_FILE).exists()
