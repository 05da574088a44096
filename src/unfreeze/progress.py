"""Progress of a long step (predicting a folder, an export's check, int8 calibration, the LR range test).

The rule training's ProgressCallback follows, for steps that are not epochs: a live bar on a terminal
(rich, loaded only then), one line per tenth of the work in a pipe or a log file (so a log shows the
step is alive without filling up), nothing with `quiet`.

    with StepProgress("predict", total=len(images)) as progress:
        for batch in batches:
            ...
            progress.advance(len(batch))
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["AROUND_TRAINING_DELAY", "StepProgress", "pipe_stream"]

# The checks and feature passes around training (flip and noise checks, the probe's features, the
# calibration, the disagreements list) show progress only once they have run this long.
AROUND_TRAINING_DELAY = 2.0


def pipe_stream(quiet: bool, stream: Any = None) -> Any:
    """`stream` (default stdout) when it is no terminal (a pipe, a log) and output is wanted; else None.

    Example:
        >>> pipe_stream(quiet=True) is None
        True
    """
    stream = sys.stdout if stream is None else stream
    if quiet or stream is None:
        return None
    return None if getattr(stream, "isatty", lambda: False)() else stream


class StepProgress:
    """A count of done units out of `total`, shown as a bar on a terminal or a line per tenth elsewhere.

    Args:
        description: What is being done, e.g. "predict"; starts each line.
        total: Units of work (images, iterations); 0 shows nothing.
        quiet: Show nothing.
        stream: Where to write (default: stdout; a terminal gets the bar).
        unit: The name of a unit in the lines, e.g. "images".
        delay: Seconds to wait before showing anything: a step over sooner shows nothing (the checks
            around training print only where they take a while).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> with StepProgress("predict", total=20, stream=out, unit="images") as progress:
        ...     progress.advance(20)
        >>> out.getvalue()
        'predict: 20/20 images\\n'
    """

    def __init__(self, description: str, total: int, quiet: bool = False, stream: Any = None,
                 unit: str = "", delay: float = 0.0) -> None:
        self.description, self.total, self.unit = description, int(total), unit
        self.stream = sys.stdout if stream is None else stream
        self.quiet = quiet or self.stream is None or self.total <= 0
        self.done = 0
        self.delay = float(delay)
        self._shown = False  # whether the bar or the lines have started (after `delay`)
        self._started = 0.0
        self._next_line = 0  # the count at which the next tenth's line is due
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> StepProgress:
        self._started = time.monotonic()
        if self.delay <= 0:
            self._show()
        return self

    def _show(self) -> None:
        self._shown = True
        if not self.quiet and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
                                 console=Console(file=self.stream), transient=True,
                                 # Output to another stream (predictions to stdout, the bar on stderr)
                                 # goes straight there, not through the bar's console.
                                 redirect_stdout=self.stream is sys.stdout, redirect_stderr=self.stream is sys.stderr)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, detail="")
        self._next_line = self._tenth()

    def _tenth(self) -> int:
        return min(self.total, self.done + max(self.total // 10, 1))

    def update(self, done: int, detail: str = "") -> None:
        """Set the count of done units (a line is printed when it passes the next tenth)."""
        self.done = min(int(done), self.total)
        if self.quiet:
            return
        if not self._shown:
            if time.monotonic() - self._started < self.delay or self.done >= self.total:
                return  # not yet due, or over before it was: nothing to show
            self._show()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, detail=detail)
            return
        if self.done >= self._next_line:
            unit = f" {self.unit}" if self.unit else ""
            extra = f", {detail}" if detail else ""
            print(f"{self.description}: {self.done}/{self.total}{unit}{extra}", file=self.stream, flush=True)
            self._next_line = self._tenth() if self.done < self.total else self.total + 1

    def advance(self, units: int = 1, detail: str = "") -> None:
        """Count `units` more done units."""
        self.update(self.done + units, detail)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
