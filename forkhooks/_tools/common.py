"""What the operator commands share: their argument types, Django settings on sys.path, one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

# An error line longer than this is cut at a word boundary, with an ellipsis.
MAX_LINE = 300


def first_line(text: str, limit: int = MAX_LINE) -> str:
    """The first non-empty line of `text`, whole; past `limit` characters cut after a word, with "…"."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if len(line) <= limit:
        return line
    head = line[:limit]
    if line[limit].isspace() or head[-1:].isspace() or not any(c.isspace() for c in head):
        cut = head  # ends on a whole word, or is one word too long to cut after
    else:
        cut = head.rsplit(None, 1)[0]  # drop the word the limit cuts in two
    return cut.rstrip(" ,;:") + "…"


def error_text(exc: BaseException) -> str:
    """`Type: first line of the message`, for one line of a command's output."""
    message = first_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum`, else a usage error naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"  # argparse names the type in some messages
    return parse


def use_settings(module: str | None) -> bool:
    """Take Django settings from `module` (else DJANGO_SETTINGS_MODULE); False when neither is set.

    Like `celery -A` and gunicorn, put the current directory on sys.path, so a project's
    settings import from its own directory; the `forkhooks` script does not do it by itself.
    """
    if module:
        os.environ["DJANGO_SETTINGS_MODULE"] = module
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return False
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        sys.path.insert(0, cwd)
    return True
