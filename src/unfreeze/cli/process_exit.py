"""End the `unfreeze` process as soon as its command is done, without the interpreter's teardown.

Once a command has returned its exit code, CPython still tears down every module it imported. With
torch and torchvision loaded (torchvision imports torch._dynamo) that takes about a second of CPU on
every command, after the last line is printed and every file is written: time the user waits for nothing.
`leave` runs what a normal exit runs that matters (the atexit handlers: logging's flush, weakref
finalizers such as temporary directories, multiprocessing's worker cleanup) and the flush of the standard
streams, then ends the process with the command's code. Only the program's own entry point calls it;
`main([...])` called from Python returns as before.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn

__all__ = ["leave"]


def leave(code: int) -> NoReturn:
    """Run the atexit handlers, flush stdout and stderr, and end the process with `code`.

    Threads other than the main one are not waited for (the commands join their own threads before
    returning), and objects are not finalized: every file the commands write is closed by a `with` block.

    Args:
        code: The exit status the command chose.

    Example:
        >>> # the last thing the `unfreeze` program does:
        >>> leave(main(sys.argv[1:]))  # doctest: +SKIP
    """
    try:
        atexit._run_exitfuncs()  # the handlers a normal exit runs, in their order
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing left to say
                pass
        os._exit(code)
