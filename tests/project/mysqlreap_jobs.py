"""A stuck MySQL job for the reaping tests (an RQ job, and the Celery tasks' body): announce the session, then wait
for the row lock the test holds (LOCKED).

The announcement goes to Redis (tests/project/jobs.py's EVENTS) with the pid of the process running it.
"""

from __future__ import annotations

import os

from . import jobs

TABLE = "fh_reap"
# Waits up to innodb_lock_wait_timeout (50 s) while the test holds the row; the server never ends it by itself.
LOCKED = f"SELECT id FROM {TABLE} WHERE id = 1 FOR UPDATE"


def locked() -> None:
    """Announce this process's MySQL session, then wait on the locked row."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        jobs.push(jobs.EVENTS, {"slow_backend": int(cursor.fetchone()[0]), "pid": os.getpid()})
        cursor.execute(LOCKED)
        cursor.fetchall()
