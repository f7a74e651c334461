"""Preloaded by a forkserver (multiprocessing.set_forkserver_preload): set Django up and query, as an app's import does.

The forkserver then holds a connection (CONN_MAX_AGE=None) that every process it forks inherits.
"""

from __future__ import annotations

import django

django.setup()

from django.db import connection  # noqa: E402

with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    BACKEND: int = int(cursor.fetchone()[0])
