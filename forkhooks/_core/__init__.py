"""The core: discard in a child, close in the owner, warm a fresh worker, track user pools.

It knows Django's connections and pools, drivers' sockets and the pool kinds
`track()` accepts, and imports nothing else of forkhooks: adapters decide when
to call it, operator tools and the demo build on it.
"""

from __future__ import annotations

from . import djangodb, settings
from .settings import log
from .steps import Log, Report, cancel_running_query, close, discard, refuse_invalid_pools, warm
from .tracked import PerProcess, track

__all__ = [
    "Log",
    "PerProcess",
    "Report",
    "cancel_running_query",
    "close",
    "discard",
    "djangodb",
    "log",
    "refuse_invalid_pools",
    "settings",
    "track",
    "warm",
]
