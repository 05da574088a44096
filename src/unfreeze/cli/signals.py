"""Stop signals in the `unfreeze` command: SIGTERM is handled as Ctrl-C, and a second signal waits.

Schedulers and `docker stop` send SIGTERM, whose default kills the process on the spot: no summary.json,
run.lock left behind. While `StopSignals` is active, the first SIGINT or SIGTERM raises KeyboardInterrupt,
so training stops the way Ctrl-C stops it (last checkpoint kept, summary marked interrupted, lock
removed). A user pressing Ctrl-C again while that cleanup runs would otherwise abort it half-way; later
signals are only acknowledged, and the cleanup finishes. The exit status is 128 + the first signal's
number, as a shell reports a process stopped by it (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopSignals", "ignore_stop_signals"]

_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class StopSignals:
    """Handle SIGINT and SIGTERM as one stop request for the duration of a `with` block.

    Attributes:
        received: The signal numbers that arrived, in order.

    Example:
        >>> with StopSignals() as stop:  # doctest: +SKIP
        ...     try:
        ...         train()
        ...     except KeyboardInterrupt:
        ...         return stop.exit_code
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}  # the handlers to restore: Python callables, SIG_DFL or SIG_IGN

    @property
    def first(self) -> int:
        """The signal that stopped the command (SIGINT when the KeyboardInterrupt came from elsewhere)."""
        return self.received[0] if self.received else signal.SIGINT

    @property
    def exit_code(self) -> int:
        """128 + the first signal's number: 130 after Ctrl-C, 143 after SIGTERM."""
        return 128 + int(self.first)

    @property
    def name(self) -> str:
        """How the stop request is named in messages: "Ctrl-C" or "SIGTERM"."""
        return _NAMES[self.first]

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.received.append(number)
        if len(self.received) == 1:
            raise KeyboardInterrupt
        print(f"unfreeze: {_NAMES[number]} again: finishing the cleanup first, then exiting (kill -9 stops at once "
              "but leaves run.lock and half-written files behind).", file=sys.stderr, flush=True)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            self._previous = {number: signal.signal(number, self._handle) for number in _NAMES}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        self._previous = {}


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM from now until the process exits (the `unfreeze` process, its command done).

    The command's cleanup is over and its exit code chosen (130 after Ctrl-C), but the interpreter's
    shutdown (torch's teardown) takes another second: a Ctrl-C pressed again then would raise
    KeyboardInterrupt outside any handler, and Python would end the process by SIGINT instead of with
    the exit code. Only the main thread may set handlers; elsewhere this does nothing.

    Example:
        >>> ignore_stop_signals()  # doctest: +SKIP  (the last thing `main` does as the program)
    """
    if threading.current_thread() is threading.main_thread():
        for number in _NAMES:
            signal.signal(number, signal.SIG_IGN)
