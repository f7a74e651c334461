"""Test-only: a gunicorn dirty app whose action sleeps in PostgreSQL, and the demo site with /dirty-sleep calling it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from django.db import connection

from tests.testsite.dirty import QueryApp
from tests.testsite.wsgi import application as site

APP = "tests.reap_dirty:SleepApp"


class SleepApp(QueryApp):
    """The demo's dirty app plus `sleep(seconds)`: a query that holds a dirty worker's backend."""

    def sleep(self, seconds: float) -> int:
        """pg_sleep(seconds) on this dirty worker's connection; its backend pid."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), pg_sleep(%s)", [seconds])
            return int(cursor.fetchone()[0])


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """/dirty-sleep?seconds=N runs SleepApp.sleep in a dirty worker; everything else is the demo site."""
    if environ.get("PATH_INFO") != "/dirty-sleep":
        return site(environ, start_response)  # type: ignore[no-any-return]
    from gunicorn.dirty import get_dirty_client

    seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("seconds", ["1"])[0])
    try:
        body, status = str(get_dirty_client().execute(APP, "sleep", seconds)).encode(), "200 OK"
    except Exception as exc:  # the dirty worker died under the call: what the test does to it
        body, status = type(exc).__name__.encode(), "502 Bad Gateway"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
