"""The per-checkout getpid() proxy: the pattern forkhooks replaces, as a Django backend.

Every access to ``pool`` (Django reads it on each connect, close and health
check) compares ``os.getpid()`` with the pid the pools were made in; after a
fork it forgets the inherited pools and builds new ones lazily. Nothing is
closed in the child: psycopg only sends Terminate from the process that opened
a connection, so the parent's sessions survive. Select it with
``FORKHOOKS_EXAMPLE_ENGINE=bench.getpid_backend``.
"""

from __future__ import annotations

import os
from typing import Any

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    """django.db.backends.postgresql with a pid check on every pool access."""

    # Our own dict, so replacing it after a fork never touches the stock backend's.
    _connection_pools: dict[str, Any] = {}
    _pools_pid: int = os.getpid()

    @property
    def pool(self) -> Any:
        """The pool for this alias, rebuilt (lazily) if this process is not the one that built it."""
        pid = os.getpid()  # a real syscall on every access: the cost this pattern pays per checkout
        cls = type(self)
        if cls._pools_pid != pid:
            # Forked: the inherited pools have no threads here and share sockets
            # with the parent. Drop them (without close(), which would join dead
            # threads) and start over.
            cls._connection_pools = {}
            cls._pools_pid = pid
        return super().pool
