"""What the command prints: text from files made safe for a terminal, and giving up a dead stdout.

Text from files (class names in a model, messages quoting them) is made safe to print on a terminal.

A class name is whatever the model file says. Printed raw, `"\\x1b[2J"` clears the screen, a carriage
return overwrites the line before it and a right-to-left override reverses what follows. `printable`
shows such characters as escapes instead; letters of every script, accents and emoji stay as they are.
"""

from __future__ import annotations

import contextlib
import os
import unicodedata
from typing import IO, Any

__all__ = ["discard_output", "printable"]

# Unicode's bidirectional controls (format characters, not category Cc) reorder the text after them.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep_newlines: bool = False) -> str:
    """`text` with control characters (C0, DEL, C1, bidi controls) written as escapes such as `\\x1b`.

    Args:
        text: Any text, e.g. a class name read from a model file.
        keep_newlines: Leave line breaks alone (a multi-line report); tabs are always kept.

    Example:
        >>> printable("cat\\x1b[2J")
        'cat\\\\x1b[2J'
        >>> printable("café 🐈")
        'café 🐈'
    """
    kept = "\t\n" if keep_newlines else "\t"
    return "".join(_escape(character) if character not in kept and (
        unicodedata.category(character) == "Cc" or character in _BIDI_CONTROLS) else character
        for character in text)


def discard_output(stream: IO[Any]) -> None:
    """Point `stream`'s file descriptor at /dev/null: its reader went away or its disk is full.

    What is still buffered would otherwise fail again at the interpreter's final flush, printing a
    second error ("Exception ignored ...") and changing the exit status to 120.

    Example:
        >>> discard_output(sys.stdout)  # doctest: +SKIP
    """
    with contextlib.suppress(AttributeError, OSError, ValueError):  # a stream without a descriptor (tests)
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
