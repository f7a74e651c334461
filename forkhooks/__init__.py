"""Make database connections safe across fork(): discard in the child, close in the owner."""

from __future__ import annotations

from . import _django
from ._core import Report, close, discard, install, warm

__all__ = ["Report", "close", "discard", "install", "warm"]
__version__ = "0.1.0"

# Remember Django wrappers as they connect, in every thread, so that a child
# can find the ones it inherited (Django's thread-locals cannot be listed).
_django.watch()
