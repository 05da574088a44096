"""Signals: SIGTERM (schedulers, `docker stop`) stops training as Ctrl-C does; a second signal waits.

Real signals are delivered to this process with `signal.raise_signal` at chosen points of a tiny run,
and to a real training process in the slow test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cli_helpers import TINY
from unfreeze import runs
from unfreeze._io import atomic_path
from unfreeze.cli import commands, main
from unfreeze.train import checkpoint as checkpoint_module
from unfreeze.train.callbacks import CSVLogger

TWO_EPOCHS = [*TINY[:-4], "--epochs", "2", "--freeze-epochs", "0"]


def signal_after_first_epoch(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    real = CSVLogger.after_epoch

    def after_epoch(self: CSVLogger, epoch: int, logs: dict[str, float]) -> object:
        result = real(self, epoch, logs)
        if epoch == 0:
            signal.raise_signal(number)
        return result

    monkeypatch.setattr(CSVLogger, "after_epoch", after_epoch)


def assert_stopped_cleanly(out: Path, epochs: int = 1) -> None:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and len(summary["history"]) == epochs
    assert not (out / runs.LOCK_FILE).exists()
    assert not (out / "model.unfreeze").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["progress"]["epoch"] == epochs - 1  # the last finished epoch's checkpoint, kept
    assert [path.name for path in out.iterdir() if path.name.endswith(".tmp")] == []


@pytest.mark.parametrize(("number", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "")])
def test_sigterm_stops_training_like_ctrl_c(number: int, code: int, name: str, tiny_data: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM used to kill the process at once: run.lock left, no summary.json, exit status -15."""
    signal_after_first_epoch(monkeypatch, number)
    out = tmp_path / "run"
    assert main(["train", str(tiny_data), *TWO_EPOCHS, "--out", str(out), "--quiet"]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err
    assert_stopped_cleanly(out)
    assert main(["train", "--resume", str(out), "--quiet"]) == 0  # and it resumes like after Ctrl-C
    assert (out / "model.unfreeze").is_file()


def test_sigterm_outside_training_is_one_line(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from unfreeze.cli import commands

    def terminated(*args: object, **kwargs: object) -> None:
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(commands, "load_data", terminated)
    assert main(["train", str(tiny_data), *TINY, "--out", str(tmp_path / "run")]) == 143
    assert capsys.readouterr().err.strip().splitlines() == ["unfreeze: interrupted (SIGTERM)."]


def test_handlers_are_restored_after_the_command(tiny_data: Path, tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    main(["train", str(tiny_data), *TINY, "--out", str(tmp_path / "run"), "--quiet"])
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_second_signal_lets_the_cleanup_finish(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A second Ctrl-C 0.3 s after the first used to abort the cleanup: exit -2, no summary, lock kept."""
    signal_after_first_epoch(monkeypatch, signal.SIGINT)
    real_write_json = runs.write_json

    def write_json(path: Path, content: dict[str, object]) -> Path:
        if path.name == "summary.json":
            signal.raise_signal(signal.SIGINT)  # pressed again while the interrupted run writes its summary
            signal.raise_signal(signal.SIGTERM)
        return real_write_json(path, content)

    monkeypatch.setattr(runs, "write_json", write_json)
    out = tmp_path / "run"
    assert main(["train", str(tiny_data), *TWO_EPOCHS, "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Ctrl-C again: finishing the cleanup" in err and "SIGTERM again" in err
    assert_stopped_cleanly(out)


def test_a_signal_during_a_checkpoint_write_keeps_that_checkpoint(tiny_data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while epoch 1's checkpoint was written threw it away, though history.csv had the epoch."""
    real_save, calls = checkpoint_module.save_torch, []

    def save_torch(content: object, path: Path) -> None:
        calls.append(path)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGTERM)  # arrives in the middle of the write
        real_save(content, path)

    monkeypatch.setattr(checkpoint_module, "save_torch", save_torch)
    out = tmp_path / "run"
    assert main(["train", str(tiny_data), *TWO_EPOCHS, "--out", str(out), "--quiet"]) == 143
    assert_stopped_cleanly(out)
    assert len(calls) == 1


def test_an_atomic_write_completes_before_ctrl_c_takes_effect(tmp_path: Path) -> None:
    # From Python's own Ctrl-C handler, whatever an earlier test in this worker process left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        target = tmp_path / "model.bin"
        with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
            tmp.write_bytes(b"first half ")
            signal.raise_signal(signal.SIGINT)
            with tmp.open("ab") as handle:
                handle.write(b"second half")
        assert target.read_bytes() == b"first half second half"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True])
def test_sigterm_to_a_real_training_process(group: bool, make_image_folder: Callable[..., Path],
                                            tmp_path: Path) -> None:
    """As `docker stop` (the main process only) and a scheduler (the whole process group) send it."""
    data = make_image_folder(classes=("ant", "bee"), n_train=150, n_valid=40)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "UNFREEZE_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "unfreeze", "train", str(data), "--arch", "test_resnet", "--no-pretrained",
         "--size", "16", "--bs", "2", "--epochs", "50", "--freeze-epochs", "0", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    if group:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert not (out / runs.LOCK_FILE).exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["progress"]["epoch"] + 1 >= len(summary["history"]) - 1  # at most the epoch in progress is lost


class _SignalOnCollect:
    """Sends `number` to this process from `__del__`: its KeyboardInterrupt is raised where Python only
    prints it ("Exception ignored in"), as when a SIGTERM lands in one of matplotlib's weakref callbacks."""

    def __init__(self, number: int) -> None:
        self.number = number

    def __del__(self) -> None:
        signal.raise_signal(self.number)
        _ = [0]  # a bytecode for the handler to run in


def test_a_stop_signal_raised_in_a_finalizer_still_stops_the_run(tiny_data: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A SIGTERM during the post-fit plots landed in a weakref callback: Python printed the KeyboardInterrupt's
    traceback, the run went on as if no signal came and exited 0, and a second SIGTERM was told the (absent)
    cleanup would finish first. The stop is delivered again outside the finalizer (a moment later): exit 143;
    --resume finishes."""
    real = commands._export

    def export(learn: object, run: runs.Run) -> Path:
        _SignalOnCollect(signal.SIGTERM)  # collected at once: the signal arrives inside __del__
        return real(learn, run)

    monkeypatch.setattr(commands, "_export", export)
    out = tmp_path / "run"
    code = main(["train", str(tiny_data), *TINY, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 143, err
    assert "Exception ignored" not in err and "Traceback" not in err
    assert "interrupted (SIGTERM)" in err
    assert (out / "checkpoint.pt").exists() and not (out / runs.LOCK_FILE).exists()
    assert [path.name for path in out.iterdir() if path.name.endswith(".tmp")] == []
    monkeypatch.setattr(commands, "_export", real)
    assert main(["train", "--resume", str(out), "--quiet"]) == 0  # the post-fit steps, from the trained model
    assert (out / "model.unfreeze").is_file()
