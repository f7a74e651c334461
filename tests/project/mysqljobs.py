"""What the MySQL jobs (RQ, Celery) do: a tag through MySQL via Django, reported to Redis as tests/project/jobs.py."""

from __future__ import annotations

import os
from typing import Any

from . import jobs


def session() -> int:
    """This process's MySQL session id, through Django's default connection (CONN_MAX_AGE=None)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def echo(tag: str) -> None:
    """Send `tag` through MySQL and report what came back, from which session and process."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s, CONNECTION_ID()", [tag])
            got, sid = cursor.fetchone()
        row: dict[str, Any] = {"tag": tag, "got": got, "backend": int(sid), "pid": os.getpid()}
    except Exception as exc:
        row = {"tag": tag, "error": f"{type(exc).__name__}: {exc}".strip()[:200], "pid": os.getpid()}
    jobs.push(jobs.RESULTS, row)
