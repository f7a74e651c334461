"""Make database connections safe across fork(): discard in the child, close in the owner."""

from __future__ import annotations

from ._adapters.forks import install
from ._core import PerProcess, Report, close, discard, track, warm

__all__ = ["PerProcess", "Report", "close", "discard", "install", "track", "warm"]
__version__ = "0.1.0"
