"""What the Celery tasks and RQ jobs do, and how they report: one JSON line per answer in a Redis list.

Answers go to Redis, not to a result backend, so a wrong row is visible as
such: each job sends its tag through PostgreSQL and says which backend
answered, in which process.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis

RESULTS = "forkhooks:results"  # one JSON line per job
PARENT = "forkhooks:parent"  # the worker's main process: its session before and after the jobs
EVENTS = "forkhooks:events"  # slow jobs announce their backend before they sleep
BEAT = "forkhooks:beat"  # the beat process: its backend once its scheduler started

_client: tuple[int, redis.Redis] | None = None


def client() -> redis.Redis:
    """This process's Redis client (a forked child builds its own)."""
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis(unix_socket_path=os.environ["FORKHOOKS_TEST_REDIS"]))
    return _client[1]


def push(key: str, row: dict[str, Any]) -> None:
    """Append one JSON row to a Redis list."""
    client().rpush(key, json.dumps(row))


def backend() -> int:
    """This process's backend pid, through Django's default connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def echo(tag: str) -> None:
    """Send `tag` through PostgreSQL and report what came back, from which backend and process."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s::text, pg_backend_pid()", [tag])
            got, pid = cursor.fetchone()
        row: dict[str, Any] = {"tag": tag, "got": got, "backend": pid, "pid": os.getpid()}
    except Exception as exc:
        row = {"tag": tag, "error": f"{type(exc).__name__}: {exc}".strip()[:200], "pid": os.getpid()}
    push(RESULTS, row)


def naive_close(tag: str) -> None:
    """The blog post's workaround in a job: close Django's connection first, then answer."""
    from django.db import connection

    connection.close()
    echo(tag)


def slow(seconds: float) -> None:
    """A query that outlives the job's time limit: announce its backend, then sleep on the server."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        push(EVENTS, {"slow_backend": cursor.fetchone()[0], "pid": os.getpid()})
        cursor.execute("SELECT pg_sleep(%s)", [seconds])


def parent_holds_session() -> None:
    """In the worker's main process: open a pooled connection, note its backend, hand it back idle to the pool."""
    from django.db import connection

    try:
        # The pool at min_size first: then the check's query takes that connection and the pool does not
        # grow, so the parent has exactly one backend to watch.
        connection.pool.open(wait=True, timeout=10)
        push(PARENT, {"when": "before", "backend": backend(), "pid": os.getpid()})
    except Exception as exc:
        push(PARENT, {"when": "before", "error": f"{type(exc).__name__}: {exc}"[:200], "pid": os.getpid()})
    connection.close()  # with a pool: back to the pool, still connected, as after a start-up check


def parent_checks_session() -> None:
    """In the worker's main process after the jobs: is its session still usable, on which backend?"""
    from django.db import connection

    try:
        push(PARENT, {"when": "after", "backend": backend(), "pid": os.getpid()})
    except Exception as exc:
        push(PARENT, {"when": "after", "error": f"{type(exc).__name__}: {exc}"[:200], "pid": os.getpid()})
    connection.close()


def beat_session() -> None:
    """In a beat process: note its pid, its parent's and its backend, and hand the connection back."""
    from django.db import connection

    row: dict[str, Any] = {"pid": os.getpid(), "ppid": os.getppid()}
    try:
        row["backend"] = backend()
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"[:200]
    push(BEAT, row)
    connection.close()
