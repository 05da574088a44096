"""Case 4: Ctrl-C in `unfreeze train` (and anywhere else in the CLI)."""

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

from cli_helpers import TINY
from unfreeze import runs
from unfreeze.cli import commands, main
from unfreeze.train.callbacks import CSVLogger


def interrupt_after_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    real = CSVLogger.after_epoch

    def after_epoch(self: CSVLogger, epoch: int, logs: dict[str, float]) -> object:
        real(self, epoch, logs)
        raise KeyboardInterrupt  # as if Ctrl-C arrived right after the row was written

    monkeypatch.setattr(CSVLogger, "after_epoch", after_epoch)


@pytest.mark.parametrize("save", [False, True])
def test_ctrl_c_in_training_stops_and_exits_130(save: bool, tiny_data: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    interrupt_after_first_epoch(monkeypatch)
    out = tmp_path / "run"
    code = main(["train", str(tiny_data), *TINY, "--out", str(out), "--quiet", *["--save-on-interrupt"] * save])
    err = capsys.readouterr().err
    assert code == 130, err
    assert "Traceback" not in err and "interrupted" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and len(summary["history"]) == 1  # stopped at once
    assert (out / "model.unfreeze").exists() == save
    assert not (out / "confusion_matrix.png").exists()
    assert not (out / runs.LOCK_FILE).exists()


@pytest.mark.parametrize("where", ["load_data", "lr_find"])
def test_ctrl_c_elsewhere_is_one_line(where: str, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    if where == "load_data":
        monkeypatch.setattr(commands, "load_data", interrupted)
    else:
        from unfreeze.train.learner import Learner

        monkeypatch.setattr(Learner, "lr_find", interrupted)
    out = tmp_path / "run"
    code = main(["train", str(tiny_data), *TINY, "--out", str(out), "--lr", "auto"])
    err = capsys.readouterr().err
    assert code == 130
    # Warnings before training (TINY's 16 px gives test_resnet a 1x1 feature map) are not part of the stop.
    lines = [line for line in err.strip().splitlines() if not line.startswith("unfreeze: warning:")]
    # lr_find runs in the run directory: the line names it and how to go on (it has no checkpoint yet).
    kept = "" if where == "load_data" else f"; {out} has no checkpoint yet: train again with '--out {out} --overwrite'"
    assert lines == [f"unfreeze: interrupted (Ctrl-C){kept}."]
    assert not (out / runs.LOCK_FILE).exists()


def _ctrl_c_in(step: str, data: Path, out: Path, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]) -> str:
    """`unfreeze train DATA --out OUT` with Ctrl-C in `commands.<step>`: checks exit 130, returns stderr."""
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, step, interrupted)
    assert main(["train", str(data), *TINY, "--out", str(out), "--quiet"]) == 130
    return capsys.readouterr().err


def test_ctrl_c_after_the_epochs_names_the_run_to_resume(tiny_data: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Ctrl-C while the trained model was exported used to print only "interrupted (Ctrl-C)": nothing said
    # that the run directory holds a checkpoint that --resume finishes.
    out = tmp_path / "run"
    err = _ctrl_c_in("_export", tiny_data, out, monkeypatch, capsys)
    assert f"{out} is kept: finish it with 'unfreeze train --resume {out}'" in err
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert (out / "model.unfreeze").is_file()


def test_decode_workers_ignore_sigint() -> None:
    # The initializer runs in each worker; here in a child so this process keeps its handler.
    code = ("import signal; from unfreeze.data.loaders import _ignore_sigint; _ignore_sigint(0); "
            "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


@pytest.mark.slow
def test_sigint_to_a_real_training_process(make_image_folder: Callable[..., Path], tmp_path: Path) -> None:
    data = make_image_folder(classes=("ant", "bee"), n_train=150, n_valid=40)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "UNFREEZE_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "unfreeze", "train", str(data), "--arch", "test_resnet", "--no-pretrained",
         "--size", "16", "--bs", "2", "--epochs", "50", "--freeze-epochs", "0", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "history.csv").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True
    assert not (out / "model.unfreeze").exists()


def test_ctrl_c_while_the_report_is_written_names_the_report_command(tiny_data: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # Ctrl-C after summary.json said "finished" but before report.html used to say "finish it with
    # 'unfreeze train --resume RUN'", which then refused the finished run: report.html was never written.
    out = tmp_path / "run"
    err = _ctrl_c_in("_write_run_report", tiny_data, out, monkeypatch, capsys)
    assert "--resume" not in err and f"{out} finished; write its report with 'unfreeze report {out}'" in err
    monkeypatch.undo()
    assert main(["train", "--resume", str(out)]) == 2
    assert f"its report.html is missing: 'unfreeze report {out}' writes it" in capsys.readouterr().err
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()
