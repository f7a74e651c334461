"""RQ on MySQL for the tests: the echo job, and worker classes whose main process holds a session across the forks.

``-w tests.project.mysqlrq.ForkhooksProbe`` is forkhooks.rq.Worker with the probe;
``PlainProbe`` is rq.Worker with the same probe. Answers go to Redis as in tests/project/jobs.py.
"""

from __future__ import annotations

import os
from typing import Any

import django
import rq

import forkhooks.rq

from . import jobs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.mysqlsite.settings")
django.setup()


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


class _Probe:
    def work(self, *args: Any, **kwargs: Any) -> Any:
        # The main process holds a session when it starts working, as after a start-up check.
        try:
            jobs.push(jobs.PARENT, {"when": "before", "backend": session(), "pid": os.getpid()})
        except Exception as exc:
            jobs.push(jobs.PARENT, {"when": "before", "error": f"{type(exc).__name__}: {exc}"[:200]})
        try:
            return super().work(*args, **kwargs)  # type: ignore[misc]
        finally:
            try:
                jobs.push(jobs.PARENT, {"when": "after", "backend": session(), "pid": os.getpid()})
            except Exception as exc:
                jobs.push(jobs.PARENT, {"when": "after", "error": f"{type(exc).__name__}: {exc}"[:200]})


class ForkhooksProbe(_Probe, forkhooks.rq.Worker):
    """forkhooks.rq.Worker whose main process holds a MySQL session across the horses' forks."""


class PlainProbe(_Probe, rq.Worker):
    """rq.Worker whose main process holds a MySQL session across the horses' forks."""
