"""AppError: a user mistake in serve, report, clean or a deployment export (exit code 2, one line)."""

from __future__ import annotations

__all__ = ["AppError"]


class AppError(ValueError):
    """What the user asked of an app cannot be done; the message says what was found and how to fix it."""
