"""StepProgress: a line per tenth in a pipe, a live bar on a terminal, nothing when quiet."""

from __future__ import annotations

import io

from unfreeze.progress import StepProgress, pipe_stream


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_one_line_per_tenth() -> None:
    out = io.StringIO()
    with StepProgress("predict", total=95, stream=out, unit="images") as progress:
        for _ in range(95):
            progress.advance(detail="ok")
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[0] == "predict: 9/95 images, ok" and lines[-1] == "predict: 95/95 images, ok"
    big_steps = io.StringIO()
    with StepProgress("check", total=10, stream=big_steps) as progress:
        progress.advance(7)  # a step over several tenths prints one line
        progress.advance(3)
    assert big_steps.getvalue().splitlines() == ["check: 7/10", "check: 10/10"]


def test_quiet_and_empty_print_nothing() -> None:
    out = io.StringIO()
    with StepProgress("predict", total=10, quiet=True, stream=out) as progress:
        progress.advance(10)
    with StepProgress("predict", total=0, stream=out) as progress:
        progress.advance(1)
    assert out.getvalue() == ""
    assert pipe_stream(quiet=True, stream=out) is None and pipe_stream(quiet=False, stream=out) is out
    assert pipe_stream(quiet=False, stream=Terminal()) is None


def test_a_terminal_gets_a_bar_not_lines() -> None:
    terminal = Terminal()
    with StepProgress("calibration", total=50, stream=terminal, unit="images") as progress:
        for _ in range(50):
            progress.advance()
    shown = terminal.getvalue()
    assert "calibration" in shown and "50/50" in shown  # the bar's last frame (erased after: transient)
    assert "calibration: 5/50 images" not in shown
