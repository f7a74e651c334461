"""Make database connections safe across fork(): discard in the child, close in the owner."""

from __future__ import annotations

from ._core import Report, close, discard, install, warm
from ._tracked import PerProcess, track

__all__ = ["PerProcess", "Report", "close", "discard", "install", "track", "warm"]
__version__ = "0.1.0"
