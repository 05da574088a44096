"""AppError: a user mistake in serve, report, clean or a deployment export (exit code 2, one line)."""

from __future__ import annotations

__all__ = ["AppError"]


class AppError(ValueError):
    """What the user asked of an app cannot be done; the message says what was found and how to fix it.

    Example:
        >>> raise AppError("port 8000 on 127.0.0.1 is in use by another program. Pass another --port")
        Traceback (most recent call last):
        unfreeze.apps.errors.AppError: port 8000 on 127.0.0.1 is in use by another program. Pass another --port
    """
