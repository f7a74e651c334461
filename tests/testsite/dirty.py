"""A gunicorn dirty app (gunicorn >= 25) that queries through Django from a dirty worker."""

import os

from django.db import connection
from gunicorn.dirty.app import DirtyApp


class QueryApp(DirtyApp):
    """Answers `echo(tag)` from a dirty worker's own database connection."""

    def echo(self, tag: str) -> dict[str, object]:
        """Send the tag through PostgreSQL and return what came back."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s::text, pg_backend_pid()", [tag])
            got, backend = cursor.fetchone()
        return {"tag": got, "sent": tag, "pid": os.getpid(), "backend": backend}
