"""Make database connections safe across fork(): discard in the child, close in the owner."""

from __future__ import annotations

from ._core import Report, close, discard, install, warm

__all__ = ["Report", "close", "discard", "install", "warm"]
__version__ = "0.1.0"
