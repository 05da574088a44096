"""A Ctrl-C pressed again while an interrupted `unfreeze train` finishes and exits: exit code 130, not a
death by SIGINT (a real training process, the second signal at several moments of its end)."""

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

from unfreeze import runs


@pytest.mark.slow
@pytest.mark.parametrize("delay_s", [0.05, 0.4, 1.0])
def test_a_second_ctrl_c_still_exits_130(delay_s: float, make_image_folder: Callable[..., Path],
                                         tmp_path: Path) -> None:
    """The second SIGINT arrived after the cleanup, while the interpreter shut down: KeyboardInterrupt outside
    any handler, and the process ended by SIGINT (status -2) instead of exit code 130."""
    data = make_image_folder(classes=("ant", "bee"), n_train=40, n_valid=10)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "UNFREEZE_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "unfreeze", "train", str(data), "--arch", "test_resnet", "--no-pretrained",
         "--size", "16", "--bs", "2", "--epochs", "50", "--freeze-epochs", "0", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    while time.monotonic() - sent < delay_s and process.poll() is None:
        time.sleep(0.005)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True
    assert not (out / runs.LOCK_FILE).exists()
