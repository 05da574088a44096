"""Stop signals in the `unfreeze` command: SIGTERM is handled as Ctrl-C, and a second signal waits.

Schedulers and `docker stop` send SIGTERM, whose default kills the process on the spot: no summary.json,
run.lock left behind. While `StopSignals` is active, the first SIGINT or SIGTERM raises KeyboardInterrupt,
so training stops the way Ctrl-C stops it (last checkpoint kept, summary marked interrupted, lock
removed). A user pressing Ctrl-C again while that cleanup runs would otherwise abort it half-way; later
signals are only acknowledged, and the cleanup finishes. The exit status is 128 + the first signal's
number, as a shell reports a process stopped by it (130 for SIGINT, 143 for SIGTERM).

A KeyboardInterrupt raised while a weakref callback or `__del__` runs (matplotlib's plots run many) is
only printed by Python, and the stop would be lost; `StopSignals` catches it in `sys.unraisablehook`
and delivers the signal again a moment later, once the finalizer has returned.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopSignals", "ignore_stop_signals"]

_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
_RESEND_AFTER_S = 0.01  # a stop lost in a finalizer is sent again after this pause


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
        self._previous_hook: Any = None  # the sys.unraisablehook to restore
        self._swallowed = False  # the first signal's KeyboardInterrupt was ignored in a finalizer: raise it again

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
        if self._swallowed:  # the first signal, sent again by `_unraisable`: not a second one
            self._swallowed = False
            raise KeyboardInterrupt
        self.received.append(number)
        if len(self.received) == 1:
            raise KeyboardInterrupt
        print(f"unfreeze: {_NAMES[number]} again: finishing the cleanup first, then exiting (kill -9 stops at once "
              "but leaves run.lock and half-written files behind).", file=sys.stderr, flush=True)

    def _unraisable(self, unraisable: Any) -> None:
        # Python ignores an exception raised in a weakref callback or __del__: the stop request would be lost
        # (and its traceback printed). Sent from another thread after a pause, the signal reaches the handler
        # once this hook and the finalizer have returned (a signal sent from here would run it right here).
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and len(self.received) == 1 and not self._swallowed:
            self._swallowed = True
            resend = threading.Timer(_RESEND_AFTER_S, _thread.interrupt_main, (self.first,))
            resend.daemon = True
            resend.start()
            return
        self._previous_hook(unraisable)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            self._previous = {number: signal.signal(number, self._handle) for number in _NAMES}
            self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        self._previous = {}
        if self._previous_hook is not None:
            sys.unraisablehook, self._previous_hook = self._previous_hook, None


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM from now until the process exits (the `unfreeze` process, its command done).

    The command's cleanup is over and its exit code chosen (130 after Ctrl-C), but the interpreter's
    shutdown (torch's teardown) takes another second: a Ctrl-C pressed again then would raise
    KeyboardInterrupt outside any handler, and Python would end the process by SIGINT instead of with
    the exit code. Only the main thread may set handlers; elsewhere this does nothing.

    Example:
        >>> # the last thing `main` does as the program:
        >>> ignore_stop_signals()  # doctest: +SKIP
    """
    if threading.current_thread() is threading.main_thread():
        for number in _NAMES:
            signal.signal(number, signal.SIG_IGN)
